"The detector stage through the `pillsnap` command: papermill report, metrics, safe weights, resume after a kill, offline errors, files that must not run code, finished work that must not be destroyed."
import json, os, re, shutil, signal, subprocess, time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, EXP_TINY, cli, prepare_exp, run_tool

TINY_DET = ['data.paste_photos=0', 'data.wild_photos=0', 'detector.model=yolo11n', 'detector.img_size=128', 'detector.batch_size=8', 'detector.workers=0',
            'detector.close_mosaic=0', 'data.workers=1', 'data.cache=false']


@pytest.fixture(scope='module')
def det_exp(tiny_root, tmp_path_factory):
    "An experiment folder with prepared data (its YOLO tree)."
    return prepare_exp(tiny_root, tmp_path_factory.mktemp('det')/'exp', *TINY_DET)


def _rows(exp):
    f = exp/'detector'/'train'/'results.csv'
    return len(f.read_text().strip().splitlines()) - 1 if f.is_file() else 0


def _saved(exp):
    "last.pt is whole and its hash recorded: a kill now leaves a run that can be resumed."
    from pillsnap.io import file_sha256
    from pillsnap.detector import weights_record
    w = exp/'detector'/'train'/'weights'
    return (w/'last.pt').is_file() and weights_record(w).get('last.pt') == file_sha256(w/'last.pt')


@pytest.mark.slow  # two training runs, one killed
def test_train_det_killed_then_resumed_finishes_with_report_metrics_and_safe_weights(det_exp):
    import torch
    from pillsnap.yolo import detector_meta, load_detector
    cmd = [str(BIN/'pillsnap'), 'train-det', '--exp', str(det_exp), '--no-notebook', *TINY_DET, 'detector.epochs=3']
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while p.poll() is None and time.time() < deadline:  # wait for epoch 1's row and a fully written, recorded last.pt
        if _rows(det_exp) >= 1 and _saved(det_exp): break
        time.sleep(0.3)
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    done = _rows(det_exp)
    assert 1 <= done < 3, f'the run should have been killed after epoch 1 (epochs done: {done})'
    assert not (det_exp/'detector'/'metrics.json').exists()
    r = cli('train-det', '--exp', det_exp, '--resume', *TINY_DET, 'detector.epochs=3')  # through papermill this time
    assert _rows(det_exp) == 3
    log = (det_exp/'logs'/'train-det.log').read_text()
    assert 'resuming the detector' in log
    # both runs trained on every thread PyTorch has here, not ultralytics' cpu_count - 1
    from pillsnap.yolo import TORCH_THREADS
    assert log.count(f'training on the CPU with {TORCH_THREADS} PyTorch threads') == 2, log
    assert len(list((det_exp/'runs').glob('train-det-*.ipynb'))) == 1
    m = json.loads((det_exp/'detector'/'metrics.json').read_text())
    assert {'precision', 'recall', 'map50', 'map50_95', 'images', 'instances', 'training', 'samples'} <= set(m)
    assert all(0 <= m[k] <= 1 for k in ('precision', 'recall', 'map50', 'map50_95')) and m['images'] > 0 and m['instances'] >= m['images']
    assert Path(m['samples']).stat().st_size > 1000
    assert 'map50' in r.stdout
    safe = det_exp/'detector'/'detector.safetensors'
    assert detector_meta(safe)['names'] == {0: 'pill'} and detector_meta(safe)['imgsz'] == 128
    y = load_detector(safe)
    res = y.predict(torch.zeros(1, 3, 128, 128), verbose=False)
    assert res[0].boxes.xyxy.shape[1] == 4


