"""The classifier report at the release's class count, on random logits: time and peak memory of each step.

    python tools/bench_report.py --crops 20000 --classes 4523

Runs the steps `classifier_report` runs after the model has given its logits (metrics, the stored predictions,
temperature fitting, cross-fitted ECE and candidate sets, the per-class table, hard cases, the curves) on logits
with some signal, and prints seconds and the process's peak resident memory above the logits after each step.
"""
import argparse, json, resource, tempfile, time
from pathlib import Path

import numpy as np
import pandas as pd


def rss_mb()->float:
    "Peak resident memory of this process so far, MiB."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--crops', type=int, default=20000)
    ap.add_argument('--classes', type=int, default=4523)
    ap.add_argument('--json', help='write the table here as JSON')
    a = ap.parse_args()
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from pillsnap.classifier import load_predictions, plot_confusion, plot_reliability, save_predictions
    from pillsnap.evaluate import calibration_summary, hard_cases, per_class_table, plot_curves
    from pillsnap.metrics import calibration_bins, classification_metrics
    from pillsnap.model import softmax_t

    rng = np.random.default_rng(0)
    ys = rng.integers(0, a.classes, a.crops)
    logits = rng.standard_normal((a.crops, a.classes), dtype=np.float32)
    logits[np.arange(a.crops), ys] += rng.uniform(0, 8, a.crops).astype(np.float32)  # right, with varying confidence
    k_codes = [f'K-{i:06d}' for i in range(a.classes)]
    rows = pd.DataFrame(dict(image=[f'p{i}.png' for i in range(a.crops)], bbox=[[0, 0, 10, 10]] * a.crops))
    base, out = rss_mb(), Path(tempfile.mkdtemp())
    steps, t0 = [], time.perf_counter()

    def step(name):
        nonlocal t0
        t = time.perf_counter()
        steps.append(dict(step=name, seconds=round(t - t0, 2), peak_mib_above_logits=round(rss_mb() - base)))
        print(f'{name:<28} {t - t0:7.2f} s   peak {rss_mb() - base:7.0f} MiB above the logits', flush=True)
        t0 = time.perf_counter()

    probs = softmax_t(logits)
    m = classification_metrics(probs, ys); step('metrics')
    preds = probs.argmax(1)
    for fig in (plot_reliability(calibration_bins(probs.max(1), preds == ys), m['ece']), plot_confusion(ys, preds, k_codes)):
        plt.close(fig)
    step('reliability, confusion')
    save_predictions(out, logits, ys); del probs
    logits, ys = load_predictions(out); step('predictions stored, read')
    cal = calibration_summary(logits, ys, coverage=0.9); step('temperature, ECE, sets')
    probs = softmax_t(logits, cal['temperature'])
    table = per_class_table(probs, ys, k_codes); step('per-class table')
    hard_cases(probs, ys, rows, k_codes); step('hard cases')
    idx = {k: i for i, k in enumerate(k_codes)}
    plt.close(plot_curves(probs, ys, k_codes, [idx[k] for k in table.k_code[:5]])); step('curves')
    total = dict(step='total', seconds=round(sum(s['seconds'] for s in steps), 1),
                 peak_mib_above_logits=max(s['peak_mib_above_logits'] for s in steps))
    steps.append(total)
    print(f"total {total['seconds']} s, peak {total['peak_mib_above_logits']} MiB above the logits "
          f"({a.crops:,} crops × {a.classes:,} classes; the float32 logits are {logits.nbytes / 2**20:.0f} MiB); "
          f"top-1 {m['top1']:.3f}, temperature {cal['temperature']:.3f}")
    if a.json: Path(a.json).write_text(json.dumps(dict(crops=a.crops, classes=a.classes, steps=steps), indent=1))


if __name__ == '__main__': main()
