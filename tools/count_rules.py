"""Combo mode's counting rules, each turned off in turn: what it does on photos that chose it and on photos that judge it, and its cost (issue 81 §2).

Every photo of each named set is read as combo mode reads it (the detector, the reading rules of
`detector:`, the pill check), with the experiment's settings and again with one rule off, then with all of them off.
Per set it prints photos counted exactly, the mean count error, the labelled pills found (one box each, IoU >= 0.5)
and the boxes on no pill; then each rule's cost in milliseconds a photo (its reading with every rule against the
reading without that one, on the same photos; the median of `--repeats` passes).

    python tools/count_rules.py --exp work/exp/demo \\
        --set choose=work/realdata/pushin-pill:eval --set judge=work/realdata/pushin-pill:holdout \\
        --set synthetic=work/exp/demo/data/yolo:val

A set is NAME=TREE:SPLIT, a YOLO tree's images/SPLIT and labels/SPLIT (`tools/realdata_tree.py` lays out
pushin-pill). Nothing is written unless `--json FILE` is given.
"""
import argparse, json, sys, time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pillsnap.data import downscale         # noqa: E402
from pillsnap.metrics import match_boxes    # noqa: E402
from pillsnap.pipeline import Predictor, load_image  # noqa: E402
from pillsnap.reading import Reading        # noqa: E402
from pillsnap.sources import label_boxes    # noqa: E402

# each rule, and the settings that turn it off (`detector.closer: 0` also stops the reading closer when unsure)
RULES = {
    'nesting (detector.contain)': {'contain': 0},
    'crowd (detector.crowd)': {'crowd': 0},
    "frame's edge (detector.edge)": {'edge': 0},
    'closer (detector.closer)': {'closer': 0},
    'closer when unsure (detector.closer_unsure)': {'closer_unsure': 0},
    'farther (detector.farther)': {'farther': 0},
    'pill check (pipeline.pill_check)': {'pill_check': False},
}
KEYS = ('crowd', 'crowd_floor', 'contain', 'edge', 'closer', 'closer_most', 'closer_unsure', 'farther', 'doubt')


def photos_of(spec:str, p:Predictor, most:int=0)->tuple:
    "(name, [(photo as combo mode reads it, its labelled boxes)]) of a NAME=TREE:SPLIT set (its first `most`; 0: all)."
    name, where = spec.split('=', 1)
    tree, split = where.rsplit(':', 1)
    out = []
    for img in sorted((Path(tree)/'images'/split).glob('*'))[:most or None]:
        lab = Path(tree)/'labels'/split/f'{img.stem}.txt'
        if not lab.exists(): continue
        im = downscale(load_image(img), p.cfg.pipeline.max_side)[0]  # as a request's photo is
        out.append((im, label_boxes(lab, *im.size)))
    if not out: raise SystemExit(f'{spec}: no labelled photos in {tree}/images/{split}')
    return name, out


def ruled(p:Predictor, check, off:dict):
    "The predictor reading with the rules of `off` turned off (the others as the experiment has them)."
    d = {**{k: p.cfg.detector[k] for k in KEYS}, **{k: v for k, v in off.items() if k != 'pill_check'}}
    p.readings = {one: Reading.of(d, one) for one in (False, True)}
    p.pill_check = None if off.get('pill_check') is False else check


def read_set(p:Predictor, photos:list)->tuple:
    "(each photo's counted boxes, seconds reading it) as combo mode finds its pills."
    boxes, secs = [], []
    for im, _ in photos:
        t = time.perf_counter()
        found = p.check_pills([im], p.detect([im]))[0][0]  # as combo mode finds a photo's pills
        secs.append(time.perf_counter() - t)
        boxes.append(np.asarray(found, float).reshape(-1, 4))
    return boxes, secs


def scores(photos:list, boxes:list)->dict:
    "Photos counted exactly, mean count error, pills found (IoU >= 0.5, one to one), boxes on no pill."
    n = np.array([len(gt) for _, gt in photos]); k = np.array([len(b) for b in boxes])
    hits = sum(len(match_boxes(b, gt)) for (_, gt), b in zip(photos, boxes))
    return dict(photos=len(n), exact=round(float(np.mean(n == k)), 3), mae=round(float(np.mean(np.abs(n - k))), 2),
                found=round(hits / max(int(n.sum()), 1), 3), extra=int(k.sum() - hits))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--exp', default='work/exp/demo')
    ap.add_argument('--set', action='append', required=True, metavar='NAME=TREE:SPLIT')
    ap.add_argument('--repeats', type=int, default=3, help='passes timed per reading (the median counts)')
    ap.add_argument('--most', type=int, default=0, help='photos per set, the first (0: all; a quick look)')
    ap.add_argument('--json', help='also write the results here')
    a = ap.parse_args(argv)
    p = Predictor.from_exp(a.exp)
    check = p.pill_check
    sets = dict(photos_of(s, p, a.most) for s in a.set)
    every = [ph for photos in sets.values() for ph in photos]
    read_set(p, every[:2])  # the detector loaded and warm
    runs = {'every rule': {}, **{r: off for r, off in RULES.items()}, 'none': {k: v for o in RULES.values()
                                                                               for k, v in o.items()}}
    res = {}
    for label, off in runs.items():
        ruled(p, check, off)
        passes = [read_set(p, every) for _ in range(max(1, a.repeats))]
        boxes, ms = passes[0][0], 1000 * np.median([s for _, s in passes], 0)
        at, res[label] = 0, {'ms': round(float(ms.mean()), 1)}
        for name, photos in sets.items():
            res[label][name] = scores(photos, boxes[at:at + len(photos)]); at += len(photos)
        print(label, json.dumps(res[label]), flush=True)
    names = list(sets)
    print('\n| reading | ' + ' | '.join(f'{n}: exact / MAE / found / extra' for n in names) + ' | ms a photo |')
    print('|---' * (len(names) + 2) + '|')
    base = res['every rule']['ms']
    for label, r in res.items():
        cells = [f"{r[n]['exact']:.3f} / {r[n]['mae']:.2f} / {r[n]['found']:.3f} / {r[n]['extra']}" for n in names]
        cost = '' if label == 'every rule' else f" ({base - r['ms']:+.1f} for the rule{'s' if label == 'none' else ''})"
        print(f"| {'without ' if label not in ('every rule', 'none') else ''}{label if label != 'none' else 'no rule'} | "
              + ' | '.join(cells) + f" | {r['ms']:.1f}{cost} |")
    if a.json: Path(a.json).write_text(json.dumps(dict(exp=a.exp, sets=a.set, results=res), indent=1))


if __name__ == '__main__':
    main()
