"""The GPU path in one command (issue 36 §3; `make gpu-check`): what the production recipe does on this machine's GPU.

    python tools/gpu_check.py --out work/gpu-check            (make gpu-check; ~11 minutes on one H100, estimated)
    python tools/gpu_check.py --out /tmp/gc --tiny            (the same steps with tiny models: checks the tool on a CPU)
    python tools/gpu_check.py --out work/gpu-check --steps auto_batch,oom_ladder   (some steps; added to OUT's report)
    python tools/gpu_check.py --out work/gpu-check --throughput-batches 1,8,32 --throughput-runs 30   (ONNX Runtime on a CPU)

Every step trains in one experiment, prepared once (the crop cache and YOLO tree are built a single time), with the
loader's workers fixed at min(cores, 8) on a GPU (autotuning them costs ~35 s a run); the compiled run, the slowest
(~4 minutes on one H100, most of it compiling), comes last, so a run cut off keeps every other row. The estimate
adds the steps' times measured on one H100 (2026-11-26), auto batch and serving guessed at 1 and 2 minutes (on one H200,
2026-11-30, serving's export took 113 s and its bench 51 s; a machine without internet: `make gpu-wheels`); where a
command may run 10 minutes at most, run it as two: `--steps classifier_eager,gpu_resident_tensors,auto_batch,
oom_ladder,detector_training` and then `--steps serving_latency_ms,classifier_compiled` with the same --out.

Steps, each timed and kept in OUT/gpu_check.json (a failing step is recorded with its error; the others still run):
  1. classifier training at production size (EfficientNetV2-S 384, the configured precision, channels_last):
     images/s eager and compiled, the loader's data share, peak CUDA memory (`train_classifier`, from the crop cache);
  2. the same model's training step on GPU-resident tensors (`bench_loader.gpu_rate`): the rate without any loader;
  3. auto batch: the batch it chooses under `train.vram_headroom`, the learning rate it implies, its peak memory;
  4. the out-of-memory ladder forced once (all but ~3 GB of the GPU held by another tensor while the same training
     runs): the rungs it climbed and the batch it trained at;
  5. YOLO11m training at 640: photos/s over one epoch of synthetic combination photos;
  6. single and combo mode p50/p95 per backend (PyTorch with autocast, ONNX Runtime with the best provider it has),
     one request at a time (`measure_latency`: the whole call, detection and classification), after exporting the
     experiment; and the classifier's serving throughput per backend at batches 1, 8, 32 and 128 (the export's bench).
It prints the README's GPU rows at the end, naming the device. `pillsnap gate --exp E --speed OUT/gpu_check.json`
judges a stage's speed targets on these numbers when they timed E's models (EfficientNetV2-S 384, YOLO11m 640).
"""
import argparse, json, os, sys, time, traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT/'tools')]

PRODUCTION = dict(cls=('tf_efficientnetv2_s', 384), det=('yolo11m', 640), batch=128)
STEPS = ('synthetic_release', 'classifier_eager', 'gpu_resident_tensors', 'auto_batch', 'oom_ladder', 'detector_training',
         'serving_latency_ms', 'classifier_compiled')
TINY = dict(cls=('test_efficientnet', 64), det=('yolo11n', 160), batch=16)


