"""`make gpu-check`'s tool on this machine's CPU with tiny models (issue 80 §5): the same code path writes the JSON
`pillsnap gate --speed` reads, and the gate refuses it as a GPU's numbers."""
import json, subprocess, sys
from pathlib import Path

import pytest

from pillsnap.config import ConfigError, load_config
from pillsnap.gates import gpu_speed

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_writes_what_the_gate_reads_and_a_cpu_run_is_not_a_gpus_speed(tmp_path):
    out = tmp_path/'gc'
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'gpu_check.py'), '--tiny', '--out', str(out), '--photos', '3',
                        '--steps', 'classifier_eager,detector_training,serving_latency_ms'], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads((out/'gpu_check.json').read_text())
    assert 'error' not in rep['serving_latency_ms'], rep['serving_latency_ms']
    assert rep['device_type'] == 'cpu' and rep['tiny'] is True
    for backend in ('torch', 'onnx'):  # each mode's whole call and its parts
        single, combo = rep['serving_latency_ms'][backend]['single'], rep['serving_latency_ms'][backend]['combo']
        assert single['total']['p95'] >= single['total']['p50'] > 0 and single['classify']['p50'] > 0
        assert combo['detect']['p50'] > 0
    assert set(rep['serving_throughput']) >= {'pytorch', 'onnxruntime'}
    assert all(v > 0 for v in rep['serving_throughput']['onnxruntime'].values())
    assert 'classifier serving throughput' in r.stdout  # the README's rows
    (cm, cs), (dm, ds) = rep['sizes']['cls'], rep['sizes']['det']
    cfg = load_config([f'classifier.model={cm}', f'classifier.img_size={cs}', f'detector.model={dm}',
                       f'detector.img_size={ds}', 'pipeline.backend=onnx'])
    with pytest.raises(ConfigError, match="not a GPU's speed"):
        gpu_speed(out/'gpu_check.json', cfg)
    g = subprocess.run([str(Path(sys.executable).parent/'pillsnap'), 'gate', '--exp', str(out/'exp'), '--stage', '1',
                        '--latency-photos', '0', '--speed', str(out/'gpu_check.json')], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert g.returncode == 2 and "not a GPU's speed" in g.stderr, g.stdout[-2000:] + g.stderr[-2000:]
