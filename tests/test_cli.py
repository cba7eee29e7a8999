"""The `cemp-hfs` console script end to end on a tiny mock survey: mock -> prepare -> train -> predict -> select, and what
a user sees: the catalogues as astropy and TOPCAT read them, the log of a run, the messages of every user error."""
import os, signal, subprocess, sys, time, warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.units import UnitsWarning

import cemp_hfs

def _cli():
    "The installed console script next to this Python, else the module entry point."
    exe = Path(sys.executable).parent / 'cemp-hfs'
    return [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from cemp_hfs.cli import main; sys.exit(main())']

def _sigint_default():
    """In a child about to start: Ctrl-C as a terminal's foreground process gets it (a shell's background job, a CI runner,
    starts with SIGINT ignored, and so would every process it starts)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def run(*args, check=0):
    p = subprocess.run(_cli() + [str(a) for a in args], capture_output=True, text=True, timeout=600)
    assert p.returncode == check, f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p

LOGS = {}  # the completed processes of the chain's runs that a test reads the output of

@pytest.fixture(scope='module')
def chain(tmp_path_factory):
    "Run the whole chain once; return the working folder."
    d = tmp_path_factory.mktemp('cli')
    run('mock', d / 'survey', '-n', 40, '--seed', 3, '--quiet')
    (d / 'survey' / 'spectra' / 'spec-corrupt.fits').write_bytes(b'SIMPLE  = not really a FITS file' * 40)
    (d / 'survey' / 'spectra' / 'spec-gone.fits').symlink_to(d / 'survey' / 'nowhere.fits')  # a broken link
    run('prepare', d / 'survey' / 'truth.csv', '--labels', d / 'survey' / 'hires_labels.csv', '--out', d / 'ds', '--quiet')
    LOGS['train'] = run('train', d / 'ds', '--config', 'small', '--epochs', 2, '--bs', 16, '--members', 1, '--out', d / 'model.pt')
    LOGS['predict'] = run('predict', d / 'model.pt', d / 'survey' / 'spectra', '--out', d / 'pred', '--mc', 4, '--chunk-size', 16)
    run('select', d / 'pred' / 'predictions.fits', '--out', d / 'sel', '--p-min', '0', '--keep-flagged')
    return d

def read_fits(path):
    "A catalogue read as a user reads it; astropy warns that 'dex' is no FITS unit (as for Gaia's files) and keeps it by name."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UnitsWarning)
        return Table.read(path)

def test_every_stage_writes_its_products(chain):
    d = chain
    for f in ['survey/truth.csv', 'survey/hires_labels.csv', 'ds/continuum.npy', 'ds/labels.fits', 'model.pt',
              'model.history.csv', 'model_figures/training.png', 'model_figures/one_to_one.png', 'model_figures/residuals_snr.png',
              'pred/predictions.fits', 'pred/predictions.ecsv', 'pred/predictions.csv', 'pred/predictions.parquet', 'pred/rejects.csv',
              'sel/cemp_candidates.fits', 'sel/cemp_candidates.ecsv', 'sel/cemp_candidates.csv', 'sel/cfe_feh.png',
              'sel/kiel.png', 'sel/top_candidates.png']:
        assert (d / f).exists(), f

def test_every_spectrum_labelled_or_rejected_once(chain):
    d = chain
    found = sorted(f.name for f in (d / 'survey' / 'spectra').iterdir())
    pred, rej = read_fits(d / 'pred' / 'predictions.fits'), Table.read(d / 'pred' / 'rejects.csv', format='ascii.csv')
    names = [Path(p).name for p in pred['filename']] + [Path(f).name for f in rej['file']]
    assert sorted(names) == found and pred.meta['NINPUT'] == len(found)
    why = {Path(f).name: r for f, r in zip(rej['file'], rej['reason'])}
    assert 'spec-corrupt.fits' in why and why['spec-gone.fits'].startswith('broken link')  # no input skipped silently
    for c in ('teff', 'logg', 'feh', 'cfe', 'ch', 'teff_err', 'cfe_err', 'p_cemp'): assert np.isfinite(pred[c]).all(), c
    assert ((pred['p_cemp'] >= 0) & (pred['p_cemp'] <= 1)).all()

def test_catalogue_columns(chain):
    cat = read_fits(chain / 'sel' / 'cemp_candidates.fits')
    for c in ('obsid', 'designation', 'ra', 'dec', 'teff', 'logg', 'feh', 'cfe', 'ch', 'teff_err', 'ch_err', 'snrg',
              'cemp', 'emp', 'vmp', 'p_cemp', 'feh_p16', 'feh_p84', 'cfe_p16', 'cfe_p84'): assert c in cat.colnames, c
    # an uncalibrated model (this chain's): the percentiles are the label -+ the Monte-Carlo spread, and the header says so
    np.testing.assert_allclose(np.asarray(cat['cfe_p84']) - np.asarray(cat['cfe']), np.asarray(cat['cfe_err']), atol=2e-6)
    np.testing.assert_allclose(np.asarray(cat['teff']) - np.asarray(cat['teff_p16']), np.asarray(cat['teff_err']), atol=0.01)
    assert 'Monte-Carlo' in read_fits(chain / 'pred' / 'predictions.fits').meta['PCTL']
    assert len(cat) == len(read_fits(chain / 'pred' / 'predictions.fits'))  # --p-min 0 keeps every star
    assert (np.diff(np.asarray(cat['p_cemp'])) <= 0).all()

@pytest.mark.parametrize('name', ['pred/predictions', 'sel/cemp_candidates'])
def test_catalogues_read_back_with_units_nulls_descriptions_and_provenance(chain, name):
    "What TOPCAT and astropy read: TUNIT, TNULL, TCOMM and the provenance cards in FITS; the same, exactly, in ECSV."
    d = chain
    h = fits.getheader(d / f'{name}.fits', 1)
    cols = [h[f'TTYPE{i}'] for i in range(1, h['TFIELDS'] + 1)]
    unit = {c: h.get(f'TUNIT{i}') for i, c in enumerate(cols, 1)}
    assert (unit['teff'], unit['teff_err'], unit['logg'], unit['feh'], unit['cfe_err'], unit['ra'], unit['dec']) == ('K', 'K', 'dex', 'dex', 'dex', 'deg', 'deg')
    assert (unit['teff_p16'], unit['feh_p84'], unit['ch_p16']) == ('K', 'dex', 'dex')
    assert all(h.get(f'TCOMM{i}') for i, c in enumerate(cols, 1) if c != 'designation'), 'a column without description'
    assert f"TNULL{cols.index('obsid') + 1}" in h  # obsid has a null value, not -1
    assert 'index' not in cols and 'path' not in cols
    for k in ('CREATOR', 'DATE', 'MODEL', 'MODELSHA', 'LABELS', 'PCRIT', 'PCRULE', 'NINPUT', 'NREJECT'): assert k in h, k
    assert h['CREATOR'] == f'cemp-hfs {cemp_hfs.__version__}' and h['MODEL'] == 'model.pt' and len(h['MODELSHA']) == 40
    assert h['LABELS'] == 'teff logg feh cfe' and h['PCRIT'] == 'paper'
    text = repr(h) + (d / f'{name}.ecsv').read_text() + (d / f'{name}.csv').read_text()
    assert str(d) not in text and 'SPEC' not in text  # no absolute path, no reference to a document the user has not got
    e = Table.read(d / f'{name}.ecsv')
    assert (str(e['teff'].unit), str(e['cfe'].unit), str(e['dec'].unit)) == ('K', 'dex', 'deg')
    assert e['feh'].description == 'iron abundance [Fe/H]' and e.meta['MODELSHA'] == h['MODELSHA']
    f = read_fits(d / f'{name}.fits')
    assert [str(f[c].unit) for c in ('teff', 'feh', 'ra')] == ['K', 'dex', 'deg']
    np.testing.assert_allclose(np.asarray(f['teff']), np.asarray(e['teff']))

def test_train_calibrates_on_the_validation_split(tmp_path):
    "`cemp-hfs train` with default options writes an ensemble whose errors are calibrated on the dataset's validation split."
    from cemp_hfs.predict import HFSModel
    run('mock', tmp_path / 'survey', '-n', 300, '--seed', 8, '--quiet')
    run('prepare', tmp_path / 'survey' / 'truth.csv', '--out', tmp_path / 'ds', '--quiet')
    p = run('train', tmp_path / 'ds', '--epochs', 1, '--out', tmp_path / 'm.pt', '--quiet')
    assert 'train: uncertainties calibrated' in p.stdout and 'split valid' in p.stdout
    assert 'a deep ensemble of 5 networks (seeds 0-4; best epochs 1, 1, 1, 1, 1 of 1)' in p.stdout
    assert HFSModel.load(tmp_path / 'm.pt').members == 5 and len(list((tmp_path / 'm_members').glob('seed*.pt'))) == 5
    cal = HFSModel.load(tmp_path / 'm.pt').calibration
    n_valid = int(np.sum(Table.read(tmp_path / 'ds' / 'labels.fits')['split'] == 'valid'))
    assert cal['fitted_on']['split'] == 'valid' and cal['fitted_on']['n'] == n_valid >= 30
    run('predict', tmp_path / 'm.pt', *sorted((tmp_path / 'survey' / 'spectra').glob('*.fits*'))[:5], '--out', tmp_path / 'pred', '--quiet')
    assert read_fits(tmp_path / 'pred' / 'predictions.fits').meta['ERRCAL'].startswith('calibrated')
    # stopped before the ensemble was written: the same command goes on from the finished networks
    h = HFSModel.load(tmp_path / 'm.pt').weights_hash()
    (tmp_path / 'm.pt').unlink(); (tmp_path / 'm_members' / 'seed4.pt').unlink()
    p = run('train', tmp_path / 'ds', '--epochs', 1, '--out', tmp_path / 'm.pt', '--quiet')
    assert '4 kept from an earlier run' in p.stdout and HFSModel.load(tmp_path / 'm.pt').weights_hash() == h
    p = run('train', tmp_path / 'ds', '--epochs', 1, '--out', tmp_path / 'm0.pt', '--no-calibrate', '--members', 1, '--quiet')
    assert 'not calibrated (not asked to)' in p.stdout and HFSModel.load(tmp_path / 'm0.pt').calibration is None

def test_unknown_obsid_is_masked_not_minus_one(chain, tmp_path):
    from cemp_hfs.io import read_lamost, write_lamost
    f = sorted((chain / 'survey' / 'spectra').glob('*.fits*'))[0]
    s = read_lamost(f); s.meta['obsid'] = None
    write_lamost(s, tmp_path / 'in' / 'spec-noobsid.fits')
    run('predict', chain / 'model.pt', tmp_path / 'in', '--out', tmp_path / 'p', '--mc', 2, '--quiet')
    p = read_fits(tmp_path / 'p' / 'predictions.fits')
    assert p['obsid'].mask.tolist() == [True] and Table.read(tmp_path / 'p' / 'predictions.ecsv')['obsid'].mask.tolist() == [True]
    assert (tmp_path / 'p' / 'predictions.csv').read_text().splitlines()[1].startswith(',')  # an empty field

def test_csv_at_display_precision(chain):
    rows = (chain / 'pred' / 'predictions.csv').read_text().splitlines()
    head, first = rows[0].split(','), rows[1].split(',')
    teff, feh = first[head.index('teff')], first[head.index('feh')]
    assert len(teff.split('.')[1]) == 1 and len(feh.split('.')[1]) == 3, (teff, feh)  # not 6200.2361178797655

def test_a_log_file_is_readable(chain):
    "`cemp-hfs ... > log 2>&1`: whole lines, progress counting spectra, an aligned training log, results on stdout."
    p, t = LOGS['predict'], LOGS['train']
    assert '\r' not in p.stderr + t.stderr and '\r' not in p.stdout
    lines = p.stderr.splitlines()
    assert lines[0].startswith('predict: 0/') and lines[0].endswith(' spectra (0%)') and '(100%)' in lines[-1]
    assert p.stdout.count('\n') == 1 and 'spectra labelled' in p.stdout  # the result, alone on stdout
    rows = [l for l in t.stderr.splitlines() if l.split() and (l.split()[0].isdigit() or l.split()[0] == 'epoch')]
    assert [r.split()[0] for r in rows] == ['epoch', '1', '2'] and len({len(r) for r in rows}) == 1
    assert 'best epoch' in t.stdout and 'Teff' in t.stdout and '{' not in t.stdout  # worded, not a dict

def test_select_with_other_criteria_says_so(chain, tmp_path):
    p = run('select', chain / 'pred' / 'predictions.fits', '--out', tmp_path / 's', '--criteria', 'beers2005')
    assert "P(CEMP) recomputed for criteria 'beers2005'" in p.stderr and 'computed for \'paper\'' in p.stderr
    c = Table.read(tmp_path / 's' / 'all_classified.ecsv')
    assert (c.meta['CRITERIA'], c.meta['PCRIT']) == ('beers2005', 'beers2005') and 'Gaussian' in c.meta['PCEMP']
    assert 'ump' in c.colnames and 'UMP' in p.stdout

@pytest.mark.parametrize('cmd', ['info', 'mock', 'prepare', 'train', 'predict', 'select', 'demo'])
def test_help(cmd, capsys):
    "Every command has --help with every default shown, and --quiet."
    from cemp_hfs.cli import main
    with pytest.raises(SystemExit) as e: main([cmd, '--help'])
    out = ' '.join(capsys.readouterr().out.split())
    assert e.value.code == 0 and 'usage: cemp-hfs ' + cmd in out and '--quiet' in out
    import argparse
    from cemp_hfs.cli import _parser
    sub = next(a for a in _parser(cmd)._actions if isinstance(a, argparse._SubParsersAction)).choices[cmd]
    missing = [a.option_strings for a in sub._actions if a.option_strings and a.dest != 'help' and 'default' not in a.help and 'required' not in a.help]
    assert not missing, missing

def test_version():
    assert run('--version').stdout.strip() == f'cemp-hfs {cemp_hfs.__version__}'

def test_bad_inputs_exit_2_with_a_message(chain, tmp_path, capsys):
    "In-process (the console script itself is exercised by the chain): status 2 and one line naming the problem."
    from cemp_hfs.cli import main
    d = chain
    (tmp_path / 'plain').write_text('x')
    (tmp_path / 'net.yaml').write_text('name: x\nfusion: {type: add, length: 1000000000}\n')
    (tmp_path / 'pre.yaml').write_text('step: 1.0e-6\n')
    (tmp_path / 'median.yaml').write_text("unit_median: 'no'\n")
    (tmp_path / 'segments.yaml').write_text('segments: [[3800]]\n')
    (tmp_path / 'crit.yaml').write_text("cemp: [[feh, '<', .nan]]\n")
    (tmp_path / 'xyz.yaml').write_text("cemp: [[xyz, '<', -2]]\n")
    (tmp_path / 'gate.yaml').write_text((Path(cemp_hfs.__file__).parent / 'configs' / 'small.yaml').read_text().replace('gate_noise: 1.0', 'gate_noise: -5'))
    for args, msg in [(('train', tmp_path / 'nope', '--out', tmp_path / 'm.pt'), 'not a dataset'),
                      (('train', d / 'ds', '--config', tmp_path / 'missing.yaml', '--out', tmp_path / 'm.pt'), 'missing.yaml'),
                      (('train', d / 'ds', '--config', tmp_path / 'net.yaml', '--out', tmp_path / 'm.pt'), f"{tmp_path / 'net.yaml'}: config key `"),
                      (('train', d / 'ds', '--config', tmp_path / 'gate.yaml', '--out', tmp_path / 'm.pt'), '`continuum_branch.gate_noise`'),
                      (('train', d / 'ds', '--out', d / 'model.pt'), '--overwrite'),
                      (('prepare', d / 'survey' / 'truth.csv', '--config', tmp_path / 'pre.yaml', '--out', tmp_path / 'ds2'), 'pre.yaml: key `step`'),
                      (('prepare', d / 'survey' / 'truth.csv', '--config', tmp_path / 'median.yaml', '--out', tmp_path / 'ds2'), 'key `unit_median`: must be true or false'),
                      (('prepare', d / 'survey' / 'truth.csv', '--config', tmp_path / 'segments.yaml', '--out', tmp_path / 'ds2'), 'key `segments`'),
                      (('predict', '--model', d / 'survey' / 'truth.csv', d / 'ds', '--out', tmp_path / 'p'), 'cannot be loaded'),
                      (('predict', d / 'model.pt', tmp_path / 'empty', '--out', tmp_path / 'p'), 'empty'),
                      (('predict', d / 'model.pt', d / 'ds', '--out', tmp_path / 'plain'), 'exists and is not a directory'),
                      (('predict', d / 'model.pt', d / 'ds', '--out', tmp_path / 'p', '--criteria', tmp_path / 'crit.yaml'), 'key `cemp[0]`: the bound must be a finite number'),
                      (('select', d / 'pred' / 'predictions.fits', '--out', tmp_path / 's', '--criteria', tmp_path / 'xyz.yaml'), "unknown label 'xyz'"),
                      (('select', d / 'pred' / 'predictions.fits', '--out', tmp_path / 's', '--criteria', 'nonsense'), 'neither a preset'),
                      (('select', d / 'pred' / 'predictions.fits', '--out', d / 'sel'), '--overwrite'),
                      (('info', str(tmp_path / '*.fits')), 'no LAMOST files found'),
                      (('prepare', tmp_path / 'nothing.csv', '--out', tmp_path / 'ds2'), 'no such file')]:
        assert main([str(a) for a in args]) == 2, args
        err = capsys.readouterr().err
        assert msg in err and 'Traceback' not in err and len(err.strip().splitlines()) == 1, (args, err)
        assert 'overwrite=True' not in err
    assert not (tmp_path / 'ds2').exists() and not (tmp_path / 'm.pt').exists()  # refused before any work

@pytest.mark.parametrize('args', [('predict', 'M', 'I', '--out', 'O', '--mc', '0'), ('predict', 'M', 'I', '--out', 'O', '--bs', '0'),
                                  ('predict', 'M', 'I', '--out', 'O', '--chunk-size', '0'), ('train', 'D', '--epochs', '0'),
                                  ('train', 'D', '--bs', '0'), ('train', 'D', '--lr', 'nan'), ('select', 'P', '--out', 'O', '--p-min', '2'),
                                  ('prepare', 'C', '--out', 'O', '--radius', '-1'), ('prepare', 'C', '--out', 'O', '--snr-min', 'nan'),
                                  ('prepare', 'C', '--out', 'O', '--teff-err-max', 'inf'), ('mock', 'O', '-n', '0')])
def test_numbers_checked_before_work(args, capsys):
    from cemp_hfs.cli import main
    with pytest.raises(SystemExit) as e: main(list(args))
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {args[-2]}:" in err and 'Traceback' not in err

def test_info_on_nothing_fails(tmp_path):
    (tmp_path / 'a.fits').write_bytes(b'not a spectrum')
    assert 'no LAMOST files found' in run('info', str(tmp_path / 'x*.fits'), check=2).stderr
    assert '0 spectra read, 1 rejected' in run('info', tmp_path, check=1).stdout

def test_ctrl_c_is_one_line_with_how_to_resume(chain, tmp_path):
    "SIGINT in the middle of a run: status 130, one line saying how to go on, no traceback; the rerun resumes."
    # the command as the console script runs it (`cli.main`), with a pause after each chunk file: the whole run takes
    # under a second here, so without it a busy machine may let it finish before the signal arrives
    child = ("import sys, time; import cemp_hfs.predict as P; w = P._write_part; "
             "P._write_part = lambda *a, **k: (w(*a, **k), time.sleep(2)); from cemp_hfs.cli import main; sys.exit(main())")
    p = subprocess.Popen([sys.executable, '-c', child, 'predict', str(chain / 'model.pt'), str(chain / 'survey' / 'spectra'), '--out', str(tmp_path / 'p'),
                          '--mc', '64', '--chunk-size', '4', '--bs', '4'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, 'PYTHONUNBUFFERED': '1'},
                         preexec_fn=_sigint_default)
    t0 = time.time()
    while time.time() - t0 < 120 and not list((tmp_path / 'p' / 'chunks').glob('part-*.fits')) and p.poll() is None: time.sleep(0.05)
    assert p.poll() is None, "the run ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (p.returncode, err)
    assert 1 <= len(list((tmp_path / 'p' / 'chunks').glob('part-*.fits'))) < 13 and not (tmp_path / 'p' / 'predictions.fits').exists()
    assert 'Traceback' not in err and err.strip().splitlines()[-1] == 'cemp-hfs predict: interrupted; rerun the same command to resume (finished chunks are kept)'
    r = run('predict', chain / 'model.pt', chain / 'survey' / 'spectra', '--out', tmp_path / 'p', '--mc', '64', '--chunk-size', '4', '--bs', '4')
    assert 'resuming' in r.stderr
