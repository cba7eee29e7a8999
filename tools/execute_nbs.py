#!/usr/bin/env python
"""Execute the notebooks and save them with their outputs and figures, so that a repository page shows the tutorial.

    python tools/execute_nbs.py [NOTEBOOK ...]            # execute (all of nbs/ by default) and save with outputs
    python tools/execute_nbs.py --check [NOTEBOOK ...]    # are the committed outputs current? (part of `make test`)
    python tools/execute_nbs.py --compare [NOTEBOOK ...]  # re-execute into a scratch copy and compare text outputs

Each notebook is executed top to bottom with nbclient in `nbs/` (one torch thread, a fixed hash seed, the global
random streams of `random`, numpy and torch seeded with 0 first, the inline Matplotlib backend with PNG figures), skipping the cells nbdev-test skips (`#| eval: false` and the flags in
`tst_flags`), then cleaned with nbdev's `clean_nb`. The notebook's metadata records a stamp of what its outputs were
made from: its own code cells, the exported package (`cemp_hfs/`, the shipped model and the mock's calibration
included) and the benchmark results the notebooks display. `--check` recomputes the stamp and fails when a notebook's
code, the package or the results changed since its outputs were saved (run `make outputs`), or when a notebook with
code has no outputs. `--compare` is the slower check that re-execution reproduces the saved text outputs: numbers
within a relative 1e-3 (last-digit noise of threaded arithmetic), elapsed times, rates and scratch paths ignored; figures'
bytes are not compared.
"""
from __future__ import annotations
import argparse, copy, hashlib, json, os, re, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
KEY = 'cemp_hfs'  # the notebook metadata key of the stamp (kept by nbdev-clean: allowed_metadata_keys in pyproject.toml)
STAMPED = ('cemp_hfs', 'benchmarks/results')  # what every notebook's outputs may depend on besides its own code
# run first, unsaved: the global random streams start from the same state on every execution (a cell that draws without
# its own seed still prints the same numbers each time the outputs are made)
SEED_CELL = """import random as _random; _random.seed(0)
import numpy as _np; _np.random.seed(0)
try:
    import torch as _torch; _torch.manual_seed(0)
except ImportError: pass"""
ENV = dict(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONHASHSEED='0', TQDM_DISABLE='1')


def _tracked(paths) -> list:
    "Files git tracks under `paths` (relative to the repository), sorted; every file when git is unavailable."
    try:
        out = subprocess.run(['git', 'ls-files', '-z', '--', *paths], cwd=ROOT, capture_output=True, check=True).stdout
        files = [f for f in out.decode().split('\0') if f]
    except (OSError, subprocess.CalledProcessError):
        files = [str(p.relative_to(ROOT)) for d in paths for p in (ROOT / d).rglob('*') if p.is_file()]
    return sorted(f for f in files if not f.endswith('_modidx.py') and '__pycache__' not in f and (ROOT / f).is_file())


def package_stamp() -> str:
    "sha256 of the exported package and the benchmark results (path and content of each tracked file)."
    h = hashlib.sha256()
    for f in _tracked(STAMPED):
        h.update(f.encode() + b'\0'); h.update((ROOT / f).read_bytes()); h.update(b'\0')
    return h.hexdigest()


def code_stamp(nb: dict) -> str:
    "sha256 of a notebook's code cells, in order."
    h = hashlib.sha256()
    for c in nb['cells']:
        if c['cell_type'] == 'code': h.update(''.join(c['source']).encode() + b'\0\1')
    return h.hexdigest()


def stamp(nb: dict, pkg: str) -> str: return hashlib.sha256(f'{code_stamp(nb)} {pkg}'.encode()).hexdigest()[:16]


def _skip(src: str, flags: set) -> bool:
    "Does nbdev-test skip this cell? (`#| eval: false`, or a directive among `tst_flags`)"
    for line in src.splitlines():
        s = line.strip()
        if not s: continue
        if not s.startswith('#|'): break
        words = s[2:].replace(':', ' ').split()
        if words[:2] == ['eval', 'false'] or (words and words[0] in flags): return True
    return False


def _tst_flags() -> set:
    from nbdev.config import get_config
    return set(str(get_config().get('tst_flags', '') or '').split())


def execute(path: Path, timeout: int = 600) -> dict:
    "Execute the notebook at `path` (in `nbs/`) and return it with its outputs, as a dict (not saved)."
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(path, as_version=4)
    flags = _tst_flags()
    skipped = []
    for c in nb.cells:
        if c.cell_type == 'code' and _skip(c.source, flags):
            c.metadata.setdefault('tags', []).append('skip-execution'); skipped.append(c)
    nb.cells.insert(0, nbformat.v4.new_code_cell(SEED_CELL))  # removed again below: not saved
    old = {k: os.environ.get(k) for k in [*ENV, 'MPLBACKEND']}
    os.environ.update(ENV); os.environ.pop('MPLBACKEND', None)
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
    del nb.cells[0]
    for c in skipped:
        c.metadata['tags'].remove('skip-execution')
        if not c.metadata['tags']: del c.metadata['tags']
    return json.loads(nbformat.writes(nb))