def step(report:dict, name:str, fn, path:Path=None):
    "Run one step; record its result or its error, and its seconds; rewrite `path` so a run cut off keeps its finished steps."
    t0 = time.perf_counter()
    try: report[name] = dict(fn(), seconds=round(time.perf_counter() - t0, 1))
    except Exception as e:  # a GPU check reports every step it could run: the error is the measurement
        report[name] = dict(error=f'{type(e).__name__}: {e}', trace=traceback.format_exc()[-2000:],
                            seconds=round(time.perf_counter() - t0, 1))
    print(f"{name}: {json.dumps(report[name])[:400]}", flush=True)
    if path: path.write_text(json.dumps(report, indent=1, default=str))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='work/gpu-check')
    ap.add_argument('--tiny', action='store_true', help='tiny models and photos: check the tool itself (any device)')
    ap.add_argument('--photos', type=int, default=20, help='photos timed per mode and backend')
    ap.add_argument('--steps', default=','.join(STEPS), help=f'comma-separated steps to run in this order, of: {", ".join(STEPS)}')
    ap.add_argument('--per-class', type=int, default=None, help='synthetic photos per drug (40 drugs; default 40, tiny 8)')
    ap.add_argument('--combos', type=int, default=None, help='synthetic combination photos (default 200, tiny 12)')
    ap.add_argument('--throughput-batches', default=None,
                    help='batches of the serving throughput bench, comma-separated (default 1,8,32,128; tiny 1,8): '
                         'fewer where ONNX Runtime has only the CPU, whose batch 128 takes minutes')
    ap.add_argument('--throughput-runs', type=int, default=None, help='timed calls per batch there (default 200, tiny 20)')
    a = ap.parse_args(argv)
    from pillsnap.classifier import train_classifier
    from pillsnap.config import load_config, save_config, setup_logging
    from pillsnap.gates import machine, measure_latency
    from pillsnap.prepare import prepare
    from pillsnap.synth import synth_dataset
    from bench_loader import gpu_rate

    size = TINY if a.tiny else PRODUCTION
    out = Path(a.out).resolve(); out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    dev = torch.device('cuda' if cuda else 'cpu')
    wanted = a.steps.split(',')
    if unknown := set(wanted) - set(STEPS): sys.exit(f'unknown steps {sorted(unknown)}: choose from {", ".join(STEPS)}')
    saved = out/'gpu_check.json'
    report = json.loads(saved.read_text()) if saved.exists() else {}  # earlier steps of this OUT stay
    per_class, combos = a.per_class or (8 if a.tiny else 40), a.combos or (12 if a.tiny else 200)
    report.update(device=torch.cuda.get_device_name() if cuda else 'cpu (no GPU: not a measurement)', tiny=a.tiny,
                  device_type=dev.type, machine=machine(), torch=torch.__version__, sizes=size)
    steps = {}  # name -> fn; run in the order asked, after all are defined
    run = steps.__setitem__
    cores = len(os.sched_getaffinity(0))
    image = (244, 320) if a.tiny else (976, 1280)
    release, exp = out/'release', out/'exp'
    def release_photos():
        if not (release/'data').exists():
            synth_dataset(release, classes=10 if a.tiny else 40, per_class=per_class, combos=combos, val_per_class=1,
                          image_size=image, workers=cores)
        return dict(photos=sum(1 for _ in (release/'data').rglob('*.png')), per_class=per_class, combos=combos,
                    workers=cores)
    if not (release/'data').exists() and 'synthetic_release' not in wanted: wanted.insert(0, 'synthetic_release')  # every other step needs the photos
    run('synthetic_release', release_photos)
    (cm, cs), (dm, ds) = size['cls'], size['det']
    base = [f'data.root={release}', f'data.workers={cores}', 'train.epochs=1', 'train.patience=0', 'train.log_every=20',
            f'classifier.model={cm}', f'classifier.img_size={cs}', 'classifier.pretrained=none', 'data.paste_photos=0',
            'data.wild_photos=0', f'detector.model={dm}', f'detector.img_size={ds}', 'detector.epochs=1',
            f'detector.workers={min(cores, 8)}', 'export.calib_images=16', f'paths.exp_dir={exp}',
            f'loader.num_workers={min(cores, 8) if cuda else 0}']
    prepared = []

    def train(*settings):
        cfg = load_config([*base, *settings])
        setup_logging(cfg, exp/'logs'/'train-cls.log')
        if not prepared: prepare(cfg); prepared.append(True)  # one crop cache and YOLO tree for every step
        save_config(cfg, exp/'config.yaml')  # the snapshot serving reads
        t = train_classifier(cfg)['training']
        keep = ('images_per_s', 'data_share', 'peak_cuda_mb', 'precision', 'compiled', 'channels_last', 'batch_size',
                'auto_batch', 'oom_events', 'device')
        return {k: t.get(k) for k in keep}

    fixed = [f"train.batch_size={size['batch']}", 'train.auto_batch=false']
    run('classifier_eager', lambda: train(*fixed, 'train.compile=none'))
    run('gpu_resident_tensors', lambda: dict(images_per_s=round(gpu_rate(cm, cs, size['batch'], dev), 1))
         if cuda else dict(skipped='no GPU'))
    run('auto_batch', lambda: train('train.auto_batch=true', 'train.compile=none'))

    def oom():
        "Training with all but ~3 GB of the GPU taken: the batch cannot fit and the ladder has to climb."
        if not cuda: return dict(skipped='no GPU: nothing runs out of memory')
        free, _ = torch.cuda.mem_get_info()
        hog = torch.empty(max(free - (1 << 30) * (1 if a.tiny else 3), 0), dtype=torch.uint8, device='cuda')
        try: return train(*fixed, 'train.compile=none')
        finally: del hog; torch.cuda.empty_cache()
    run('oom_ladder', oom)

    def detector():
        from pillsnap.detector import train_detector
        # detected at its training size: choosing among three sizes validates three times (71 s of 154 on one H200)
        cfg = load_config([*base, f"detector.batch_size={16 if a.tiny else 32}", f'detector.detect_size={ds}'])
        setup_logging(cfg, exp/'logs'/'train-det.log')
        if not prepared: prepare(cfg); prepared.append(True)
        n = sum(1 for _ in (exp/'data'/'yolo'/'images'/'train').iterdir())
        t0 = time.perf_counter(); train_detector(cfg); secs = time.perf_counter() - t0
        return dict(photos=n, epochs=1, photos_per_s=round(n / secs, 1), note='one epoch, validation included')
    run('detector_training', detector)

    def serving():
        from pillsnap.export import export_experiment
        if not (exp/'classifier'/'best.pt').exists(): raise RuntimeError('no classifier to serve: run classifier_eager first')
        batches = ([int(b) for b in a.throughput_batches.split(',')] if a.throughput_batches
                   else [1, 8] if a.tiny else [1, 8, 32, 128])  # serving throughput: the classifier's crops a second per batch
        runs = a.throughput_runs or (20 if a.tiny else 200)
        # INT8 is the CPU's format (tools/bench_int8.py): on one H200 its calibration and parity took ~95 of the export's 113 s
        export_experiment(load_config([*base, 'export.bench=true', f'export.bench_batches={batches}', f'export.int8={not cuda}',
                                       f"export.bench_runs={runs}", f'export.bench_warmup={min(20, runs)}']))
        bench = json.loads((exp/'export'/'bench.json').read_text())
        report['serving_throughput'] = {k: m.get('throughput') for k, m in bench['classifier']['models'].items()}
        rows = {}
        for backend in ('torch', 'onnx'):  # each mode's whole call and its parts, as `pillsnap gate --speed` reads them
            r = measure_latency(exp, a.photos, backend=backend, device=dev.type,
                                settings=['detector.conf=0.001', 'detector.max_det=8'])
            rows[backend] = {m: {k: r[m][k] for k in ('total', 'detect', 'classify') if k in r[m]}
                             for m in ('single', 'combo') if m in r}
        return rows
    run('serving_latency_ms', serving)
    run('classifier_compiled', lambda: train(*fixed, 'train.compile=default'))  # last by default: compiling takes minutes
    for name in wanted: step(report, name, steps[name], saved)
    saved.write_text(json.dumps(report, indent=1, default=str))
    print_rows(report)
    return report


