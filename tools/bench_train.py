"""Classifier training throughput at production size: the real training loop vs the same model on synthetic tensors.

    python tools/bench_train.py OUT_DIR [--classes 40] [--per-class 40] [--epochs 2] [--compile none,default] [--batch-size 128]

Builds a synthetic release at the real photo size (976x1280), prepares it at `classifier.img_size`
(384 by default), and trains the production classifier (`classifier.model`, bf16 where supported,
channels_last) through `train_classifier` once per compile mode, reading `metrics.json`:
images/s, the data-loading share of the step time and peak CUDA memory (the first steps, with
compilation, are left out). It then times the same model's training step on tensors already on the
GPU (`bench_loader.gpu_rate`): the loader keeps the GPU busy when the two rates are close.
Writes OUT_DIR/bench_train.json. Meant for a GPU machine; on a CPU it runs, slowly.
"""
import argparse, json, os, sys, time
from pathlib import Path

import torch

from pillsnap.classifier import train_classifier
from pillsnap.config import load_config, setup_logging
from pillsnap.prepare import prepare
from pillsnap.synth import synth_dataset

sys.path.insert(0, str(Path(__file__).parent))
from bench_loader import gpu_rate  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('out'); ap.add_argument('--classes', type=int, default=40); ap.add_argument('--per-class', type=int, default=40)
    ap.add_argument('--epochs', type=int, default=2); ap.add_argument('--compile', default='none,default')
    ap.add_argument('--batch-size', type=int, default=128); ap.add_argument('settings', nargs='*', help='extra key=value settings')
    a = ap.parse_args()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    base = [f'data.root={out/"release"}', f'data.workers={cores}', f'train.epochs={a.epochs}', f'train.batch_size={a.batch_size}',
            'train.auto_batch=false', 'train.patience=0', 'train.log_every=20',
            'classifier.pretrained=none', 'data.paste_photos=0', 'data.wild_photos=0', *a.settings]  # throughput: the start does not matter
    if not (out/'release'/'data').exists():
        synth_dataset(out/'release', classes=a.classes, per_class=a.per_class, combos=0, val_per_class=1, workers=cores)
    res = dict(cores=cores, torch=torch.__version__, gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None, runs={})
    for mode in a.compile.split(','):
        cfg = load_config([*base, f'paths.exp_dir={out/("exp-" + mode)}', f'train.compile={mode}'])
        setup_logging(cfg, Path(cfg.paths.exp_dir)/'logs'/'train-cls.log')
        prepare(cfg)
        t0 = time.perf_counter()
        m = train_classifier(cfg)
        t = m['training']
        res['runs'][mode] = dict(wall_s=round(time.perf_counter() - t0, 1), **{k: t[k] for k in ('images_per_s', 'data_share', 'peak_cuda_mb', 'precision', 'compiled', 'batch_size', 'device')})
        print(mode, res['runs'][mode], flush=True)
    if torch.cuda.is_available():
        res['synthetic_tensors_img_per_s'] = round(gpu_rate(cfg.classifier.model, cfg.classifier.img_size, a.batch_size, torch.device('cuda')), 1)
        for r in res['runs'].values(): r['share_of_synthetic_rate'] = round(r['images_per_s'] / res['synthetic_tensors_img_per_s'], 3)
    (out/'bench_train.json').write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == '__main__':
    main()