def save(d: dict, path: Path):
    "Write an executed notebook, clean it as nbdev-clean does (keeping the stamp) and stamp what its outputs were made of."
    from nbdev.clean import nbdev_clean
    pkg = package_stamp()
    path.write_text(json.dumps(d, indent=1, ensure_ascii=False) + '\n')
    nbdev_clean(fname=str(path))
    d = json.loads(path.read_text())
    d['metadata'][KEY] = {'outputs_of': stamp(d, pkg)}
    path.write_text(json.dumps(d, indent=1, ensure_ascii=False) + '\n')
    nbdev_clean(fname=str(path))
    if json.loads(path.read_text())['metadata'].get(KEY) is None:
        raise SystemExit(f'nbdev-clean dropped the {KEY!r} metadata: add it to allowed_metadata_keys in pyproject.toml')


def has_outputs(nb: dict) -> bool:
    return any(c.get('outputs') for c in nb['cells'] if c['cell_type'] == 'code')


def check(paths, pkg: str | None = None) -> list:
    "The notebooks whose saved outputs are not current, with the reason (`pkg`: `package_stamp()`, if already known)."
    pkg, bad = pkg or package_stamp(), []
    flags = _tst_flags()
    for p in paths:
        nb = json.loads(p.read_text())
        runs = [c for c in nb['cells'] if c['cell_type'] == 'code' and not _skip(''.join(c['source']), flags)
                and ''.join(c['source']).strip()]
        if not runs: continue
        got = nb.get('metadata', {}).get(KEY, {}).get('outputs_of')
        if got is None: bad.append(f'{p.name}: saved without outputs (run `make outputs`)')
        elif got != stamp(nb, pkg): bad.append(f'{p.name}: outputs are stale: its code, the package or the benchmark results changed since they were saved (run `make outputs`)')
    return bad


_TIME = re.compile(r'\b\d+:\d\d(:\d\d)?\b|\b\d+(\.\d+)?\s*(ms|s|sec|secs|seconds|min|µs|us)\b|\d+(\.\d+)?\s*(spectra|it|files|stars)/s\b')
_TMP = re.compile(r'/tmp/(tmp|ipykernel_)[\w.-]+')  # scratch folders differ on every run
_NUM = re.compile(r'[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?')


def _texts(nb: dict) -> list:
    "The text outputs of each code cell (stream, text/plain), with elapsed times masked."
    out = []
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        t = []
        for o in c.get('outputs', []):
            if o.get('output_type') == 'stream' and o.get('name') == 'stdout': t.append(''.join(o['text']))
            elif 'data' in o and 'text/plain' in o['data'] and not any(k.startswith('image/') or k == 'text/html' for k in o['data']):
                t.append(''.join(o['data']['text/plain']))
        out.append(_TIME.sub('<time>', _TMP.sub('<tmp>', '\n'.join(t))))
    return out


def same_text(a: str, b: str, rtol: float = 1e-3) -> bool:
    "Do two outputs agree, numbers within `rtol` (relative) or 1e-9 (absolute), the rest exactly?"
    if _NUM.sub('#', a) != _NUM.sub('#', b): return False
    for x, y in zip(_NUM.finditer(a), _NUM.finditer(b)):
        u, v = float(x.group(0)), float(y.group(0))
        if abs(u - v) > max(1e-9, rtol * max(abs(u), abs(v))): return False
    return True


def compare(paths) -> list:
    "Re-execute each notebook and list the cells whose text outputs differ from the saved ones."
    bad = []
    for p in paths:
        saved = json.loads(p.read_text())
        new = execute(p)  # text outputs do not depend on cleaning
        for i, (a, b) in enumerate(zip(_texts(saved), _texts(new))):
            if not same_text(a, b): bad.append(f'{p.name}: code cell {i} prints differently on re-execution:\n  saved: {a[:300]!r}\n  now:   {b[:300]!r}')
    return bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebooks', nargs='*')
    ap.add_argument('--check', action='store_true', help='are the saved outputs current? (fast: no execution)')
    ap.add_argument('--compare', action='store_true', help='re-execute and compare the text outputs with the saved ones')
    ap.add_argument('--timeout', type=int, default=600, help='seconds per cell')
    a = ap.parse_args(argv)
    paths = [Path(p).resolve() for p in a.notebooks] or sorted(NBS.glob('*.ipynb'))
    if a.check or a.compare:
        bad = check(paths) if a.check else compare(paths)
        for b in bad: print(b)
        ok = 'saved outputs current' if a.check else 're-execution reproduces the saved text outputs'
        print(f'{len(paths)} notebooks: ' + (f'{len(bad)} problems' if bad else ok), file=sys.stderr)
        return 1 if bad else 0
    for p in paths:
        t0 = time.time()
        d = execute(p, a.timeout)
        save(d, p)
        print(f'{p.name}: executed in {time.time() - t0:.0f} s, {p.stat().st_size / 1e3:.0f} kB', file=sys.stderr)
    return 0


if __name__ == '__main__': sys.exit(main())
