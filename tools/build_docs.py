#!/usr/bin/env python3
"""Build the documentation site into `_docs/` without Quarto (which `nbdev-docs` needs and these machines lack).

`make docs` runs `nbdev-docs` where Quarto is installed and this script otherwise. The steps are nbdev's own as far
as they go without Quarto:
1. the notebooks are copied into `_exec/` (beside `nbs/` so that relative paths such as `../../shared` hold); the
   outputs and figures saved in them are used where they are current (`tools/execute_nbs.py --check`), and a notebook
   whose outputs are stale or missing is executed there first (`--execute`: every notebook; `--no-execute`: none);
2. nbdev's processing (`nbdev.serve.proc_nbs`, what `nbdev-docs` runs before Quarto) turns them into `_proc/`:
   `show_doc` cells for every exported function, export cells hidden, the front matter (title, description and
   `output-file`, e.g. `select.html` for `06a_select.ipynb`);
3. each processed notebook becomes `<output-file>` (HTML, with a navigation sidebar) and `<output-file>.md` (the
   Markdown page the modules' docstrings link to), applying the cell options Quarto would (`#| echo: false`,
   `#| output: asis`, `#| include: false`, `#| hide`). Figures are written as PNG files beside the page; local files
   that a page links to or shows (for example `../docs/demo/*.png`) are copied into `_docs/files/`.

`tools/check_docs.py` then opens every page in headless Chromium and checks that it loads, that its images display and
that its links resolve."""
import argparse, base64, html, json, re, shutil, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS, EXEC, PROC, DOCS = ROOT / 'nbs', ROOT / '_exec', ROOT / '_proc', ROOT / '_docs'
SITE_TITLE = 'cemp-hfs'
CSS = """
body { margin: 0; font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; line-height: 1.5; color: #212529; }
nav { position: fixed; top: 0; left: 0; bottom: 0; width: 15rem; overflow-y: auto; background: #f4f6f8; padding: 1rem; box-sizing: border-box; font-size: 0.9rem; }
nav a { display: block; padding: 0.2rem 0; color: #2c3e50; text-decoration: none; }
nav a.current { font-weight: bold; color: #2780e3; }
nav .site { font-size: 1.2rem; font-weight: bold; margin-bottom: 0.8rem; }
main { margin-left: 16rem; max-width: 60rem; padding: 1rem 2rem 4rem; }
pre { background: #f8f8f8; padding: 0.6rem; overflow-x: auto; font-size: 0.85rem; border-radius: 4px; }
div.output pre { background: #fff; border-left: 3px solid #ddd; }
div.output img { max-width: 100%; }
main img { max-width: 100%; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.85rem; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.5rem; }
.description { color: #555; font-size: 1.1rem; }
.error { color: #b00; }
"""


_IMPORT = re.compile(r'^(import\s+[\w., ]+?(\s+as\s+\w+)?|from\s+[\w.]+\s+import\s+[^(]+)\s*(#.*)?$')


def _split_imports(nb: dict) -> int:
    """Put the import lines of a test cell that also does other work into a cell of their own, before it.

    nbdev's processing executes every cell that holds an import (to have the names `show_doc` needs), so a cell
    that imports and then uses a name made in another cell fails there. Returns the number of cells split."""
    cells, n = [], 0
    for c in nb['cells']:
        src = ''.join(c['source']) if c['cell_type'] == 'code' else ''
        lines = src.split('\n')
        imp = [l for l in lines if _IMPORT.match(l)]
        if not imp or re.search(r'^#\|\s*export', src, re.M) or len(imp) == len([l for l in lines if l.strip() and not l.startswith('#|')]):
            cells.append(c); continue
        n += 1
        cells.append(dict(cell_type='code', execution_count=None, metadata={}, outputs=[], source='#| include: false\n' + '\n'.join(imp)))
        cells.append(dict(c, source='\n'.join(l for l in lines if not _IMPORT.match(l))))
    nb['cells'] = cells
    return n


def stage(names):
    "Copy the notebooks into `_exec/` (beside `nbs/`, so relative paths hold) with import lines in cells of their own."
    if EXEC.exists(): shutil.rmtree(EXEC)
    shutil.copytree(NBS, EXEC, ignore=shutil.ignore_patterns('_*', '.*'))
    for f in NBS.glob('_*.yml'): shutil.copy2(f, EXEC / f.name)
    for f in EXEC.glob('*.ipynb'):
        if f.name not in names: f.unlink(); continue
        nb = json.loads(f.read_text())
        if _split_imports(nb): f.write_text(json.dumps(nb, indent=1, ensure_ascii=False))


def execute(names, timeout=1200, workers=2):
    "Run the staged notebooks in `_exec/` (cwd there, as `nbdev-test` runs them in `nbs/`) and store their outputs."
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(workers) as ex:
        for name, secs in ex.map(_execute_one, names, [timeout] * len(names)):
            print(f"executed {name} in {secs:.0f} s", file=sys.stderr, flush=True)


