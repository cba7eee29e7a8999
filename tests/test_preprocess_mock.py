"""Preprocessing robustness on the mock survey: the G-band does not drag the continuum, S/N does not move it, and
build_dataset on a make_survey truth table."""
from pathlib import Path

import numpy as np
import pytest

from cemp_hfs import mock
from cemp_hfs.preprocess import preprocess, output_grid
from cemp_hfs.dataset import build_dataset, load_dataset

WAVE = output_grid()
GBAND = (WAVE > 4200) & (WAVE < 4400)
BLUE = (WAVE > 4000) & (WAVE < 5700)
STARS = [(4600., 1.2, -2.5), (5200., 2.5, -2.0), (6000., 4.2, -2.2)]  # a cool giant, a warm giant, a turn-off dwarf


def true_continuum_shape(teff, logg, feh, cfe):
    "The mock's noiseless continuum (model flux / normalised model flux) on the output grid (rv = 0: rest frame)."
    w = mock.lamost_wave()
    return np.interp(WAVE, w, mock.model_flux(teff, logg, feh, cfe) / mock.model_flux(teff, logg, feh, cfe, normalized=True))


def gband_continuum_ratio(teff, logg, feh, cfe, snrg, seed=3, n=3):
    "Median over the G-band region of our continuum / the true one (both scaled to unit median over 4000-5700 A)."
    spectra = mock.synth_spectrum([teff] * n, [logg] * n, [feh] * n, [cfe] * n, snrg=[snrg] * n, seed=seed, calib=False,
                                  rv=np.linspace(-80, 80, n))
    p = preprocess(spectra)
    assert len(p) == n
    r = p.continuum / true_continuum_shape(teff, logg, feh, cfe)
    r = r / np.median(r[:, BLUE], axis=1, keepdims=True)
    return float(np.median(r[:, GBAND]))


@pytest.mark.parametrize('teff,logg,feh', STARS)
def test_gband_does_not_drag_the_continuum(teff, logg, feh):
    # a CEMP star ([C/Fe] = +2, a G-band tens of per cent deep) gets a continuum over 4200-4400 A no lower than the same
    # star without extra carbon (where the many weak CH lines cannot be clipped, it may even sit a little lower), and
    # within a few per cent of the true one: the line blanketing of a metal-poor giant's blue at R ~ 1800
    for snrg in (15, 100):
        cemp, normal = (gband_continuum_ratio(teff, logg, feh, cfe, snrg) for cfe in (2.0, 0.0))
        assert cemp > normal - 0.015, (snrg, cemp, normal)
        assert abs(cemp - 1) < 0.05, (snrg, cemp)


@pytest.mark.parametrize('teff,logg,feh', STARS)
def test_same_star_at_snr_15_and_100_normalises_alike(teff, logg, feh):
    n = 3
    lo = preprocess(mock.synth_spectrum([teff] * n, [logg] * n, [feh] * n, [1.5] * n, snrg=[15.] * n, seed=1, rv=[-40., 0., 60.]))
    hi = preprocess(mock.synth_spectrum([teff] * n, [logg] * n, [feh] * n, [1.5] * n, snrg=[100.] * n, seed=2, rv=[20., -70., 5.]))
    d = lo.normalized.mean(0) - hi.normalized.mean(0)
    # no systematic offset beyond a small fraction of the S/N 15 noise (1/15 per pixel, sqrt(3) less for a mean of 3)
    # over the whole grid the offset is tiny; in the line-crowded blue of a CEMP star, where weak lines cannot be told from
    # S/N 15 noise and so stay in the continuum fit, it stays below half the per-pixel noise at S/N 15
    assert abs(np.median(d)) < 0.005
    assert abs(np.median(d[GBAND])) < 0.5 / 15
    # and the spectra agree pixel by pixel within that noise
    assert np.median(np.abs(lo.normalized - hi.normalized[0])) < 1 / 15
    # the truth: the normalised model spectrum
    truth = np.interp(WAVE, mock.lamost_wave(), mock.model_flux(teff, logg, feh, 1.5, normalized=True))
    assert abs(np.median(hi.normalized - truth)) < 0.025  # pseudo-continuum: the blanketed blue keeps it a little low


def test_build_dataset_from_a_mock_survey(tmp_path):
    truth = mock.make_survey(12, tmp_path / 'survey', seed=4, progress=False)
    out = build_dataset(truth, tmp_path / 'ds', root=tmp_path / 'survey', chunk_size=5, progress=False)
    ds = load_dataset(out)
    assert len(ds) + len(ds.rejects) == len(truth)
    # every truth row is in the dataset or among the rejects, once
    rejected = [Path(f).name for f in ds.rejects['file']] if len(ds.rejects) else []
    assert sorted([Path(f).name for f in ds.labels['filename']] + rejected) == sorted(Path(f).name for f in truth['filename'])
    i = list(truth['filename']).index(ds.labels['filename'][0])
    for k in ('teff', 'logg', 'feh', 'cfe', 'obsid', 'designation'):
        assert ds.labels[k][0] == truth[k][i] or (np.isnan(ds.labels[k][0]) and np.isnan(truth[k][i]))
    # repeat visits of one star (same star_id) share a split
    sp = {}
    for s, st in zip(ds.labels['split'], ds.labels['star_id']): sp.setdefault(st, set()).add(s)
    assert all(len(v) == 1 for v in sp.values())
