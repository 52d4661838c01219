"The detector stage through the `pillsnap` command: papermill report, metrics, safe weights, resume after a kill, offline errors."
import json, os, signal, subprocess, time
from pathlib import Path

import pytest

from conftest import BIN, run_cli

TINY_DET = ['detector.model=yolo11n', 'detector.img_size=128', 'detector.batch_size=8', 'detector.workers=0',
            'detector.close_mosaic=0', 'data.workers=1', 'data.cache=false']


@pytest.fixture(scope='module')
def det_exp(tiny_root, tmp_path_factory):
    "An experiment folder with prepared data (its YOLO tree)."
    exp = tmp_path_factory.mktemp('det')/'exp'
    run_cli('prepare', '--root', tiny_root, '--exp', exp, *TINY_DET)
    return exp


def _rows(exp):
    f = exp/'detector'/'train'/'results.csv'
    return len(f.read_text().strip().splitlines()) - 1 if f.is_file() else 0


def test_train_det_killed_then_resumed_finishes_with_report_metrics_and_safe_weights(det_exp):
    import torch
    from pillsnap.detector import detector_meta, load_detector
    cmd = [str(BIN/'pillsnap'), 'train-det', '--exp', str(det_exp), '--no-notebook', *TINY_DET, 'detector.epochs=3']
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    last, size = det_exp/'detector'/'train'/'weights'/'last.pt', -1
    while p.poll() is None and time.time() < deadline:  # wait for epoch 1's row and a fully written last.pt
        if _rows(det_exp) >= 1 and last.is_file() and last.stat().st_size == size: break
        size = last.stat().st_size if last.is_file() else -1
        time.sleep(0.3)
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    done = _rows(det_exp)
    assert 1 <= done < 3, f'the run should have been killed after epoch 1 (epochs done: {done})'
    assert not (det_exp/'detector'/'metrics.json').exists()
    r = run_cli('train-det', '--exp', det_exp, '--resume', *TINY_DET, 'detector.epochs=3')  # through papermill this time
    assert _rows(det_exp) == 3
    assert 'resuming the detector' in (det_exp/'logs'/'train-det.log').read_text()
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


def test_evaluate_detector_on_another_yolo_dataset(det_exp, tmp_path):
    "The real-photo check's command: a trained detector measured on a foreign data.yaml (here the same tree, copied)."
    if not (det_exp/'detector'/'detector.safetensors').exists(): pytest.skip('needs the trained detector of the test above')
    r = run_cli('evaluate', '--exp', det_exp, '--what', 'detector', '--data', det_exp/'data'/'yolo'/'data.yaml', '--split', 'test', *TINY_DET)
    out = json.loads((det_exp/'reports'/'detector-yolo-test.json').read_text())
    assert out['split'] == 'test' and out['images'] > 0 and 'map50' in r.stdout


def test_offline_errors_name_the_fix(det_exp):
    r = run_cli('train-det', '--exp', det_exp, *TINY_DET, 'detector.weights_path=/nowhere/yolo11n.pt', check=False)
    assert r.returncode == 2 and 'nothing is downloaded' in r.stderr, r.stderr
    r = run_cli('train-det', '--exp', det_exp, *TINY_DET, 'detector.model=yolo11n.pt', check=False)
    assert r.returncode == 2 and 'detector.weights_path' in r.stderr, r.stderr
    r = run_cli('train-det', '--exp', det_exp.parent/'nothing-here', *TINY_DET, check=False)
    assert r.returncode == 2 and 'pillsnap prepare' in r.stderr, r.stderr


def test_ultralytics_is_kept_offline():
    code = "import pillsnap.detector; import ultralytics.utils as u; print(u.ONLINE)"
    r = subprocess.run([str(BIN/'python'), '-c', code], capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != 'YOLO_OFFLINE'})
    assert r.stdout.strip() == 'False', r.stdout + r.stderr
