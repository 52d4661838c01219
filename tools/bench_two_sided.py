"""Both sides of one pill (issue 37 §4): top-1 and top-5 from a pill's front alone, its back alone, and both sides fused
(`Predictor.predict_sides`; nbs/90_benchmarks.ipynb: Both sides of one pill).

Each drug's single-pill photos of an experiment's validation split are sorted by the face their label says is up
(`drug_dir`: 앞면 front, 뒷면 back) and every front is paired with every back of the same drug; the pairs are capped
(a seeded draw) at --pairs. Each pair is answered by the experiment's predictor in single mode four ways: the front
photo alone, the back photo alone, the surer of the two (the side whose top-1 confidence is higher: a baseline that
needs no fusion) and both photos as one pill. Reported overall and on the look-alike drugs: the drug table carries no
look-alike mark, so a look-alike is a drug sharing shape and colours with another drug the classifier knows (the
definition of tools/bench_ocr.py). Mean top-1 confidence beside top-1, and the ECE, show how far each way's confidence
is from its accuracy (the fusion softens the product of the sides by the temperature `pillsnap evaluate` fitted on the
validation pairs: on `--split val` these are the pairs it was fitted on).

    python tools/bench_two_sided.py --exp work/exp/demo [--pairs 300] [--split val] [--out work/bench-two-sided]
"""
import argparse, json, sys, time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT/'tools')]

from bench_ocr import look_alikes                                                                 # noqa: E402
from pillsnap.data import load_manifest                                                           # noqa: E402
from pillsnap.metrics import expected_calibration_error                                          # noqa: E402
from pillsnap.pipeline import Predictor                                                           # noqa: E402
from pillsnap.schema import FACES                                                                 # noqa: E402

FRONT, BACK = (face for face, code in sorted(FACES.items(), key=lambda kv: kv[1]))  # 앞면, 뒷면
WAYS = ('front', 'back', 'surer side', 'both sides')


def face_pairs(pred, split, cap, seed=0):
    "[(front photo, back photo, K-code)]: every front × back of each drug the classifier knows, at most `cap` (seeded)."
    m = load_manifest(Path(pred.cfg.paths.exp_dir)/'data', split)
    if 'drug_dir' not in m: raise SystemExit(f'the {split} manifest has no drug_dir: prepare the experiment again')
    m = m[m.kind == 'single'].assign(k_code=lambda d: d.k_codes.str[0])
    m = m[m.k_code.isin(set(pred.k_codes))]
    pairs = [(f, b, k) for k, g in m.groupby('k_code', sort=True)
             for f in g.image[g.drug_dir == FRONT] for b in g.image[g.drug_dir == BACK]]
    if cap and len(pairs) > cap:
        pairs = [pairs[i] for i in sorted(np.random.default_rng(seed).choice(len(pairs), cap, replace=False))]
    return pairs


def ranked(answer):
    "(K-codes best first, top-1 confidence) of a single-mode answer's pill."
    cands = answer['pills'][0]['candidates']
    return [c['k_code'] for c in cands], cands[0]['confidence']


def answer_pairs(pred, pairs):
    "Per pair and way: (K-codes best first, top-1 confidence); and seconds per pair answered as both sides."
    root, single, out, secs = Path(pred.cfg.data.root), {}, [], []
    for f, b, _ in pairs:
        for x in (f, b):  # a photo in several pairs is answered once
            if x not in single: single[x] = ranked(pred.predict(root/x, 'single', top_k=5))
        t = time.perf_counter()
        both = ranked(pred.predict_sides(root/f, root/b, top_k=5))
        secs.append(time.perf_counter() - t)
        front, back = single[f], single[b]
        surer = max(front, back, key=lambda r: r[1])
        out.append({'front': front, 'back': back, 'surer side': surer, 'both sides': both})
    return out, secs


def scores(pairs, answers, keep):
    "{way: {pairs, top1, top5, confidence}} over the pairs whose drug is in `keep`."
    rows = [(k, a) for (_, _, k), a in zip(pairs, answers) if k in keep]
    if not rows: return None
    return {w: {'pairs': len(rows), 'top1': float(np.mean([a[w][0][0] == k for k, a in rows])),
                'top5': float(np.mean([k in a[w][0][:5] for k, a in rows])),
                'confidence': float(np.mean([a[w][1] for _, a in rows])),
                'ece': expected_calibration_error([a[w][1] for _, a in rows], [a[w][0][0] == k for k, a in rows])}
            for w in WAYS}


def table(report):
    "The report as a markdown table."
    lines = ['| drugs | pairs | way | top-1 | top-5 | mean top-1 confidence | ECE |', '|---|---|---|---|---|---|---|']
    for part, name in (('all', 'all'), ('look_alikes', 'look-alikes')):
        for w, s in (report[part] or {}).items():
            lines.append(f"| {name} | {s['pairs']} | {w} | {s['top1']:.3f} | {s['top5']:.3f} | {s['confidence']:.3f} | {s['ece']:.3f} |")
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--exp', required=True, help='a trained experiment (its validation manifest and data.root)')
    ap.add_argument('--pairs', type=int, default=300, help='most front × back pairs answered (a seeded draw; 0: all)')
    ap.add_argument('--split', default='val', help="the manifest's split (the test split stays locked)")
    ap.add_argument('--out', default=None, help='write two_sided.json here')
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    pred = Predictor.from_exp(a.exp)
    pairs = face_pairs(pred, a.split, a.pairs, a.seed)
    if not pairs: raise SystemExit(f'no drug of {a.exp} has both a front and a back single-pill photo in {a.split}')
    alike = look_alikes(pred)
    t = time.perf_counter()
    answers, secs = answer_pairs(pred, pairs)
    report = {'exp': str(a.exp), 'split': a.split, 'pairs': len(pairs), 'drugs': len({k for *_, k in pairs}),
              'look_alike_drugs': len(alike & {k for *_, k in pairs}), 'gallery': pred.gallery is not None,
              'all': scores(pairs, answers, set(pred.k_codes)), 'look_alikes': scores(pairs, answers, alike),
              'both_sides_ms_p50': round(1000 * float(np.median(secs)), 1),
              'seconds': round(time.perf_counter() - t, 1)}
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out)/'two_sided.json').write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k not in ('all', 'look_alikes')}))
    print(table(report))


if __name__ == '__main__': main()
