"Preprocessing on real LAMOST spectra: fidelity against LAMOST's own DR1 normalisation, repeat-observation consistency."
import csv
from pathlib import Path

import numpy as np
import pytest

from cemp_hfs.io import read_lamost, lamost_files
from cemp_hfs.preprocess import preprocess, native_continuum, output_grid, PreprocessError

RANGES = ((3900., 5700.), (5900., 8000.))  # observed-frame ranges of the fidelity bar


@pytest.fixture(scope='module')
def dr1(data_dir):
    "DR1 spectra with LAMOST's normalised flux and S/N_g > 20."
    files = lamost_files(data_dir / 'lamost' / 'dr1_labeled') + lamost_files(data_dir / 'lamost' / 'formats' / 'dr1_v264_image')
    spectra = [read_lamost(f) for f in files]
    spectra = [s for s in spectra if s.norm_lamost is not None and s.meta['snrg'] > 20]
    assert len(spectra) >= 50
    return spectra


def _pixels(s, c):
    "LAMOST's own good pixels in RANGES where both continua are defined."
    sel = s.good & np.isfinite(c) & (s.norm_lamost > 0) & (s.ivar > 0)
    return sel & np.logical_or.reduce([(s.wave >= lo) & (s.wave <= hi) for lo, hi in RANGES])


def fidelity(spectra, continua, signed=False):
    "Per spectrum, |raw flux / our continuum - LAMOST normalised flux| (or the signed difference) on `_pixels`."
    out = []
    for s, c in zip(spectra, continua):
        sel = _pixels(s, c)
        d = s.flux[sel] / c[sel] - s.norm_lamost[sel]
        out.append(d if signed else np.abs(d))
    return out


def pixel_noise(spectra, continua):
    "Per spectrum, the median noise of one pixel of the normalised flux (1 / sqrt(ivar) / continuum) on `_pixels`."
    return np.array([np.median(1 / np.sqrt(s.ivar[sel]) / c[sel]) for s, c in zip(spectra, continua) for sel in [_pixels(s, c)]])


def test_fidelity_vs_lamost_dr1(dr1):
    # LAMOST normalises the raw flux (its normalised row times its continuum gives back the raw flux), so the like-with-like
    # comparison divides the raw flux by our continuum, in the observed frame, on LAMOST's own pixels: the difference is
    # then the continuum disagreement alone, not the noise our wavelet step removed.
    conts = native_continuum(dr1)
    diffs = fidelity(dr1, conts)
    pooled = np.median(np.concatenate(diffs))
    per_spectrum = np.array([np.median(d) for d in diffs])
    noise = pixel_noise(dr1, conts)
    print(f"\nfidelity vs LAMOST DR1 ({len(dr1)} spectra, snrg > 20): pooled median |diff| = {pooled:.4f}; "
          f"per spectrum median {np.median(per_spectrum):.4f}, worst {per_spectrum.max():.4f}; "
          f"noise of one pixel: median {np.median(noise):.4f}; worst |diff| / noise {(per_spectrum / noise).max():.2f}")
    # the two continua differ by well under the noise of one pixel: overall, and in every spectrum
    assert pooled <= 0.5 * np.median(noise)
    assert (per_spectrum < noise).all()


def test_continuum_sits_above_the_lines(dr1):
    # a continuum is the upper envelope of a spectrum: absorption lines pull most pixels below it, so fewer than half
    # of the pixels rise above it (LAMOST's own normalisation: a little under half too); a clipping that kept the lines
    # and dropped the upper envelope would put the continuum lower: more than half above, and below LAMOST's in most
    # spectra. The fidelity test above cannot see that (its |diff| stays as small).
    conts = native_continuum(dr1)
    above = np.array([np.mean(s.flux[sel] / c[sel] > 1) for s, c in zip(dr1, conts) for sel in [_pixels(s, c)]])
    lamost_above = np.array([np.mean(s.norm_lamost[_pixels(s, c)] > 1) for s, c in zip(dr1, conts)])
    offset = np.array([np.median(d) for d in fidelity(dr1, conts, signed=True)])  # > 0: our continuum below LAMOST's
    print(f"\npixels above the continuum: ours median {np.median(above):.3f}, LAMOST's {np.median(lamost_above):.3f}; "
          f"spectra whose continuum sits below LAMOST's: {np.mean(offset > 0):.2f}")
    assert np.median(above) < 0.5 and np.median(above) <= np.median(lamost_above)
    assert np.mean(offset > 0) < 0.5


