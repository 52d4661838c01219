"""INT8 quantisation of a trained classifier: accuracy against speed, per recipe (nbs/90_benchmarks.ipynb: Export).

Exports the experiment's best classifier to ONNX, then quantises it with each recipe — calibration method
(MinMax, Percentile, Entropy), calibration set size, and which layers stay in float (the first convolution, the
classifier head) — and reports for each: top-1 on the whole validation split against the float ONNX model,
top-1 agreement with it, and batch-1 latency (the seeds' protocol: warm-up, then timed calls) against PyTorch.

    python tools/bench_int8.py --exp work/exp/bench [--out work/bench-int8] [--runs 200]
"""
import argparse, json, sys, time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pillsnap.config import exp_paths, load_config                                                  # noqa: E402
from pillsnap.callbacks import find_checkpoint                                                      # noqa: E402
from pillsnap.classifier import classifier_data, load_classifier                                    # noqa: E402
from pillsnap.loaders import PillDataset, eval_transforms, make_loader                              # noqa: E402
from pillsnap.runtime import OnnxClassifier, export_classifier                                     # noqa: E402
from pillsnap.export import INT8_RECIPES, quantize_classifier                                        # noqa: E402


def latency(fn, x, warmup=20, runs=200):
    for _ in range(warmup): fn(x)
    ts = []
    for _ in range(runs):
        t = time.perf_counter(); fn(x); ts.append(time.perf_counter() - t)
    return dict(p50_ms=round(1000 * float(np.percentile(ts, 50)), 3), p95_ms=round(1000 * float(np.percentile(ts, 95)), 3))


@torch.inference_mode()
def logits_of(fn, loader):
    out, ys = [], []
    for xb, yb in loader: out.append(fn(xb).float()); ys.append(yb)
    return torch.cat(out), torch.cat(ys)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--exp', default='work/exp/bench')
    ap.add_argument('--out', default='work/bench-int8')
    ap.add_argument('--runs', type=int, default=200)
    ap.add_argument('--recipes', default=','.join(INT8_RECIPES), help=f"comma-separated, from {', '.join(INT8_RECIPES)}")
    a = ap.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(path=Path(a.exp)/'config.yaml')
    paths = exp_paths(cfg.paths.exp_dir)
    model, ck = load_classifier(find_checkpoint('best', paths.classifier))
    d = classifier_data(cfg)
    loader = lambda rows, cache, bs=64: make_loader(PillDataset(rows, d.root, d.pre, eval_transforms(d.pre), cache), bs, num_workers=0)
    fp32 = export_classifier(model, ck, out/'classifier.onnx')
    ref_logits, ys = logits_of(OnnxClassifier(fp32, 'cpu'), loader(d.val, d.val_cache))
    ref = ref_logits.argmax(1)
    x1 = next(iter(loader(d.val, d.val_cache, 1)))[0]
    model = model.float().eval()
    rows = [dict(recipe='pytorch fp32', top1=None, **latency(lambda x: model(x), x1, runs=a.runs)),
            dict(recipe='onnx fp32', top1=round(float((ref == ys).float().mean()), 4), agreement=1.0,
                 **latency(OnnxClassifier(fp32, 'cpu'), x1, runs=a.runs))]
    rows[0]['top1'] = rows[1]['top1']  # the same network (parity is checked by pillsnap export)
    print(json.dumps(rows[0]), json.dumps(rows[1]), sep='\n', flush=True)
    for name in a.recipes.split(','):
        dst = out/f'classifier.{name}.onnx'
        t0 = time.perf_counter()
        quantize_classifier(fp32, dst, loader(d.train, d.train_cache), **INT8_RECIPES[name])
        secs = time.perf_counter() - t0
        q = OnnxClassifier(dst, 'cpu')
        lg, _ = logits_of(q, loader(d.val, d.val_cache))
        row = dict(recipe=name, **INT8_RECIPES[name], top1=round(float((lg.argmax(1) == ys).float().mean()), 4),
                   agreement=round(float((lg.argmax(1) == ref).float().mean()), 4), quantise_s=round(secs, 1), **latency(q, x1, runs=a.runs))
        row['top1_change_pts'] = round(100 * (row['top1'] - rows[1]['top1']), 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]['p50_ms']
    for r in rows: r['speedup_vs_pytorch'] = round(base / r['p50_ms'], 2)
    result = dict(exp=str(paths.root), model=ck['model_name'], img_size=ck['img_size'], val_crops=len(ys), torch_threads=torch.get_num_threads(), rows=rows)
    (out/'bench_int8.json').write_text(json.dumps(result, indent=1))
    print(f"{'recipe':<22}{'top-1':>8}{'Δ pts':>8}{'agree':>8}{'p50 ms':>9}{'×pytorch':>10}")
    for r in rows:
        print(f"{r['recipe']:<22}{r['top1']:>8.4f}{r.get('top1_change_pts', 0):>8.2f}{r.get('agreement', 1):>8.3f}{r['p50_ms']:>9.2f}{r['speedup_vs_pytorch']:>10.2f}")
    return result


if __name__ == '__main__': main()
