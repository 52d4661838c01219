"""Real photos tiled k×k into one photo, their labels carried along: crowded, small pills from photos you have (nbs/90_benchmarks.ipynb, issue 35).

    python tools/tile_photos.py work/realdata/pushin-pill/data.yaml work/tiled/pushin [--splits test val] [--k 2 3] [--scale 1]

Each output photo is k×k of the set's photos side by side (photos of one size together, in name order; the ones
left over are not used), so it holds k² photos' pills, each 1/k of its former share of the photo's side — what a
phone photo of a heap, or of pills far from the camera, shows the detector. `--scale S` enlarges every tiled photo
S times (`--k 1 --scale 3`: the same photos as a camera of 3× the resolution gives them, no new detail). `<out>/k<K>/data.yaml` is a one-class
YOLO set whose `test` split holds them; read it with

    pillsnap evaluate --exp work/exp/demo --what detector --data work/tiled/pushin/k2/data.yaml --split test
"""
import argparse

import numpy as np
import yaml
from pathlib import Path
from PIL import Image

from pillsnap.detector import label_of, split_images, yolo_boxes


def tiles(files:list, k:int)->list:
    "Groups of k² photos of one size, in name order: [(size, [files])]."
    by_size = {}
    for f in sorted(files, key=lambda p: Path(p).name):
        with Image.open(f) as im: by_size.setdefault(im.size, []).append(Path(f))
    return [(size, fs[i:i + k * k]) for size, fs in sorted(by_size.items()) for i in range(0, len(fs) - k * k + 1, k * k)]


def tile(size:tuple, files:list, k:int)->tuple:
    "(the k×k photo, its boxes (n, 4) xyxy in its pixels)."
    w, h = size
    out, boxes = Image.new('RGB', (w * k, h * k)), []
    for j, f in enumerate(files):
        ox, oy = w * (j % k), h * (j // k)
        with Image.open(f) as im: out.paste(im.convert('RGB'), (ox, oy))
        b = yolo_boxes(label_of(f), w, h)
        if len(b): boxes.append(b + [ox, oy, ox, oy])
    return out, (np.concatenate(boxes) if boxes else np.zeros((0, 4)))


def write_set(data:str, splits:list, k:int, out:Path, scale:float=1.0)->tuple:
    "Write `out`'s one-class YOLO set of k×k tiled photos; (its data.yaml, photos, pills)."
    files = [f for s in splits for f in split_images(data, s)]
    im_dir, lb_dir = out/'images'/'test', out/'labels'/'test'
    im_dir.mkdir(parents=True, exist_ok=True); lb_dir.mkdir(parents=True, exist_ok=True)
    pills = 0
    for i, (size, group) in enumerate(tiles(files, k)):
        photo, b = tile(size, group, k)
        if scale != 1:
            photo, b = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC), b * scale
        W, H = photo.size
        photo.save(im_dir/f'tiled-{i:04d}.jpg', quality=95)
        c = np.c_[(b[:, 0] + b[:, 2]) / 2 / W, (b[:, 1] + b[:, 3]) / 2 / H, (b[:, 2] - b[:, 0]) / W, (b[:, 3] - b[:, 1]) / H]
        (lb_dir/f'tiled-{i:04d}.txt').write_text(''.join(f'0 {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n' for x, y, bw, bh in c))
        pills += len(b)
    n = len(list(im_dir.iterdir()))
    if not n: raise SystemExit(f'{data} ({", ".join(splits)}) has fewer than {k * k} photos of one size: nothing to tile')
    (out/'data.yaml').write_text(yaml.safe_dump(dict(path=str(out.resolve()), train='images/test', val='images/test',
                                                     test='images/test', names={0: 'pill'}), sort_keys=False))
    return out/'data.yaml', n, pills


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('data', help="a YOLO data.yaml of real photos")
    ap.add_argument('out', help='where the tiled sets go (k2/, k3/, ...)')
    ap.add_argument('--splits', nargs='+', default=['test', 'val'], help="the data's splits to tile")
    ap.add_argument('--k', nargs='+', type=int, default=[2, 3], help='photos per side of a tiled photo')
    ap.add_argument('--scale', type=float, default=1.0, help='each tiled photo enlarged this many times')
    a = ap.parse_args()
    if a.scale <= 0: raise SystemExit(f'--scale {a.scale}: give a factor above 0')
    for k in a.k:
        if k < 1: raise SystemExit(f'--k {k}: photos per side must be 1 or more')
        path, n, pills = write_set(a.data, a.splits, k, Path(a.out)/f'k{k}', a.scale)
        print(f'k={k}: {n} photos, {pills} pills  {path}')


if __name__ == '__main__':
    main()
