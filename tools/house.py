"""The house's measurements (issue 38): exported cells over 30 lines, the longest functions, package lines over 120
characters, the modules that load fastai when imported, and README's words. `python tools/house.py [--root DIR]`."""
import argparse, ast, json, re, subprocess, sys
from pathlib import Path

EXPORT = re.compile(r'^#\|\s*export', re.M)


def cells(root:Path)->list:
    "(notebook, lines) of every exported cell."
    out = []
    for nb in sorted((root/'nbs').glob('*.ipynb')):
        for c in json.loads(nb.read_text(encoding='utf-8'))['cells']:
            s = ''.join(c['source'])
            if c['cell_type'] == 'code' and EXPORT.match(s): out.append((nb.stem, len(s.splitlines())))
    return out


def functions(root:Path, n:int=5)->list:
    "The `n` longest function and class definitions of the package: (lines, module.name)."
    out = []
    for p in sorted((root/'pillsnap').glob('*.py')):
        if p.name.startswith('_'): continue
        for node in ast.walk(ast.parse(p.read_text(encoding='utf-8'))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((node.end_lineno - node.lineno + 1, f'{p.stem}.{node.name}'))
    return sorted(out, reverse=True)[:n]


def long_lines(root:Path, width:int=120)->int:
    return sum(len(l) > width for p in (root/'pillsnap').glob('*.py') if p.name != '_modidx.py'
               for l in p.read_text(encoding='utf-8').splitlines())


def fastai_importers(root:Path)->list:
    "The modules whose import loads fastai (each in a fresh interpreter)."
    mods = sorted(p.stem for p in (root/'pillsnap').glob('*.py') if not p.name.startswith('_'))
    code = ('import importlib, sys\nfor m in sys.argv[1:]:\n    before = set(sys.modules)\n'
            "    importlib.import_module('pillsnap.' + m)\n"
            "    print(m, any(k.split('.')[0] == 'fastai' for k in sys.modules))\n    [sys.modules.pop(k) for k in set(sys.modules) - before]")
    out = []
    for m in mods:
        r = subprocess.run([sys.executable, '-c', code, m], cwd=root, capture_output=True, text=True)
        if r.stdout.split()[-1:] == ['True']: out.append(m)
    return out


def resolutions(exp:str, photo:str)->int:
    "How many times `pillsnap predict --exp EXP PHOTO` resolves settings (`load_config` calls), in this process."
    import contextlib, io
    from pillsnap import cli, config
    n, real = [0], config.load_config
    def counted(*a, **k): n[0] += 1; return real(*a, **k)
    config.load_config = counted
    try:
        with contextlib.redirect_stdout(io.StringIO()): cli.main(['predict', '--exp', exp, photo])
    finally: config.load_config = real
    return n[0]


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--root', default=Path(__file__).resolve().parents[1], type=Path)
    ap.add_argument('--predict', nargs=2, metavar=('EXP', 'PHOTO'), help='also count the settings resolutions of one predict')
    args = ap.parse_args(); root = args.root
    c = cells(root)
    print(f'exported cells: {len(c)}, over 30 lines: {sum(n > 30 for _, n in c)}, longest: {max(n for _, n in c)}')
    print('longest functions: ' + ', '.join(f'{name} {n}' for n, name in functions(root)))
    print(f'package lines over 120 characters: {long_lines(root)}')
    imp = fastai_importers(root)
    print(f'modules that load fastai ({len(imp)}): {" ".join(imp)}')
    print(f"README words: {len((root/'README.md').read_text(encoding='utf-8').split())}")
    if args.predict: print(f'settings resolutions per predict: {resolutions(*args.predict)}')
