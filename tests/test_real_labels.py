"""Real labels in: DR10 spectra with LAMOST pipeline (LASP) labels, which have no carbon, through `cemp-hfs prepare`,
`train`, `predict` and `select` with default options and no hand-made config."""
import subprocess, sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from astropy.io import fits

def _cli():
    exe = Path(sys.executable).parent / 'cemp-hfs'
    return [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from cemp_hfs.cli import main; sys.exit(main())']

def run(*args):
    p = subprocess.run(_cli() + [str(a) for a in args], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert 'Traceback' not in p.stderr, p.stderr
    return p

@pytest.fixture(scope='module')
def chain(data_dir, tmp_path_factory):
    "A 160-star subset of dr10_labeled through the whole command chain."
    d = tmp_path_factory.mktemp('lasp')
    src = data_dir / 'lamost/dr10_labeled'
    lab = Table.read(src / 'lasp_labels.csv', format='ascii.csv')[:160]
    lab.write(d / 'lasp_subset.csv', format='ascii.csv')
    out = {'prepare': run('prepare', d / 'lasp_subset.csv', '--root', src, '--out', d / 'ds', '--quiet'),
           'train': run('train', d / 'ds', '--config', 'small', '--epochs', 2, '--bs', 16, '--members', 1, '--out', d / 'model.pt', '--quiet'),
           'predict': run('predict', d / 'model.pt', *[src / f for f in lab['filename'][:40]], '--out', d / 'pred', '--mc', 4, '--quiet'),
           'select': run('select', d / 'pred' / 'predictions.fits', '--out', d / 'sel')}
    return d, lab, out

def test_trains_on_the_labels_it_has(chain):
    d, lab, out = chain
    assert "['cfe'] have fewer than 2 known values" in out['train'].stderr  # said, once, in one line
    assert out['train'].stderr.count('\n') <= 2
    assert 'labels teff, logg, feh' in out['train'].stdout
    import torch
    extra = torch.load(d / 'model.pt', weights_only=True)['extra']
    assert extra['labels'] == ['teff', 'logg', 'feh']

def test_predictions_without_carbon_say_so(chain):
    d, lab, out = chain
    pred = Table.read(d / 'pred' / 'predictions.fits')
    assert len(pred) == 40
    assert {'teff', 'logg', 'feh', 'teff_err'} <= set(pred.colnames) and not {'cfe', 'ch'} & set(pred.colnames)
    assert np.ma.getmaskarray(pred['p_cemp']).all()  # masked, not a number
    hdr = fits.getheader(d / 'pred' / 'predictions.fits', 1)
    assert "['cfe']" in hdr['PCEMP']
    # the labels are the LASP stars' own scale: no wild values from a model trained two epochs on 128 real stars
    by_name = {f: t for f, t in zip(lab['filename'], lab['teff'])}
    truth = np.array([by_name[f] for f in pred['filename']], float)
    assert np.median(np.abs(np.asarray(pred['teff'], float) - truth)) < np.std(truth)

def test_select_without_carbon(chain):
    d, lab, out = chain
    assert 'CEMP not classified' in out['select'].stdout and "['cfe']" in out['select'].stdout
    assert len(Table.read(d / 'sel' / 'cemp_candidates.csv', format='ascii.csv')) == 0
    vmp = Table.read(d / 'sel' / 'all_classified.fits')
    assert 'vmp' in vmp.colnames and not np.ma.getmaskarray(vmp['vmp']).any()  # classes that need only [Fe/H] are given

def test_demo_labels_real_spectra_with_the_shipped_model(data_dir, tmp_path):
    "The demo's real part: the shipped model on (a subset of) the DR10 spectra with LASP labels, compared with LASP."
    from cemp_hfs.pipeline import _real_demo, _summary_markdown
    from cemp_hfs.predict import shipped_models
    default = shipped_models()['default']
    src = data_dir / 'lamost/dr10_labeled'
    lab = Table.read(src / 'lasp_labels.csv', format='ascii.csv')[:60]
    d = tmp_path / 'data' / 'lamost' / 'dr10_labeled'; d.mkdir(parents=True)
    for f in lab['filename']: (d / f).symlink_to(src / f)
    lab.write(d / 'lasp_labels.csv', format='ascii.csv')
    r = _real_demo(tmp_path / 'out', tmp_path / 'data', 4, 'paper', False)
    assert r['model'] == default and r['n_input'] == 60
    teff = np.asarray(lab['teff'], float); snr = np.asarray(lab['snrg'], float)
    assert 0 < r['n_target'] <= int(((teff > 4000) & (teff < 6500) & (snr > 30)).sum())
    assert r['mae']['teff'] < 250 and r['mae']['feh'] < 0.3  # it knows these stars' kind (it trained on DR10 stars like them)
    assert f'shipped model `{default}`' in _summary_markdown(dict(
        evaluation={**{f'mae_{l}': 0. for l in ('teff', 'logg', 'feh', 'cfe', 'ch')}, 'n_matched': 0, 'n_selected': 0, 'n_true_cemp': 0,
                    'n_true_positive': 0, 'completeness': 0., 'purity': 0., 'n_selected_p50': 0, 'completeness_p50': 0., 'purity_p50': 0.},
        training=dict(epochs_run=1, best_epoch=1), n_train_spectra=0, n_dataset=0, config='small', seed_test=0, n_test_spectra=0,
        n_predicted=0, n_rejected=0, criteria='paper', mc_samples=1, seconds={'total': 0.}, real=r))