@pytest.mark.slow  # the evaluation job, on a copy of the experiment
def test_evaluate_detector_on_another_yolo_dataset(trained_exp, tmp_path):
    "The real-photo check's command: a trained detector measured on a foreign data.yaml (here the experiment's own tree, on a copy)."
    exp = _copy(trained_exp, tmp_path)[0]
    r = cli('evaluate', '--exp', exp, '--what', 'detector', '--data', exp/'data'/'yolo'/'data.yaml', '--split', 'test', check=False)
    assert r.returncode == 2 and '--final opens it' in r.stderr, r.stderr  # the experiment's own test split stays locked
    shutil.copytree(exp/'data'/'yolo', tmp_path/'foreign')  # another YOLO export (its data.yaml names the same images)
    r = cli('evaluate', '--exp', exp, '--what', 'detector', '--data', tmp_path/'foreign'/'data.yaml', '--split', 'test')
    out = json.loads((exp/'reports'/'detector-foreign-test.json').read_text())
    assert out['split'] == 'test' and out['images'] > 0 and 'map50' in r.stdout
    count = out['count']  # pills per photo, as combo mode counts them, with and without the nesting rule
    assert (count['photos'], count['pills']) == (out['images'], out['instances']) and 'count_exact' in r.stdout
    for c in (count, count['without_nesting_rule']): assert 0 <= c['count_exact'] <= 1 and abs(c['over'] + c['under'] + c['count_exact'] - 1) < 1e-3
    assert 0 <= count['read_closer'] + count['read_farther'] <= count['photos'] and count['farther'] == 0.5  # how photos were read
    a = count['as_read']  # mAP of the boxes as combo mode read each photo, and of the same photos at one size
    assert 0 <= a['map50_95'] <= a['map50'] <= 1 and 'map50_as_read' in r.stdout
    if count['read_closer'] + count['read_farther'] == 0: assert a['at_one_size'] == {k: a[k] for k in ('map50', 'map50_95')}
    assert 1 <= count['sources'] <= count['photos']  # 95 % intervals, resampling source photos (none with one photo)
    assert set(count['intervals']) == {'count_exact', 'found', 'map50_as_read'}
    for v in count['intervals'].values(): assert v is None or 0 <= v[0] <= v[1] <= 1
    if count['sources'] > 1: assert 'count_exact 95%' in r.stdout and count['intervals']['count_exact'], r.stdout


@pytest.mark.slow  # two evaluations and the gate, on a copy of the experiment
def test_real_sets_are_read_by_evaluate_and_judged_by_the_gate(trained_exp, tmp_path):
    "eval.real_sets: evaluate --what detector and --what pipeline read real photos beside the studio ones; the gate judges them."
    from pillsnap.sources import example_sources
    exp = _copy(trained_exp, tmp_path)[0]
    real = f"eval.real_sets=[{{path: {example_sources(tmp_path/'real')[0]['path']}}}]"  # a YOLO export: 2 photos in val+test
    r = cli('evaluate', '--exp', exp, '--what', 'detector', real, 'device=cpu')
    assert 'real:phone' in r.stdout.splitlines()[0] and 'count_exact' in r.stdout, r.stdout
    rep = json.loads((exp/'reports'/'real'/'phone.json').read_text())
    assert rep['detector']['images'] == 2 and 'pipeline' not in rep and rep['detector']['models']['detector']
    r = cli('evaluate', '--exp', exp, '--what', 'pipeline', '--max-photos', '4', real, 'device=cpu')
    assert 'combo count exact' in r.stdout and 'real:phone' in r.stdout, r.stdout
    rep = json.loads((exp/'reports'/'real'/'phone.json').read_text())
    assert rep['pipeline']['combo']['pills'] == 2 and rep['pipeline']['combo']['pill_top1'] is None  # US drugs: unknown here
    combo = rep['pipeline']['combo']  # its intervals resample the set's source photos
    assert combo['sources'] == 2 and set(combo['intervals']) == {'count_exact', 'pill_recall'}
    assert all(0 <= v[0] <= v[1] <= 1 for v in combo['intervals'].values()) and 'combo count exact 95%' in r.stdout
    assert 'detector' in rep  # kept from the first run
    r = cli('gate', '--exp', exp, '--stage', '1', '--latency-photos', '2', real, 'device=cpu')
    g = json.loads((exp/'reports'/'stage_gate.json').read_text())
    real_rows = {c['criterion']: c for c in g['criteria'] if c['criterion'].startswith('real_')}
    assert set(real_rows) == {'real_detection_map50', 'real_count_exact'} and 'real_count_exact' in r.stdout
    assert all(c['measured'] is not None and c['evidence'].endswith('phone.json') for c in real_rows.values())
    cli('gate', '--exp', exp, '--stage', '1', '--latency-photos', '0', 'device=cpu')  # no real set named: no real criterion
    g = json.loads((exp/'reports'/'stage_gate.json').read_text())
    assert not [c for c in g['criteria'] if c['criterion'].startswith('real_')]


