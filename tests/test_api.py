"""The Python API an astronomer uses: entry points from the package, a model object, spectra in memory, a fastai Learner
before fitting, tables with units, criteria and configs checked as data."""
import subprocess, sys, warnings

import numpy as np
import pytest
from astropy.table import Table

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "A tiny mock survey, its dataset and a small HFS-Net trained for one epoch (seconds)."
    from cemp_hfs import make_survey, build_dataset, train_hfsnet
    d = tmp_path_factory.mktemp('api')
    truth = make_survey(16, d / 'survey', seed=2, progress=False)
    build_dataset(truth, d / 'ds', root=d / 'survey', progress=False)
    train_hfsnet(d / 'ds', 'small', epochs=1, bs=8, out=d / 'model.pt', progress=False)
    return d

def test_import_is_light_and_exports_the_entry_points():
    code = ("import sys, cemp_hfs; assert 'torch' not in sys.modules and 'fastai' not in sys.modules, 'heavy import'\n"
            "from cemp_hfs import read_lamost, LamostSpectrum, make_survey, synth_spectrum, build_dataset, load_dataset, HFSNet, predict, "
            "HFSModel, load_hfs_model, classify, candidates, load_criteria, write_catalogue, evaluate\n"
            "assert 'fastai' not in sys.modules, 'predicting imports fastai'\n"
            "from cemp_hfs import hfs_learner, train_hfsnet\n"
            "assert callable(predict) and callable(hfs_learner) and 'read_lamost' in dir(cemp_hfs)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]

def test_model_object_predicts_spectra_in_memory(trained):
    from cemp_hfs import HFSModel, read_lamost, predict
    from cemp_hfs.io import lamost_files
    files = lamost_files(trained / 'survey' / 'spectra')[:3]
    m = HFSModel.load(trained / 'model.pt')
    assert m.trained_on['labels'] == ['teff', 'logg', 'feh', 'cfe'] and m.trained_on['dataset'] == 'ds' and 'teff' in repr(m)
    one = m.predict(read_lamost(files[0]), mc_samples=4, progress=False)  # one spectrum, in memory
    assert len(one) == 1 and str(one['teff'].unit) == 'K' and str(one['feh_err'].unit) == 'dex'
    many = predict(trained / 'model.pt', [read_lamost(f) for f in files], mc_samples=4, progress=False)
    from_files = predict(m, files, mc_samples=4, progress=False)
    np.testing.assert_allclose(many['teff'], from_files['teff'], rtol=1e-5)
    np.testing.assert_allclose(many['cfe_err'], from_files['cfe_err'], rtol=1e-5)  # the same per-spectrum streams
    np.testing.assert_allclose(many['teff'][0], one['teff'][0], rtol=1e-5)
    assert many.meta['PCRIT'] == 'paper' and many['p_cemp'].description.startswith('probability')

def test_learner_before_fitting(trained, tmp_path):
    from cemp_hfs import hfs_learner, load_hfs_model
    learn = hfs_learner(trained / 'ds', 'small', bs=8, out=tmp_path / 'm.pt', progress=False)
    assert not (tmp_path / 'm.pt').exists() and not hasattr(learn, 'history')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        lr = learn.lr_find(num_it=8, show_plot=False).valley
    assert not (tmp_path / 'm.pt').exists()  # the learning-rate range test writes no model
    learn.fit_one_cycle(1, lr_max=float(lr))
    assert len(learn.history) == 1 and 'trust' in load_hfs_model(tmp_path / 'm.pt').extra

def test_aoki_luminosity_bound_and_beers_classes():
    from cemp_hfs import classify
    t = Table(dict(teff=[4500.] * 4, logg=[2.0, 2.0, 1.0, 1.0], feh=[-2.5, -2.5, -4.2, -3.5], cfe=[0.6, 0.9, 0.6, 0.9]))
    a = classify(t, 'aoki2007')  # log L = 2.25 (bound +0.7) and 3.25 (bound 3.0 - 3.25 = -0.25)
    assert list(a['cemp']) == [False, True, True, True] and np.allclose(a['log_l'], np.log10(0.8) + 4 * np.log10(4500 / 5772) - (t['logg'] - 4.44))
    b = classify(t, 'beers2005')
    assert (list(b['vmp']), list(b['emp']), list(b['ump'])) == ([True] * 4, [False, False, True, True], [False, False, True, False])
    from cemp_hfs.select import load_criteria
    assert 'differs from the usual VMP class' in load_criteria('paper')['description']
