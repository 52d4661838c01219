"""A user's path through the command line only: synth → prepare (settings given once) → train-cls → train-det →
evaluate → export → predict → serve, each later command given only --exp (and, where it trains, how long)."""
import json, secrets
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import cli

pytestmark = pytest.mark.slow  # the whole job: trains both models, exports and serves

# The experiment's own settings, given once at prepare: tiny models for a 2-core machine.
EXP_SETTINGS = ['data.paste_photos=0', 'data.wild_photos=0', 'classifier.pretrained=none', 'train.augment.phone=0', 'classifier.model=test_efficientnet', 'classifier.img_size=64', 'loader.num_workers=0', 'train.batch_size=8',
                'detector.model=yolo11n', 'detector.img_size=128', 'detector.batch_size=8', 'detector.workers=0',
                'detector.close_mosaic=0', 'data.workers=1', 'export.calib_images=16', 'export.bench_runs=5', 'export.bench_warmup=1']


@pytest.fixture(scope='module')
def user_exp(tmp_path_factory):
    "A release as AI Hub ships it (zips in Korean-named folders), and an experiment prepared from it at stage 1 with the tiny settings."
    tmp = tmp_path_factory.mktemp('user')
    cli('synth', tmp/'release', '--as-shipped', '--classes', '6', '--per-class', '4', '--combos', '6', '--image-size', '244,320',
            'synth.val_per_class=1', 'synth.workers=1', 'synth.quirk_rate=0.0')
    cli('prepare', '--root', tmp/'release', '--exp', tmp/'exp', '--stage', '1', *EXP_SETTINGS, 'data.max_samples=200')
    return tmp/'exp'


def snapshot(exp): return yaml.safe_load((exp/'config.yaml').read_text())


def settings_log(exp): return [json.loads(l) for l in (exp/'logs'/'settings.jsonl').read_text().splitlines()]