@pytest.mark.slow  # one epoch through papermill
def test_train_det_on_another_yolo_dataset_finishes_with_its_report(det_exp, tmp_path):
    "`train-det --data` (a YOLO export beside the experiment, as for real photos): the stage trains, reports and succeeds."
    shutil.copytree(det_exp/'data'/'yolo', tmp_path/'foreign')  # another YOLO export (its data.yaml names the same images)
    exp = tmp_path/'ext'
    r = cli('train-det', '--exp', exp, '--data', tmp_path/'foreign'/'data.yaml', *TINY_DET, 'detector.epochs=1')
    m = json.loads((exp/'detector'/'metrics.json').read_text())
    assert m['images'] > 0 and 'map50' in r.stdout and (exp/'detector'/'detector.safetensors').is_file()
    assert len(list((exp/'runs').glob('train-det-*.ipynb'))) == 1
    assert yaml.safe_load((exp/'config.yaml').read_text())['detector']['data_path'] == str((tmp_path/'foreign'/'data.yaml').resolve())


@pytest.mark.slow  # three launches of pillsnap, on a prepared experiment of its own
def test_offline_errors_name_the_fix(det_exp):
    r = cli('train-det', '--exp', det_exp, *TINY_DET, 'detector.weights_path=/nowhere/yolo11n.pt', check=False)
    assert r.returncode == 2 and 'nothing is downloaded' in r.stderr, r.stderr
    r = cli('train-det', '--exp', det_exp, *TINY_DET, 'detector.model=yolo11n.pt', check=False)
    assert r.returncode == 2 and 'detector.weights_path' in r.stderr, r.stderr
    r = cli('train-det', '--exp', det_exp.parent/'nothing-here', *TINY_DET, check=False)
    assert r.returncode == 2 and 'pillsnap prepare' in r.stderr, r.stderr


def test_ultralytics_is_kept_offline():
    code = "import pillsnap.detector; import ultralytics.utils as u; print(u.ONLINE)"
    r = subprocess.run([str(BIN/'python'), '-c', code], capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != 'YOLO_OFFLINE'})
    assert r.stdout.strip() == 'False', r.stdout + r.stderr


class Touch:
    "A pickled object that creates a file when it is unpickled."
    def __init__(self, path): self.path = path
    def __reduce__(self): return (os.system, (f'touch {self.path}',))


def _copy(trained_exp, tmp_path):
    "A copy of the trained tiny experiment, its files' bytes, and its settings."
    from pillsnap.config import load_config
    exp = tmp_path/'exp'
    shutil.copytree(trained_exp[0], exp)
    kept = {f: f.read_bytes() for f in (exp/'config.yaml', exp/'detector'/'detector.safetensors', exp/'detector'/'metrics.json')}
    return exp, kept, load_config([f'paths.exp_dir={exp}', *EXP_TINY])


def _planted(trained_exp, tmp_path):
    "A copy of the experiment as a run killed mid-training leaves it, with a pickle that runs code planted as last.pt."
    import torch
    from pillsnap.detector import WEIGHTS_RECORD
    exp, kept, cfg = _copy(trained_exp, tmp_path)
    w, pwned = exp/'detector'/'train'/'weights', tmp_path/'PWNED'
    rec = json.loads((w/WEIGHTS_RECORD).read_text())
    (w/WEIGHTS_RECORD).write_text(json.dumps({'last.pt': rec['last.pt'], 'best.pt': rec['best.pt']}))
    torch.save({'epoch': 0, 'model': None, 'x': Touch(pwned)}, w/'last.pt')
    return exp, kept, cfg, w, pwned


def test_a_detector_file_cannot_name_code(trained_exp, tmp_path):
    "A hostile detector.safetensors (code in its stored architecture) is refused before anything is built; a file pillsnap wrote loads."
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    from pillsnap.config import ConfigError
    from pillsnap.yolo import load_detector
    good, pwned = trained_exp[0]/'detector'/'detector.safetensors', tmp_path/'PWNED'
    assert load_detector(good).model.yaml['nc'] == 1
    with safe_open(str(good), 'pt') as f: meta = f.metadata()
    arch, code = json.loads(meta['yaml']), f"__import__('os').system('touch {pwned}') or __import__('torch').nn.SiLU()"
    for name, change in (('activation', {'activation': code}), ('head', {'head': [*arch['head'][:-1], [-1, 1, 'eval', [code]]]})):
        evil = tmp_path/f'{name}.safetensors'
        save_file(load_file(str(good)), str(evil), metadata={**meta, 'yaml': json.dumps({**arch, **change})})
        with pytest.raises(ConfigError, match=re.escape(f"{evil}: its architecture differs from ultralytics' own yolo11n in {name} ")):
            load_detector(evil)
        assert not pwned.exists(), f'the {name} payload ran'
    save_file({**load_file(str(good)), 'extra': torch.zeros(1)}, str(tmp_path/'extra.safetensors'), metadata=meta)
    with pytest.raises(ConfigError, match='its tensors do not fit yolo11n.yaml'): load_detector(tmp_path/'extra.safetensors')


