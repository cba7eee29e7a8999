"`predict` interrupted (the process killed mid-run) and rerun: every spectrum exactly once, same numbers as one run."
import os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from cemp_hfs.mock import make_survey
from cemp_hfs.dataset import build_dataset
from cemp_hfs.train import train_hfsnet
from cemp_hfs.predict import predict

PREDICT = ("import sys; from cemp_hfs.predict import predict; "
           "predict(sys.argv[1], sys.argv[2], out=sys.argv[3], bs=4, chunk_size=4, mc_samples=8, progress=False)")

@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp('resume')
    truth = make_survey(36, d / 'survey', seed=5, progress=False)
    (d / 'survey' / 'spectra' / 'spec-broken.fits').write_bytes(b'broken' * 100)
    build_dataset(truth, d / 'ds', root=d / 'survey', progress=False)
    train_hfsnet(d / 'ds', 'small', epochs=1, bs=16, out=d / 'model.pt', progress=False)
    return d

def _kill_after_first_chunk(d, out, timeout=120):
    "Start predict in a child process and SIGKILL it as soon as its first chunk file exists."
    p = subprocess.Popen([sys.executable, '-c', PREDICT, str(d / 'model.pt'), str(d / 'survey' / 'spectra'), str(out)])
    t0 = time.time()
    while time.time() - t0 < timeout and p.poll() is None:
        if list((out / 'chunks').glob('part-*.fits')) if (out / 'chunks').exists() else []: break
        time.sleep(0.05)
    finished = p.poll() is not None
    if not finished: os.kill(p.pid, signal.SIGKILL); p.wait()
    return finished

def _check_exactly_once(pred, rejects, files):
    names = [Path(p).name for p in pred['path']] + [Path(f).name for f in rejects['file']]
    assert len(names) == len(set(names)), "a spectrum appears twice"
    assert sorted(names) == sorted(f.name for f in files), "a spectrum is missing"

def _chunk_stats(out) -> dict:
    "Each finished chunk file's identity: inode, modification time (ns) and size (a rewrite, even atomic, changes them)."
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size) for p in (Path(out) / 'chunks').glob('part-*.fits')}

def _check_untouched(before: dict, after: dict):
    "Every chunk finished before a call is still there, not rewritten."
    redone = [k for k in before if after.get(k) != before[k]]
    assert not redone, f"finished chunks rewritten or lost: {redone}"

def test_killed_run_resumes_exactly_once(setup):
    d = setup
    files = sorted((d / 'survey' / 'spectra').glob('*.fits*'))
    n_chunks = -(-len(files) // 4)
    out = d / 'killed'
    finished = _kill_after_first_chunk(d, out)
    done = len(list((out / 'chunks').glob('part-*.fits')))
    assert not finished and 1 <= done < n_chunks, f"the child was not stopped mid-run ({done} of {n_chunks} chunks)"
    assert not (out / 'predictions.fits').exists()
    before = _chunk_stats(out)
    pred = predict(d / 'model.pt', d / 'survey' / 'spectra', out=out, bs=4, chunk_size=4, mc_samples=8, progress=False)
    assert len(list((out / 'chunks').glob('part-*.fits'))) == n_chunks
    _check_untouched(before, _chunk_stats(out))
    assert not list((out / 'chunks').glob('*.tmp')), "a half-written chunk was left behind"
    rejects = Table.read(out / 'rejects.csv', format='ascii.csv')
    _check_exactly_once(pred, rejects, files)
    assert 'spec-broken.fits' in [Path(f).name for f in rejects['file']]
    # the same numbers as an uninterrupted run (dropout draws are seeded per chunk)
    full = predict(d / 'model.pt', d / 'survey' / 'spectra', out=d / 'full', bs=4, chunk_size=4, mc_samples=8, progress=False)
    assert list(full['path']) == list(pred['path'])
    for c in ('teff', 'feh', 'cfe', 'cfe_err', 'p_cemp'): np.testing.assert_allclose(full[c], pred[c], rtol=1e-5, atol=1e-6)

def test_stepwise_run_and_rerun_of_a_finished_run(setup):
    d = setup
    files = sorted((d / 'survey' / 'spectra').glob('*.fits*'))
    kw = dict(out=d / 'steps', bs=4, chunk_size=8, mc_samples=2, progress=False)
    n_chunks = -(-len(files) // 8)
    calls = -(-n_chunks // 2)  # two new chunks per call
    for step in range(calls):  # bounded: a run that never finishes fails here instead of looping
        before = _chunk_stats(d / 'steps')
        got = predict(d / 'model.pt', d / 'survey' / 'spectra', max_chunks=2, **kw)
        after = _chunk_stats(d / 'steps')
        _check_untouched(before, after)  # the chunks of earlier calls are not redone
        assert len(after) == min(2 * (step + 1), n_chunks), (step, sorted(after))
        assert (got is None) == (step < calls - 1), f"call {step + 1} of {calls}: {'stopped early' if got is None else 'finished early'}"
    before = _chunk_stats(d / 'steps')
    again = predict(d / 'model.pt', d / 'survey' / 'spectra', **kw)  # nothing left to do: the merged result again
    _check_untouched(before, _chunk_stats(d / 'steps'))
    _check_exactly_once(again, Table.read(d / 'steps' / 'rejects.csv', format='ascii.csv'), files)

def test_other_inputs_in_the_same_folder_are_refused(setup):
    d = setup
    predict(d / 'model.pt', d / 'ds', out=d / 'mixed', mc_samples=2, progress=False)
    with pytest.raises(ValueError, match='different'):
        predict(d / 'model.pt', d / 'survey' / 'spectra', out=d / 'mixed', mc_samples=2, progress=False)
