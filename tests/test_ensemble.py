"The shipped deep ensemble on real LAMOST spectra: one file, five networks, and its label is their mean."
import numpy as np
import torch

from cemp_hfs.predict import HFSModel, load_hfs_model, predict, shipped_models

ENSEMBLE, SINGLE = 'hfsnet-small-mock-dr10-x5', 'hfsnet-small-mock-dr10'


def test_shipped_ensemble_is_the_mean_of_its_networks(data_dir):
    assert ENSEMBLE in shipped_models()['models']
    e = load_hfs_model(ENSEMBLE)  # weights_only, like every model file
    assert e.members == 5 and e.calibration is not None and 'feature_mean' in e.trust
    assert [m['seed'] for m in e.extra['members']] == [0, 1, 2, 3, 4]
    # its first network is the single shipped model's
    one = load_hfs_model(SINGLE)
    assert all(torch.equal(a, b) for a, b in zip(one.net.state_dict().values(), e.net.members[0].state_dict().values()))
    files = sorted((data_dir / 'lamost' / 'dr10_labeled').glob('*.fits*'))[:16]
    pe = predict(e, files, mc_samples=2, progress=False)
    assert pe.meta['NMEMBERS'] == 5 and len(pe) == 16
    nets = [predict(HFSModel(n, e.scaler, e.preprocess, {}, f'network {j}'), files, mc_samples=2, progress=False) for j, n in enumerate(e.net.members)]
    for l in e.labels:
        each = np.array([np.asarray(p[l], float) for p in nets])
        assert np.ptp(each, 0).max() > 0  # the networks disagree
        np.testing.assert_allclose(np.asarray(pe[l], float), each.mean(0), rtol=1e-5, atol=1e-4 * np.abs(each).max())
    assert np.all(np.asarray(pe['teff_err']) > 0)  # calibrated errors, never zeros
