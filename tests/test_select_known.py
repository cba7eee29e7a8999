"""`classify`, `candidates` and `evaluate` on a catalogue as LAMOST writes it (-9999 where a pipeline found no value,
masked by `read_catalog`), and on a sample with true CEMP stars whose answers the test derives itself."""
import numpy as np
from astropy.table import Table, MaskedColumn

from cemp_hfs.io import read_catalog
from cemp_hfs.select import classify, candidates, evaluate

FILL = -9999.
# obsid, teff, logg, feh, cfe: CEMP stars (101, 107), a masked [Fe/H] under a CEMP-like carbon (102), a masked [C/Fe]
# (103), carbon-normal stars, a masked log g (106), and a star at exactly the carbon bound (108)
ROWS = [(101, 4800., 1.8, -2.6, 1.2), (102, 5100., 2.4, FILL, 1.5), (103, FILL, 2.0, -3.2, FILL), (104, 6100., 4.1, -0.4, 0.1),
        (105, 4700., 1.5, -2.3, 0.5), (106, 5200., FILL, -3.5, 0.5), (107, 5600., 3.6, -2.9, 2.0), (108, 4900., 2.1, -2.2, 0.7)]
NAMES = ('obsid', 'teff', 'logg', 'feh', 'cfe')


def _truth(tmp_path):
    "The catalogue written as CSV with the -9999 fill and read back as a user reads it."
    Table(rows=ROWS, names=NAMES).write(tmp_path / 'lasp.csv', format='ascii.csv')
    t = read_catalog(tmp_path / 'lasp.csv')
    assert [bool(t[c].mask.any()) for c in NAMES] == [False, True, True, True, True]
    return t


def _known(l):
    "A label's values with the fill as NaN, straight from ROWS."
    v = np.array([r[NAMES.index(l)] for r in ROWS], float)
    return np.where(v == FILL, np.nan, v)


def _expected():
    "The classes under the paper's criteria, derived from ROWS: a NaN label satisfies no condition."
    feh, cfe = _known('feh'), _known('cfe')
    with np.errstate(invalid='ignore'):
        return dict(cemp=(feh < -2) & (cfe > 0.7), emp=feh < -3, vmp=(feh >= -2.5) & (feh < -1.5))


def test_masked_fill_is_never_a_class(tmp_path):
    t = _truth(tmp_path)
    c = classify(t)
    for cls, want in _expected().items(): assert list(np.asarray(c[cls], bool)) == list(want), cls
    assert not c['cemp'][1] and not c['emp'][1]  # the masked [Fe/H] of -9999 is neither CEMP nor EMP
    assert np.isnan(np.ma.filled(np.ma.asarray(c['ch'], dtype=float), np.nan)[[1, 2]]).all()  # nor a [C/H]
    assert sorted(candidates(c)['obsid']) == [r[0] for r, w in zip(ROWS, _expected()['cemp']) if w]
    # Aoki et al. need log L from Teff and log g: a masked log g (row 106) or Teff (103) gives no class, not a huge luminosity
    a = classify(t, 'aoki2007')
    assert not np.asarray(a['cemp'], bool)[[2, 5]].any()
    assert np.isnan(np.ma.filled(np.ma.asarray(a['log_l'], dtype=float), np.nan)[[2, 5]]).all()


def _predictions(t, rng):
    "Predicted labels: the true ones (a value where the catalogue has none) plus small errors, with uncertainties."
    p = Table({'obsid': np.asarray(t['obsid'])})
    for l, err in (('teff', 60.), ('logg', 0.1), ('feh', 0.05), ('cfe', 0.05)):
        v = np.nan_to_num(_known(l), nan={'teff': 5000., 'logg': 2.5, 'feh': -2.5, 'cfe': 1.0}[l])
        p[l] = v + rng.normal(0, err, len(v)); p[f'{l}_err'] = np.full(len(v), err)
    p['feh'][[0, 6]] = _known('feh')[[0, 6]]; p['cfe'][[0, 6]] = _known('cfe')[[0, 6]]  # the two CEMP stars found
    p['feh'][3] = -2.4; p['cfe'][3] = 1.0  # a carbon-normal dwarf wrongly selected
    return p


def test_evaluate_against_a_catalogue_with_masked_labels(tmp_path):
    t = _truth(tmp_path)
    p = _predictions(t, np.random.default_rng(2))
    ev = evaluate(p, t)
    want = _expected()['cemp']
    sel = np.asarray(classify(p)['cemp'], bool)
    assert want.sum() == 2 and sel[[0, 3, 6]].all()
    assert (ev['n_matched'], ev['n_true_cemp'], ev['n_selected']) == (len(ROWS), int(want.sum()), int(sel.sum()))
    assert ev['n_true_positive'] == int((sel & want).sum())
    assert ev['completeness'] == (sel & want).sum() / want.sum() and ev['purity'] == (sel & want).sum() / sel.sum()
    for l in ('teff', 'logg', 'feh', 'cfe'):  # over the stars whose true label is known, never against the fill
        ok = np.isfinite(_known(l))
        assert np.isclose(ev[f'mae_{l}'], np.mean(np.abs(np.asarray(p[l])[ok] - _known(l)[ok]))), l


def test_masked_keys_never_match(tmp_path):
    "Spectra without an obsid (masked, as predict writes DR2 files) are not joined with each other."
    t = _truth(tmp_path)
    p = _predictions(t, np.random.default_rng(3))
    p['obsid'] = MaskedColumn(np.asarray(p['obsid']), mask=[i in (1, 4) for i in range(len(p))])
    t['obsid'] = MaskedColumn(np.asarray(t['obsid']), mask=[i in (1, 4) for i in range(len(t))])
    ev = evaluate(p, t)
    assert ev['n_matched'] == len(ROWS) - 2
