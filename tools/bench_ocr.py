"""Reading imprints (pipeline.ocr): what it buys in top-1 and what it costs in time (nbs/90_benchmarks.ipynb: Retrieval and search).

Every pill of an experiment's validation photos is cut out on its labelled box, read by the OCR (`05d_infer.ocr`)
and answered by the predictor with the read fused in at several weights (`pipeline.ocr_weight`; weight 0 is the
predictor without OCR). The validation photos are halved (by photo, seeded): the weight is tuned on one half and
reported on the other (the test split stays locked for the final evaluation). Reported: top-1 over all pills and
over the look-alike pills (their drug shares shape and colours with another drug the classifier knows), errors
fixed and made, how often the read matches the true drug's imprint, and the reader's time per pill against the
classifier's.

    python tools/bench_ocr.py --exp work/exp/bench-retrieval [--out work/bench-ocr] [--limit 300]
"""
import argparse, json, sys, time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pillsnap.data import load_manifest                                                          # noqa: E402
from pillsnap.ocr import ocr_engine, pill_cut, read_imprint                                       # noqa: E402
from pillsnap.metrics import xyxy_to_xywh                                                         # noqa: E402
from pillsnap.pipeline import Predictor, load_image                                                # noqa: E402
from pillsnap.search import imprint_score                                                      # noqa: E402


def halves(pred, limit, seed=0):
    "{'tune', 'report'}: (photo, [x1, y1, x2, y2], true K-code) for the labelled pills of the classifier's drugs on each half of the validation photos."
    m = load_manifest(Path(pred.cfg.paths.exp_dir)/'data', 'val')
    photos = m.image.unique()
    tune = set(np.random.default_rng(seed).permutation(photos)[:len(photos) // 2])
    known, out = set(pred.k_codes), {'tune': [], 'report': []}
    for r in m.itertuples():
        for (x, y, w, h), k in zip(r.bboxes, r.k_codes):
            if k in known: out['tune' if r.image in tune else 'report'].append((r.image, [x, y, x + w, y + h], k))
    for half, rows in out.items():
        if limit and len(rows) > limit: out[half] = [rows[i] for i in sorted(np.random.default_rng(seed).choice(len(rows), limit, replace=False))]
    return out


def look_alikes(pred):
    "The K-codes that share shape and colours with another drug the classifier knows."
    body = lambda k: tuple(pred.record(k).get(f) for f in ('drug_shape', 'color_class1', 'color_class2'))
    counts = Counter(map(body, pred.k_codes))
    return {k for k in pred.k_codes if counts[body(k)] > 1}


def read_split(pred, engine, rows):
    "The classifier's crops, the reads and the reader's seconds per pill."
    root, crops, reads, secs, last = Path(pred.cfg.data.root), [], [], [], (None, None)
    for image, box, _ in rows:  # a photo's pills are consecutive: each photo is decoded once
        im = last[1] if last[0] == image else load_image(root/image); last = (image, im)
        crops.append(pred.pre.finish(pred.pre.crop(im, xyxy_to_xywh(box))))
        t = time.perf_counter(); reads.append(read_imprint(engine, pill_cut(im, box))); secs.append(time.perf_counter() - t)
    return crops, reads, secs


def score(pred, rows, crops, reads, weight, alike):
    pred.cfg.pipeline.ocr_weight = weight
    t = time.perf_counter()
    ans = pred.identify(crops, 1, reads=reads if weight else None)
    cls_s = (time.perf_counter() - t) / len(crops)
    hit = np.array([a['candidates'][0]['k_code'] == k for a, (_, _, k) in zip(ans, rows)])
    la = np.array([k in alike for _, _, k in rows])
    return hit, dict(weight=weight, top1=round(float(hit.mean()), 4), top1_lookalike=round(float(hit[la].mean()), 4) if la.any() else None,
                     pills=len(rows), lookalike_pills=int(la.sum())), cls_s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--exp', default='work/exp/bench-retrieval')
    ap.add_argument('--out', default='work/bench-ocr')
    ap.add_argument('--limit', type=int, default=0, help='at most this many pills per half (0: all)')
    ap.add_argument('--weights', default='1,2,4,8,16')
    a = ap.parse_args(argv)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    pred, engine = Predictor.from_exp(a.exp, device='cpu'), ocr_engine()
    alike, weights = look_alikes(pred), [float(w) for w in a.weights.split(',')]
    result = dict(exp=str(a.exp), classes=len(pred.k_codes), lookalike_drugs=len(alike), splits={})
    for split, rows in halves(pred, a.limit).items():
        crops, reads, secs = read_split(pred, engine, rows)
        truth = [pred.record(k) for _, _, k in rows]
        read_ok = [bool(r) and imprint_score(r, t.get('print_front'), t.get('print_back')) >= 0.8 for r, t in zip(reads, truth)]
        base, row0, cls_s = score(pred, rows, crops, reads, 0.0, alike)
        table = [dict(row0, fixed=0, broken=0)]
        for w in weights:
            hit, row, _ = score(pred, rows, crops, reads, w, alike)
            table.append(dict(row, fixed=int((hit & ~base).sum()), broken=int((~hit & base).sum())))
        result['splits'][split] = dict(pills=len(rows), read_something=round(float(np.mean([bool(r) for r in reads])), 4),
                                       read_matches_truth=round(float(np.mean(read_ok)), 4),
                                       read_ms_p50=round(1000 * float(np.median(secs)), 1), read_ms_p95=round(1000 * float(np.percentile(secs, 95)), 1),
                                       classify_ms_per_pill=round(1000 * cls_s, 2), table=table)
        print(f"{split}: {len(rows)} pills, read something {result['splits'][split]['read_something']:.2f}, matches the label "
              f"{result['splits'][split]['read_matches_truth']:.2f}, reading p50 {result['splits'][split]['read_ms_p50']} ms/pill "
              f"(classifier {result['splits'][split]['classify_ms_per_pill']} ms)")
        for r in table: print(f"  weight {r['weight']:>4}: top-1 {r['top1']:.4f}, look-alikes {r['top1_lookalike']}, fixed {r['fixed']}, broken {r['broken']}")
    # the weight that does best on the tuning half (the smaller one on a tie), judged on the other half
    best = max(result['splits']['tune']['table'][1:], key=lambda r: (r['top1'], -r['weight']))['weight']
    t = {r['weight']: r for r in result['splits']['report']['table']}
    result['tuned_weight'] = best
    result['report_at_tuned'] = dict(without=t[0.0]['top1'], with_ocr=t[best]['top1'], lookalike_without=t[0.0]['top1_lookalike'],
                                     lookalike_with_ocr=t[best]['top1_lookalike'])
    print(f"tuned: pipeline.ocr_weight={best}; top-1 on the other half {t[0.0]['top1']} -> {t[best]['top1']}, "
          f"look-alikes {t[0.0]['top1_lookalike']} -> {t[best]['top1_lookalike']}")
    (out/'ocr.json').write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(f'written {out/"ocr.json"}')


if __name__ == '__main__':
    main()