def _execute_one(name, timeout):
    "Execute one staged notebook as tools/execute_nbs.py does (inline PNG figures, one torch thread) and save it."
    sys.path.insert(0, str(ROOT / 'tools'))
    from execute_nbs import execute as run_nb
    t0, path = time.perf_counter(), EXEC / name
    path.write_text(json.dumps(run_nb(path, timeout), indent=1, ensure_ascii=False))
    return name, time.perf_counter() - t0


def process(src: Path) -> Path:
    "nbdev's processing of the notebooks in `src` into `_proc/` (what `nbdev-docs` hands to Quarto)."
    from nbdev.serve import proc_nbs
    if PROC.exists(): shutil.rmtree(PROC)
    return proc_nbs(path=str(src), n_workers=1, force=True)


def _front_matter(cell) -> dict:
    import yaml
    src = ''.join(cell['source']).strip()
    if cell['cell_type'] != 'raw' or not src.startswith('---'): return {}
    return yaml.safe_load(src.strip('-').strip()) or {}


def _options(src: str):
    "The Quarto/nbdev cell options (`#| key: value`, `#| hide`) of a code cell, and its source without them."
    opts, lines = {}, src.split('\n')
    while lines and lines[0].startswith('#|'):
        body = lines.pop(0)[2:].strip()
        key, _, val = body.partition(':')
        for k in key.split(): opts[k.strip()] = val.strip() if val else True
    return opts, '\n'.join(lines).strip('\n')


class Page:
    "One page of the site: its notebook, front matter and where it goes."
    def __init__(self, path: Path):
        self.nb = json.loads(path.read_text())
        self.name = path.name
        cells = self.nb['cells']
        self.meta = _front_matter(cells[0]) if cells else {}
        self.out = self.meta.get('output-file') or path.with_suffix('.html').name
        if self.name == 'index.ipynb': self.out = 'index.html'
        self.title = self.meta.get('title') or path.stem


def _local_target(ref: str, page_dir: Path):
    "The local file a relative link or image source points at, if it is one (not a URL, not an anchor)."
    if not ref or re.match(r'^[a-z][a-z0-9+.-]*:', ref, re.I) or ref.startswith(('#', '/')): return None
    path = ref.split('#')[0].split('?')[0]
    if not path: return None
    f = (page_dir / path).resolve()
    return f if f.is_file() else None


def _rewrite_refs(text: str, page_dir: Path, outs: dict, copied: dict, md: bool) -> str:
    "Links to notebooks go to their pages; other local files are copied into `_docs/files/` and linked there."
    def fix(ref):
        anchor = '#' + ref.split('#', 1)[1] if '#' in ref else ''
        base = ref.split('#')[0]
        if base.endswith('.ipynb') and Path(base).name in outs:
            return outs[Path(base).name] + ('.md' if md else '') + anchor
        f = _local_target(ref, page_dir)
        if f is None: return ref
        try: rel = f.relative_to(ROOT)
        except ValueError: return ref  # outside the repository (e.g. ../shared): leave as written
        dest = DOCS / 'files' / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
        copied[str(rel)] = str(dest.relative_to(DOCS))
        return 'files/' + rel.as_posix() + anchor
    text = re.sub(r'(\]\()([^)\s]+)', lambda m: m.group(1) + fix(m.group(2)), text)  # markdown links and images
    return re.sub(r'((?:src|href)=["\'])([^"\']+)', lambda m: m.group(1) + fix(m.group(2)), text)  # raw HTML


