"`make docs` builds the whole site offline: a page per notebook, every internal link and anchor resolves, API pages list the exported names, nothing loads from the network."
import importlib, inspect, json, re, subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import BIN, ROOT


class Page(HTMLParser):
    "The ids, the links (href) and the loaded resources (src, stylesheets) of one HTML page."
    def __init__(self, text):
        super().__init__(); self.ids, self.links, self.loads = set(), [], []
        self.feed(text)
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('href'): self.links.append(a['href'])
        if a.get('src'): self.loads.append(a['src'])
        if tag == 'link' and a.get('href'): self.loads.append(a['href'])


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    "The site built into a folder of this test process (`tools/docs.py --out`): test processes never read a site another is rebuilding."
    out = tmp_path_factory.mktemp('docs')/'_docs'
    r = subprocess.run([str(BIN/'python'), 'tools/docs.py', '--out', str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


@pytest.fixture(scope='module')
def site(built): return {p.name: Page(p.read_text(encoding='utf-8')) for p in built.glob('*.html')}


def modules()->dict:
    "{module: notebook} for every notebook that exports a module."
    out = {}
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(json.loads(nb.read_text(encoding='utf-8'))['cells'][0]['source']), re.M)
        if m: out[m.group(1)] = nb.stem
    return out


def pages()->set:
    "The page nbdev names after each markdown-only notebook (no `default_exp`): `90_benchmarks.ipynb` → `benchmarks.html`."
    exports = set(modules().values())
    return {re.sub(r'^\d+[a-zA-Z0-9]*_', '', nb.stem.lower()) + '.html' for nb in (ROOT/'nbs').glob('*.ipynb')
            if nb.stem not in exports and nb.stem != 'index'}


def test_every_notebook_has_its_page(site):
    assert {'benchmarks.html', 'operations.html'} <= pages()
    chapters = {re.sub(r'^\d+[a-zA-Z0-9]*_', '', nb) + '.html' for nb in modules().values()}  # 02_data.aihub → data.aihub.html
    assert 'data.aihub.html' in chapters and set(site) == chapters | pages() | {'index.html'}


def test_every_internal_link_and_anchor_resolves(site, built):
    broken = []
    for name, page in site.items():
        for href in page.links:
            u = urlsplit(href)
            if u.scheme or href.startswith('mailto:'): continue
            target = name if not u.path else Path(u.path.lstrip('/')).name if u.path.startswith('/') else u.path
            if not (built/target).exists(): broken.append(f'{name}: {href} (no {target})')
            elif u.fragment and target in site and u.fragment not in site[target].ids: broken.append(f'{name}: {href} (no #{u.fragment} in {target})')
    assert broken == [], broken


def test_nothing_loads_from_the_network(site, built):
    remote = [f'{n}: {src}' for n, p in site.items() for src in p.loads if urlsplit(src).scheme in ('http', 'https') or src.startswith('//')]
    css = [f'{f.name}: {m}' for f in built.rglob('*.css') for m in re.findall(r'@import\s+url\(["\']?(?:https?:)?//[^)]*', f.read_text(errors='ignore'))]
    assert remote + css == []


def test_api_pages_list_the_exported_functions_and_classes(site):
    missing = []
    for mod, nb in modules().items():
        m, page = importlib.import_module(f'pillsnap.{mod}'), re.sub(r'^\d+[a-zA-Z0-9]*_', '', nb) + '.html'
        for name in getattr(m, '__all__', []):
            obj = getattr(m, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, '__module__', '') == m.__name__ and name.lower() not in site[page].ids:
                missing.append(f'{mod}.{name}')
    assert missing == []
