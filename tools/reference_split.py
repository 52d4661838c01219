"""Split a reference set of real pill photos into class folders to train on and a never-seen set to judge (nbs/02a_data.sources).

    python tools/reference_split.py ../shared/realdata/c3pi-reference work/realdata/c3pi --most 1000

Then train with the first half as a class-folder source that teaches without answering, and judge "unknown" on the
other (the lines it prints):

    pillsnap demo --classifier-only "data.sources=[{path: work/realdata/c3pi/train, format: folders, name: c3pi, answers: false}]"
    pillsnap evaluate --exp work/exp/demo --what pipeline "eval.real_sets=[{path: work/realdata/c3pi/never-seen, never_seen: true}]"
"""
import argparse, json, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pillsnap.sources import reference_split  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('src', help='the reference set: SRC/images/{product}_*.jpg')
    ap.add_argument('out', help='written: OUT/train/{product}/ and OUT/never-seen/images/')
    ap.add_argument('--share', type=float, default=0.5, help='of the products to train on (the rest: never seen)')
    ap.add_argument('--most', type=int, default=None, help='train on at most this many products')
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    print(json.dumps(reference_split(a.src, a.out, a.share, a.most, a.seed), indent=1))


if __name__ == '__main__': main()
