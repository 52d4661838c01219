"The classifier stage end to end through the `pillsnap` command: papermill report, resume equivalence, safe checkpoints."
import json, re, shutil, signal, subprocess, sys, time

import pytest

from conftest import BIN, cli, prepare_exp

TINY_TRAIN = ['data.paste_photos=0', 'data.wild_photos=0', 'classifier.pretrained=none', 'train.augment.phone=0', 'classifier.model=test_efficientnet', 'classifier.img_size=64', 'train.batch_size=8', 'train.lr=0.01',
              'loader.num_workers=0', 'train.log_every=2', 'data.workers=1']
STEP_LINE = re.compile(r'e=\d+ s=\d+ loss=[\d.]+ lr=[\d.e-]+ data=[\d.]+s comp=[\d.]+s thr=[\d.]+/s cuda=\d+MB')


@pytest.fixture(scope='module')
def prepared(tiny_root, tmp_path_factory):
    "An experiment folder with prepared data (copy it before training in it)."
    return prepare_exp(tiny_root, tmp_path_factory.mktemp('cls')/'prepared', *TINY_TRAIN)


def fresh(prepared, tmp_path, name):
    exp = tmp_path/name
    shutil.copytree(prepared, exp)
    return exp


@pytest.mark.slow  # two epochs through the papermill report, then evaluate
def test_train_cls_writes_report_checkpoints_and_logs(prepared, tmp_path):
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    exp = fresh(prepared, tmp_path, 'exp')
    r = cli('train-cls', '--exp', exp, *TINY_TRAIN, 'train.epochs=2')
    reports = list((exp/'runs').glob('train-cls-*.ipynb'))
    assert len(reports) == 1
    nb = json.loads(reports[0].read_text())
    assert any(o.get('output_type') == 'display_data' and {'image/png', 'image/jpeg'} & set(o.get('data', {})) for c in nb['cells'] for o in c.get('outputs', []))
    m = json.loads((exp/'classifier'/'metrics.json').read_text())
    assert {'top1', 'top5', 'macro_f1', 'ece', 'per_class', 'top_confused', 'training'} <= set(m)
    assert 0 <= m['top1'] <= m['top5'] <= 1 and m['training']['epochs'] == 2 and m['training']['precision'] == 'float32'
    assert 'top1' in r.stdout and 'report' in r.stdout
    for name in ('best.pt', 'last.pt'):
        ck = torch.load(exp/'classifier'/name, weights_only=True)
        assert ck['model_name'] == 'test_efficientnet' and ck['k_codes'] and ck['preprocess'].startswith('unified-1')
        assert {'optimizer', 'model', 'config', 'epoch', 'best', 'history'} <= set(ck)
    assert torch.load(exp/'classifier'/'last.pt', weights_only=True)['epoch'] == 2
    cal = json.loads((exp/'classifier'/'calibration.json').read_text())  # train-cls calibrates best.pt (06_judge.evaluate)
    assert m['temperature'] == cal['temperature'] > 0 and m['ece_calibrated'] == cal['ece_after'] and 'temperature' in r.stdout
    assert abs(torch.load(exp/'classifier'/'best.pt', weights_only=True)['temperature'] - m['temperature']) < 1e-4
    log = (exp/'logs'/'train-cls.log').read_text()
    assert STEP_LINE.search(log), log[-2000:]
    events = EventAccumulator(str(exp/'tb'/'classifier')); events.Reload()
    tags = set(events.Tags()['scalars'])
    assert {'train/loss', 'train/lr', 'perf/data_time', 'perf/compute_time', 'perf/throughput', 'perf/cuda_mem', 'perf/batch_size', 'perf/num_workers', 'oom/events',
            'val/loss', 'val/accuracy', 'val/macro_f1', 'val/top5'} <= tags, tags
    r = cli('evaluate', '--exp', exp, '--checkpoint', 'last', *TINY_TRAIN)
    assert 'last.pt (epoch 2' in r.stdout
    rep = exp/'reports'/'classifier'
    assert {'metrics.json', 'calibration.json', 'calibration.png', 'per_class.csv', 'curves.png', 'hard_cases.csv'} <= {p.name for p in rep.iterdir()}
    assert json.loads((rep/'metrics.json').read_text())['checkpoint'].endswith('last.pt')
    assert len(list((exp/'runs').glob('evaluate-*.ipynb'))) == 1 and 'report.html' in r.stdout  # the executed 06_judge.evaluate is the report
    page = (rep/'report.html').read_text()
    assert 'Run the stage' in page and 'Temperature scaling' not in page and '<script' not in page  # the stage's own section, offline


