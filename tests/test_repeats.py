"""Repeat factors on real repeat observations (the DR8 repeats of ../shared): the pairs found by position are the
catalogue's, the shipped models' factors are what their committed recipe fits, `predict` applies them, and
`cemp-hfs calibrate --repeats` refits them from the command line."""
import subprocess, sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from cemp_hfs.io import read_lamost
from cemp_hfs.calibrate import repeat_pairs, fit_repeats, write_calibration
from cemp_hfs.predict import load_hfs_model, predict, HFSModel

SHIPPED = ('hfsnet-small-mock-dr10', 'hfsnet-small-mock-dr10-x5')


def _cli():
    "The installed console script next to this Python, else the module entry point."
    exe = Path(sys.executable).parent / 'cemp-hfs'
    return [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from cemp_hfs.cli import main; sys.exit(main())']


@pytest.fixture(scope='module')
def dr8(data_dir):
    return data_dir / 'lamost' / 'dr8_repeats'


def test_pairs_by_position_are_the_catalogues(dr8):
    files = sorted((dr8 / 'fits').glob('*.fits*'))
    pos = [(s.meta['ra'], s.meta['dec']) for s in map(read_lamost, files)]
    I, J = repeat_pairs(*np.array(pos, float).T)
    g = Table.read(dr8 / 'groups.csv', format='ascii.csv')
    gid = {Path(str(f)).name: int(x) for f, x in zip(g['combined_file'], g['GroupID'])}
    G = np.array([gid[f.name] for f in files])
    want = {(i, j) for i in range(len(files)) for j in range(i + 1, len(files)) if G[i] == G[j]}
    assert len(want) > 50
    assert set(zip(I.tolist(), J.tolist())) == want  # every pair of one star's spectra, and no pair of two stars


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_repeat_factors_are_reproducible(dr8, name):
    m = load_hfs_model(name)
    rep = m.calibration['repeats']
    assert rep['fitted_on']['files'] == 'dr8_repeats' and rep['fitted_on']['n_stars'] == 49
    again = fit_repeats(m, {k: v for k, v in m.calibration.items() if k != 'repeats'}, dr8, rep['radius'],
                        rep['fitted_on']['mc_samples'], rep['fitted_on']['seed'])
    assert again['n_pairs'] == rep['n_pairs'] and again['n_pairs_unflagged'] == rep['n_pairs_unflagged']
    for l, k in rep['factors'].items():
        assert k >= 1 and again['factors'][l] == pytest.approx(k, rel=1e-4)
    assert max(rep['factors'].values()) > 1  # real repeats differ by more than the mock-fitted errors say somewhere


def test_predict_applies_the_repeat_factors(dr8):
    m = load_hfs_model(SHIPPED[0])
    files = sorted((dr8 / 'fits').glob('*.fits*'))[:12]
    with_r, without = (predict(x, files, mc_samples=4, progress=False) for x in (m, m.without_repeats()))
    for l, k in m.calibration['repeats']['factors'].items():
        np.testing.assert_allclose(with_r[l], without[l])  # the labels are the same
        np.testing.assert_allclose(with_r[f'{l}_err_stat'], k * np.asarray(without[f'{l}_err_stat']), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(with_r[f'{l}_err']) ** 2 - np.asarray(without[f'{l}_err']) ** 2,
                                   (k ** 2 - 1) * np.asarray(without[f'{l}_err_stat']) ** 2, rtol=1e-4, atol=1e-9)
    assert 'real-observation repeat factors' in with_r.meta['ERRCAL']


def test_cli_refits_the_repeat_factors(dr8, tmp_path):
    m = load_hfs_model(SHIPPED[0])
    plain = tmp_path / 'plain.pt'
    write_calibration(m, {k: v for k, v in m.calibration.items() if k != 'repeats'}, plain)
    out = tmp_path / 'rep.pt'
    r = subprocess.run(_cli() + ['calibrate', str(plain), '--repeats', str(dr8), '--out', str(out), '--quiet'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'repeat factors: teff x' in r.stderr + r.stdout
    got = HFSModel.load(out).calibration
    assert {k: v for k, v in got.items() if k != 'repeats'} == {k: v for k, v in m.calibration.items() if k != 'repeats'}
    assert got['repeats']['factors'] == pytest.approx(m.calibration['repeats']['factors'], rel=1e-4)
    # no dataset and no repeats: one line, no traceback
    r = subprocess.run(_cli() + ['calibrate', str(plain), '--out', str(tmp_path / 'x.pt')], capture_output=True, text=True)
    assert r.returncode != 0 and 'Traceback' not in r.stderr and 'give a DATASET' in r.stderr
