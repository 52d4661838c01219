"Settings across the command line, config.yaml and the environment — through the real console script."
import json, re

import pytest
import yaml

from conftest import ROOT, run_cli
from pillsnap.config import ConfigError, load_config


def test_overrides_are_typed_from_config_yaml():
    cfg = yaml.safe_load(run_cli('config', 'train.batch_size=128', 'train.lr=3e-4', 'train.channels_last=false',
                                 'synth.image_size=244,320', 'data.root=/data/aihub').stdout)
    assert cfg['train']['batch_size'] == 128 and cfg['train']['lr'] == 3e-4 and cfg['train']['channels_last'] is False
    assert cfg['synth']['image_size'] == [244, 320] and cfg['data']['root'] == '/data/aihub'


@pytest.mark.parametrize('word,line', [
    ('trian.epochs=5', "unknown setting 'trian.epochs' — did you mean 'train.epochs'?"),
    ('train.epochs=ten', "setting 'train.epochs' expects int (like 30), got 'ten'"),
    ('train.channels_last=maybe', "setting 'train.channels_last' expects bool (like True), got 'maybe'"),
    ('data.stage=7', "unknown stage 7 for 'data.stage' — choose one of 1, 2, 3, 4"),
    ('epochs', "expected key=value, got 'epochs' (for example train.epochs=5)"),
])
def test_bad_settings_fail_at_start_with_one_line(word, line):
    r = run_cli('config', word, check=False)
    assert r.returncode == 2 and r.stdout == ''
    assert r.stderr.strip().splitlines() == [f'pillsnap config: error: {line}']


def test_priority_cli_over_file_and_env_only_for_secrets(tmp_path, monkeypatch):
    (tmp_path/'config.yaml').write_text((ROOT/'config.yaml').read_text().replace('epochs: 30', 'epochs: 12'))
    (tmp_path/'.env').write_text('PILLSNAP_API_KEYS=abc\nTRAIN__EPOCHS=99\n')
    out = yaml.safe_load(run_cli('config', cwd=tmp_path).stdout)
    assert out['train']['epochs'] == 12                      # the file in the working directory wins over defaults
    assert yaml.safe_load(run_cli('config', 'train.epochs=3', cwd=tmp_path).stdout)['train']['epochs'] == 3
    assert 'abc' not in run_cli('config', cwd=tmp_path).stdout  # secrets never enter the config


def test_stage_presets_set_caps_unless_given():
    cfg = load_config(['data.stage=3'])
    assert (cfg.data.max_samples, cfg.data.max_classes) == (100_000, 1000)
    assert load_config(['data.stage=3', 'data.max_classes=10']).data.max_classes == 10
    assert [load_config([f'data.stage={s}']).stages[str(s)].target_top1 for s in (1, 2, 3, 4)] == [0.70, 0.80, 0.85, 0.92]
    assert load_config(['data.stage=4']).data.max_classes == 4523


def test_relative_paths_resolve_against_their_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(['paths.exp_dir=runs/x'], path=ROOT/'config.yaml')
    assert cfg.paths.exp_dir == str(tmp_path/'runs'/'x')                       # command line: the working directory
    assert cfg.data.root == str(ROOT/'work'/'synth'/'default')                 # config.yaml: the file's folder


def test_a_yaml_syntax_error_names_file_and_line(tmp_path):
    (tmp_path/'config.yaml').write_text('seed: 1\ntrain: [unclosed\n')
    with pytest.raises(ConfigError, match=r'cannot parse .*config.yaml:\d+'): load_config(path=tmp_path/'config.yaml')


def test_each_run_writes_its_resolved_config_and_a_log(tmp_path):
    exp, data = tmp_path/'exp', tmp_path/'data'
    r = run_cli('demo', f'paths.exp_dir={exp}', f'data.root={data}', 'synth.classes=6', 'synth.per_class=2',
                'synth.combos=3', 'synth.val_per_class=1', 'synth.sheet_classes=6', 'synth.workers=1',
                'classifier.model=test_efficientnet', 'classifier.img_size=64', 'train.epochs=1', 'loader.num_workers=0',
                'detector.img_size=128', 'detector.epochs=1', 'detector.workers=0', 'detector.close_mosaic=0', 'detector.conf=0.001',
                'detector.max_det=12', 'export.bench_runs=20', 'export.bench_warmup=2', 'export.calib_images=8')
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
    # then the ONNX export passes parity, and the service answers one request on loopback and stops
    assert json.loads((exp/'export'/'parity.json').read_text())['passed'] and (exp/'export'/'bench.json').is_file()
    answer = json.loads((exp/'reports'/'serve-answer.json').read_text())
    assert answer['mode'] == 'combo' and answer['pills'] and answer['models']['classifier'].startswith('test_efficientnet.onnx-')
    assert 'POST http://127.0.0.1:' in r.stdout and 'the service answered' in r.stdout
    assert '"route": "/predict", "status": 200' in (exp/'logs'/'demo-serve.log').read_text()
