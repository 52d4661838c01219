"""A YOLO tree for the real-photo detector check, split by source photo.

    python tools/realdata_tree.py SRC OUT [--holdout 0.15] [--seed 42]

SRC is a Roboflow YOLO export such as ../shared/realdata/pushin-pill (images/ and labels/ with train,
val and test). Roboflow saves each training photo several times with augmentation, as
`<source>_jpeg.rf.<hash>.jpg`; a photo must not sit on both sides of a split, so:

- train:   SRC train, minus a held-out share of its *source photos* (all copies of each go together);
- holdout: those held-out source photos — the validation set ultralytics uses while training
           (early stopping, best.pt), so the reported photos are never used to choose the weights;
- eval:    SRC val + test, the photos nbs/90_benchmarks.ipynb reports mAP on.

Images are linked, not copied; labels are rewritten with every class as 0 ("pill"). OUT/data.yaml is
what `pillsnap train-det --data` and `pillsnap evaluate --what detector --data ... --split test` take
(ultralytics knows the split names train, val and test: val is the holdout, test the eval photos).
"""
import argparse, hashlib, json
from pathlib import Path

import yaml

from pillsnap.io import link_file as _link
from pillsnap.sources import source_group as source_of  # Roboflow's copies of one photo share it


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('src'); ap.add_argument('out')
    ap.add_argument('--holdout', type=float, default=0.15, help='share of training source photos held out for validation during training')
    ap.add_argument('--seed', type=int, default=42)
    a = ap.parse_args()
    src, out = Path(a.src).resolve(), Path(a.out)
    images = {s: sorted((src/'images'/s).glob('*.jpg')) for s in ('train', 'val', 'test')}
    sources = sorted({source_of(f.name) for f in images['train']})
    rank = lambda s: hashlib.sha256(f'{a.seed}:{s}'.encode()).hexdigest()
    held = set(sorted(sources, key=rank)[:max(1, round(len(sources) * a.holdout))])
    splits = {'train': [f for f in images['train'] if source_of(f.name) not in held],
              'holdout': [f for f in images['train'] if source_of(f.name) in held],
              'eval': images['val'] + images['test']}
    for split, files in splits.items():
        (out/'images'/split).mkdir(parents=True, exist_ok=True); (out/'labels'/split).mkdir(parents=True, exist_ok=True)
        for f in files:
            _link(f, out/'images'/split/f.name)
            lines = (src/'labels'/f.parent.name/f'{f.stem}.txt').read_text().splitlines()
            (out/'labels'/split/f'{f.stem}.txt').write_text(''.join('0 ' + ' '.join(l.split()[1:5]) + '\n' for l in lines if l.strip()))
    (out/'data.yaml').write_text(yaml.safe_dump({'path': str(out.resolve()), 'train': 'images/train', 'val': 'images/holdout',
                                                 'test': 'images/eval', 'names': {0: 'pill'}}, sort_keys=False))
    counts = {s: dict(images=len(f), sources=len({source_of(x.name) for x in f}),
                      pills=sum(len((out/'labels'/s/f'{x.stem}.txt').read_text().splitlines()) for x in f)) for s, f in splits.items()}
    assert not {source_of(x.name) for x in splits['train']} & {source_of(x.name) for x in splits['holdout']}
    print(json.dumps(counts, indent=1)); print(out/'data.yaml')


if __name__ == '__main__':
    main()
