"`pillsnap demo`, the whole job on a tiny dataset: synth, prepare, both models, predictions, export and one served request."
import json, re

import pytest
import yaml

from conftest import run_cli
from pillsnap.config import load_config

pytestmark = pytest.mark.slow


def test_each_run_writes_its_resolved_config_and_a_log(tmp_path):
    exp, data = tmp_path/'exp', tmp_path/'data'
    r = run_cli('demo', f'paths.exp_dir={exp}', f'data.root={data}', 'synth.classes=6', 'synth.per_class=2',
                'synth.combos=3', 'synth.val_per_class=1', 'synth.sheet_classes=6', 'synth.workers=1',
                'classifier.model=test_efficientnet', 'classifier.pretrained=none', 'classifier.img_size=64', 'train.epochs=1',
                'loader.num_workers=0', 'data.paste_photos=4', 'data.paste_val_photos=4', 'data.wild_photos=4',  # the preset's recipe, made small
                'detector.img_size=128', 'detector.epochs=1', 'detector.workers=0', 'detector.close_mosaic=0', 'detector.conf=0.001',
                'detector.max_det=12', 'export.bench_runs=20', 'export.bench_warmup=2', 'export.calib_images=8',
                'split.holdout_drugs=3')  # six drugs are too few for the default share (5 %, at least 5 of 20 or more): three
    # the phone-like scenes reach the detector: pasted real pills and made-up ones (a share of those in its validation photos)
    tree = {s: [p.name for p in (exp/'data'/'yolo'/'images'/s).iterdir()] for s in ('train', 'val')}
    assert sum(n.startswith('pasted_') for n in tree['train']) == 4 and sum(n.startswith('wild_') for n in tree['train'] + tree['val']) == 4
    snap = yaml.safe_load((exp/'config.yaml').read_text())
    assert snap['synth']['classes'] == 6 and snap['synth']['image_size'] == [244, 320] and snap['paths']['exp_dir'] == str(exp)
    assert load_config(path=exp/'config.yaml').synth.per_class == 2
    log = (exp/'logs'/'demo.log').read_text()
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO    pillsnap\.synth \| wrote \d+ photos", log, re.M)
    assert str(exp/'reports'/'contact_sheet.png') in r.stdout and (exp/'reports'/'contact_sheet.png').stat().st_size > 5000
    summary = json.loads((exp/'reports'/'synth_summary.json').read_text())
    assert summary['train']['classes'] == 6 and summary['val']['single_images'] == 6
    assert re.search(r'classifier val top-1 [\d.]+', r.stdout) and list((exp/'runs').glob('train-cls-*.ipynb'))
    assert re.search(r'detector mAP@0.5 [\d.]+', r.stdout) and list((exp/'runs').glob('train-det-*.ipynb'))
    for mode in ('single', 'combo'):  # the demo ends by identifying one photo in each mode
        pred = json.loads((exp/'reports'/f'predict-{mode}.json').read_text())
        assert pred['mode'] == mode and pred['truth'] and (exp/'reports'/f'predict-{mode}.png').stat().st_size > 5000
    wild = json.loads((exp/'reports'/'predict-wild.json').read_text())  # and a wild-scene photo rendered after training, in combo mode
    held = {p.name.split('_')[0] for p in (data/'data').rglob('*.png')} - set(json.loads((exp/'data'/'class_map.json').read_text()))
    assert wild['mode'] == 'combo' and 1 <= len(wild['truth']) <= 4 and (exp/'reports'/'predict-wild.png').stat().st_size > 5000
    assert not set(wild['truth']) & held  # drugs the classifier learnt: the photo asks for names
    assert 'wild-scene photo (rendered now, never trained on)' in (exp/'logs'/'demo.log').read_text()
    enrolled = json.loads((exp/'reports'/'predict-enrolled.json').read_text())  # a drug held out of training, enrolled from a photo, then asked about
    code = enrolled['truth'][0]
    assert code not in [c['k_code'] for c in enrolled['before_enrolment']['candidates']]  # before: the classifier cannot name it
    assert enrolled['enrolled_from'] and 'status' in enrolled['pills'][0] and f'enrolment: {code}' in (exp/'logs'/'demo.log').read_text()
    # combo mode's pill check was fitted once both networks were trained, or the log says why there is none
    said = re.search(r'pill check fitted on \d+ pill boxes|no pill check for .*: too few boxes', (exp/'logs'/'demo.log').read_text())
    assert said and (exp/'retrieval'/'pill_check.json').is_file() == said.group().startswith('pill check fitted'), said
    # then the ONNX export passes parity, and the service answers one request on loopback and stops
    assert json.loads((exp/'export'/'parity.json').read_text())['passed'] and (exp/'export'/'bench.json').is_file()
    answer = json.loads((exp/'reports'/'serve-answer.json').read_text())
    assert answer['mode'] == 'combo' and answer['pills'] and answer['models']['classifier'].startswith('test_efficientnet.onnx-')
    assert 'POST http://127.0.0.1:' in r.stdout and 'the service answered' in r.stdout
    assert '"route": "/predict", "status": 200' in (exp/'logs'/'demo-serve.log').read_text()
