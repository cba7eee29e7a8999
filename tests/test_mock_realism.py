"The mock against real LAMOST DR1 spectra and public synthetic spectra: it must beat a flat spectrum and shuffled labels."
import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def bench(data_dir):
    "benchmarks/mock_realism.py as a module, reading the shared data folder."
    spec = importlib.util.spec_from_file_location('mock_realism', ROOT / 'benchmarks' / 'mock_realism.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    mod.DATA = data_dir
    return mod


@pytest.fixture(scope='module')
def dr1_rows(bench, data_dir):
    refs = bench.load_dr1(data_dir)
    assert len(refs) == 100
    return bench.compare(refs)


@pytest.fixture(scope='module')
def synthetic_rows(bench, data_dir):
    return bench.compare(bench.load_ferre(data_dir) + bench.load_synthetic(data_dir))


@pytest.mark.parametrize('segment', ['blue 3800-5700', 'red 5900-8000'])
def test_mock_beats_baselines_on_dr1(dr1_rows, segment):
    mock = np.array([r[f'mock {segment}'] for r in dr1_rows])
    flat = np.array([r[f'flat {segment}'] for r in dr1_rows])
    shuffled = np.array([r[f'shuffled {segment}'] for r in dr1_rows])
    assert np.median(mock) < np.median(flat) and np.median(mock) < np.median(shuffled)
    assert np.mean(mock < flat) > 0.9  # star by star, a flat spectrum almost never wins
    assert np.mean(mock < shuffled) > 0.5  # the labels matter: the right labels fit better than another star's


@pytest.mark.parametrize('segment', ['blue 3800-5700', 'red 5900-8000'])
def test_mock_beats_baselines_on_synthetic(synthetic_rows, segment):
    for kind in ('FERRE solar', 'synthetic R2000'):
        rows = [r for r in synthetic_rows if r['kind'] == kind]
        mock = np.median([r[f'mock {segment}'] for r in rows])
        assert mock < np.median([r[f'flat {segment}'] for r in rows]) / 2, kind
        assert mock < np.median([r[f'shuffled {segment}'] for r in rows]), kind


def test_dr1_blue_residual_near_noise(dr1_rows):
    "In the blue, mock minus real spectrum is within 1.5x of what the real spectrum's noise explains (median star)."
    seg = 'blue 3800-5700'
    ratio = np.array([r[f'mock {seg}'] / r[f'noise {seg}'] for r in dr1_rows if r[f'noise {seg}'] > 0])
    assert np.median(ratio) < 1.5


def test_normalise_is_shared_and_robust(bench):
    "The benchmark's normaliser: a continuum times absorption lines comes back as the lines (away from the edges)."
    w = bench.WAVE
    lines = 1 - 0.5 * np.exp(-0.5 * ((w[:, None] - np.array([4300., 5200., 6563.])) / 3) ** 2).sum(1)
    cont = 1e3 * (w / 5000) ** -2
    n, c = bench.normalise(cont * lines)
    sel = (w > 4000) & (w < 8500)
    assert np.max(np.abs(n - lines)[sel]) < 0.05
    with pytest.raises(ValueError, match='fewer than 10 good pixels'):
        bench.normalise(np.ones(len(w)), np.zeros(len(w), bool))
