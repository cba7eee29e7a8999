"""`predict` reading ahead in worker processes (`io_workers`): the same catalogue as one process reading as it goes, with a
corrupt file among the inputs and after an interruption; Ctrl-C and a killed parent leave no process behind."""
import os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from cemp_hfs.mock import make_survey
from cemp_hfs.dataset import build_dataset
from cemp_hfs.train import train_hfsnet
from cemp_hfs.predict import predict

pytestmark = pytest.mark.skipif(not Path('/proc/self/stat').exists(), reason='needs /proc to find the worker processes')

KW = dict(bs=4, chunk_size=8, mc_samples=8)
# each chunk file is followed by a pause, so that the run is surely still going when it is interrupted
# and torch runs with this process's thread count (another count changes the network's float sums in the last bit)
CHILD = ("import sys, time, torch; import cemp_hfs.predict as P; w = P._write_part; torch.set_num_threads(int(sys.argv[4])); "
         "P._write_part = lambda *a, **k: (w(*a, **k), time.sleep(2)); "
         "P.predict(sys.argv[1], sys.argv[2], out=sys.argv[3], bs=4, chunk_size=8, mc_samples=8, progress=False, io_workers=2)")

@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp('overlap')
    truth = make_survey(64, d / 'survey', seed=7, progress=False)
    (d / 'survey' / 'spectra' / 'spec-corrupt.fits').write_bytes(b'corrupt' * 200)  # sorts among the others
    build_dataset(truth, d / 'ds', root=d / 'survey', progress=False)
    train_hfsnet(d / 'ds', 'small', epochs=1, bs=16, out=d / 'model.pt', progress=False)
    sequential = predict(d / 'model.pt', d / 'survey' / 'spectra', out=d / 'sequential', io_workers=0, progress=False, **KW)
    return d, sequential

def _same_catalogue(a: Table, b: Table):
    "Every column equal, element by element (NaN where NaN, masks alike), and the same rejects."
    assert a.colnames == b.colnames and len(a) == len(b)
    for c in a.colnames:
        x, y = a[c], b[c]
        if getattr(x, 'mask', None) is not None or getattr(y, 'mask', None) is not None:
            np.testing.assert_array_equal(np.ma.getmaskarray(x), np.ma.getmaskarray(y), err_msg=c)
        x, y = np.ma.filled(x, x.fill_value if hasattr(x, 'fill_value') else 0), np.ma.filled(y, y.fill_value if hasattr(y, 'fill_value') else 0)
        if x.dtype.kind == 'f': np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=c); x, y = np.nan_to_num(x), np.nan_to_num(y)
        np.testing.assert_array_equal(x, y, err_msg=c)
    ra, rb = a.meta['rejects'], b.meta['rejects']
    assert list(ra['file']) == list(rb['file']) and list(ra['reason']) == list(rb['reason'])

def _children(pid) -> set:
    "Processes whose parent is `pid` (Linux /proc)."
    out = set()
    for p in Path('/proc').iterdir():
        if not p.name.isdigit(): continue
        try: stat = (p / 'stat').read_text()
        except OSError: continue
        if int(stat.rsplit(')', 1)[1].split()[1]) == pid: out.add(int(p.name))
    return out

def _alive(pid) -> bool:
    "Running (not gone, not a zombie waiting to be reaped)."
    try: return (Path('/proc') / str(pid) / 'stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError: return False

def _start_and_wait_for_first_chunk(d, out, timeout=180):
    "predict with reader processes in a child of its own process group; returns it and its reader processes once a chunk is written."
    import torch
    p = subprocess.Popen([sys.executable, '-c', CHILD, str(d / 'model.pt'), str(d / 'survey' / 'spectra'), str(out), str(torch.get_num_threads())],
                         stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal (a background job starts with it ignored)
    t0, kids = time.time(), set()
    while time.time() - t0 < timeout and p.poll() is None:
        kids |= _children(p.pid)
        if (out / 'chunks').exists() and list((out / 'chunks').glob('part-*.fits')): break
        time.sleep(0.02)
    kids |= _children(p.pid)
    return p, kids

def _wait_gone(pids, timeout=20) -> set:
    t0 = time.time()
    while time.time() - t0 < timeout and any(map(_alive, pids)): time.sleep(0.1)
    return {q for q in pids if _alive(q)}

def test_overlapped_gives_the_same_catalogue(setup):
    d, sequential = setup
    assert len(sequential.meta['rejects']) >= 1 and 'spec-corrupt.fits' in list(sequential.meta['rejects']['file'])
    for w in (1, 2):
        _same_catalogue(sequential, predict(d / 'model.pt', d / 'survey' / 'spectra', out=d / f'overlap{w}', io_workers=w, progress=False, **KW))
    # in memory too (no output folder), and the files on disk are the same
    _same_catalogue(sequential, predict(d / 'model.pt', d / 'survey' / 'spectra', io_workers=1, progress=False, **KW))
    assert (d / 'overlap2' / 'rejects.csv').read_text() == (d / 'sequential' / 'rejects.csv').read_text()

def test_overlapped_resumes_after_max_chunks(setup):
    d, sequential = setup
    out = d / 'stepwise'
    assert predict(d / 'model.pt', d / 'survey' / 'spectra', out=out, io_workers=2, max_chunks=3, progress=False, **KW) is None
    assert len(list((out / 'chunks').glob('part-*.fits'))) == 3
    _same_catalogue(sequential, predict(d / 'model.pt', d / 'survey' / 'spectra', out=out, io_workers=1, progress=False, **KW))

def test_ctrl_c_stops_cleanly_and_the_run_resumes(setup):
    d, sequential = setup
    out = d / 'interrupted'
    p, kids = _start_and_wait_for_first_chunk(d, out)
    assert p.poll() is None, "the run ended before it could be interrupted"
    assert kids, "no reader process was started"
    os.killpg(p.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground process group gets it
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0 and err.count('KeyboardInterrupt') == 1, err[-2000:]  # the parent's alone, none from the workers
    assert not _wait_gone(kids), "a reader process outlived the run"
    done = len(list((out / 'chunks').glob('part-*.fits')))
    assert 1 <= done < 9 and not (out / 'predictions.fits').exists()
    _same_catalogue(sequential, predict(d / 'model.pt', d / 'survey' / 'spectra', out=out, io_workers=2, progress=False, **KW))

def test_killed_parent_leaves_no_reader_behind(setup):
    d, sequential = setup
    out = d / 'killed'
    p, kids = _start_and_wait_for_first_chunk(d, out)
    assert p.poll() is None and kids
    os.kill(p.pid, signal.SIGKILL); p.communicate(timeout=30)
    assert not _wait_gone(kids), "a reader process outlived its killed parent"
    _same_catalogue(sequential, predict(d / 'model.pt', d / 'survey' / 'spectra', out=out, io_workers=0, progress=False, **KW))
