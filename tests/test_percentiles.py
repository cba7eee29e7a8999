"""The 16th and 84th percentiles `predict` writes (`<label>_p16`, `<label>_p84`) with the shipped, calibrated models on real
DR10 spectra: they are the label plus the calibration's z16 and z84 times the calibrated error, the catalogue's header
says so, and one Monte-Carlo draw (no uncertainty) gives none."""
import warnings

import numpy as np
import pytest
from astropy.table import Table

from cemp_hfs.predict import load_hfs_model, predict

SHIPPED = ('hfsnet-small-mock-dr10', 'hfsnet-small-mock-dr10-x5')


@pytest.fixture(scope='module')
def files(data_dir):
    lab = Table.read(data_dir / 'lamost' / 'dr10_labeled' / 'lasp_labels.csv', format='ascii.csv')
    return [data_dir / 'lamost' / 'dr10_labeled' / str(f) for f in lab['filename'][:16]]


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_percentiles_on_real_spectra(files, name):
    m = load_hfs_model(name)
    t = predict(m, files, mc_samples=4, progress=False)
    assert len(t) > 10
    for l in m.labels:
        p = m.calibration['params'][l]
        assert p['z16'] < -0.5 and p['z84'] > 0.5, (l, p['z16'], p['z84'])  # quantiles of calibration pulls, not typed in
        x, e = np.asarray(t[l], float), np.asarray(t[f'{l}_err'], float)
        np.testing.assert_allclose(t[f'{l}_p16'], x + p['z16'] * e, rtol=1e-6)
        np.testing.assert_allclose(t[f'{l}_p84'], x + p['z84'] * e, rtol=1e-6)
        assert (np.asarray(t[f'{l}_p16']) < x).all() and (x < np.asarray(t[f'{l}_p84'])).all()
        assert t.meta[f'Z16{l.upper()}'] == pytest.approx(p['z16'], abs=1e-3)
    np.testing.assert_allclose(np.asarray(t['ch_p84']) - np.asarray(t['ch']), t['ch_err'], rtol=1e-6)
    assert 'z16, z84' in t.meta['PCTL']


def test_one_draw_gives_no_percentiles(files):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        t = predict(SHIPPED[0], files[:4], mc_samples=1, progress=False)
    for l in ('teff', 'feh', 'cfe', 'ch'):
        assert np.isnan(np.asarray(t[f'{l}_p16'], float)).all() and np.isnan(np.asarray(t[f'{l}_p84'], float)).all()

