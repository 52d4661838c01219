"""INT8 quantisation of a trained classifier: accuracy against speed, per recipe (nbs/90_benchmarks.ipynb: Export).

Exports the experiment's best classifier to ONNX, then quantises it with each recipe — calibration method
(MinMax, Percentile, Entropy), calibration set size, and which layers stay in float (the first convolution, the
classifier head) — and reports for each: top-1 on the whole validation split against the float ONNX model,
top-1 agreement with it, and batch-1 latency (the seeds' protocol: warm-up, then timed calls) against PyTorch.

    python tools/bench_int8.py --exp work/exp/bench [--out work/bench-int8] [--runs 200]
"""
import argparse, json, sys, time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pillsnap.config import exp_paths, load_config                                                  # noqa: E402
from pillsnap.model import find_checkpoint, load_classifier                                        # noqa: E402
from pillsnap.prepare import classifier_data                                                       # noqa: E402
from pillsnap.loaders import PillDataset, eval_transforms, make_loader                              # noqa: E402
from pillsnap.runtime import OnnxClassifier, export_classifier                                     # noqa: E402
from pillsnap.export import INT8_RECIPES, bench_models, quantize_classifier                          # noqa: E402


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
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(path=Path(a.exp)/'config.yaml')
    paths = exp_paths(cfg.paths.exp_dir)
    model, ck = load_classifier(find_checkpoint('best', paths.classifier))
    d = classifier_data(cfg)
    loader = lambda rows, cache, bs=64: make_loader(PillDataset(rows, d.root, d.pre, eval_transforms(d.pre), cache), bs, num_workers=0)
    fp32 = export_classifier(model, ck, out/'classifier.onnx')
    models = {'pytorch fp32': model.float().eval(), 'onnx fp32': OnnxClassifier(fp32, 'cpu')}
    ref_logits, ys = logits_of(models['onnx fp32'], loader(d.val, d.val_cache))
    ref, top1 = ref_logits.argmax(1), lambda pred: round(float((pred == ys).float().mean()), 4)
    rows = {'pytorch fp32': dict(top1=top1(ref)), 'onnx fp32': dict(top1=top1(ref), agreement=1.0)}  # the same network (pillsnap export checks parity)
    for name in a.recipes.split(','):
        dst, t0 = out/f'classifier.{name}.onnx', time.perf_counter()
        quantize_classifier(fp32, dst, loader(d.train, d.train_cache), **INT8_RECIPES[name])
        models[name] = OnnxClassifier(dst, 'cpu')
        pred = logits_of(models[name], loader(d.val, d.val_cache))[0].argmax(1)
        rows[name] = dict(**INT8_RECIPES[name], top1=top1(pred), top1_change_pts=round(100 * (top1(pred) - top1(ref)), 2),
                          agreement=round(float((pred == ref).float().mean()), 4), quantise_s=round(time.perf_counter() - t0, 1))
        print(name, json.dumps(rows[name]), flush=True)
    x1 = next(iter(loader(d.val, d.val_cache, 1)))[0]
    for name, r in bench_models(models, x1, 20, a.runs, batches=()).items():  # batch-1 latency, speed-up against the first (PyTorch)
        rows[name].update(r['batch1'], speedup_vs_pytorch=r['speedup_p50'])
    rows = [dict(recipe=k, **v) for k, v in rows.items()]
    result = dict(exp=str(paths.root), model=ck['model_name'], img_size=ck['img_size'], val_crops=len(ys), torch_threads=torch.get_num_threads(), rows=rows)
    (out/'bench_int8.json').write_text(json.dumps(result, indent=1))
    print(f"{'recipe':<22}{'top-1':>8}{'Δ pts':>8}{'agree':>8}{'p50 ms':>9}{'×pytorch':>10}")
    for r in rows:
        print(f"{r['recipe']:<22}{r['top1']:>8.4f}{r.get('top1_change_pts', 0):>8.2f}{r.get('agreement', 1):>8.3f}{r['p50_ms']:>9.2f}{r['speedup_vs_pytorch']:>10.2f}")
    return result


if __name__ == '__main__': main()
