"""Runs that share an output folder, a full disk and a cut manifest (issue 13, item 4): two real `cemp-hfs predict`
processes on one folder (the second stops with a one-line message, nothing is computed twice), a lock left by a
killed process taken over, a disk that fills up mid-run (one-line message naming the folder; the rerun resumes and
gives the numbers of an uninterrupted run), and a manifest cut to 0 bytes (rebuilt, or a clear message)."""
import errno, json, os, signal, subprocess, sys, time, warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from cemp_hfs.cli import main
from cemp_hfs.core import LOCK, folder_lock, FolderBusy, DiskFull
from cemp_hfs.predict import predict
from cemp_hfs.dataset import build_dataset, load_dataset

KW = dict(chunk_size=3, bs=3, mc_samples=2, progress=False)  # the shipped model, a few real spectra

@pytest.fixture(scope='module')
def files(data_dir):
    return sorted((data_dir / 'lamost' / 'dr10_labeled').glob('spec-*.fits.gz'))[:9]

@pytest.fixture(scope='module')
def reference(files, tmp_path_factory):
    "One uninterrupted run, in memory."
    return predict(None, [str(f) for f in files], **KW)

def _cli():
    exe = Path(sys.executable).parent / 'cemp-hfs'
    return [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from cemp_hfs.cli import main; sys.exit(main())']

def _same(a, b, cols=('teff', 'logg', 'feh', 'cfe', 'cfe_err', 'p_cemp')):
    assert list(a['filename']) == list(b['filename'])
    for c in cols: np.testing.assert_allclose(np.ma.filled(a[c], np.nan), np.ma.filled(b[c], np.nan), rtol=1e-5, atol=1e-6, err_msg=c)  # float32 sums in another order (thread counts)

def test_two_processes_on_one_folder(files, reference, tmp_path):
    "Two runs started together: one labels every spectrum, the other stops at once with one line naming the first."
    out = tmp_path / 'pred'
    cmd = _cli() + ['predict', *map(str, files), '--out', str(out), '--chunk-size', '3', '--bs', '3', '--mc', '2']
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    res = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in res)
    assert codes == [0, 2], f"exit codes {codes}: {res}"
    winner = next(r for r in res if r[0] == 0); loser = next(r for r in res if r[0] == 2)
    lines = loser[2].strip().splitlines()
    assert len(lines) == 1 and 'another predict is working in this folder (process' in lines[0] and str(out) in lines[0], loser[2]
    assert 'Traceback' not in loser[2] + winner[2]
    assert f"{len(reference)} of {len(files)} spectra labelled" in winner[1]
    assert len(list((out / 'chunks').glob('part-*.fits'))) == -(-len(files) // 3)
    _same(Table.read(out / 'predictions.fits', character_as_bytes=False), reference)
    # a rerun of the finished run computes nothing: it resumes with every spectrum done
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and f"{len(files)} of {len(files)} spectra already done" in p.stderr, p.stderr

def test_lock_of_a_killed_process_is_taken_over(files, reference, tmp_path):
    out = tmp_path / 'pred'
    hold = subprocess.Popen([sys.executable, '-c', f"import time; from cemp_hfs.core import folder_lock\n"
                             f"with folder_lock({str(out)!r}, 'predict'): print('held', flush=True); time.sleep(300)"],
                            stdout=subprocess.PIPE, text=True)
    assert hold.stdout.readline().strip() == 'held'
    with pytest.raises(FolderBusy, match=f"process {hold.pid} on"): predict(None, [str(f) for f in files], out=out, **KW)
    os.kill(hold.pid, signal.SIGKILL); hold.wait()
    assert json.loads((out / LOCK).read_text())['pid'] == hold.pid  # the owner file still names the dead process
    _same(predict(None, [str(f) for f in files], out=out, **KW), reference)

def _fail_on_write(monkeypatch, n_ok):
    "Make FITS writing fail with a full disk after `n_ok` files, half-way into the file (as a real full disk does)."
    real, calls = fits.HDUList.writeto, []
    def writeto(self, name, *a, **k):
        calls.append(name)
        if len(calls) > n_ok:
            Path(name).write_bytes(b'SIMPLE  =                    T' + b' ' * 1000)  # what made it to disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(name))
        return real(self, name, *a, **k)
    monkeypatch.setattr(fits.HDUList, 'writeto', writeto)
    return calls

def test_full_disk_one_line_then_resume(files, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / 'pred'
    _fail_on_write(monkeypatch, 1)  # the first chunk is written, the second hits the full disk
    args = ['predict', *map(str, files), '--out', str(out), '--chunk-size', '3', '--bs', '3', '--mc', '2', '--quiet']
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == (f"cemp-hfs predict: error: {out}: no space left on the device while writing the predictions; "
                                        "free some space, then rerun the same command to resume (finished chunks are kept)"), err
    assert [p.name for p in (out / 'chunks').iterdir()] == ['part-00000.fits'], "a half-written chunk was left behind"
    monkeypatch.undo()
    _fail_on_write(monkeypatch, 0)
    with pytest.raises(DiskFull, match=str(out)): predict(None, [str(f) for f in files], out=out, **KW)
    monkeypatch.undo()
    assert main(args) == 0  # the disk has room again: the same command resumes
    _same(Table.read(out / 'predictions.fits', character_as_bytes=False), reference)

def test_full_disk_while_assembling(files, reference, tmp_path, monkeypatch):
    "Every chunk written, then the disk fills up while the catalogue is written: the rerun writes only the catalogue."
    out = tmp_path / 'pred'
    n_chunks = -(-len(files) // 3)
    _fail_on_write(monkeypatch, n_chunks)
    with pytest.raises(DiskFull): predict(None, [str(f) for f in files], out=out, **KW)
    assert len(list((out / 'chunks').glob('part-*.fits'))) == n_chunks and not (out / 'predictions.fits').exists()
    assert not [p for p in out.iterdir() if p.name.endswith('.tmp') or '.tmp.' in p.name]
    monkeypatch.undo()
    calls = _fail_on_write(monkeypatch, 10 ** 6)
    _same(predict(None, [str(f) for f in files], out=out, **KW), reference)
    assert [Path(c).name for c in calls if 'part-' in str(c)] == []  # no chunk computed again

def test_cut_manifest(files, reference, tmp_path, capsys):
    out = tmp_path / 'pred'
    assert predict(None, [str(f) for f in files], out=out, max_chunks=1, **KW) is None
    (out / 'manifest.json').write_text('')  # cut to 0 bytes (a crash on a file system without atomic rename)
    with pytest.warns(UserWarning, match='manifest.json: empty; written anew \\(the 1 finished chunks are of this run\\)'):
        _same(predict(None, [str(f) for f in files], out=out, **KW), reference)
    # a cut manifest beside chunks of another run (other MC draws): a clear message, nothing mixed
    other = tmp_path / 'other'
    predict(None, [str(f) for f in files], out=other, **dict(KW, mc_samples=3), max_chunks=1)
    (other / 'manifest.json').write_text('{"inputs": "files:')
    args = ['predict', *map(str, files), '--out', str(other), '--chunk-size', '3', '--bs', '3', '--mc', '2', '--quiet']
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'manifest.json: not valid JSON' in err[0] and 'cannot be matched to this run' in err[0], err

def test_build_dataset_owns_its_folder_and_survives_a_cut_manifest(files, tmp_path):
    cat = Table({'filename': [f.name for f in files]})
    out = tmp_path / 'ds'
    with folder_lock(out, 'predict'):
        with pytest.raises(FolderBusy, match='another predict is working in this folder'): build_dataset(cat, out, root=files[0].parent, chunk_size=4, progress=False)
    build_dataset(cat, out, root=files[0].parent, chunk_size=4, progress=False, keep_chunks=True)
    n = len(load_dataset(out))
    (out / 'manifest.json').write_text('')
    with pytest.warns(UserWarning, match='written anew \\(the 3 finished chunks are of this build\\)'):
        build_dataset(cat, out, root=files[0].parent, chunk_size=4, progress=False)
    assert len(load_dataset(out)) == n