def _train(exp, *extra):
    return [str(BIN/'pillsnap'), 'train-cls', '--exp', str(exp), '--no-notebook', *TINY_TRAIN, 'train.epochs=4', 'train.ema=0.9',
            'train.mix=mixup', *extra]


def _kill_then_resume(exp, train, epochs):
    "Start `train(exp)`, SIGKILL it once epoch 2 is saved, resume with train.resume=last; the epoch it resumed after."
    p = subprocess.Popen(train(exp), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log, t0 = exp/'logs'/'train-cls.log', time.time()
    while not (log.exists() and 'epoch 2: saved last.pt' in log.read_text()):
        assert p.poll() is None and time.time() - t0 < 300, 'training ended before the kill'
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.wait()
    subprocess.run(train(exp, 'train.resume=last'), check=True, capture_output=True, text=True, timeout=600)
    return int(re.search(rf'after epoch (\d) of {epochs}', log.read_text()).group(1))


def assert_same_run(a, b):
    "Two experiments ended with the same metrics and the same per-epoch history."
    ma, mb = (json.loads((e/'classifier'/'metrics.json').read_text()) for e in (a, b))
    for key in ('top1', 'top5', 'macro_f1', 'ece', 'epoch'): assert ma[key] == pytest.approx(mb[key], abs=1e-6), key
    ha, hb = (json.loads((e/'classifier'/'history.json').read_text()) for e in (a, b))
    assert [h['epoch'] for h in hb] == list(range(1, len(ha) + 1))
    for x, y in zip(ha, hb): assert x == pytest.approx(y, rel=1e-5), (x, y)


@pytest.mark.slow  # three training runs, one killed
def test_resume_after_kill_matches_unbroken_run(prepared, tmp_path):
    unbroken, killed = fresh(prepared, tmp_path, 'unbroken'), fresh(prepared, tmp_path, 'killed')
    subprocess.run(_train(unbroken), check=True, capture_output=True, timeout=600)
    assert 2 <= _kill_then_resume(killed, _train, 4) < 4
    assert_same_run(unbroken, killed)


@pytest.mark.slow  # three training runs, one killed
def test_imprint_aux_trains_its_head_keeps_it_out_of_the_model_and_resumes_exactly(prepared, tmp_path):
    import torch
    def train(exp, *extra):
        return [str(BIN/'pillsnap'), 'train-cls', '--exp', str(exp), '--no-notebook', *TINY_TRAIN, 'train.epochs=3', 'train.imprint_aux=1.0', *extra]
    unbroken, killed = fresh(prepared, tmp_path, 'unbroken'), fresh(prepared, tmp_path, 'killed')
    subprocess.run(train(unbroken), check=True, capture_output=True, timeout=600)
    assert re.search(r'imprint auxiliary task: \d+ characters', (unbroken/'logs'/'train-cls.log').read_text())
    ck = torch.load(unbroken/'classifier'/'last.pt', weights_only=True)
    head, n_chars = ck['imprint_head'], len({c for r in json.loads((unbroken/'data'/'drug_table.json').read_text()).values()
                                             for c in (r['print_front'] or '') + (r['print_back'] or '') if not c.isspace()})
    assert head['weight'].shape[0] == n_chars and not any(k.startswith('imprint') for k in ck['model'])
    assert 2 <= _kill_then_resume(killed, train, 3) < 3
    assert_same_run(unbroken, killed)
    r = cli('train-cls', '--exp', fresh(prepared, tmp_path, 'mixed'), '--no-notebook', *TINY_TRAIN, 'train.imprint_aux=0.5', 'train.mix=mixup', check=False)
    assert r.returncode == 2 and 'needs train.mix=none' in r.stderr



def test_hard_cases_of_an_evaluation_are_drawn_more_often_in_the_next_training(prepared, tmp_path):
    "loader.hard_cases_path: the drugs of an earlier evaluation's hard cases get the weighted sampler; a wrong file or P×K batches are one line, before any work."
    import pandas as pd
    exp = fresh(prepared, tmp_path, 'hard')
    codes = list(json.loads((exp/'data'/'class_map.json').read_text()))
    csv = tmp_path/'hard_cases.csv'
    pd.DataFrame(dict(image=['a.png'], k_code=[codes[0]], predicted=[codes[1]], wrong=[True])).to_csv(csv, index=False)
    r = cli('train-cls', '--exp', exp, '--no-notebook', *TINY_TRAIN, 'train.epochs=1', f'loader.hard_cases_path={csv}')
    assert 'hard cases from' in (exp/'logs'/'train-cls.log').read_text() and '2 drugs drawn 3 times as often' in (exp/'logs'/'train-cls.log').read_text()
    for bad, says in (([f'loader.hard_cases_path={tmp_path}/none.csv'], 'cannot be read'),
                      ([f'loader.hard_cases_path={csv}', 'loader.pk_per_class=4'], 'both choose how batches are drawn')):
        r = cli('train-cls', '--exp', fresh(prepared, tmp_path, f'bad{len(says)}'), '--no-notebook', *TINY_TRAIN, *bad, check=False)
        assert r.returncode == 2 and says in r.stderr, r.stderr


KILL_BETWEEN_WRITES = '''
import os, signal, sys
from pathlib import Path
import pillsnap.callbacks as C  # where the checkpointing callback writes
from pillsnap.cli import main
epoch, save = int(sys.argv[1]), C.save_checkpoint
def save_then_die(state, path):
    "The epoch's first checkpoint write completes; the second is killed half-way, leaving its temporary file."
    save(state, path)
    if state.get('epoch') == epoch and Path(path).name in ('best.pt', 'last.pt'):
        other = {'best.pt': 'last.pt', 'last.pt': 'best.pt'}[Path(path).name]
        Path(path).with_name(f'.{other}.{os.getpid()}.tmp').write_bytes(b'half a checkpoint')
        os.kill(os.getpid(), signal.SIGKILL)
    return Path(path)
C.save_checkpoint = save_then_die
sys.exit(main(sys.argv[2:]))
'''


@pytest.mark.slow  # three training runs, one killed
def test_kill_between_the_best_and_last_writes_then_resume_delivers_the_right_best(prepared, tmp_path):
    "Killed in the epoch of the final best model, between its two checkpoint writes: the resumed run ends like the unbroken one."
    import torch
    unbroken, killed = fresh(prepared, tmp_path, 'unbroken'), fresh(prepared, tmp_path, 'killed')
    subprocess.run(_train(unbroken), check=True, capture_output=True, timeout=600)
    best = torch.load(unbroken/'classifier'/'best.pt', weights_only=True)['epoch']
    assert best >= 2, 'the run must improve after epoch 1 for the kill to fall between two writes of a resumable run'
    r = subprocess.run([sys.executable, '-c', KILL_BETWEEN_WRITES, str(best), *_train(killed)[1:]], capture_output=True, text=True, timeout=600)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert [f.name for f in (killed/'classifier').glob('.*.tmp')]
    subprocess.run(_train(killed, 'train.resume=last'), check=True, capture_output=True, timeout=600)
    assert not list((killed/'classifier').glob('.*.tmp'))
    assert 'removed the temporary files of killed checkpoint writes: .' in (killed/'logs'/'train-cls.log').read_text()
    assert torch.load(killed/'classifier'/'best.pt', weights_only=True)['epoch'] == best
    assert_same_run(unbroken, killed)


def test_training_afresh_over_a_trained_classifier_needs_force(prepared, tiny_root, tmp_path):
    from pillsnap.classifier import check_classifier
    from pillsnap.config import ConfigError, load_config
    exp = fresh(prepared, tmp_path, 'exp')
    cfg = load_config([f'paths.exp_dir={exp}', f'data.root={tiny_root}', *TINY_TRAIN])
    check_classifier(cfg)
    (exp/'classifier').mkdir(); (exp/'classifier'/'best.pt').write_bytes(b'a trained classifier')
    with pytest.raises(ConfigError, match=r'already has a trained classifier .*pass --force to replace it'): check_classifier(cfg)
    assert check_classifier(cfg, force=True).k_codes
    cfg.train.resume = 'last'
    with pytest.raises(ConfigError, match=r'no checkpoint .*last\.pt'): check_classifier(cfg)


@pytest.mark.slow  # three launches of pillsnap
def test_unreadable_training_photos_stop_the_run_with_the_reason(tiny_root, tmp_path):
    """Photos that break after `prepare`: past loader.max_read_failures the run stops (exit 1) naming a file and the setting,
    in the main process and from loader workers; with every photo allowed to fail, one line and exit 2 (it was a
    StopIteration traceback in worker autotuning, a TypeError at 0 batches)."""
    root, exp = tmp_path/'release', tmp_path/'exp'
    shutil.copytree(tiny_root, root)
    cli('prepare', '--root', root, '--exp', exp, *TINY_TRAIN, 'data.cache=false')
    for p in (root/'data'/'train'/'images').rglob('*.png'): p.write_bytes(b'not a photo')
    for workers in ('auto', '0'):
        r = cli('train-cls', '--exp', exp, 'train.epochs=1', f'loader.num_workers={workers}', '--no-notebook', check=False)
        assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
        assert re.search(r'crops could not be read .* loader.max_read_failures=0.01 allows; the last: \S+\.png \(not an image\)',
                         r.stderr), r.stderr
    r = cli('train-cls', '--exp', exp, 'train.epochs=1', 'loader.max_read_failures=1', '--no-notebook', check=False)
    assert r.returncode == 2 and 'no training photo could be read' in r.stderr and 'Traceback' not in r.stderr, r.stderr


def test_a_training_set_smaller_than_the_batch_trains(prepared, tmp_path):
    exp = fresh(prepared, tmp_path, 'small')
    r = cli('train-cls', '--exp', exp, 'train.epochs=1', 'train.batch_size=256', 'train.auto_batch=false', '--no-notebook')
    assert (exp/'classifier'/'best.pt').is_file() and 'Traceback' not in r.stderr


LITE0 = ['classifier.pretrained=lite0', 'classifier.model=tf_efficientnet_lite0', 'classifier.img_size=224', 'classifier.mean=0.5,0.5,0.5',
         'classifier.std=0.5,0.5,0.5']


def test_an_offline_start_that_does_not_fit_the_settings_is_refused(prepared, tmp_path):
    exp = fresh(prepared, tmp_path, 'wrong-start')
    r = cli('train-cls', '--exp', exp, '--no-notebook', *TINY_TRAIN, 'train.epochs=1', 'classifier.pretrained=lite0', check=False)
    assert r.returncode == 2, r.stderr[-2000:]
    # classifier.mean/std are `auto` (issue 80 §2): the start's own follow the model, so the model alone is named
    assert 'set classifier.model=tf_efficientnet_lite0 (or' in r.stderr, r.stderr[-1000:]
    r = cli('train-cls', '--exp', exp, '--no-notebook', *TINY_TRAIN, 'train.epochs=1', *LITE0[:3], 'classifier.mean=0.485,0.456,0.406',
            check=False)  # numbers the user set that are not the start's: refused with the start's
    assert r.returncode == 2 and 'set classifier.mean=0.5,0.5,0.5 (or' in r.stderr, r.stderr[-1000:]


@pytest.mark.slow  # EfficientNet-Lite0 at 224 px for one epoch on the tiny data
def test_train_from_the_offline_lite0_start(tiny_root, tmp_path):
    import timm, torch
    from pillsnap.pretrained import start_state
    exp = tmp_path/'lite0'
    # the default start (`auto`): the offline package for this model, and the log says so
    cli('prepare', '--root', tiny_root, '--exp', exp, *TINY_TRAIN, *LITE0[1:], 'classifier.pretrained=auto')
    cli('train-cls', '--exp', exp, '--no-notebook', 'train.epochs=1', 'train.lr=0.0003')
    ck = torch.load(exp/'classifier'/'last.pt', weights_only=True)
    assert ck['model_name'] == 'tf_efficientnet_lite0' and ck['config']['classifier']['pretrained'] == 'auto'
    log = (exp/'logs'/'train-cls.log').read_text()
    assert 'classifier start: ImageNet weights of tf_efficientnet_lite0 from the installed package' in log, log[-2000:]
    assert ':mean=0.5,0.5,0.5:std=0.5,0.5,0.5' in ck['preprocess']
    ref = timm.create_model('tf_efficientnet_lite0', num_classes=1000)
    start = start_state('lite0', ref)['blocks.6.0.conv_pwl.weight']
    trained = ck['model']['backbone.blocks.6.0.conv_pwl.weight']
    # one epoch at a small learning rate moves the ImageNet weights a little, not to something else
    assert 0 < (trained - start).norm() / start.norm() < 0.2
    # best.pt is the fine-tuned weights mixed with the start (train.wise, WiSE-FT) and a head refitted to them
    best = torch.load(exp/'classifier'/'best.pt', weights_only=True)
    assert best['epoch'] == ck['epoch'] and best['wise']['alpha'] == 0.5 and best['wise']['start'] == 'lite0'
    mixed = best['model']['backbone.blocks.6.0.conv_pwl.weight']
    assert torch.allclose(mixed, 0.5 * trained + 0.5 * start, atol=1e-6)
    assert not torch.equal(best['model']['backbone.classifier.weight'], ck['model']['backbone.classifier.weight'])
    assert best['wise']['head']['loss_after'] < best['wise']['head']['loss_before']
    assert 'of the start (lite0); head refitted on' in (exp/'logs'/'train-cls.log').read_text()
    assert json.loads((exp/'classifier'/'metrics.json').read_text())['training']['wise']['alpha'] == 0.5


REFIT_PROBE = '''
import resource, sys, time, torch
from pillsnap.classifier import fit_softmax
torch.manual_seed(0)
classes, per, dim, chunk = 4523, 16, 16, 64
y = torch.arange(classes).repeat_interleave(per)
x = torch.randn(classes, dim)[y] + 0.5 * torch.randn(len(y), dim)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
w, b, start, end = fit_softmax(x, y, torch.zeros(classes, dim), torch.zeros(classes), steps=1, chunk_mb=chunk)
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(grew, time.perf_counter() - t, start, end, tuple(w.shape))
'''


def test_the_head_refit_at_4523_drugs_stays_within_its_memory_bound():
    "Issue 80 §1: WiSE-FT's head refit held every crop's logits at once (4,523 drugs x 64 crops: ~17 GB after the last epoch); now chunks of 64 MB."
    out = subprocess.run([sys.executable, '-c', REFIT_PROBE], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    grew, seconds, start, end, shape = out.stdout.split(maxsplit=4)
    # all 72,368 rows' logits at once are 1.3 GB, x3 with softmax and gradient; in 64 MB chunks about 3 x 64 MB
    assert float(grew) < 400, f'the refit grew the process by {float(grew):.0f} MB'
    assert float(end) <= float(start) and shape.strip() == '(4523, 16)'
