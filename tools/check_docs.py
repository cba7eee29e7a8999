#!/usr/bin/env python3
"""Open every page of the built site (`_docs/`, from `make docs`) in headless Chromium and check it as a reader would.

For each HTML page: it loads (`document.readyState` complete, a title, a non-empty main text, no error shown by a
cell); each image is displayed (loaded, with a natural width > 0); each link resolves: a link to another page or file
of the site points at a file that exists, and an anchor (`page.html#name`, `#name`) at an element that has that id or
name. Addresses outside the site (https://...) are listed, not fetched: these machines have no network.

Needs Chromium and ChromeDriver (Debian: `apt-get install chromium chromium-driver`) and selenium (`pip install -e
'.[docs]'`); `make docs-check` runs it. Exits 1 naming every page and what failed on it."""
import argparse, json, sys
from pathlib import Path
from urllib.parse import urlparse, unquote

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync', '--allow-file-access-from-files']

PAGE_JS = """
const imgs = [...document.images].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}));
const links = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'));
const ids = [...document.querySelectorAll('[id],[name]')].map(e => e.id || e.getAttribute('name'));
const main = document.querySelector('main');
return {ready: document.readyState, title: document.title, text: main ? main.innerText.length : 0,
        errors: document.querySelectorAll('pre.error').length, imgs, links, ids};
"""


def driver(chromium='/usr/bin/chromium', chromedriver='/usr/bin/chromedriver'):
    "Headless Chromium through ChromeDriver (the system's: selenium's own driver download is never used)."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    for exe in (chromium, chromedriver):
        if not Path(exe).exists(): sys.exit(f"{exe}: not found; install Debian's chromium and chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for f in FLAGS: opts.add_argument(f)
    return webdriver.Chrome(service=Service(chromedriver), options=opts)


def check(site: Path) -> dict:
    "Every page's problems (page name -> list of messages); an empty list is a page that passed."
    pages = sorted(site.glob('*.html'))
    if not pages: sys.exit(f"{site}: no HTML pages; run `make docs` first")
    d, seen, report = driver(), {}, {}
    try:
        for p in pages:
            d.get(p.resolve().as_uri())
            seen[p.name] = d.execute_script(PAGE_JS)
    finally: d.quit()
    for name, r in seen.items():
        bad = []
        if r['ready'] != 'complete': bad.append(f"did not finish loading ({r['ready']})")
        if not r['title'] or r['text'] < 200: bad.append(f"empty page (title {r['title']!r}, {r['text']} characters)")
        if r['errors']: bad.append(f"{r['errors']} cell error(s) shown")
        bad += [f"image not displayed: {i['src']}" for i in r['imgs'] if not i['ok']]
        for href in r['links']:
            u = urlparse(href)
            if u.scheme in ('http', 'https', 'mailto'): continue
            target = name if not u.path else unquote(u.path)
            f = (site / target).resolve()
            if not f.exists(): bad.append(f"broken link: {href}"); continue
            if u.fragment and f.suffix == '.html' and f.name in seen and u.fragment not in seen[f.name]['ids']:
                bad.append(f"missing anchor: {href}")
        report[name] = bad
    return dict(pages=report, images={n: len(r['imgs']) for n, r in seen.items()},
                external={n: sorted({h for h in r['links'] if urlparse(h).scheme in ('http', 'https')}) for n, r in seen.items()})


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('site', nargs='?', default=str(ROOT / '_docs'))
    ap.add_argument('--json', help="also write the report here")
    a = ap.parse_args()
    rep = check(Path(a.site))
    if a.json: Path(a.json).write_text(json.dumps(rep, indent=1))
    n_bad = sum(bool(v) for v in rep['pages'].values())
    for name, bad in rep['pages'].items():
        print(f"{'FAIL' if bad else 'ok  '} {name}: {rep['images'][name]} images, {len(rep['external'][name])} external links"
              + ''.join(f"\n     {b}" for b in bad))
    print(f"{len(rep['pages']) - n_bad} of {len(rep['pages'])} pages open with their images and links")
    sys.exit(1 if n_bad else 0)
