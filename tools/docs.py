"""Build the docs site offline into `_docs/`: `make docs`.

nbdev processes the notebooks into `_proc/` (`show_doc` signatures and docments, hidden cells dropped,
the sidebar from the notebook list). Quarto renders them when it is installed (`nbdev-docs`); where it
is not (it cannot be installed from PyPI or Debian here), smalldocs — a pinned pure-Python renderer of
the same `_quarto.yml` — does. smalldocs names a page after its file and ignores nbdev's `output-file`,
so the notebooks are staged under nbdev's page names first (`00a_config.ipynb` → `config.ipynb` →
`config.html`): the links in `_modidx.py` and the pages' own cross-references resolve either way.
No page loads anything from the network: smalldocs ships Bootstrap, its icons and the search with the site.

`python tools/docs.py --out DIR` builds into another folder. Builds share `_proc/` (nbdev's cache and the staged pages),
so one build at a time holds `.docs.lock`: two at once (two terminals, or two test processes) take turns instead of
deleting each other's staged pages.
"""
import argparse, gc, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]


def process()->Path:
    "nbdev's preprocessing into `_proc/` (no Quarto needed); the folder."
    from nbdev.config import get_config
    from nbdev.quarto import nbdev_sidebar, refresh_quarto_yml
    from nbdev.serve import proc_nbs
    import nbdev.doclinks
    cfg = get_config(); os.chdir(cfg.config_path)
    refresh_quarto_yml(); nbdev.doclinks._build_modidx()
    nbdev_sidebar.__wrapped__(path=cfg.nbs_path)
    # in this process (n_workers=0): the libraries the notebooks import load once. Each notebook leaves an IPython shell whose
    # exit hook runs a full garbage collection, 0.7 s apiece over everything loaded (half a minute at exit): freezing what
    # is alive now keeps those collections small
    proc = Path(proc_nbs(str(cfg.nbs_path), n_workers=0))
    gc.freeze()
    return proc


def page_names(proc:Path)->dict:
    "{notebook file: the page name nbdev gives it} from each processed notebook's `output-file`."
    names = {}
    for nb in sorted(proc.glob('*.ipynb')):
        first = ''.join(json.loads(nb.read_text(encoding='utf-8'))['cells'][0]['source'])
        m = re.search(r'^output-file:\s*(\S+)\.html\s*$', first, re.M)
        names[nb.name] = f'{m.group(1)}.ipynb' if m else nb.name
    return names


def stage(proc:Path, out:Path)->dict:
    "Copy `proc` to `out` with notebooks under their page names and every reference to the old names rewritten."
    names = page_names(proc)
    shutil.rmtree(out, ignore_errors=True); out.mkdir(parents=True)
    rename = lambda text: re.sub('|'.join(re.escape(k) for k in sorted(names, key=len, reverse=True)), lambda m: names[m.group(0)], text)
    for f in proc.iterdir():
        if f.name.startswith(('.', '_docs')) or f.is_dir(): continue
        target = out/names.get(f.name, f.name)
        if f.suffix in ('.ipynb', '.yml', '.md', '.qmd'):  # output-file is done by the rename, and smalldocs warns about the key
            target.write_text(re.sub(r'output-file: \S+\\n', '', rename(f.read_text(encoding='utf-8'))), encoding='utf-8')
        else: shutil.copy2(f, target)
    return names


def render_smalldocs(proc:Path, site:Path)->Path:
    "Render the staged notebooks with smalldocs into `site`."
    staged = proc/'.smalldocs'
    stage(proc, staged)
    r = subprocess.run([str(Path(sys.executable).parent/'smalldocs'), 'render', '--quiet', str(staged)], capture_output=True, text=True)
    if r.returncode: raise SystemExit(f'smalldocs failed:\n{r.stdout}\n{r.stderr}')
    if r.stderr.strip(): print(r.stderr.strip())
    built = staged/'_docs'  # the output-dir nbdev.yml names
    if not built.is_dir(): raise SystemExit(f'smalldocs wrote no {built}: check `project: output-dir` in nbs/nbdev.yml')
    shutil.rmtree(site, ignore_errors=True); site.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), str(site))
    return site


def drop_remote_imports(site:Path)->list:
    "Remove `@import url(https://…)` rules from the site's CSS (Bootswatch themes pull web fonts from Google): pages fall back to system fonts."
    dropped = []
    for css in site.rglob('*.css'):
        text = css.read_text(encoding='utf-8', errors='ignore')
        new = re.sub(r'@import\s+url\(["\']?(?:https?:)?//[^)]*\)\s*;?', lambda m: dropped.append(f'{css.name}: {m.group(0)}') or '', text)
        if new != text: css.write_text(new, encoding='utf-8')
    return dropped


def main(argv=None):
    ap = argparse.ArgumentParser(description='Build the docs site offline.')
    ap.add_argument('--out', type=Path, default=ROOT/'_docs', help='the site folder (default: _docs/ in the checkout)')
    site, t0 = ap.parse_args(argv).out.resolve(), time.perf_counter()
    with FileLock(str(ROOT/'.docs.lock')):
        if shutil.which('quarto'):
            subprocess.run([str(Path(sys.executable).parent/'nbdev-docs')], cwd=ROOT, check=True); by = 'Quarto'
            if site != ROOT/'_docs': shutil.rmtree(site, ignore_errors=True); shutil.copytree(ROOT/'_docs', site)
        else: render_smalldocs(process(), site); by = 'smalldocs (quarto not installed)'
    dropped = drop_remote_imports(site)  # either renderer ships the theme's web-font import
    pages = sorted(p.name for p in site.glob('*.html'))
    print(f'{by} built {len(pages)} pages into {site} in {time.perf_counter() - t0:.0f} s; open {site/"index.html"}'
          + (f'; removed {len(dropped)} remote CSS import(s)' if dropped else ''))

if __name__ == '__main__': main()
