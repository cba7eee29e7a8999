"""`predict` on a Dask `LocalCluster` (issue 13, item 3): real DR10 files laid out as a LAMOST release
(`fits/<date>/<planid>/spec-*.fits.gz`, one of them broken) labelled by two worker processes give every spectrum
exactly once, with the numbers of a run in one process; also when a worker is killed mid-run, and when the whole
run (client and workers) is killed and run again."""
import os, signal, subprocess, sys, threading, time
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from cemp_hfs.io import lamost_files
from cemp_hfs.predict import predict
from cemp_hfs.scale import dask_client

KW = dict(chunk_size=2, bs=2, mc_samples=4, seed=3, progress=False)

@pytest.fixture(scope='module')
def release(data_dir, tmp_path_factory):
    "20 real DR10 files as a release lays them out (links), and one that is not a FITS file."
    root = tmp_path_factory.mktemp('release') / 'fits'
    for f in sorted((data_dir / 'lamost' / 'dr10_labeled').glob('spec-*.fits.gz'))[:20]:
        _, mjd, plan = f.name.split('_')[0].split('-', 2)
        d = root / mjd / plan; d.mkdir(parents=True, exist_ok=True)
        (d / f.name).symlink_to(f)
    (root / '59999' / 'BROKEN').mkdir(parents=True)
    (root / '59999' / 'BROKEN' / 'spec-59999-BROKEN_sp01-001.fits.gz').write_bytes(b'not a FITS file' * 50)
    return root

@pytest.fixture(scope='module')
def reference(release):
    "The run in one process."
    return predict(None, release, **KW)

@pytest.fixture(scope='module')
def client():
    with dask_client('local', 2) as c: yield c

def _check(t, reference, release, rej=None):
    "Every spectrum once (labelled or rejected), and the numbers of the run in one process."
    rej = t.meta['rejects'] if rej is None else rej
    names = sorted(map(str, t['filename'])) + sorted(map(str, rej['file']))
    assert sorted(names) == sorted(os.path.relpath(f, release) for f in lamost_files(release)), "a spectrum missing or twice"
    assert list(rej['file']) == ['59999/BROKEN/spec-59999-BROKEN_sp01-001.fits.gz']
    assert list(t['filename']) == list(reference['filename'])  # in the order of the inputs
    for c in ('teff', 'logg', 'feh', 'cfe', 'ch', 'teff_err', 'feh_err', 'cfe_err', 'p_cemp', 'novelty'):
        # the workers run torch on one thread, this process on more: float32 sums in another order
        np.testing.assert_allclose(np.ma.filled(t[c], np.nan), np.ma.filled(reference[c], np.nan), rtol=2e-6, atol=1e-6, err_msg=c)
    for c in ('flagged', 'flag_range', 'sanity', 'obsid'): assert list(t[c]) == list(reference[c]), c

def test_cluster_gives_every_spectrum_once_with_the_same_numbers(release, reference, client, tmp_path):
    out = tmp_path / 'pred'
    t = predict(None, release, out=out, client=client, **KW)
    _check(t, reference, release)
    w = Table.read(out / 'predictions.fits', character_as_bytes=False)
    assert list(w['filename']) == list(reference['filename']) and w.meta['NREJECT'] == 1
    assert len(list((out / 'chunks').glob('part-*.fits'))) == 11 and not list(out.rglob('*.tmp*'))
    import dask.dataframe as dd  # the Parquet copy, as a Dask user reads it: a row group per chunk, the same rows
    df = dd.read_parquet(out / 'predictions.parquet', split_row_groups=True).compute()
    assert list(df['filename']) == list(reference['filename'])
    np.testing.assert_array_equal(df['feh'].to_numpy(), np.ma.filled(w['feh'], np.nan))