def _md2html(text: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    return markdown2html_mistune(text)


def _highlight(code: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer
    return highlight(code, PythonLexer(), HtmlFormatter(cssclass='highlight'))


def _text(out) -> str:
    t = out.get('text', out.get('data', {}).get('text/plain', ''))
    return ''.join(t) if isinstance(t, list) else t


_ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')


def _outputs(cell, opts, fig_dir: Path, stem: str, counter: list):
    "Yield (html, markdown) for each output of a code cell; figures are written as PNG files."
    for out in cell.get('outputs', []):
        kind = out['output_type']
        if kind == 'stream':
            t = _ANSI.sub('', _text(out))
            if out.get('name') == 'stderr' and not t.strip(): continue
            yield f'<pre>{html.escape(t)}</pre>', f'```\n{t.rstrip()}\n```'
        elif kind == 'error':
            t = _ANSI.sub('', '\n'.join(out.get('traceback', [])))
            yield f'<pre class="error">{html.escape(t)}</pre>', f'```\n{t}\n```'
        else:
            data = out.get('data', {})
            if 'image/png' in data:
                counter[0] += 1
                fig_dir.mkdir(parents=True, exist_ok=True)
                name = f'{stem}_files/figure-{counter[0]}.png'
                (DOCS / name).write_bytes(base64.b64decode(''.join(data['image/png'])))
                yield f'<img src="{name}" alt="figure {counter[0]}">', f'![figure {counter[0]}]({name})'
            elif 'text/markdown' in data:
                t = ''.join(data['text/markdown'])
                yield _md2html(t), t
            elif 'text/html' in data:
                t = ''.join(data['text/html'])
                yield t, t
            elif 'text/plain' in data:
                t = _text(out)
                yield f'<pre>{html.escape(t)}</pre>', f'```\n{t}\n```'


def render(page: Page, pages: list, outs: dict, copied: dict):
    "Write the HTML and the Markdown version of one processed notebook."
    page_dir = NBS  # links in the notebooks are relative to nbs/
    stem = Path(page.out).stem
    body, md, counter = [], [f"# {page.title}"], [0]
    if page.meta.get('description'):
        body.append(f'<div class="description">{_md2html(str(page.meta["description"]))}</div>')
        md.append(f'> {page.meta["description"]}')
    for cell in page.nb['cells']:
        src = ''.join(cell['source'])
        if cell['cell_type'] == 'raw': continue
        if cell['cell_type'] == 'markdown':
            if 'AUTOGENERATED' in src and src.strip().startswith('<!--'): continue
            t = _rewrite_refs(src, page_dir, outs, copied, md=False)
            body.append(_md2html(t)); md.append(_rewrite_refs(src, page_dir, outs, copied, md=True))
            continue
        opts, code = _options(src)
        if opts.get('include') == 'false' or 'hide' in opts or opts.get('echo') == 'false' and not cell.get('outputs'):
            continue
        if opts.get('echo') != 'false' and code:
            body.append(_highlight(code)); md.append(f'```python\n{code}\n```')
        parts = list(_outputs(cell, opts, DOCS / f'{stem}_files', stem, counter))
        if parts:
            if opts.get('output') == 'asis': body.extend(h for h, _ in parts)
            else: body.append('<div class="output">' + '\n'.join(h for h, _ in parts) + '</div>')
            md.extend(m for _, m in parts)
    nav = '\n'.join(f'<a href="{p.out}"{" class=current" if p is page else ""}>{html.escape(p.title)}</a>' for p in pages)
    doc = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width, initial-scale=1">'
           f'<title>{html.escape(page.title)} – {SITE_TITLE}</title><link rel="stylesheet" href="site.css"></head>\n'
           f'<body><nav><div class="site"><a href="index.html">{SITE_TITLE}</a></div>{nav}</nav>\n'
           f'<main><h1>{html.escape(page.title)}</h1>\n' + '\n'.join(body) + '\n</main></body></html>\n')
    (DOCS / page.out).write_text(doc)
    (DOCS / (page.out + '.md')).write_text('\n\n'.join(md) + '\n')


def stale(names) -> list:
    "The notebooks among `names` whose saved outputs are missing or not current (tools/execute_nbs.py --check)."
    sys.path.insert(0, str(ROOT / 'tools'))
    from execute_nbs import check, package_stamp
    pkg = package_stamp()  # hashed once, not once per notebook
    return [n for n in names if check([NBS / n], pkg)]


def build(execute_nbs=None, names=None):
    "Build `_docs/` from the notebooks `names` (all by default), executing all (True), none (False) or the stale (None)."
    names = names or sorted(p.name for p in NBS.glob('*.ipynb'))
    stage(names)
    run = names if execute_nbs else [] if execute_nbs is False else stale(names)
    if run: print(f"executing {len(run)} notebooks whose saved outputs are not current: {', '.join(run)}", file=sys.stderr)
    if run: execute(run)
    process(EXEC)
    if DOCS.exists(): shutil.rmtree(DOCS)
    DOCS.mkdir()
    from pygments.formatters import HtmlFormatter
    (DOCS / 'site.css').write_text(CSS + HtmlFormatter(cssclass='highlight').get_style_defs('.highlight'))
    pages = [Page(PROC / n) for n in names if (PROC / n).exists()]
    pages.sort(key=lambda p: (p.name != 'index.ipynb', p.name))
    outs, copied = {p.name: p.out for p in pages}, {}
    for p in pages: render(p, pages, outs, copied)
    (DOCS / '.nojekyll').write_text('')
    print(f"wrote {len(pages)} pages (HTML and Markdown) and {len(copied)} linked files into {DOCS}", file=sys.stderr)
    return pages


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument('--no-execute', action='store_true', help="use the outputs saved in the notebooks, current or not")
    g.add_argument('--execute', action='store_true', help="execute every notebook (default: only those whose saved outputs are stale)")
    ap.add_argument('notebooks', nargs='*', help="only these notebooks (names in nbs/; default: all)")
    a = ap.parse_args()
    build(True if a.execute else False if a.no_execute else None, a.notebooks or None)
