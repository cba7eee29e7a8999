"Heavier checks of cemp_hfs.baselines on mock spectra (the notebook's inline tests are the fast ones)."
import numpy as np
import pytest

from cemp_hfs.mock import synth_spectrum, model_flux, lamost_wave
from cemp_hfs.preprocess import preprocess
from cemp_hfs.core import LABELS
from cemp_hfs.baselines import (cramer_rao, batched_lm, segment_pixels, train_cannon, cannon_labels,
                                normalized_ivar)


def test_crb_matches_monte_carlo_scatter():
    "Fitting the exact forward model (labels + scale, E(B-V), rv) to noise-only draws scatters as the Cramer-Rao bound says."
    truth = np.array([4900., 2.4, -1.8, 0.6]); ebv, rv, snr, n = 0.1, 20., 25., 40
    sp = synth_spectrum(*np.repeat(truth[None], n, 0).T, snrg=snr, ebv=ebv, rv=rv, scale=1., seed=5, telluric=False,
                        calib=False, sky=False, cosmics=False, bad_pixels=False)
    use = segment_pixels(lamost_wave())
    flux = np.stack([s.flux for s in sp]).astype(float)[:, use]
    sw = np.sqrt(np.stack([s.ivar for s in sp]).astype(float)[:, use])
    p_true = np.r_[truth, 1., ebv, rv]
    scale = np.array([100., 0.1, 0.1, 0.1, 0.01, 0.01, 5.])  # parameters in units of about one bound

    def resid(u, rows):
        p = p_true + u * scale
        m = model_flux(p[:, 0], p[:, 1], p[:, 2], p[:, 3], ebv=p[:, 5], rv=p[:, 6]).reshape(len(p), -1)[:, use]
        return sw[rows] * (p[:, 4:5] * m - flux[rows])

    # converge fully: an LM stopped early stays near its start (the truth) and under-disperses the fits
    u, _ = batched_lm(resid, np.zeros((n, 7)), fd_step=1e-3, n_iter=40)
    err = u[:, :4] * scale[:4]
    bound = cramer_rao(truth[None], snr, ebv=ebv, rv=rv)[0]
    ratio = err.std(0) / bound
    # the sample standard deviation of 40 Gaussian draws is within +-35% of sigma with > 99% probability
    assert np.all((ratio > 0.65) & (ratio < 1.35)), dict(zip(LABELS, ratio.round(2)))


def test_cannon_on_preprocessed_mock_spectra():
    "The Cannon trained on preprocessed noisy mock spectra of a small label box recovers held-out stars' labels."
    rng = np.random.default_rng(1)
    box = dict(teff=(4500., 5500.), logg=(2.0, 3.0), feh=(-1.5, -0.5), cfe=(-0.2, 0.6))
    lab = np.stack([rng.uniform(*box[l], 330) for l in LABELS], 1)
    sp = synth_spectrum(*lab.T, snrg=80., rv=rng.normal(0, 50, len(lab)), ebv=0.05, seed=2)
    pp = preprocess(sp)
    lab = lab[pp.index]
    noise = np.asarray(pp.noise)
    iv = normalized_ivar(pp.continuum, noise, pp.mask, pp.wave)
    model = train_cannon(pp.normalized[:300], iv[:300], lab[:300], wave=pp.wave)
    pred, _ = cannon_labels(model, pp.normalized[300:], iv[300:])
    # at least twice as good as guessing the training mean, for every label (Teff is the weakest: the normalised
    # spectrum has lost the continuum slope; in a box much narrower than 1000 K the Cannon's ~70 K Teff error is
    # no longer half of what guessing the mean gives)
    err = np.median(np.abs(pred - lab[300:]), 0)
    guess = np.median(np.abs(lab[:300].mean(0) - lab[300:]), 0)
    assert np.all(err < 0.5 * guess), dict(zip(LABELS, (err / guess).round(3)))
