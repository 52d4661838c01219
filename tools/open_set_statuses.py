"""How an experiment answers pills it knows and pills it never saw: the share answered identified, not sure and unknown
(nbs/90_benchmarks.ipynb, Retrieval; issue 79).

    python tools/open_set_statuses.py work/exp/demo [key=value ...]

Four kinds of pills, each crop cut from its labelled box and asked as single mode asks it (`Predictor.identify`):
known drugs' validation photos (studio), the drugs held out of training (`split.holdout_drugs`, studio), and both pasted on
phone-like scenes (`data.paste_val_photos`, `data.paste_holdout_photos`). For known drugs it also gives the top-1, of
the pills answered "identified" the share named right, and of those answered "not sure" the share whose candidates
(`between`) hold the truth and how many candidates they name. Nothing in the experiment is written.
"""
import argparse, collections, json
from pathlib import Path

import numpy as np

from pillsnap.data import load_manifest, pill_rows
from pillsnap.pipeline import Predictor, load_image
from pillsnap.prepare import pasted_val


def statuses(pred:Predictor, rows, root:Path, batch:int=32, known:bool=True)->dict:
    "Status shares, top-1, the identified pills' top-1 and the 'not sure' pills' candidates of one kind of pill."
    crops, truth = [], rows.k_code.tolist()
    for r in rows.itertuples():
        p = Path(r.image)
        crops.append(pred.pre.finish(pred.pre.crop(load_image(p if p.is_absolute() else root/p), list(r.bbox))))
    ans = [a for i in range(0, len(crops), batch) for a in pred.identify(crops[i:i + batch], 5, mode='single')]
    said = collections.Counter(a.get('status', 'identified') for a in ans)
    right = [a['candidates'][0]['k_code'] == t for a, t in zip(ans, truth)]
    named = [r for r, a in zip(right, ans) if a.get('status', 'identified') == 'identified']
    unsure = [(a['between'], t) for a, t in zip(ans, truth) if a.get('status') == 'not sure']
    out = dict(pills=len(ans), **{s: round(said[s] / len(ans), 4) for s in ('identified', 'not sure', 'unknown')},
               top1=round(float(np.mean(right)), 4), identified_right=round(float(np.mean(named)), 4) if named else None)
    if known and unsure:  # a 'not sure' answer is worth its candidates: the truth among them, and how many to check
        out.update(not_sure_holds=round(float(np.mean([t in b for b, t in unsure])), 4),
                   not_sure_candidates=round(float(np.mean([len(b) for b, _ in unsure])), 2))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('exp', help='a trained experiment with a gallery')
    ap.add_argument('settings', nargs='*', help='key=value settings over its snapshot (e.g. pipeline.min_confidence=0.5)')
    a = ap.parse_args()
    exp = Path(a.exp)
    pred = Predictor.from_exp(exp, settings=a.settings)
    data, root = exp/'data', Path(pred.cfg.data.root)
    kinds = {'studio, known': pill_rows(load_manifest(data, 'val'), ('single',)),
             'studio, never seen': pill_rows(load_manifest(data, 'holdout'), ('single',), known_only=False),
             'phone-like, known': pasted_val(data), 'phone-like, never seen': pasted_val(data, 'holdout')}
    out = {k: statuses(pred, rows, root, known='known' in k) for k, rows in kinds.items() if rows is not None and len(rows)}
    print(json.dumps(out, indent=1))


if __name__ == '__main__': main()
