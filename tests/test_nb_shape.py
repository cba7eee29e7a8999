"""The notebooks keep the anchors' shape (tools/check_nb_shape.py): one definition per exported cell, an example after
each public definition, docments on every public parameter, no citations of documents a reader does not have."""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
import check_nb_shape as shape


def _write(tmp_path, *cells):
    nb = dict(cells=[dict(cell_type=t, source=s, metadata={}, **({'outputs': []} if t == 'code' else {})) for t, s in cells],
              metadata={}, nbformat=4, nbformat_minor=5)
    p = tmp_path / 'x.ipynb'; p.write_text(json.dumps(nb)); return p


def test_rules_catch_each_breach(tmp_path):
    good = _write(tmp_path, ('markdown', 'Adds two numbers.'), ('code', '#| export\ndef add(a, b): return a + b'),
                  ('code', 'test_eq(add(1, 2), 3)'))
    assert shape.check_notebook(good, docments=False) == []
    two = _write(tmp_path, ('code', '#| export\ndef f(): pass\ndef g(): pass'), ('code', 'f()'))
    assert any('2 definitions' in s for s in shape.check_notebook(two, docments=False))
    hidden = _write(tmp_path, ('code', '#| export\ndef f(): pass'), ('code', '#| hide\nf()'), ('code', '#| export\ndef _g(): pass'))
    assert [s for s in shape.check_notebook(hidden, docments=False) if 'no example' in s] != []  # a hidden cell is no example
    private = _write(tmp_path, ('code', '#| export\ndef _g(): pass'), ('code', '#| export\ndef f(): pass'), ('code', 'f()'))
    assert shape.check_notebook(private, docments=False) == []  # a private helper needs no example of its own
    long = _write(tmp_path, ('code', '#| export\n' + 'x = 1\n' * (shape.MAX_LINES + 1)))
    assert any('lines' in s for s in shape.check_notebook(long, docments=False))
    cites = _write(tmp_path, ('markdown', 'As SPEC section 2 says, and issue 7.'))
    assert len(shape.check_notebook(cites, docments=False)) == 2
    assert shape.check_notebook(_write(tmp_path, ('markdown', 'Read `spec-*.fits.gz` files.')), docments=False) == []


def test_missing_docments():
    def f(a:int, # documented
          b=0): pass
    def g(a:int, # documented
          *args, **kwargs): pass
    assert shape._missing_docments(f) == ['b'] and shape._missing_docments(g) == []


def test_notebooks_keep_the_shape():
    bad = [f'{p.name}: {s}' for p in sorted((ROOT / 'nbs').glob('*.ipynb')) for s in shape.check_notebook(p)]
    assert bad == [], '\n'.join(bad[:40])