def test_a_worker_killed_mid_run(release, reference, client, tmp_path):
    out = tmp_path / 'pred'
    res = {}
    run = threading.Thread(target=lambda: res.update(t=predict(None, release, out=out, client=client, **KW)))
    run.start()
    t0 = time.time()
    while not list((out / 'chunks').glob('part-*.fits')) and time.time() - t0 < 120: time.sleep(0.02)
    busy = [w for w, keys in client.processing().items() if keys]
    pids = client.run(os.getpid, workers=busy[:1])
    for pid in pids.values(): os.kill(pid, signal.SIGKILL)  # the worker dies with the chunk it was labelling
    n_done = len(list((out / 'chunks').glob('part-*.fits')))
    run.join(300)
    assert busy and n_done < 11, f"the worker was not killed mid-run ({n_done} of 11 chunks done)"
    _check(res['t'], reference, release)

def test_whole_run_killed_and_run_again(release, reference, client, tmp_path):
    out = tmp_path / 'pred'
    exe = Path(sys.executable).parent / 'cemp-hfs'
    cmd = [str(exe), 'predict', str(release), '--out', str(out), '--chunk-size', '2', '--bs', '2', '--mc', '4', '--seed', '3']
    p = subprocess.Popen(cmd + ['--scheduler', 'local', '--workers', '1'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while not list((out / 'chunks').glob('part-*.fits')) and time.time() - t0 < 180 and p.poll() is None: time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL); p.wait()  # the client, its scheduler and its workers: the whole job, as a batch system kills it
    n_done = len(list((out / 'chunks').glob('part-*.fits')))
    assert 1 <= n_done < 11, f"not killed mid-run ({n_done} of 11 chunks done)"
    # run again on the cluster of the tests, joined through its scheduler file
    client.write_scheduler_file(str(tmp_path / 'scheduler.json'))
    p = subprocess.run(cmd + ['--scheduler', str(tmp_path / 'scheduler.json')], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert f"resuming in {out}: {2 * n_done} of 21 spectra already done" in p.stderr
    assert "predict: 20 of 21 spectra labelled" in p.stdout, p.stdout
    _check(Table.read(out / 'predictions.fits', character_as_bytes=False), reference, release,
           Table.read(out / 'rejects.csv', format='ascii.csv'))

def test_schedulers(client, tmp_path):
    "An address joins a running cluster; anything else that is not a file is refused before any work."
    with dask_client(client.scheduler.address) as c: assert len(c.scheduler_info()['workers']) == 2
    with pytest.raises(FileNotFoundError, match="scheduler nowhere.json: give 'local', an address tcp://host:port"):
        with dask_client('nowhere.json'): pass

def test_build_dataset_on_the_cluster(release, client, tmp_path):
    "prepare's build on the workers: the dataset of a build in one process, array for array."
    from cemp_hfs.dataset import build_dataset, load_dataset
    from astropy.table import Table as T
    cat = T({'filename': [os.path.relpath(f, release) for f in lamost_files(release)]})
    one = load_dataset(build_dataset(cat, tmp_path / 'one', root=release, chunk_size=4, progress=False))
    two = load_dataset(build_dataset(cat, tmp_path / 'two', root=release, chunk_size=4, progress=False, client=client))
    assert list(one.labels['filename']) == list(two.labels['filename']) and len(one.labels) == 20
    for a in ('continuum', 'normalized', 'mask'): assert np.array_equal(np.asarray(getattr(one, a)), np.asarray(getattr(two, a))), a

def test_dataset_input_on_the_cluster(release, client, tmp_path):
    "A dataset directory as predict's input: its chunks labelled on the workers give the numbers of a run in one process."
    from cemp_hfs.dataset import build_dataset
    from astropy.table import Table as T
    cat = T({'filename': [os.path.relpath(f, release) for f in lamost_files(release)]})
    ds = build_dataset(cat, tmp_path / 'ds', root=release, chunk_size=8, progress=False)
    ref = predict(None, ds, **KW)
    t = predict(None, ds, out=tmp_path / 'pred', client=client, **KW)
    assert list(t['filename']) == list(ref['filename']) and len(t) == 20
    for c in ('teff', 'feh', 'cfe', 'cfe_err', 'p_cemp'):
        np.testing.assert_allclose(np.ma.filled(t[c], np.nan), np.ma.filled(ref[c], np.nan), rtol=2e-6, atol=1e-6, err_msg=c)
