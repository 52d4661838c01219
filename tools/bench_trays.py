"""The tray check on synthetic trays: is the verdict right, and is every pill found once? (issue 81; nbs/90_benchmarks)

Each tray is a studio photo of 5-15 pills of 3-8 of the experiment's trained drugs, each drug 1-3 times, rendered
now with the experiment's own synthetic drug table (never a photo it trained on). Its prescription names every
drug of the tray with its quantity (`K-000123 x2, ...`). One tray in ten has one pill more than prescribed, of a
trained drug the prescription does not name; one in ten has one prescribed pill fewer; one in ten has one prescribed
pill swapped for another drug (every other swap a drug the experiment never saw, when it holds some out): the
wrong drug dispensed, which only naming the pills can catch. Each tray is asked in combo
mode with its prescription (`Predictor.predict_batch(expect=...)`), and the answer's `check` is compared with the
truth: the verdict is right when it counts exactly the pills missing and the pills left over; a tray's pills are
found once when the detector's boxes match its pills one to one (IoU >= 0.5).

    python tools/bench_trays.py --exp work/exp/demo [--trays 60] [--size 488 640] [--seed 0] [--out work/bench-trays]

Needs an experiment made from a synthetic release (`pillsnap synth`, `make demo`): its `synth_spec.json` names the
drugs' looks.
"""
import argparse, json, sys, time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pillsnap.config import Experiment                                # noqa: E402
from pillsnap.metrics import box_iou                                  # noqa: E402
from pillsnap.pipeline import Predictor                               # noqa: E402
from pillsnap.render import make_drugs, render_photo                  # noqa: E402
from pillsnap.synth import sample_capture                             # noqa: E402


def drugs_of(pred:Predictor, spec:dict)->tuple:
    "({K-code: drug} the predictor's classifier was trained on, {K-code: drug} it never saw) of the synthetic release."
    drugs = make_drugs(spec['classes'], spec['seed'], spec['confusable_fraction'], spec['confusable_group_size'],
                       spec['quirk_rate'])
    known = pred.known_codes()
    return ({d['k_code']: d for d in drugs if d['k_code'] in set(pred.k_codes)},
            {d['k_code']: d for d in drugs if d['k_code'] not in known})

CASES = {3: 'extra', 5: 'swapped', 7: 'missing', 9: 'swapped'}  # of every ten trays; the rest 'exact'
TRUTH = {'exact': (0, 0), 'extra': (0, 1), 'missing': (1, 0), 'swapped': (1, 1)}  # (missing, extra) the check must say


def plan_tray(rng, codes:list, case:str, never:list=())->tuple:
    ("(pills' K-codes on the tray, {K-code: quantity prescribed}) for one tray: 'exact', 'extra', 'missing' or"
     " 'swapped' (from `never`, drugs never seen, when given)")
    while True:
        chosen = list(rng.choice(codes, int(rng.integers(3, 9)), replace=False))
        rx = {k: int(rng.integers(1, 4)) for k in chosen}
        if 5 <= sum(rx.values()) <= 15: break
    pills = [k for k, n in rx.items() for _ in range(n)]
    other = lambda: str(rng.choice([k for k in codes if k not in rx]))
    if case == 'extra': pills.append(other())
    if case == 'missing': pills.remove(str(rng.choice(pills)))
    if case == 'swapped': pills[int(rng.integers(len(pills)))] = str(rng.choice(never)) if len(never) else other()
    return pills, rx


def found_once(boxes:list, truth:list)->bool:
    "Whether the answer's boxes and the tray's pills match one to one at IoU >= 0.5."
    if len(boxes) != len(truth): return False
    if not boxes: return True
    from scipy.optimize import linear_sum_assignment
    iou = box_iou(boxes, truth)
    r, c = linear_sum_assignment(-iou)
    return bool((iou[r, c] >= 0.5).all())


def pill_lines(ans:dict, truth:list, pills:list, rx:dict)->dict:
    ("Each prescribed pill found: placed on its own line or not; each pill not prescribed (extra, swapped in):"
     " left over, or taken for a prescribed one (a wrong 'matches')")
    from scipy.optimize import linear_sum_assignment
    out = dict(prescribed_placed=0, prescribed=0, other_left=0, other=0)
    if not ans['pills'] or not truth: return out
    iou = box_iou([p['box'] for p in ans['pills']], truth)
    for i, j in zip(*linear_sum_assignment(-iou)):
        if iou[i, j] < 0.5: continue
        line, k = ans['pills'][i].get('line'), pills[j]
        if k in rx: out['prescribed'] += 1; out['prescribed_placed'] += line == k
        else: out['other'] += 1; out['other_left'] += line is None
    return out


