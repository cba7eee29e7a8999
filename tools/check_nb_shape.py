#!/usr/bin/env python
"""Check that the notebooks keep the shape of nbdev's and fastcore's own notebooks (the anchors in STYLE.md).

Rules, per notebook in `nbs/`:

1. an exported cell holds at most one definition (a function, a class or a `@patch`ed method), with its constants;
2. an exported cell is at most `MAX_LINES` lines long;
3. a public definition is followed, before the next exported cell, by a visible code cell that is not exported
   (the small example that shows its result and asserts it);
4. every parameter of every public function, class and public method of the notebook's module has a docment
   (`x:int, # what x is`), so that `show_doc` renders a full table;
5. the notebooks cite the paper, never documents a reader does not have (internal specs, issue numbers).

Usage: `python tools/check_nb_shape.py [NOTEBOOK ...]` (all of `nbs/` by default); exits 1 and lists every breach.
"""
from __future__ import annotations
import ast, importlib, inspect, json, re, sys
from pathlib import Path

MAX_LINES = 80
ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = re.compile(r'\bSPEC\b|SPEC\.md|COMMON\.md|\b[Ii]ssue\s+#?\d+|HELPERS')


def _directives(src: str) -> set:
    "The `#|` directives of a cell's first lines, e.g. {'export', 'hide'}."
    out = set()
    for line in src.splitlines():
        s = line.strip()
        if not s: continue
        if not s.startswith('#|'): break
        out.update(w.strip().split(':')[0] for w in s[2:].split() if w.strip())
    return out


def _is_export(d: set) -> bool: return bool(d & {'export', 'exports', 'exporti'})


def _defs(src: str) -> list:
    "Top-level definitions of a cell: (name, is_public)."
    try: tree = ast.parse(src)
    except SyntaxError: return []
    return [(n.name, not n.name.startswith('_')) for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def _missing_docments(f) -> list:
    "Parameters of `f` without a docment (self, cls, *args and **kwargs excepted)."
    from fastcore.docments import docments
    try: d = docments(f, full=True)
    except Exception: return []
    try: params = inspect.signature(f).parameters
    except (TypeError, ValueError): return []
    skip = {'self', 'cls'}
    return [k for k, p in params.items() if k not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and k in d and not d[k].get('docment')]


def check_docments(mod_name: str) -> list:
    "Breaches of rule 4 for the module `cemp_hfs.<mod_name>`."
    try: mod = importlib.import_module(f'cemp_hfs.{mod_name}')
    except Exception as e: return [f'cannot import cemp_hfs.{mod_name}: {e}']
    out = []
    for name in getattr(mod, '__all__', []):
        obj = getattr(mod, name, None)
        if inspect.isfunction(obj) and obj.__module__ == mod.__name__:
            miss = _missing_docments(obj)
            if miss: out.append(f'{name}: parameters without a docment: {", ".join(miss)}')
        elif inspect.isclass(obj) and obj.__module__ == mod.__name__:
            if '__init__' in vars(obj):
                miss = _missing_docments(obj.__init__)
                if miss: out.append(f'{name}: parameters without a docment: {", ".join(miss)}')
            for mname, m in vars(obj).items():
                if mname.startswith('_') or not inspect.isfunction(m): continue
                miss = _missing_docments(m)
                if miss: out.append(f'{name}.{mname}: parameters without a docment: {", ".join(miss)}')
    return out


def check_notebook(path: Path, docments: bool = True) -> list:
    "Every breach of the rules in the notebook at `path`, as strings."
    nb = json.loads(Path(path).read_text())
    out, module, pending = [], None, None  # pending: the public definition waiting for its example
    for i, c in enumerate(nb['cells']):
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown':
            for m in FORBIDDEN.finditer(src): out.append(f'cell {i}: cites an internal document ({m.group(0)!r})')
            continue
        if c['cell_type'] != 'code': continue
        d = _directives(src)
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', src, re.M)
        if m: module = m.group(1)
        for line in src.splitlines():
            if line.lstrip().startswith('#') and FORBIDDEN.search(line) and not line.lstrip().startswith('#|'):
                out.append(f'cell {i}: cites an internal document ({FORBIDDEN.search(line).group(0)!r})')
        if _is_export(d):
            if pending: out.append(f'cell {pending[0]}: `{pending[1]}` has no example cell before the next exported cell')
            pending = None
            defs = _defs(src)
            if len(defs) > 1: out.append(f'cell {i}: {len(defs)} definitions in one exported cell ({", ".join(n for n, _ in defs)})')
            n = len(src.splitlines())
            if n > MAX_LINES: out.append(f'cell {i}: exported cell of {n} lines (at most {MAX_LINES})')
            pub = [n for n, p in defs if p]
            if pub: pending = (i, pub[0])
        elif src.strip() and not d & {'hide', 'default_exp'}:
            pending = None
    if pending: out.append(f'cell {pending[0]}: `{pending[1]}` has no example cell after it')
    if docments and module: out += [f'module {module}: {s}' for s in check_docments(module)]
    return out


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    paths = [Path(a) for a in args] or sorted((ROOT / 'nbs').glob('*.ipynb'))
    sys.path.insert(0, str(ROOT))
    total = 0
    for p in paths:
        probs = check_notebook(p)
        total += len(probs)
        for s in probs: print(f'{p.name}: {s}')
    print(f'{len(paths)} notebooks, {total} breaches of the anchors\' shape', file=sys.stderr)
    return 1 if total else 0


if __name__ == '__main__': sys.exit(main())