def test_an_architecture_file_in_the_working_folder_is_not_used(tmp_path, monkeypatch):
    "ultralytics looks a bare architecture name up in the working folder first; pillsnap builds from ultralytics' own package."
    import yaml
    from ultralytics.utils import ROOT
    from pillsnap.yolo import build_detector
    pwned = tmp_path/'PWNED'
    planted = {**yaml.safe_load((ROOT/'cfg'/'models'/'11'/'yolo11.yaml').read_text()),
               'activation': f"__import__('os').system('touch {pwned}') or __import__('torch').nn.SiLU()"}
    for name in ('yolo11n.yaml', 'yolo11.yaml'): (tmp_path/name).write_text(yaml.safe_dump(planted))
    monkeypatch.chdir(tmp_path)
    m = build_detector('yolo11n')
    assert 'activation' not in m.model.yaml and not pwned.exists()


def test_resume_refuses_a_planted_checkpoint(trained_exp, tmp_path):
    "An interrupted run whose last.pt was replaced by a pickle that runs code: resume refuses it unread."
    exp, kept, cfg, w, pwned = _planted(trained_exp, tmp_path)
    _resume_refused(exp, cfg, kept, pwned, 'was not written by pillsnap (hash mismatch) — delete it and train afresh')


def test_resume_refuses_a_planted_checkpoint_even_with_its_hash_planted_too(trained_exp, tmp_path):
    "Before: the record of hashes sits beside last.pt, so a planted record let the planted pickle run on --resume."
    from pillsnap.detector import WEIGHTS_RECORD, record_weights
    exp, kept, cfg, w, pwned = _planted(trained_exp, tmp_path)
    record_weights(w, ['last.pt'])  # the attacker writes the matching hash as well
    kept |= {f: f.read_bytes() for f in (w/'last.pt', w/WEIGHTS_RECORD)}
    _resume_refused(exp, cfg, kept, pwned, 'is not an ultralytics checkpoint pillsnap can read safely')


def _resume_refused(exp, cfg, kept, pwned, why):
    "check_detector and `train-det --resume` both refuse with `why`; the payload never ran and no file changed."
    from pillsnap.config import ConfigError
    from pillsnap.detector import check_detector
    cfg.detector.resume = 'last'
    with pytest.raises(ConfigError, match=re.escape(why)): check_detector(cfg)
    r = cli('train-det', '--exp', exp, '--resume', '--no-notebook', *EXP_TINY, check=False)
    assert r.returncode == 2 and why in r.stderr, r.stderr
    assert not pwned.exists()
    assert all(f.read_bytes() == b for f, b in kept.items())


def test_resume_of_a_finished_run_changes_nothing(trained_exp, tmp_path):
    exp, kept, _ = _copy(trained_exp, tmp_path)
    r = cli('train-det', '--exp', exp, '--resume', '--no-notebook', *EXP_TINY, check=False)
    assert r.returncode == 2 and 'finished and was saved' in r.stderr and 'nothing was changed' in r.stderr, r.stderr
    assert all(f.read_bytes() == b for f, b in kept.items())


def test_training_afresh_over_a_trained_detector_needs_force(trained_exp, tmp_path):
    from pillsnap.config import ConfigError
    from pillsnap.detector import check_detector
    from pillsnap.sources import detector_data
    exp, kept, cfg = _copy(trained_exp, tmp_path)
    r = cli('train-det', '--exp', exp, '--no-notebook', *EXP_TINY, check=False)
    assert r.returncode == 2 and 'already has a trained detector' in r.stderr and 'pass --force' in r.stderr, r.stderr
    assert all(f.read_bytes() == b for f, b in kept.items())
    with pytest.raises(ConfigError, match='already has a trained detector'): check_detector(cfg)
    assert check_detector(cfg, force=True) == detector_data(cfg)


