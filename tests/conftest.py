import os
# Before anything imports torch: OpenMP threads that spin while waiting make torch 10-30x slower on 2 shared cores.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
from pathlib import Path
import pytest

DATA = Path(os.environ.get('CEMP_HFS_DATA', Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data')).resolve()

@pytest.fixture(scope='session')
def data_dir():
    "The shared real-data folder; outside CI a missing folder skips, in CI it fails."
    if not DATA.is_dir():
        if os.environ.get('CI'): pytest.fail(f"real data folder {DATA} is missing (set CEMP_HFS_DATA)")
        pytest.skip(f"real data folder {DATA} not found (set CEMP_HFS_DATA)")
    return DATA
