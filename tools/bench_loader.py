"""Loader throughput at production size: raw 976x1280 PNG vs the crop cache, by worker count, and what the GPU consumes.

    python tools/bench_loader.py OUT_DIR [--classes 40] [--per-class 25] [--workers 1,4,8,16] [--gpu-model tf_efficientnetv2_s]

Writes OUT_DIR/bench_loader.json. Builds its own synthetic release at the real size, prepares it at
384 px, then times epochs of the training loader (train transforms, batch 64, pinned memory, copied
to the GPU when there is one, and normalised there). With a GPU it also times the classifier's training step on
synthetic tensors (bf16 autocast, channels_last), the rate the loader has to keep up with.
"""
import argparse, json, os, sys, time
from pathlib import Path

import torch

from pillsnap.config import load_config, setup_logging
from pillsnap.data import load_manifest, pill_rows
from pillsnap.crops import preprocessor_from
from pillsnap.loaders import PillDataset, make_loader, train_transforms
from pillsnap.prepare import prepare
from pillsnap.synth import synth_dataset


def loader_rate(ds, workers, batch_size, device, normalize, images=2000):
    "Images per second delivered to `device` (normalised there) over at least `images`, after a warm-up batch."
    dl = make_loader(ds, batch_size, True, workers, prefetch_factor=4 if workers else 2, persistent_workers=workers > 0, drop_last=True)
    it = iter(dl); next(it)
    n, t0 = 0, time.perf_counter()
    while n < images:
        for xb, yb in it:
            xb = normalize(xb.to(device, non_blocking=True)); n += len(xb)
            if n >= images: break
        it = iter(dl)
    if device.type == 'cuda': torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def gpu_rate(model_name, img_size, batch_size, device, steps=30):
    "Training images per second of the classifier on synthetic tensors (bf16, channels_last)."
    import timm
    m = timm.create_model(model_name, pretrained=False, num_classes=1000).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, fused=True)
    x = torch.randn(batch_size, 3, img_size, img_size, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch_size,), device=device)
    def step():
        with torch.autocast('cuda', dtype=torch.bfloat16): loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(5): step()
    torch.cuda.synchronize(); t0 = time.perf_counter()
    for _ in range(steps): step()
    torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('out'); ap.add_argument('--classes', type=int, default=40); ap.add_argument('--per-class', type=int, default=25)
    ap.add_argument('--workers', default='1,4,8,16'); ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--gpu-model', default='tf_efficientnetv2_s')
    a = ap.parse_args()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    cfg = load_config({'data.root': str(out/'release'), 'paths.exp_dir': str(out/'exp'), 'data.workers': cores,
                       'data.paste_photos': 0, 'data.wild_photos': 0})  # the loader of the release's own photos
    setup_logging(cfg)
    res = dict(cores=cores, torch=torch.__version__, gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
               img_size=cfg.classifier.img_size, batch_size=a.batch_size)
    t0 = time.perf_counter()
    synth_dataset(out/'release', classes=a.classes, per_class=a.per_class, combos=0, val_per_class=1, workers=cores)
    res['synth_seconds'] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter(); prepare(cfg); res['prepare_seconds'] = round(time.perf_counter() - t0, 1)
    cache_meta = json.loads((out/'exp'/'data'/'cache'/'train'/'cache.json').read_text())
    res['cache_build_img_per_s'] = round(cache_meta['rows'] / cache_meta['seconds'], 1)
    res['cache_bytes_per_crop'] = round(cache_meta['bytes'] / cache_meta['rows'])
    rows = pill_rows(load_manifest(out/'exp'/'data', 'train'))
    pre = preprocessor_from(cfg)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    res['loader_img_per_s'] = {}
    for source, cache in (('raw PNG', None), ('crop cache', out/'exp'/'data'/'cache'/'train')):
        ds = PillDataset(rows, cfg.data.root, pre, train_transforms(pre), cache=cache)
        for w in [int(x) for x in a.workers.split(',') if int(x) <= cores]:
            r = loader_rate(ds, w, a.batch_size, device, pre.normalizer().to(device), images=500 if source == 'raw PNG' else 3000)
            res['loader_img_per_s'][f'{source}, {w} workers'] = round(r, 1)
            print(f'{source:>10}  workers={w:<3} {r:8.1f} img/s', flush=True)
    if device.type == 'cuda':
        res['gpu_train_img_per_s'] = round(gpu_rate(a.gpu_model, cfg.classifier.img_size, a.batch_size, device), 1)
        print(f"GPU {a.gpu_model} training step: {res['gpu_train_img_per_s']} img/s", flush=True)
    (out/'bench_loader.json').write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == '__main__':
    main()