def test_a_copied_experiment_never_resumes_into_the_original(trained_exp, tmp_path):
    "ultralytics resumes into the folder a run started in: on a copy of the experiment, resume is refused, and the original stays as it was."
    from pillsnap.config import ConfigError
    from pillsnap.detector import WEIGHTS_RECORD, check_detector
    exp, kept, cfg = _copy(trained_exp, tmp_path)
    w = exp/'detector'/'train'/'weights'
    rec = json.loads((w/WEIGHTS_RECORD).read_text())
    (w/WEIGHTS_RECORD).write_text(json.dumps({'last.pt': rec['last.pt'], 'best.pt': rec['best.pt']}))  # interrupted, not finished
    cfg.detector.resume = 'last'
    original = Path(yaml.safe_load((exp/'detector'/'train'/'args.yaml').read_text())['save_dir'])  # where the run was trained (the tiny experiment's cache)
    before = {f: f.stat().st_mtime_ns for f in original.rglob('*') if f.is_file()}
    with pytest.raises(ConfigError, match=f'was started in {original}'): check_detector(cfg)
    assert {f: f.stat().st_mtime_ns for f in original.rglob('*') if f.is_file()} == before


def test_reframe_photos_carries_every_pill_into_tiled_and_zoomed_photos(tmp_path):
    "tools/reframe_photos.py: k×k photos of one size side by side, each pill's box moved with its photo (and enlarged with --scale)."
    import numpy as np
    from PIL import Image
    src = tmp_path/'set'
    for split in ('test', 'val'):
        (src/'images'/split).mkdir(parents=True); (src/'labels'/split).mkdir(parents=True)
    for i in range(5):  # four 40x60 photos in test, one in val, each a pill at its own place; and one of another size
        split = 'val' if i == 4 else 'test'
        Image.new('RGB', (40, 60), (i * 40, 0, 0)).save(src/'images'/split/f'p{i}.jpg')
        (src/'labels'/split/f'p{i}.txt').write_text(f'0 {0.2 + 0.1 * i:.2f} 0.5 0.1 0.1\n')
    Image.new('RGB', (50, 50)).save(src/'images'/'test'/'odd.jpg'); (src/'labels'/'test'/'odd.txt').write_text('0 0.5 0.5 0.2 0.2\n')
    (src/'data.yaml').write_text(yaml.safe_dump(dict(path=str(src), train='images/test', val='images/val', test='images/test',
                                                     names={0: 'pill'})))
    r = run_tool('reframe_photos', src/'data.yaml', tmp_path/'out', '--k', 2, '--scale', 2)
    assert r.returncode == 0, r.stderr
    out = tmp_path/'out'/'k2'
    photos = sorted((out/'images'/'test').iterdir())
    assert len(photos) == 1 and Image.open(photos[0]).size == (160, 240)  # p0..p3 (name order), 2x2, enlarged 2x; p4 and odd left over
    rows = np.loadtxt(out/'labels'/'test'/'tiled-0000.txt', ndmin=2)
    assert len(rows) == 4
    # p1 sits top right: its pill at x 0.3 of its photo -> (40 + 12) / 80 of the tiled photo's width, y 30 / 120
    assert np.allclose(rows[1, 1:], [(40 + 0.3 * 40) / 80, 30 / 120, 0.05, 0.05], atol=1e-4)
    assert yaml.safe_load((out/'data.yaml').read_text())['test'] == 'images/test'
    r = run_tool('reframe_photos', src/'data.yaml', tmp_path/'o3', '--k', 3)
    assert r.returncode != 0 and 'fewer than 9 photos of one size' in (r.stdout + r.stderr)
    r = run_tool('reframe_photos', src/'data.yaml', tmp_path/'z', '--k', '--zoom', 0.5)
    assert r.returncode == 0, r.stderr
    zoomed = sorted((tmp_path/'z'/'zoom0.5'/'images'/'test').iterdir())
    assert len(zoomed) == 6 and Image.open(zoomed[0]).size == (640, 640)  # every photo of one pill, cut around it
    rows = [np.loadtxt(f, ndmin=2)[0] for f in sorted((tmp_path/'z'/'zoom0.5'/'labels'/'test').iterdir())]
    assert np.allclose(rows[0][1:], [0.5, 0.5, 0.5, 0.5], atol=0.02)  # odd.jpg's square pill: centred, half the side
    assert np.allclose(rows[1][1:], [0.5, 0.5, 4 / 12, 6 / 12], atol=0.02)  # p0's 4x6 px pill: its longer side half
