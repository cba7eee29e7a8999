"""`prepare_catalogue` on LAMOST DR10's LASP label table as it is, and with an APOGEE-style label catalogue derived from it:
coverage, funnel and merged values checked against counts computed from the CSV itself."""
import csv, warnings

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from cemp_hfs.core import LABELS
from cemp_hfs.dataset import DUPLICATE_TOLERANCE, LABEL_LIMITS, prepare_catalogue, write_prepare_report

@pytest.fixture(scope='module')
def lasp(data_dir):
    p = data_dir / 'lamost' / 'dr10_labeled' / 'lasp_labels.csv'
    if not p.exists(): pytest.skip(f"{p} not found")
    return p

def _columns(path):
    "The CSV as {column: list of strings}, read with the csv module (not the code under test)."
    with open(path, newline='') as f: rows = list(csv.DictReader(f))
    return {k: [r[k] for r in rows] for k in rows[0]}

def _num(v): return np.array([float(x) if x.strip() else np.nan for x in v])

def _valid(v, label):
    lo, hi = LABEL_LIMITS[label]
    with np.errstate(invalid='ignore'): return np.isfinite(v) & (v >= lo) & (v <= hi)

def _coverage(t): return {r['column']: int(r['known']) for r in t.meta['coverage']}

def _funnel(t): return {r['step']: (int(r['removed']), str(r['note'])) for r in t.meta['funnel']}

def test_lasp_table_as_it_is(lasp, tmp_path):
    c = _columns(lasp)
    keep = _num(c['snrg']) > 20  # LASP has snrg but no snri: tier 1 is snrg > 20 alone
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        t, root = prepare_catalogue(lasp, progress=False)
    assert root == lasp.parent and len(t) == keep.sum()
    assert list(t['filename']) == [f for f, k in zip(c['filename'], keep) if k]
    cov = _coverage(t)
    for l in ('teff', 'logg', 'feh'): assert cov[l] == (keep & _valid(_num(c[l]), l)).sum(), l
    assert cov['cfe'] == 0 and all(cov[f'{l}_err'] == 0 for l in LABELS)  # no carbon, no errors
    assert any('no spectrum has a known cfe' in str(m.message) for m in w)
    f = _funnel(t)
    assert f['snrg > 20 or snri > 20'] == ((~keep).sum(), 'applied as snrg > 20 (no snri column)')
    assert f['rv_err < 20'] == (0, 'skipped: no rv_err column')
    assert all(f[k][1] == 'off' for k in ('teff_err cut', 'logg_err cut', 'feh_err cut'))
    # the whole of table 2: the label-error cuts are skipped, as LASP has no errors
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        t2, _ = prepare_catalogue(lasp, progress=False, teff_err_max=100., logg_err_max=0.1, feh_err_max=0.1)
    assert len(t2) == keep.sum() and _funnel(t2)['feh_err < 0.1'] == (0, 'skipped: no feh_err column')
    out = write_prepare_report(t, tmp_path / 'reports')
    assert [int(v) for v in Table.read(out / 'coverage.csv', format='ascii.csv')['known']] == [cov[k] for k in cov]

def test_apogee_style_catalogue_derived_from_lasp(lasp, tmp_path):
    c = _columns(lasp)
    n = len(c['filename'])
    val = {l: _num(c[l]) for l in ('teff', 'logg', 'feh')}
    # damaged the way real catalogues are: empty fields, an impossible [Fe/H], infinite log g
    empty = np.zeros(n, bool); empty[::10] = True
    feh = val['feh'].copy(); feh[3::17] = 9.99
    logg = val['logg'].copy(); logg[5::23] = np.inf
    Table({'APOGEE_ID': [f'2M{i:08d}' for i in range(n)], 'RAJ2000': _num(c['ra']), 'DEJ2000': _num(c['dec']),
           'TEFF': MaskedColumn(val['teff'], mask=empty), 'LOGG': logg, 'FE_H': feh}).write(tmp_path / 'apogee.csv')
    cat = {'teff': np.where(empty, np.nan, val['teff']), 'logg': logg, 'feh': feh}
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        t, _ = prepare_catalogue(lasp, tmp_path / 'apogee.csv', progress=False)
    keep = _num(c['snrg']) > 20
    assert len(t) == keep.sum() and _funnel(t)['cross-match within 3 arcsec'][0] == 0  # every spectrum finds its own star
    # LASP's `star` names the same star within 3 arcsec: its rows are merged, by the median as there are no errors
    star = np.array(c['star'])
    stars, counts = np.unique(star, return_counts=True)
    d = t.meta['duplicates']
    assert len(d) == (counts > 1).sum() and int(np.sum(d['n_rows'])) == counts[counts > 1].sum()
    assert any(f'each of {(counts > 1).sum()} star(s) listed several times' in str(m.message) for m in w)
    spread = {l: {s: np.ptp(cat[l][(star == s) & _valid(cat[l], l)]) if ((star == s) & _valid(cat[l], l)).sum() > 1 else 0.
                  for s in stars[counts > 1]} for l in cat}
    conflicts = [s for s in stars[counts > 1] if any(spread[l][s] > DUPLICATE_TOLERANCE[l] for l in cat)]
    assert int(np.sum(d['conflict'])) == len(conflicts) > 0  # LASP's repeats do disagree, now and then
    cov = _coverage(t)
    for l in ('teff', 'logg', 'feh'):
        ok = _valid(cat[l], l)
        med = {s: np.median(cat[l][(star == s) & ok]) if ((star == s) & ok).any() else np.nan for s in stars}
        expect = np.array([med[s] for s in star[keep]])
        np.testing.assert_array_equal(np.asarray(t[l], float), expect, err_msg=l)  # APOGEE's FE_H lands as feh
        assert cov[l] == np.isfinite(expect).sum(), l
    assert cov['cfe'] == 0 and any('no spectrum has a known cfe' in str(m.message) for m in w)
    rep = {r['column']: (r['source'], int(r['empty']), int(r['non_finite']), int(r['impossible'])) for r in t.meta['label_report']}
    assert rep['ra'][0] == 'raj2000' and rep['dec'][0] == 'dej2000'
    assert rep['teff'] == ('teff', empty.sum(), 0, (~empty & ~_valid(val['teff'], 'teff')).sum())
    assert rep['logg'] == ('logg', 0, np.isinf(logg).sum(), (np.isfinite(logg) & ~_valid(logg, 'logg')).sum())
    assert rep['feh'] == ('fe_h', 0, 0, (~_valid(feh, 'feh')).sum())
