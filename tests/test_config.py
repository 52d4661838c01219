"Settings across the command line, config.yaml and the environment — through the real console script."
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
@pytest.mark.slow  # five launches of the console script
def test_bad_settings_fail_at_start_with_one_line(word, line):
    r = run_cli('config', word, check=False)
    assert r.returncode == 2 and r.stdout == ''
    assert r.stderr.strip().splitlines() == [f'pillsnap config: error: {line}']


@pytest.mark.slow  # three launches of the console script
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
    gates = [load_config([f'data.stage={s}']).stages[str(s)].gate for s in (1, 2, 3, 4)]
    # one accuracy bar per stage, the higher of the seeds' D-12 go/no-go and D-14 targets, in both places
    assert [g.go_no_go.min_accuracy for g in gates] == [0.78, 0.82, 0.85, 0.92]
    assert [g.targets.classification_accuracy['min'] for g in gates] == [0.78, 0.82, 0.85, 0.92]
    assert all(g.targets.classification_accuracy['tolerance'] == g.go_no_go.epsilon_acc for g in gates)
    # every stage can reach its own verdict: its caps give at least the validation crops its gate asks for
    for s in (1, 2, 3, 4):
        c = load_config([f'data.stage={s}'])
        assert c.data.max_samples * c.split.val_fraction >= c.stages[str(s)].gate.go_no_go.min_eval_samples, s
    assert load_config(['data.stage=4']).data.max_classes == 4523


@pytest.mark.parametrize('settings', [[], ['data.stage=1'], ['data.stage=2'], ['data.stage=3'], ['data.stage=4']])
def test_the_default_recipe_is_phone_ready(settings):
    "What a user gets without flags: an ImageNet start, phone augmentation, pasted and made-up scenes (issue 35)."
    from pillsnap.pretrained import resolve_start
    cfg = load_config(settings)
    assert cfg.classifier.pretrained == 'auto' and resolve_start(cfg.classifier) != 'none'
    assert cfg.train.augment.phone > 0
    assert cfg.data.paste_photos >= 1000 and cfg.data.wild_photos >= 1000
    assert cfg.classifier.background == 'flat'  # a pill's crop without its table, hand or neighbours
    assert cfg.retrieval.enrol_turns == 4  # an enrolled phone photo stands for its quarter turns
    assert cfg.retrieval.query_turns == 4  # and a photo asked of the gallery is seen every way up too
    assert cfg.retrieval.whiten == 'total'  # the gallery compares whitened features: real products named and refused better
    assert cfg.detector.crowd >= 2 and 0 < cfg.detector.crowd_floor < 0.25  # a heap's weaker pills count (nbs/05e)
    assert cfg.detector.closer > 0 and cfg.detector.closer_most >= 2  # a photo of small pills is read again closer
    assert 0 < cfg.detector.closer_unsure < 1  # ... and a photo boxed with no sure box
    assert 0 < cfg.detector.farther < 1  # and a close-up is read from farther too (single mode always, combo mode in doubt)
    assert cfg.pipeline.pill_check is True  # and a box on a fingertip does not
    assert 0 < cfg.detector.edge < 0.05  # nor one on what the frame's edge cuts off
    if settings:  # the stages scale the scenes with the data
        stage = cfg.stages[settings[0].split('=')[1]]
        assert (cfg.data.paste_photos, cfg.data.wild_photos) == (stage.paste_photos, stage.wild_photos)
    assert load_config([*settings, 'data.wild_photos=7']).data.wild_photos == 7  # a given value beats the stage


def test_the_demo_uses_the_default_recipe_with_an_offline_start():
    from pillsnap.pretrained import check_start, resolve_start
    cfg = load_config(preset='demo')
    assert resolve_start(cfg.classifier) == 'lite0'  # installed with pillsnap: nothing to download
    check_start(cfg.classifier)  # its model and normalisation are the start's
    assert cfg.data.paste_photos > 0 and cfg.data.wild_photos > 0 and cfg.train.augment.phone > 0
    from pillsnap.detector import detector_start
    start, said = detector_start(cfg.detector)  # the detector too: pillsnap's pill start, installed with it
    assert start is not None and start.name == 'yolo11n-pill.safetensors' and 'pill start' in said, said
    assert detector_start(load_config(preset='cpu').detector)[0] == start  # the CPU preset's size gets it as well
    assert cfg.detector.crowd == 5 and cfg.pipeline.pill_check is True  # combo mode counts as the default recipe does


