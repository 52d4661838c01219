"""Write README.md from nbs/index.ipynb without Quarto (nbdev-readme needs Quarto, which these machines lack).

Markdown cells are copied as they are, code cells become fenced Python blocks; `#|` directive lines and
hidden cells are dropped. Links to other notebooks are written in index.ipynb as the docs site needs them,
`[Benchmarks](90_benchmarks.ipynb)` (nbdev and the renderer turn them into `benchmarks.html`), and get their
folder here, `](nbs/90_benchmarks.ipynb)`, so that they resolve from README.md on GitHub too.
`python tools/readme.py --check` exits 1 when README.md is stale."""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NB_LINK = re.compile(r'\]\(([0-9][0-9a-z]*_[\w.-]+\.ipynb(?:#[^)\s]*)?)\)')  # dotted names too: 01_synth.scenes.ipynb
IMAGE_LINK = re.compile(r'\]\(([\w.-]+\.(?:png|jpg))\)')  # a picture beside index.ipynb: ![…](real-tray.jpg)


def nb_links(md:str)->str:
    "Relative links to notebooks (`](90_benchmarks.ipynb#data)`) and pictures as seen from the repository root (`](nbs/90_benchmarks.ipynb#data)`)."
    return IMAGE_LINK.sub(r'](nbs/\1)', NB_LINK.sub(r'](nbs/\1)', md))


def render(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    parts = []
    for cell in json.loads(Path(nb_path).read_text(encoding='utf-8'))['cells']:
        src = ''.join(cell['source'])
        lines = src.splitlines()
        if cell['cell_type'] == 'code':
            if any(l.strip() in ('#| hide', '#|hide') for l in lines): continue
            code = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
            if code: parts.append(f'```python\n{code}\n```')
        else: parts.append(nb_links(src.strip()))
    return '\n\n'.join(parts) + '\n'


if __name__ == '__main__':
    text, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text(encoding='utf-8') != text:
            sys.exit('README.md is out of date with nbs/index.ipynb: run `make readme`')
    else: readme.write_text(text, encoding='utf-8')
