#!/usr/bin/env python3
"""Render README.md from nbs/index.ipynb without Quarto (which nbdev-readme needs and these machines lack).

Markdown cells are copied; code cells are shown as Python blocks without their `#|` directives, except cells marked
`#| hide`; stored outputs are not shown (notebooks are committed clean). Links and images relative to `nbs/` (for
example `../docs/demo/training.png`, which is right in the notebook and on the site) become absolute addresses in the
repository, so that they work on the repository page and on PyPI alike. `--check` fails if README.md is stale."""
import json, re, sys, tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPO = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['urls']['Repository'].rstrip('/')
RAW = REPO.replace('https://github.com/', 'https://raw.githubusercontent.com/') + '/main/'

def _absolute(md: str) -> str:
    "Markdown links `](../x)` and images `![..](../x)` relative to nbs/ as addresses in the repository."
    md = re.sub(r'(!\[(?:[^\[\]]|\[[^\]]*\])*\]\()\.\./([^)\s]+)', lambda m: m.group(1) + RAW + m.group(2), md)
    return re.sub(r'(\]\()\.\./([^)\s]+)', lambda m: m.group(1) + REPO + '/blob/main/' + m.group(2), md)

NOTE = "<!-- Generated from nbs/index.ipynb by `make readme`: edit the notebook, not this file. -->\n\n"

def _directives(src):
    return {m.group(1) for m in re.finditer(r'^#\|\s*([\w-]+)', src, re.M)}

def render(nb_path=ROOT / 'nbs' / 'index.ipynb') -> str:
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for cell in nb['cells']:
        src = ''.join(cell['source']).strip('\n')
        if cell['cell_type'] == 'markdown': parts.append(_absolute(src))
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
