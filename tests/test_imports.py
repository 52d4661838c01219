"The book's one-way rule, enforced: a module imports only modules of earlier notebooks (at the top or inside a function)."
import ast, json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def book_order()->dict:
    "{module: the stem of the notebook that exports it}; notebooks sort by name, as in the book's table of contents."
    order = {}
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        for c in json.loads(nb.read_text(encoding='utf-8'))['cells']:
            m = re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M)
            if m: order[m.group(1)] = nb.stem; break
    return order


def pillsnap_imports(source:str)->list:
    "(line, module) for every import of a pillsnap module in `source`, wherever it sits."
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: out.append((node.lineno, node.module.split('.')[0]))
            elif node.level == 1 or node.module == 'pillsnap': out += [(node.lineno, a.name) for a in node.names]
            elif node.module and node.module.startswith('pillsnap.'): out.append((node.lineno, node.module.split('.')[1]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split('.')[1]) for a in node.names if a.name.startswith('pillsnap.')]
    return out


def backward_violations(order:dict, modules:dict)->list:
    "Imports of a module whose notebook does not come before the importer's ({module: source} in, messages out)."
    bad = []
    for mod, source in modules.items():
        for line, target in pillsnap_imports(source):
            if target in order and not order[target] < order[mod]:
                bad.append(f'pillsnap/{mod}.py:{line} imports {target} ({order[target]}), which does not come before {order[mod]}')
    return bad


def test_every_module_imports_only_earlier_chapters():
    order = book_order()
    modules = {m: (ROOT/'pillsnap'/f'{m}.py').read_text(encoding='utf-8') for m in order}
    assert len(order) >= 12 and order['io'] < order['synth'] and order['runtime'] < order['pipeline']
    assert backward_violations(order, modules) == []


def test_the_gate_sees_lazy_and_relative_imports():
    order = {'config': '00a_config', 'io': '00_io', 'pipeline': '05f_infer.pipeline', 'export': '07_ship.export'}
    source = ('from .io import write_json\nfrom . import config\n'
              'def f():\n    from pillsnap.export import onnx_meta\n    import pillsnap.export\n')
    assert backward_violations(order, {'pipeline': source}) == [
        'pillsnap/pipeline.py:4 imports export (07_ship.export), which does not come before 05f_infer.pipeline',
        'pillsnap/pipeline.py:5 imports export (07_ship.export), which does not come before 05f_infer.pipeline']
    assert backward_violations(order, {'export': source.replace('export', 'pipeline')}) == []


def private_imports(modules:dict)->list:
    "`module: name` for each private name (`_x`) one pillsnap module imports from another."
    bad = []
    for mod, source in modules.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or '').startswith('pillsnap')):
                bad += [f'{mod}: {a.name}' for a in node.names if a.name.startswith('_')]
    return bad


def test_no_private_name_crosses_a_module():
    assert private_imports({'serve': 'from .data import _pil_open, photo_pixels\n'}) == ['serve: _pil_open']
    modules = {m: (ROOT/'pillsnap'/f'{m}.py').read_text(encoding='utf-8') for m in book_order()}
    assert private_imports(modules) == []


SERVING = ('model', 'yolo', 'metrics', 'runtime', 'retrieval', 'gallery', 'pipeline', 'export', 'release', 'serve')


def test_what_serving_loads_never_imports_the_training_code():
    "The service, the packer, the exporter and the predictor stand on `model`: importing them loads neither fastai nor the training chapters."
    import subprocess, sys
    code = ('import sys\n' + ''.join(f'import pillsnap.{m}\n' for m in SERVING) +
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'fastai' or m in ('pillsnap.callbacks', 'pillsnap.classifier', 'pillsnap.detector')))")
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == '[]'


PARTS = {0: 'foundations', 1: 'synth', 2: 'data', 3: 'model', 4: 'train', 5: 'infer', 6: 'judge', 7: 'ship', 8: 'run'}
MAY_USE = {'foundations': set(), 'synth': {'foundations'}, 'data': {'foundations', 'synth'},
           'model': {'foundations', 'data'}, 'train': {'foundations', 'synth', 'data', 'model'},
           # serving loads models, never trains them: the predictor, the export and the service stand on `model`
           'infer': {'foundations', 'data', 'model'}, 'judge': {'foundations', 'data', 'model', 'train', 'infer'},
           'ship': {'foundations', 'data', 'model', 'infer'},  # a release, an export or the service never runs a judgement
           'run': set(PARTS.values())}


def part_of(stem:str)->str:
    "The part a chapter belongs to, by its number: `05f_infer.pipeline` → infer."
    return PARTS[int(stem[:2])]


def part_violations(order:dict, modules:dict)->list:
    "Imports from a part the importer's part may not use ({module: source} in, messages out)."
    bad = []
    for mod, source in modules.items():
        mine = part_of(order[mod])
        for line, target in pillsnap_imports(source):
            if target in order and part_of(order[target]) != mine and part_of(order[target]) not in MAY_USE[mine]:
                bad.append(f'pillsnap/{mod}.py:{line} ({mine}) imports {target} ({part_of(order[target])})')
    return bad


def test_every_part_uses_only_the_parts_below_it():
    order = book_order()
    assert {part_of(s) for s in order.values()} == set(PARTS.values())
    # the predictor reaching into the training chapter is what the rule refuses
    assert part_violations({'pipeline': '05f_infer.pipeline', 'detector': '04b_train.detector'},
                           {'pipeline': 'from .detector import build_detector\n'}) == [
        'pillsnap/pipeline.py:1 (infer) imports detector (train)']
    planted = {'export': 'from .evaluate import match_boxes\n'}
    assert part_violations({'export': '07_ship.export', 'evaluate': '06_judge.evaluate'}, planted) == [
        'pillsnap/export.py:1 (ship) imports evaluate (judge)']
    modules = {m: (ROOT/'pillsnap'/f'{m}.py').read_text(encoding='utf-8') for m in order}
    assert part_violations(order, modules) == []