def test_the_users_path_needs_the_experiments_settings_only_once(user_exp, tmp_path):
    e = user_exp
    first = snapshot(e)
    assert (first['data']['stage'], first['data']['max_samples'], first['data']['max_classes']) == (1, 200, 50)
    cli('train-cls', '--exp', e, 'train.epochs=1')  # no --stage, no data.root: they are the experiment's
    after = snapshot(e)
    assert after['data'] == first['data'] and after['train']['epochs'] == 1 and after['train']['resume'] is None
    assert settings_log(e)[-1]['run'] == 'train-cls' and settings_log(e)[-1]['changed'] == {'train.epochs': [30, 1]}
    metrics = (e/'classifier'/'metrics.json').read_bytes()

    cli('train-det', '--exp', e, 'detector.epochs=1', 'detector.conf=0.001')
    assert snapshot(e)['detector']['epochs'] == 1 and (e/'detector'/'detector.safetensors').is_file()

    r = cli('evaluate', '--exp', e, '--no-notebook')  # the papermill report is test_classifier's
    assert (e/'reports'/'classifier'/'metrics.json').is_file() and (e/'classifier'/'metrics.json').read_bytes() == metrics
    r = cli('evaluate', '--exp', e, '--what', 'pipeline', 'device=cpu')
    single = json.loads((e/'reports'/'pipeline.json').read_text())['single']
    assert single['found_by'] == 'detector' and all(single[v]['top1'] is not None for v in ('default', 'true_box', 'photo'))
    assert settings_log(e)[-1] == {**settings_log(e)[-1], 'run': 'evaluate --what pipeline', 'changed': {'device': ['auto', 'cpu']}, 'snapshot': False}
    assert snapshot(e)['device'] == 'auto'  # a reading command leaves the snapshot alone

    # the test split: locked, then opened once through --final (classifier, detector, both modes), then refused
    r = cli('evaluate', '--exp', e, '--what', 'detector', '--split', 'test', check=False)
    assert r.returncode == 2 and '--final opens it' in r.stderr, r.stderr
    r = cli('evaluate', '--exp', e, '--final', 'device=cpu')
    final = json.loads((e/'reports'/'final_test_results.json').read_text())
    assert final['looks'] == 1 and final['detector']['images'] > 0 and final['test']['classifier_top1'] is not None and 'verdict' in r.stdout
    assert set(final['val_minus_test']) >= {'classifier_top1', 'single_top1'}
    r = cli('evaluate', '--exp', e, '--final', check=False)
    assert r.returncode == 2 and 'was opened on' in r.stderr and json.loads((e/'reports'/'final_test_results.json').read_text()) == final

    cli('export', '--exp', e, '--no-bench')
    assert (e/'export'/'classifier.onnx').is_file() and (e/'export'/'detector.onnx').is_file()

    # the stage gate: every criterion with its evidence, a decision, the progress record; a baseline adds the regression check
    r = cli('gate', '--exp', e, '--stage', '1', '--latency-photos', '3', '--baseline', e, 'device=cpu')
    g = json.loads((e/'reports'/'stage_gate.json').read_text())
    assert g['decision'] in ('RECOMMEND_PROCEED', 'SUGGEST_OPTIMIZE', 'WARN_STOP') and f"decision {g['decision']}" in r.stdout
    checks = {c['criterion']: c for c in g['criteria']}
    assert checks['detector_loads']['passed'] and checks['onnx_export_passes']['passed'] and checks['pipeline_runs']['passed']
    assert checks['regression']['measured'] == 0 and checks['regression']['passed'] and checks['detection_map50']['evidence'].endswith('metrics.json')
    assert json.loads((e/'reports'/'latency.json').read_text())['backend'] == 'onnx'  # the exported models are what is timed
    assert len(json.loads((e/'reports'/'stage_progress.json').read_text())['runs']) == 1

    # the advisor: a numbered menu from the evidence; --apply N --to NEW writes a new experiment with exactly that change
    r = cli('advise', '--exp', e)
    advice = json.loads((e/'reports'/'advice.json').read_text())
    assert 'pillsnap advisor' in r.stdout and all(f"[{i}] {a['title']}" in r.stdout for i, a in enumerate(advice['recommendations'], 1))
    n, pick = next(((i, a) for i, a in enumerate(advice['recommendations'], 1) if a['settings']), (None, None))
    if pick:
        r = cli('advise', '--exp', e, '--apply', n, '--to', tmp_path/'next')
        assert (tmp_path/'next'/'config.yaml').is_file() and 'pillsnap prepare --exp' in r.stdout
        assert 0 < len(settings_log(tmp_path/'next')[-1]['changed'].keys() - {'data.max_samples', 'data.max_classes', 'data.max_combos'}) and settings_log(tmp_path/'next')[-1]['changed'].keys() <= pick['settings'].keys() | {'data.max_samples', 'data.max_classes', 'data.max_combos'}
    r = cli('advise', '--exp', e, '--apply', 99, check=False)
    assert r.returncode == 2 and '--apply 99' in r.stderr

    from pillsnap.data import load_manifest
    m = load_manifest(e/'data', 'val')
    row = m[m.kind == 'single'].iloc[0]
    photo = Path(snapshot(e)['data']['root'])/row.image
    answer = json.loads(cli('predict', photo, '--exp', e, '--json').stdout)
    assert answer['mode'] == 'single' and answer['pills'][0]['found_by'] == 'detector'

    from pillsnap.server import serving
    key = secrets.token_urlsafe(24)
    with serving(e, key, '--backend', 'onnx') as (url, _):
        r = httpx.post(url + '/predict', params={'pipeline': 'single'}, files={'image': (photo.name, photo.read_bytes(), 'image/png')},
                       headers={'X-API-Key': key}, timeout=120)
    assert r.status_code == 200 and r.json()['pills'][0]['found_by'] == 'detector', r.text

    # every check runs before the snapshot is written: a refused command leaves the experiment as it was
    before = (e/'config.yaml').read_bytes()
    r = cli('train-cls', '--exp', e, '--resume', 'nowhere.pt', 'train.epochs=3', check=False)
    assert r.returncode == 2 and (e/'config.yaml').read_bytes() == before, r.stderr
    r = cli('train-cls', '--exp', e, 'train.epochs=3', check=False)  # a trained classifier is replaced only on request
    assert r.returncode == 2 and '--force' in r.stderr and (e/'config.yaml').read_bytes() == before
    r = cli('train-cls', '--exp', e, 'data.max_samples=10', '--force', check=False)  # data settings belong to prepare
    assert r.returncode == 2 and "run 'pillsnap prepare" in r.stderr and (e/'config.yaml').read_bytes() == before
    table = (e/'data'/'drug_table.json').read_bytes()
    cli('synth', tmp_path/'another-release', '--classes', '4', '--per-class', '2', '--combos', '2', '--image-size', '244,320', 'synth.workers=1')
    r = cli('prepare', '--exp', e, '--root', tmp_path/'another-release', check=False)  # other data under trained models: asked first
    assert r.returncode == 2 and '--force' in r.stderr and 'another-release' in r.stderr, r.stderr
    assert (e/'config.yaml').read_bytes() == before and (e/'data'/'drug_table.json').read_bytes() == table
