"""Progress-bar debris out of the notebooks' stored outputs: fastprogress leaves a <style> block and
empty HTML displays per bar, tqdm leaves widgets (and their saved state in the notebook's metadata)
or lines of █ and carriage returns. They say nothing in the docs and change on every run.

    python tools/clean_outputs.py            # clean every notebook in nbs/ in place
    python tools/clean_outputs.py --check    # exit 1 naming the notebooks that still carry debris (a gate test runs this)
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAR = re.compile(r'[█▉▊▋▌▍▎▏]|\r')
TQDM = re.compile(r'\d+%\||\[\d\d:\d\d')  # what a tqdm widget says in plain text: "labels:  40%|… [00:01<00:02, …]"


def is_debris(o:dict)->bool:
    "A progress bar's output: fastprogress's HTML (its style block, or an emptied bar), a tqdm widget or a tqdm stream."
    data = o.get('data', {})
    if 'application/vnd.jupyter.widget-view+json' in data and TQDM.search(''.join(data.get('text/plain', ''))): return True
    if o.get('output_type') == 'display_data' and ''.join(data.get('text/plain', '')) == '<IPython.core.display.HTML object>':
        html = ''.join(data.get('text/html', ''))
        return not html.strip() or 'progress' in html
    return o.get('output_type') == 'stream' and o.get('name') == 'stderr' and bool(BAR.search(''.join(o.get('text', ''))))


def clean(path:Path, write:bool=True)->int:
    "Drop the debris from one notebook (and the saved state of widgets no output shows); the number of things dropped."
    nb, n = json.loads(path.read_text(encoding='utf-8')), 0
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        kept = [o for o in c.get('outputs', []) if not is_debris(o)]
        n += len(c['outputs']) - len(kept)
        c['outputs'] = kept
    views = any('application/vnd.jupyter.widget-view+json' in o.get('data', {}) for c in nb['cells'] for o in c.get('outputs', []))
    if 'widgets' in nb['metadata'] and not views: del nb['metadata']['widgets']; n += 1  # the state of widgets no output shows
    if n and write: path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')
    return n


if __name__ == '__main__':
    check = '--check' in sys.argv
    paths = [Path(a) for a in sys.argv[1:] if a != '--check'] or sorted((ROOT/'nbs').glob('*.ipynb'))
    dirty = {p.name: n for p in paths if (n := clean(p, write=not check))}
    if check and dirty:
        sys.exit(f'progress-bar debris in stored outputs: {dirty} — run `python tools/clean_outputs.py`')
    if dirty: print(f'cleaned {dirty}')