def print_rows(r:dict):
    "The README's GPU rows from a report."
    get = lambda k, f: r[k].get(f, 'failed') if k in r else 'not run'
    print(f"\n## {r['device']}{' (tiny models: a check of the tool, not a measurement)' if r['tiny'] else ''}")
    print(f"| classifier training, eager / compiled, img/s | {get('classifier_eager', 'images_per_s')} / "
          f"{get('classifier_compiled', 'images_per_s')} (GPU-resident tensors: {get('gpu_resident_tensors', 'images_per_s')}) |")
    print(f"| auto batch: batch, peak MB | {get('auto_batch', 'batch_size')}, {get('auto_batch', 'peak_cuda_mb')} |")
    print(f"| out-of-memory ladder (forced): rungs, batch trained at | "
          f"{[e.get('rung') for e in get('oom_ladder', 'oom_events') or [] if isinstance(e, dict)]}, {get('oom_ladder', 'batch_size')} |")
    print(f"| YOLO11m training at 640, photos/s | {get('detector_training', 'photos_per_s')} |")
    for backend, modes in (r.get('serving_latency_ms') or {}).items():
        if isinstance(modes, dict):
            print(f"| {backend}: single p50/p95, combo (8 pills) p50/p95, ms | "
                  + ', '.join(f"{m['total']['p50']:.0f}/{m['total']['p95']:.0f}" for m in modes.values()
                              if isinstance(m, dict) and 'total' in m) + ' |')
    for name, rates in (r.get('serving_throughput') or {}).items():
        print(f"| {name}: classifier serving throughput, img/s by batch | {rates} |")


if __name__ == '__main__': main()
