#!/usr/bin/env python3
"""Render README.md from nbs/index.ipynb without Quarto (which nbdev-readme needs and these machines lack).

Markdown cells are copied; code cells are shown as Python blocks without their `#|` directives, except cells marked
`#| hide`; stored outputs are not shown (notebooks are committed clean). `--check` fails if README.md is stale."""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTE = "<!-- Generated from nbs/index.ipynb by `make readme`: edit the notebook, not this file. -->\n\n"

def _directives(src):
    return {m.group(1) for m in re.finditer(r'^#\|\s*([\w-]+)', src, re.M)}

def render(nb_path=ROOT / 'nbs' / 'index.ipynb') -> str:
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for cell in nb['cells']:
        src = ''.join(cell['source']).strip('\n')
        if cell['cell_type'] == 'markdown': parts.append(src)
        elif cell['cell_type'] == 'code':
            if _directives(src) & {'hide', 'exporti'}: continue
            code = '\n'.join(l for l in src.split('\n') if not l.startswith('#|')).strip('\n')
            if code: parts.append(f"```python\n{code}\n```")
    return NOTE + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    out, text = ROOT / 'README.md', render()
    if '--check' in sys.argv:
        if not out.exists() or out.read_text() != text:
            sys.exit("README.md is not the rendering of nbs/index.ipynb: run `make readme` and commit it.")
        print("README.md matches nbs/index.ipynb")
    else:
        out.write_text(text); print(f"wrote {out}")
