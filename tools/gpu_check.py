"""The GPU path in one command (issue 36 §3; `make gpu-check`): what the production recipe does on this machine's GPU.

    python tools/gpu_check.py --out work/gpu-check            (make gpu-check; under 9 minutes on one H100)
    python tools/gpu_check.py --out /tmp/gc --tiny            (the same steps with tiny models: checks the tool on a CPU)

Steps, each timed and kept in OUT/gpu_check.json (a failing step is recorded with its error; the others still run):
  1. classifier training at production size (EfficientNetV2-S 384, the configured precision, channels_last):
     images/s eager and compiled, the loader's data share, peak CUDA memory (`train_classifier`, from the crop cache);
  2. the same model's training step on GPU-resident tensors (`bench_loader.gpu_rate`): the rate without any loader;
  3. auto batch: the batch it chooses under `train.vram_headroom`, the learning rate it implies, its peak memory;
  4. the out-of-memory ladder forced once (all but ~3 GB of the GPU held by another tensor while the same training
     runs): the rungs it climbed and the batch it trained at;
  5. YOLO11m training at 640: photos/s over one epoch of synthetic combination photos;
  6. single and combo mode p50/p95 per backend (PyTorch with autocast, ONNX Runtime with the best provider it has),
     one request at a time (`measure_latency`), after exporting the experiment.
It prints the README's GPU rows at the end, naming the device.
"""
import argparse, json, os, sys, time, traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT/'tools')]

PRODUCTION = dict(cls=('tf_efficientnetv2_s', 384), det=('yolo11m', 640), batch=128)
TINY = dict(cls=('test_efficientnet', 64), det=('yolo11n', 160), batch=16)


def step(report:dict, name:str, fn):
    "Run one step; record its result or its error, and its seconds."
    t0 = time.perf_counter()
    try: report[name] = dict(fn(), seconds=round(time.perf_counter() - t0, 1))
    except Exception as e:  # a GPU check reports every step it could run: the error is the measurement
        report[name] = dict(error=f'{type(e).__name__}: {e}', trace=traceback.format_exc()[-2000:],
                            seconds=round(time.perf_counter() - t0, 1))
    print(f"{name}: {json.dumps(report[name])[:400]}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='work/gpu-check')
    ap.add_argument('--tiny', action='store_true', help='tiny models and photos: check the tool itself (any device)')
    ap.add_argument('--photos', type=int, default=20, help='photos timed per mode and backend')
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
    report = dict(device=torch.cuda.get_device_name() if cuda else 'cpu (no GPU: not a measurement)', tiny=a.tiny,
                  machine=machine(), torch=torch.__version__, sizes=size)
    cores = len(os.sched_getaffinity(0))
    image = (244, 320) if a.tiny else (976, 1280)
    release = out/'release'
    if not (release/'data').exists():
        synth_dataset(release, classes=10 if a.tiny else 40, per_class=8 if a.tiny else 40, combos=12 if a.tiny else 200,
                      val_per_class=1, image_size=image, workers=cores)
    (cm, cs), (dm, ds) = size['cls'], size['det']
    base = [f'data.root={release}', f'data.workers={cores}', 'train.epochs=1', 'train.patience=0', 'train.log_every=20',
            f'classifier.model={cm}', f'classifier.img_size={cs}', 'classifier.pretrained=none', 'data.paste_photos=0',
            'data.wild_photos=0', f'detector.model={dm}', f'detector.img_size={ds}', 'detector.epochs=1',
            f'detector.workers={min(cores, 8)}', 'export.calib_images=16', *(['loader.num_workers=0'] if a.tiny else [])]

    def train(name, *settings):
        cfg = load_config([*base, f'paths.exp_dir={out/name}', *settings])
        setup_logging(cfg, Path(cfg.paths.exp_dir)/'logs'/'train-cls.log')
        prepare(cfg); save_config(cfg, Path(cfg.paths.exp_dir)/'config.yaml')  # the snapshot serving reads
        t = train_classifier(cfg)['training']
        keep = ('images_per_s', 'data_share', 'peak_cuda_mb', 'precision', 'compiled', 'channels_last', 'batch_size',
                'auto_batch', 'oom_events', 'device')
        return {k: t.get(k) for k in keep}

    fixed = [f"train.batch_size={size['batch']}", 'train.auto_batch=false']
    step(report, 'classifier_eager', lambda: train('exp-eager', *fixed, 'train.compile=none'))
    step(report, 'classifier_compiled', lambda: train('exp-compiled', *fixed, 'train.compile=default'))
    step(report, 'gpu_resident_tensors', lambda: dict(images_per_s=round(gpu_rate(cm, cs, size['batch'], dev), 1))
         if cuda else dict(skipped='no GPU'))
    step(report, 'auto_batch', lambda: train('exp-auto', 'train.auto_batch=true', 'train.compile=none'))

    def oom():
        "Training with all but ~3 GB of the GPU taken: the batch cannot fit and the ladder has to climb."
        if not cuda: return dict(skipped='no GPU: nothing runs out of memory')
        free, _ = torch.cuda.mem_get_info()
        hog = torch.empty(max(free - (1 << 30) * (1 if a.tiny else 3), 0), dtype=torch.uint8, device='cuda')
        try: return train('exp-oom', *fixed, 'train.compile=none')
        finally: del hog; torch.cuda.empty_cache()
    step(report, 'oom_ladder', oom)

    def detector():
        from pillsnap.detector import train_detector
        cfg = load_config([*base, f'paths.exp_dir={out/"exp-eager"}', f"detector.batch_size={16 if a.tiny else 32}"])
        setup_logging(cfg, Path(cfg.paths.exp_dir)/'logs'/'train-det.log')
        n = sum(1 for _ in (out/'exp-eager'/'data'/'yolo'/'images'/'train').iterdir())
        t0 = time.perf_counter(); train_detector(cfg); secs = time.perf_counter() - t0
        return dict(photos=n, epochs=1, photos_per_s=round(n / secs, 1), note='one epoch, validation included')
    step(report, 'detector_training', detector)

    def serving():
        from pillsnap.export import export_experiment
        export_experiment(load_config([*base, f'paths.exp_dir={out/"exp-eager"}', 'export.bench=false']))
        rows = {}
        for backend in ('torch', 'onnx'):
            r = measure_latency(out/'exp-eager', a.photos, backend=backend, device=dev.type,
                                settings=['detector.conf=0.001', 'detector.max_det=8'])
            rows[backend] = {m: r[m]['total'] for m in ('single', 'combo') if m in r}
        return rows
    step(report, 'serving_latency_ms', serving)
    (out/'gpu_check.json').write_text(json.dumps(report, indent=1, default=str))
    print_rows(report)
    return report


def print_rows(r:dict):
    "The README's GPU rows from a report."
    get = lambda k, f: r.get(k, {}).get(f, 'failed')
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
                  + ', '.join(f"{m['p50']:.0f}/{m['p95']:.0f}" for m in modes.values() if isinstance(m, dict)) + ' |')


if __name__ == '__main__': main()
