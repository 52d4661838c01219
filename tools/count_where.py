"""Where combo mode loses pills on labelled real photos: recall by pill size, by pills in the photo, by touching (issue 81 §2).

Counts each photo of a YOLO tree's splits with the experiment's detector and reading rules (`Counter`, as
`pillsnap count` does), matches its boxes to the labelled ones one to one (IoU >= 0.5), and prints the share of
labelled pills found by their long side (a share of the photo's), by the pills the photo holds, and by whether a
pill's box touches another's; then the photos of 5 or more pills: counted exactly, mean error, mean signed error.

    python tools/count_where.py --exp work/exp/demo --data work/realdata/pushin-pill --splits eval holdout
"""
import argparse, sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pillsnap.config import Experiment          # noqa: E402
from pillsnap.metrics import box_iou, match_boxes  # noqa: E402
from pillsnap.pipeline import Counter           # noqa: E402
from pillsnap.sources import label_boxes        # noqa: E402


def pills_of(counter:Counter, img:Path, lab:Path)->list:
    "One row per labelled pill of a photo: its size, the photo's pills, touching, found."
    im = Image.open(img).convert('RGB'); W, H = im.size
    gt = label_boxes(lab, W, H)
    if not len(gt): return []
    boxes, hit = counter.count_batch([im])[0]['boxes'], np.zeros(len(gt), bool)
    hit[[t for _, t in match_boxes(boxes, gt)]] = True
    near = box_iou(gt, gt); np.fill_diagonal(near, 0)
    return [dict(photo=img.name, n=len(gt), found=len(boxes), side=max(b[2] - b[0], b[3] - b[1]) / max(W, H),
                 touch=bool(near[k].any()), hit=bool(hit[k])) for k, b in enumerate(gt)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--exp', default='work/exp/demo')
    ap.add_argument('--data', required=True, help='a YOLO tree: images/<split>/, labels/<split>/')
    ap.add_argument('--splits', nargs='+', default=['val'])
    a = ap.parse_args(argv)
    counter, root = Counter.from_exp(Experiment.open(a.exp)), Path(a.data)
    rows = [r for s in a.splits for img in sorted((root/'images'/s).glob('*'))
            if (lab := root/'labels'/s/f'{img.stem}.txt').exists() for r in pills_of(counter, img, lab)]
    df = pd.DataFrame(rows)
    print(f"{len(df)} pills in {df.photo.nunique()} photos, found {df.hit.mean():.3f}")
    for name, by in (('long side / photo', pd.cut(df.side, [0, 0.05, 0.08, 0.12, 0.2, 1])),
                     ('pills in the photo', pd.cut(df.n, [0, 1, 4, 8, 1000])), ('touching another', df.touch)):
        print(f'\nfound, by {name}:\n' + df.groupby(by, observed=True).hit.agg(['size', 'mean']).round(3).to_string())
    ph = df.groupby('photo').agg(n=('n', 'first'), found=('found', 'first'))
    many = ph[ph.n >= 5]
    print(f'\nphotos of 5+ pills: {len(many)}, counted exactly {(many.found == many.n).mean():.3f}, '
          f'mean error {(many.found - many.n).abs().mean():.2f}, mean signed error {(many.found - many.n).mean():+.2f}')


if __name__ == '__main__': main()
