"A mock survey at a size the tutorial uses: parallel writing, determinism, readable files, the documented population."
import numpy as np
import pytest
from astropy.table import Table

from cemp_hfs.io import read_lamost, crossmatch
from cemp_hfs.mock import make_survey, draw_population, cemp_fraction


@pytest.fixture(scope='module')
def survey(tmp_path_factory):
    out = tmp_path_factory.mktemp('survey')
    return out, make_survey(120, out, seed=11, n_workers=2, chunk=40, progress=False)


def test_every_file_reads_back_with_its_truth(survey):
    out, truth = survey
    assert len(truth) > 120 and len(set(truth['obsid'])) == len(truth)
    spectra = [read_lamost(out / f) for f in truth['filename']]
    assert [s.meta['obsid'] for s in spectra] == list(truth['obsid'])
    for s, row in zip(spectra[:40], truth[:40]):
        assert abs(s.meta['z'] - row['z']) < 1e-9 and abs(s.meta['snrg'] - row['snrg']) < 1e-3
        assert s.good.sum() > 3500 and np.all(s.ivar[~s.good & (s.andmask > 0)] == 0)
    assert {s.meta['release'] for s in spectra} == {'DR7', 'DR9'}  # image and table layouts


def test_same_seed_same_survey_any_workers(survey, tmp_path):
    out, truth = survey
    again = make_survey(120, tmp_path, seed=11, n_workers=0, chunk=40, progress=False)
    assert list(again['obsid']) == list(truth['obsid'])
    np.testing.assert_array_equal(np.asarray(again['snri']), np.asarray(truth['snri']))
    f = truth['filename'][-1]
    np.testing.assert_array_equal(read_lamost(tmp_path / f).flux, read_lamost(out / f).flux)


def test_catalogues_on_disk(survey):
    out, truth = survey
    csv, fits = Table.read(out / 'truth.csv'), Table.read(out / 'truth.fits')
    assert len(csv) == len(fits) == len(truth)
    np.testing.assert_allclose(np.asarray(csv['ch']), np.asarray(csv['feh'] + csv['cfe']), atol=1e-9)
    hires = Table.read(out / 'hires_labels.csv')
    for k in ('ra', 'dec', 'teff', 'logg', 'feh', 'cfe', 'teff_err', 'logg_err', 'feh_err', 'cfe_err'):
        assert k in hires.colnames
    x = crossmatch(truth, hires, radius=1.5, verbose=False)
    assert (np.asarray(x['star_id']) == np.asarray(x['star_id_2'])).all()
    assert 0.5 < len(set(x['star_id'])) / len(set(truth['star_id'])) < 0.9  # ~70% of the stars have hires labels


def test_population_matches_its_documentation():
    pop = draw_population(200_000, seed=1)
    feh, cfe = pop['feh'], pop['cfe']
    for lo, hi in ((-4, -3), (-3, -2.5), (-2.5, -2), (-2, -1.5)):
        sel = (feh >= lo) & (feh < hi)
        expected = cemp_fraction(feh[sel]).mean()
        assert abs((cfe[sel] > 0.7).mean() - expected) < 0.03 + 3 * np.sqrt(expected / sel.sum())
    assert 0.15 < (cfe[feh < -2] > 0.7).mean() < 0.35
