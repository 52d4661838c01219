"""The WiSE-FT head refit at the production size, on this machine: peak memory and time of `fit_softmax`.

    .venv/bin/python tools/bench_refit.py                 # 4,523 drugs x 64 crops x 1,280 features (EfficientNetV2-S)
    .venv/bin/python tools/bench_refit.py --steps 50      # the whole fit, as `wise_finish` runs it (hours on 2 CPU cores)

Made-up features (the refit's inputs, not a trained model's); the numbers go to the benchmarks page."""
import argparse, json, resource, time

import torch

from pillsnap.classifier import REFIT_CHUNK_MB, fit_softmax


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--classes', type=int, default=4523)
    ap.add_argument('--per-class', type=int, default=64, help='crops per drug (WISE_HEAD_CROPS)')
    ap.add_argument('--dim', type=int, default=1280, help='pooled features (tf_efficientnetv2_s: 1280)')
    ap.add_argument('--steps', type=int, default=1, help='L-BFGS iterations (wise_finish: 50)')
    ap.add_argument('--chunk-mb', type=float, default=REFIT_CHUNK_MB)
    a = ap.parse_args()
    torch.manual_seed(0)
    y = torch.arange(a.classes).repeat_interleave(a.per_class)
    centres, x = torch.randn(a.classes, a.dim), torch.empty(len(y), a.dim)
    for i in range(0, len(y), 8192):  # filled in pieces: the features alone, no larger temporary before the fit
        x[i:i + 8192] = centres[y[i:i + 8192]] + torch.randn(len(y[i:i + 8192]), a.dim)
    evals, loss = [0], torch.nn.functional.cross_entropy
    def counted(*args, **kw):
        evals[0] += 1; return loss(*args, **kw)
    torch.nn.functional.cross_entropy = counted  # chunks evaluated: one evaluation is ceil(rows / chunk rows) of them
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the peak so far: the features and the imports
    t = time.perf_counter()
    *_, before, after = fit_softmax(x, y, torch.zeros(a.classes, a.dim), torch.zeros(a.classes), steps=a.steps,
                                    chunk_mb=a.chunk_mb)
    s = time.perf_counter() - t
    chunks = -(-len(y) // max(1, int(a.chunk_mb * 2**20 // (4 * a.classes))))
    passes = evals[0] / chunks
    print(json.dumps(dict(classes=a.classes, crops=len(y), dim=a.dim, steps=a.steps, chunk_mb=a.chunk_mb,
                          features_mb=round(x.numel() * 4 / 2**20), peak_growth_mb=round(resource.getrusage(
                              resource.RUSAGE_SELF).ru_maxrss / 1024 - base), seconds=round(s, 1),
                          passes=round(passes, 1), seconds_per_pass=round(s / passes, 1),
                          threads=torch.get_num_threads(), loss=[round(before, 4), round(after, 4)])))


if __name__ == '__main__': main()