def one_tray(pred:Predictor, drugs:tuple, i:int, case:str, size:tuple, seed:int)->dict:
    "Render tray `i`, ask it with its prescription, and judge the answer."
    rng = np.random.default_rng([seed, 81, i])
    (trained, never), unseen = drugs, case == 'swapped' and i % 20 == 9  # every other swap: a drug never seen
    look = {**trained, **never}
    for _ in range(50):  # a small photo holds fewer pills side by side: another draw until it holds them
        pills, rx = plan_tray(rng, sorted(trained), case, sorted(never) if unseen else ())
        rng.shuffle(pills)
        try: im, boxes, _ = render_photo([(look[k]['look'], float(rng.uniform(0, 360))) for k in pills],
                                         sample_capture(rng), size, seed=int(rng.integers(1 << 31)))
        except ValueError: continue
        break
    else: raise SystemExit(f'no tray of 5 or more pills fits in {size[0]}x{size[1]}: use a larger --size')
    truth = [[x, y, x + w, y + h] for x, y, w, h in boxes]
    ans = pred.predict_batch([im], 'combo', expect=', '.join(f'{k} x{n}' for k, n in rx.items()))[0]
    c, (want_missing, want_extra) = ans['check'], TRUTH[case]
    placed = pill_lines(ans, truth, pills, rx)
    return dict(tray=i, case=case + (' (never seen)' if unseen else ''), pills=len(truth), found=len(ans['pills']),
                verdict=c['verdict'], missing=c['missing'], extra=len(c['extra']),
                verdict_right=c['missing'] == want_missing and len(c['extra']) == want_extra,
                found_once=found_once([p['box'] for p in ans['pills']], truth), doubt=bool(ans['count_doubt']),
                **{k: len((ans['count_doubt'] or {}).get(k, [])) for k in ('maybe_missed', 'odd_size')},
                ms=ans['timing_ms']['total'], **placed)


def summary(rows:list)->dict:
    share = lambda rs, k: round(float(np.mean([r[k] for r in rs])), 4) if rs else None
    out = dict(trays=len(rows), verdict_right=share(rows, 'verdict_right'), found_once=share(rows, 'found_once'),
               count_exact=round(float(np.mean([r['found'] == r['pills'] for r in rows])), 4),
               count_mae=round(float(np.mean([abs(r['found'] - r['pills']) for r in rows])), 3),
               ms_p50=round(float(np.median([r['ms'] for r in rows])), 1))
    total = lambda k: sum(r[k] for r in rows)
    out['prescribed_pills_placed'] = round(total('prescribed_placed') / max(1, total('prescribed')), 4)
    out['other_pills_left_over'] = round(total('other_left') / max(1, total('other')), 4)
    out['other_pills'] = total('other')
    wrong = [r for r in rows if r['found'] != r['pills']]  # the answer's count_doubt: said when miscounted, and not
    out['count_doubt'] = dict(trays=share(rows, 'doubt'), miscounted_flagged=share(wrong, 'doubt'),
                              right_flagged=share([r for r in rows if r['found'] == r['pills']], 'doubt'),
                              verdict_wrong_flagged=share([r for r in rows if not r['verdict_right']], 'doubt'),
                              maybe_missed=share(rows, 'maybe_missed'), odd_size=share(rows, 'odd_size'))
    out['by_case'] = {c: dict(trays=len(rs), verdict_right=share(rs, 'verdict_right'), found_once=share(rs, 'found_once'))
                      for c in sorted({r['case'] for r in rows}) if (rs := [r for r in rows if r['case'] == c])}
    out['by_pills'] = {f'{lo}-{hi}': dict(trays=len(rs), verdict_right=share(rs, 'verdict_right'),
                                          found_once=share(rs, 'found_once'))
                       for lo, hi in ((1, 8), (9, 12), (13, 16)) if (rs := [r for r in rows if lo <= r['pills'] <= hi])}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--exp', default='work/exp/demo')
    ap.add_argument('--trays', type=int, default=60)
    ap.add_argument('--size', type=int, nargs=2, default=(488, 640), metavar=('W', 'H'))
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', default='work/bench-trays')
    a = ap.parse_args(argv)
    exp = Experiment.open(a.exp)
    spec_file = Path(exp.cfg.data.root)/'synth_spec.json'
    if not spec_file.is_file():
        sys.exit(f'{spec_file} not found: bench_trays needs an experiment made from a synthetic release (pillsnap synth)')
    pred = Predictor.from_exp(exp)
    drugs = drugs_of(pred, json.loads(spec_file.read_text()))
    cases = [CASES.get(i % 10, 'exact') for i in range(a.trays)]
    rows, t0 = [], time.perf_counter()
    for i, case in enumerate(cases):
        rows.append(one_tray(pred, drugs, i, case, tuple(a.size), a.seed))
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    result = dict(exp=str(exp.root), size=list(a.size), seed=a.seed, seconds=round(time.perf_counter() - t0, 1),
                  **summary(rows), rows=rows)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out/'bench_trays.json').write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps({k: v for k, v in result.items() if k != 'rows'}, indent=1, ensure_ascii=False))
    return result


if __name__ == '__main__': main()
