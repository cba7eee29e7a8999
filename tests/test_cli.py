"The `cemp-hfs` console script end to end on a tiny mock survey: mock -> prepare -> train -> predict -> select."
import subprocess, sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

def _cli():
    "The installed console script next to this Python, else the module entry point."
    exe = Path(sys.executable).parent / 'cemp-hfs'
    return [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from cemp_hfs.cli import main; sys.exit(main())']

def run(*args, check=0):
    p = subprocess.run(_cli() + [str(a) for a in args], capture_output=True, text=True, timeout=600)
    assert p.returncode == check, f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p

@pytest.fixture(scope='module')
def chain(tmp_path_factory):
    "Run the whole chain once; return the working folder."
    d = tmp_path_factory.mktemp('cli')
    run('mock', d / 'survey', '-n', 40, '--seed', 3, '--quiet')
    (d / 'survey' / 'spectra' / 'spec-corrupt.fits').write_bytes(b'SIMPLE  = not really a FITS file' * 40)
    run('prepare', d / 'survey' / 'truth.csv', '--labels', d / 'survey' / 'hires_labels.csv', '--out', d / 'ds', '--quiet')
    run('train', d / 'ds', '--config', 'small', '--epochs', 1, '--bs', 16, '--out', d / 'model.pt', '--quiet')
    run('predict', d / 'model.pt', d / 'survey' / 'spectra', '--out', d / 'pred', '--mc', 4, '--chunk-size', 16, '--quiet')
    run('select', d / 'pred' / 'predictions.fits', '--out', d / 'sel', '--p-min', '0', '--keep-flagged')
    return d

def test_every_stage_writes_its_products(chain):
    d = chain
    for f in ['survey/truth.csv', 'survey/hires_labels.csv', 'ds/continuum.npy', 'ds/labels.fits', 'model.pt',
              'model.history.csv', 'model_figures/training.png', 'model_figures/one_to_one.png', 'model_figures/residuals_snr.png',
              'pred/predictions.fits', 'pred/predictions.csv', 'pred/rejects.csv', 'sel/cemp_candidates.fits',
              'sel/cemp_candidates.csv', 'sel/cfe_feh.png', 'sel/kiel.png', 'sel/top_candidates.png']:
        assert (d / f).exists(), f

def test_every_spectrum_labelled_or_rejected_once(chain):
    d = chain
    files = sorted((d / 'survey' / 'spectra').glob('*.fits*'))
    pred, rej = Table.read(d / 'pred' / 'predictions.fits'), Table.read(d / 'pred' / 'rejects.csv', format='ascii.csv')
    names = [Path(p).name for p in pred['path']] + [Path(f).name for f in rej['file']]
    assert sorted(names) == sorted(f.name for f in files)
    assert 'spec-corrupt.fits' in [Path(f).name for f in rej['file']]
    for c in ('teff', 'logg', 'feh', 'cfe', 'ch', 'teff_err', 'cfe_err', 'p_cemp'): assert np.isfinite(pred[c]).all(), c
    assert ((pred['p_cemp'] >= 0) & (pred['p_cemp'] <= 1)).all()

def test_catalogue_columns(chain):
    cat = Table.read(chain / 'sel' / 'cemp_candidates.fits')
    for c in ('obsid', 'designation', 'ra', 'dec', 'teff', 'logg', 'feh', 'cfe', 'ch', 'teff_err', 'ch_err', 'snrg',
              'cemp', 'emp', 'vmp', 'p_cemp'): assert c in cat.colnames, c
    assert len(cat) == len(Table.read(chain / 'pred' / 'predictions.fits'))  # --p-min 0 keeps every star
    assert (np.diff(np.asarray(cat['p_cemp'])) <= 0).all()

@pytest.mark.parametrize('cmd', ['info', 'mock', 'prepare', 'train', 'predict', 'select', 'demo'])
def test_help(cmd, capsys):
    from cemp_hfs.cli import main
    with pytest.raises(SystemExit) as e: main([cmd, '--help'])
    assert e.value.code == 0 and 'usage: cemp-hfs ' + cmd in capsys.readouterr().out

def test_bad_inputs_exit_2_with_a_message(chain, tmp_path, capsys):
    "In-process (the console script itself is exercised by the chain): status 2 and one line naming the problem."
    from cemp_hfs.cli import main
    d = chain
    for args, msg in [(('train', tmp_path / 'nope'), 'not a dataset'),
                      (('train', d / 'ds', '--config', tmp_path / 'missing.yaml'), 'missing.yaml'),
                      (('predict', d / 'survey' / 'truth.csv', d / 'ds', '--out', tmp_path / 'p'), 'cannot be loaded'),
                      (('predict', d / 'model.pt', tmp_path / 'empty', '--out', tmp_path / 'p'), 'empty'),
                      (('select', d / 'pred' / 'predictions.fits', '--out', tmp_path / 's', '--criteria', 'nonsense'), 'neither a preset'),
                      (('prepare', tmp_path / 'nothing.csv', '--out', tmp_path / 'ds2'), 'no such file')]:
        assert main([str(a) for a in args]) == 2, args
        err = capsys.readouterr().err
        assert msg in err and 'Traceback' not in err, (args, err)
