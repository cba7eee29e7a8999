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


import execute_nbs


def _nb(*cells):
    return dict(cells=[dict(cell_type=t, source=s, metadata={}, **({'outputs': []} if t == 'code' else {})) for t, s in cells], metadata={})


def test_outputs_stamp_follows_code_not_prose():
    nb = _nb(('markdown', '# A title'), ('code', 'x = 1\nx'))
    s = execute_nbs.stamp(nb, 'pkg')
    nb['cells'][0]['source'] = '# Another title'
    assert execute_nbs.stamp(nb, 'pkg') == s  # prose does not make the outputs stale
    nb['cells'][1]['source'] = 'x = 2\nx'
    assert execute_nbs.stamp(nb, 'pkg') != s  # code does
    assert execute_nbs.stamp(_nb(('markdown', '# A title'), ('code', 'x = 1\nx')), 'pkg2') != s  # so does the package


def test_outputs_skip_like_nbdev_test():
    assert execute_nbs._skip('#| eval: false\nx = 1', set())
    assert execute_nbs._skip('#| slow\nx = 1', {'slow', 'notest'}) and not execute_nbs._skip('#| slow\nx = 1', set())
    assert not execute_nbs._skip('x = 1\n#| eval: false', set())  # a directive counts only at the top of the cell


def test_outputs_compare_numbers_within_tolerance():
    assert execute_nbs.same_text('MAE 81.23 K, 0.0871 dex', 'MAE 81.24 K, 0.0871 dex')  # last-digit noise
    assert not execute_nbs.same_text('MAE 81.2 K', 'MAE 91.2 K')
    assert not execute_nbs.same_text('CEMP: 12', 'CEMP: 13 ')  # the text around the numbers must agree
    assert not execute_nbs.same_text('48', '49')
    assert execute_nbs._texts(_nb(('code', 'x')))[0] == ''
    nb = _nb(('code', 'f()'))
    nb['cells'][0]['outputs'] = [dict(output_type='stream', name='stdout', text=['took 3.2 s, 512 spectra/s\n'])]
    assert execute_nbs._texts(nb) == ['took <time>, <time>\n']  # elapsed times and rates are not compared


def test_saved_outputs_are_current():
    "Every notebook with code was saved with its outputs after its last change (what `make test` checks first)."
    nbs = sorted((ROOT / 'nbs').glob('*.ipynb'))
    assert execute_nbs.check(nbs) == []


def test_outputs_compare_ignores_scratch_paths():
    a, b = _nb(('code', 'p')), _nb(('code', 'p'))
    a['cells'][0]['outputs'] = [dict(output_type='execute_result', data={'text/plain': ["Path('/tmp/tmpumkwnl2g/ds')"]}, metadata={})]
    b['cells'][0]['outputs'] = [dict(output_type='execute_result', data={'text/plain': ["Path('/tmp/tmpe8fa43v_/ds')"]}, metadata={})]
    assert execute_nbs._texts(a) == execute_nbs._texts(b) == ["Path('<tmp>/ds')"]