def test_lamost_normalisation_is_of_the_raw_flux(dr1):
    # the ratio raw flux / LAMOST normalised flux is smooth (a continuum); our denoised flux / it is not what LAMOST divided
    s = dr1[0]
    cont = s.flux / s.norm_lamost
    sel = s.good & (s.wave > 4500) & (s.wave < 5500)
    rough = np.median(np.abs(np.diff(cont[sel]))) / np.median(cont[sel])
    assert rough < 0.01


def test_denoised_output_close_to_lamost_on_the_grid(dr1):
    # what the network sees (denoised / continuum, rest frame, 1 A grid) against LAMOST's normalised flux moved onto the
    # same grid: a looser bar, since denoising changes the line depths and noise
    p = preprocess(dr1)
    assert not p.rejects
    wave = output_grid()
    diffs = []
    for row, i in enumerate(p.index):
        s = dr1[i]
        ref = np.interp(wave, s.wave / (1 + s.meta['z']), s.norm_lamost)
        sel = (wave >= 3900) & ~p.mask[row]
        diffs.append(np.abs(p.normalized[row][sel] - ref[sel]))
    assert np.median(np.concatenate(diffs)) <= 0.05


@pytest.fixture(scope='module')
def repeats(data_dir):
    d = data_dir / 'lamost' / 'dr8_repeats'
    files = {p.name: p for p in lamost_files(d)}
    rows = list(csv.DictReader(open(d / 'groups.csv')))
    spectra, groups, snr = [], [], []
    for r in rows:
        name = Path(r['combined_file']).name
        if name in files:
            spectra.append(read_lamost(files[name])); groups.append(r['GroupID']); snr.append(float(r['combined_snrg']))
    assert len(spectra) >= 100
    return spectra, np.array(groups), np.array(snr)


def test_repeat_observations_normalise_alike(repeats):
    # the same star observed on different nights (other plates, fibres, flux calibrations, radial velocities) must give
    # the same normalised spectrum within the noise: no systematic offset, and a scatter below the raw-flux noise
    spectra, groups, snr = repeats
    p = preprocess(spectra)
    assert len(p) >= len(spectra) - 3  # a few may be refused, by name and reason
    for name, why in p.rejects: assert name and why
    g, sn = groups[p.index], snr[p.index]
    offsets, ratios = [], []
    for gid in np.unique(g):
        ii = np.flatnonzero(g == gid)
        for a in ii:
            for b in ii[ii > a]:
                ok = ~(p.mask[a] | p.mask[b])
                d = p.normalized[a][ok] - p.normalized[b][ok]
                offsets.append(np.median(d))
                ratios.append(np.median(np.abs(d)) / np.sqrt(1 / sn[a] ** 2 + 1 / sn[b] ** 2))
    offsets, ratios = np.abs(offsets), np.array(ratios)
    assert len(offsets) >= 50
    print(f"\nrepeat pairs: {len(offsets)}; |median offset| median {np.median(offsets):.4f}, max {offsets.max():.4f}; "
          f"median |diff| / raw noise: median {np.median(ratios):.2f}, max {ratios.max():.2f}")
    assert np.median(offsets) < 0.005 and offsets.max() < 0.02
    assert ratios.max() < 1.5


def test_every_real_format_preprocesses_or_is_refused_by_name(data_dir):
    files = [f for f in lamost_files(data_dir / 'lamost' / 'formats') if 'mrs' not in str(f)]
    files += lamost_files(data_dir / 'lamost' / 'dr7_sbc')[:30] + lamost_files(data_dir / 'lamost' / 'dr10_table')[:10]
    p = preprocess([read_lamost(f) for f in files])
    test_rows = len(p) + len(p.rejects)
    assert test_rows == len(files)
    assert np.isfinite(p.normalized).all() and np.isfinite(p.continuum).all()
    for name, why in p.rejects: assert name.endswith(('.fits', '.gz', '.fits.fits')) and why
    # galaxies and QSOs of the DR7 plate are refused for their redshift, never turned into NaN rows
    assert any('impossible redshift' in why or 'no redshift' in why for _, why in p.rejects)


def test_single_spectrum_errors_name_the_file(data_dir):
    s = read_lamost(lamost_files(data_dir / 'lamost' / 'formats' / 'dr7_v297_image')[0])
    s.meta['z'] = 0.7
    with pytest.raises(PreprocessError, match=s.meta['filename']): preprocess(s)
