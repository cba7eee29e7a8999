"""The documentation site's fallback builder (tools/build_docs.py, what `make docs` runs without Quarto).

Opening the pages in headless Chromium (`make docs-check`, tools/check_docs.py) needs Debian's chromium, which CI does
not install; here the built files are checked as text: every page and its Markdown twin exist, show_doc sections are
there, export cells are hidden, links to notebooks point at pages, and every local link and image resolves."""
import re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
import build_docs


def test_split_imports():
    nb = dict(cells=[dict(cell_type='code', source='import numpy as np\nfrom a.b import c, d\nx = np.arange(3)', outputs=[], metadata={}),
                     dict(cell_type='code', source='#| export\nimport os\ndef f(): pass', outputs=[], metadata={}),
                     dict(cell_type='code', source='import os', outputs=[], metadata={})])
    assert build_docs._split_imports(nb) == 1
    assert [c['source'] for c in nb['cells']] == ['#| include: false\nimport numpy as np\nfrom a.b import c, d', 'x = np.arange(3)',
                                                  '#| export\nimport os\ndef f(): pass', 'import os']


def test_options():
    assert build_docs._options('#| echo: false\n#| output: asis\nshow_doc(f)') == ({'echo': 'false', 'output': 'asis'}, 'show_doc(f)')
    assert build_docs._options('#|hide\nx = 1') == ({'hide': True}, 'x = 1')


def test_build_pages():
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'build_docs.py'), '--no-execute', 'index.ipynb', '06a_select.ipynb'],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    docs = ROOT / '_docs'
    assert sorted(p.name for p in docs.glob('*.html')) == ['index.html', 'select.html']
    sel = (docs / 'select.html').read_text()
    assert 'id="classify"' in sel and 'id="candidates"' in sel  # show_doc of the exported functions
    assert '#| export' not in sel and '_check_cycles' not in sel  # export cells are hidden, as on an nbdev site
    assert (docs / 'select.html.md').read_text().startswith('# select:')  # what the module docstrings link to
    idx = (docs / 'index.html').read_text()
    refs = re.findall(r'(?:src|href)="([^"#]+)', idx)
    local = [u for u in refs if not re.match(r'[a-z]+:', u)]
    assert any(u.endswith('.png') for u in local)  # the demo figures are shown
    assert [u for u in local if not (docs / u).is_file()] == []
