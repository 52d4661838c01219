"""A YOLO tree for the real-photo detector check, split by source photo (`real_tree`, nbs/02a_data.sources).

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
`pillsnap demo --detector-photos SRC` lays out the same split under its experiment (`make demo` does, with pushin-pill).
"""
import argparse, json
from pathlib import Path

from pillsnap.sources import real_tree


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('src'); ap.add_argument('out')
    ap.add_argument('--holdout', type=float, default=0.15, help='share of training source photos held out for validation during training')
    ap.add_argument('--seed', type=int, default=42)
    a = ap.parse_args()
    print(json.dumps(real_tree(a.src, a.out, a.holdout, a.seed), indent=1)); print(Path(a.out)/'data.yaml')


if __name__ == '__main__':
    main()
