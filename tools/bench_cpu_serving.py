"""What a CPU-only deployment gives with the production architectures (nbs/90_benchmarks.ipynb: Export and serving speed).

Builds an experiment with the production models — EfficientNetV2-S at 384 px and YOLO11m at 640 px, each
trained for one epoch on a few synthetic photos at the release's 976x1280 (their weights are as good as
random: this measures speed, not accuracy) — exports it to ONNX (`pillsnap export`), then measures
single and combo mode end to end on its validation photos (`measure_latency`, `06a_judge.gates`: p50/p95 of the
whole call and of its detect and classify parts) with PyTorch, ONNX Runtime and the INT8 classifier.

    python tools/bench_cpu_serving.py --out work/bench-cpu [--photos 20] [--threads N]
"""
import argparse, json, os, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ['classifier.model=tf_efficientnetv2_s', 'classifier.img_size=384', 'detector.model=yolo11m', 'detector.img_size=640']


def sh(*cmd, log:Path):
    "Run a pillsnap command; stop with its log when it fails."
    t0 = time.perf_counter()
    with open(log, 'a') as f: r = subprocess.run([str(c) for c in cmd], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode: raise SystemExit(f"{' '.join(map(str, cmd))} failed ({r.returncode}) — see {log}")
    return round(time.perf_counter() - t0, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='work/bench-cpu')
    ap.add_argument('--photos', type=int, default=20, help='validation photos timed per mode')
    ap.add_argument('--backends', default='torch,onnx,onnx-int8')
    ap.add_argument('--fresh', action='store_true', help='rebuild the experiment even if it exists')
    a = ap.parse_args(argv)
    out = Path(a.out).resolve(); out.mkdir(parents=True, exist_ok=True)
    data, exp, log = out/'synth', out/'exp', out/'build.log'
    pillsnap = Path(sys.executable).parent/'pillsnap'
    steps = {}
    if a.fresh or not (exp/'export'/'classifier.onnx').is_file():
        shutil.rmtree(exp, ignore_errors=True)
        steps['synth_s'] = sh(pillsnap, 'synth', data, '--classes', 6, '--per-class', 3, '--combos', 12, '--image-size', '976,1280',
                              'synth.val_per_class=1', 'synth.photos_per_combo=2', log=log)
        tiny = ['classifier.pretrained=none', 'train.epochs=1', 'train.batch_size=4', 'train.auto_batch=false', 'loader.num_workers=0', 'detector.epochs=1', 'detector.batch_size=2',
                'detector.workers=0', f'data.yolo_singles_per_class=1', 'export.calib_images=8']
        steps['prepare_s'] = sh(pillsnap, 'prepare', '--root', data, '--exp', exp, *PRODUCTION, *tiny, 'data.cache=false', 'data.paste_photos=0', 'data.wild_photos=0', log=log)
        steps['train_cls_s'] = sh(pillsnap, 'train-cls', '--exp', exp, '--no-notebook', log=log)
        steps['train_det_s'] = sh(pillsnap, 'train-det', '--exp', exp, '--no-notebook', 'detector.conf=0.001', log=log)
        steps['export_s'] = sh(pillsnap, 'export', '--exp', exp, '--no-notebook', '--no-bench', log=log)
    from pillsnap.gates import machine, measure_latency
    rows = {}
    for backend in a.backends.split(','):
        r = measure_latency(exp, a.photos, backend=backend, device='cpu', settings=['detector.conf=0.001', 'detector.max_det=8'])
        rows[backend] = {m: r[m] for m in ('single', 'combo') if m in r}
        print(backend, json.dumps(rows[backend]), flush=True)
    report = dict(models=PRODUCTION, machine=machine(), cpu_count=os.cpu_count(), photos=a.photos, build=steps, latency_ms=rows)
    (out/'bench_cpu_serving.json').write_text(json.dumps(report, indent=1))
    print(f"\n{'backend':<11} {'single p50':>10} {'single p95':>10} {'combo p50':>10} {'combo p95':>10}")
    for b, r in rows.items():
        cell = lambda m, q: f"{r[m]['total'][q]:.0f} ms" if m in r else '—'
        print(f"{b:<11} {cell('single', 'p50'):>10} {cell('single', 'p95'):>10} {cell('combo', 'p50'):>10} {cell('combo', 'p95'):>10}")
    return report


if __name__ == '__main__': main()