def test_benchmark_presets_keep_the_recipe_their_rows_were_measured_with():
    for preset in ('bench', 'bench-det', 'wild-det'):
        cfg = load_config(preset=preset)
        assert cfg.data.paste_photos == 0 and cfg.data.wild_photos == 0, preset
    assert load_config(preset='bench').classifier.pretrained == 'none' and load_config(preset='bench').classifier.background == 'keep'
    from pillsnap.detector import detector_start
    for preset in ('bench', 'bench-det', 'wild-det', 'phone-det'):  # their detectors from random weights; phone-det makes the start
        assert detector_start(load_config(preset=preset).detector) == (None, 'random initial weights (detector.start=none)'), preset


def test_the_gpu_phone_preset_is_phone_det_with_the_shipped_detector():
    gpu, cpu, default = (load_config(preset=p) for p in ('phone-det-gpu', 'phone-det', None))
    for section in ('data', 'synth'):  # the same studio release, pasted and made-up scenes
        assert gpu[section] == cpu[section], section
    assert (gpu.detector.model, gpu.detector.img_size) == (default.detector.model, default.detector.img_size)
    assert gpu.paths.exp_dir != cpu.paths.exp_dir


def test_relative_paths_resolve_against_their_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(['paths.exp_dir=runs/x'], path=ROOT/'config.yaml')
    assert cfg.paths.exp_dir == str(tmp_path/'runs'/'x')                       # command line: the working directory
    assert cfg.data.root == str(ROOT/'work'/'synth'/'default')                 # config.yaml: the file's folder


def test_a_yaml_syntax_error_names_file_and_line(tmp_path):
    (tmp_path/'config.yaml').write_text('seed: 1\ntrain: [unclosed\n')
    with pytest.raises(ConfigError, match=r'cannot parse .*config.yaml:\d+'): load_config(path=tmp_path/'config.yaml')




def test_source_paths_resolve_like_other_paths(tmp_path, monkeypatch):
    text = (ROOT/'config.yaml').read_text(encoding='utf-8').replace('  sources: []', '  sources: [{path: real/phone, format: yolo}]')
    (tmp_path/'proj').mkdir(); (tmp_path/'proj'/'config.yaml').write_text(text, encoding='utf-8')
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path=tmp_path/'proj'/'config.yaml')
    assert cfg.data.sources[0]['path'] == str(tmp_path/'proj'/'real'/'phone')             # config.yaml: the file's folder
    cfg = load_config({'data.sources': '[{path: cli/phone}, {path: /abs/crops, format: folders}]'}, path=tmp_path/'proj'/'config.yaml')
    assert [s['path'] for s in cfg.data.sources] == [str(tmp_path/'cli'/'phone'), '/abs/crops']  # command line: the working directory


def test_auto_batch_leaves_each_stage_its_optimizer_steps():
    "A large card's auto batch (512) cut so a short run keeps train.auto_batch_min_steps steps (issue 36 §2)."
    from pillsnap.callbacks import step_floor_batch
    chosen = []
    for s in (1, 2, 3, 4):
        c = load_config([f'data.stage={s}'])
        items, t = int(c.data.max_samples * (1 - c.split.val_fraction)), c.train
        b = step_floor_batch(512, t.batch_size, items, t.epochs, t.grad_accum, t.auto_batch_min_steps)
        assert b == t.batch_size or items * t.epochs // (b * t.grad_accum) >= t.auto_batch_min_steps, s
        chosen.append(b)
    assert chosen == [64, 120, 504, 512]  # stage 1 keeps its set batch; at stage 4 the card's memory decides
