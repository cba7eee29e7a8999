"build_dataset on real LAMOST files: parallel workers, interruption and resume, the on-disk contract, splits."
import csv
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from cemp_hfs.preprocess import preprocess, output_grid
from cemp_hfs.dataset import build_dataset, load_dataset, balanced_indices
from cemp_hfs.io import read_lamost


class Interrupted(Exception): pass


@pytest.fixture(scope='module')
def repeat_catalog(data_dir):
    "The DR8 repeat observations as a catalogue: file, star (GroupID), made-up [Fe/H] per star, one missing file."
    d = data_dir / 'lamost' / 'dr8_repeats'
    rows = list(csv.DictReader(open(d / 'groups.csv')))
    files = {p.name: p.relative_to(d) for p in d.rglob('*.fits.gz')}
    rng = np.random.default_rng(0)
    feh_of = {}
    t = Table(rows=[(str(files[Path(r['combined_file']).name]), r['GroupID'],
                     feh_of.setdefault(r['GroupID'], rng.uniform(-3, 0.3))) for r in rows if Path(r['combined_file']).name in files],
              names=('filename', 'star_id', 'feh'))
    t.add_row(('missing/spec-nothing.fits.gz', 'ghost', -1.0))
    return t, d


def test_interrupted_parallel_build_resumes_without_loss_or_duplicates(repeat_catalog, tmp_path):
    cat, root = repeat_catalog
    out = tmp_path / 'ds'
    done = []
    def stop_after_two(k):
        done.append(k)
        if len(done) == 2: raise Interrupted(f"interrupted after chunks {done}")
    with pytest.raises(Interrupted):
        build_dataset(cat, out, root=root, chunk_size=8, n_workers=2, progress=False, after_chunk=stop_after_two)
    finished = sorted(p.name for p in (out / '.chunks').iterdir() if p.name.startswith('chunk_'))
    n_chunks = -(-len(cat) // 8)
    assert 2 <= len(finished) < n_chunks  # the interruption stopped the queue (running chunks may still finish)
    redone = []
    build_dataset(cat, out, root=root, chunk_size=8, n_workers=2, progress=False, after_chunk=redone.append)
    assert not set(redone) & {int(n.split('_')[1]) for n in finished}  # finished chunks were not redone
    ds = load_dataset(out)
    # every catalogue row exactly once: in the arrays or in the rejects
    got = list(ds.labels['filename']) + [str(Path(f).relative_to(root)) if Path(f).is_relative_to(root) else f
                                          for f in ds.rejects['file']]
    assert sorted(got) == sorted(cat['filename'])
    assert len(set(ds.labels['row'])) == len(ds.labels)
    assert 'missing/spec-nothing.fits.gz' in got and any('no such file' in r for r in ds.rejects['reason'])
    # the contract
    P = len(output_grid())
    assert ds.continuum.shape == ds.normalized.shape == ds.mask.shape == (len(ds), P)
    assert ds.continuum.dtype == np.float32 and ds.mask.dtype == bool
    assert np.isfinite(ds.normalized).all() and np.isfinite(ds.continuum).all()
    np.testing.assert_allclose(np.median(ds.continuum, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(ds.wave, output_grid())
    # rows hold the preprocessing of their own file
    i = len(ds) // 2
    ref = preprocess(read_lamost(root / ds.labels['filename'][i]))
    np.testing.assert_allclose(ds.normalized[i], ref.normalized, atol=1e-5)
    # repeats of one star stay in one split; the splits are all there
    splits = {}
    for s, st in zip(ds.labels['split'], ds.labels['star_id']): splits.setdefault(st, set()).add(s)
    assert all(len(v) == 1 for v in splits.values())
    assert set(ds.labels['split']) == {'train', 'valid', 'test'}
    # random mean sampling draws only training rows, every populated bin equally often
    idx = ds.balanced_indices(seed=3)
    assert set(np.asarray(ds.labels['split'])[idx]) == {'train'}
    np.testing.assert_array_equal(idx, balanced_indices(ds.labels, seed=3))


def test_serial_and_parallel_builds_agree(repeat_catalog, tmp_path):
    cat, root = repeat_catalog
    small = cat[:20]
    a = load_dataset(build_dataset(small, tmp_path / 'a', root=root, chunk_size=7, n_workers=1, progress=False, seed=5))
    b = load_dataset(build_dataset(small, tmp_path / 'b', root=root, chunk_size=7, n_workers=2, progress=False, seed=5))
    np.testing.assert_array_equal(np.asarray(a.normalized), np.asarray(b.normalized))
    assert list(a.labels['split']) == list(b.labels['split'])
    assert not (tmp_path / 'a' / '.chunks').exists()  # the work folder is gone after a complete build
