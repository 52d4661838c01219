"""Real photos reframed, their labels carried along: pills smaller (tiled) or larger (zoomed) than the photos show them (nbs/90_benchmarks.ipynb, issue 35).

    python tools/reframe_photos.py work/realdata/pushin-pill/data.yaml work/reframed/pushin [--splits test val] [--k 2 3]
                                   [--scale 1] [--zoom 0.35 0.5 0.7]

Each output photo is k×k of the set's photos side by side (photos of one size together, in name order; the ones
left over are not used), so it holds k² photos' pills, each 1/k of its former share of the photo's side — what a
phone photo of a heap, or of pills far from the camera, shows the detector. `--scale S` enlarges every tiled photo
S times (`--k 1 --scale 3`: the same photos as a camera of 3× the resolution gives them, no new detail). `--zoom F`: each photo of one pill cut to the square
around its pill that the pill spans F of (past the photo's edge, the photo's edge repeated), at 640 px — the close-up a
user takes of one pill. `<out>/k<K>/data.yaml` and `<out>/zoom<F>/data.yaml` are one-class YOLO sets whose `test`
split holds them; read one with

    pillsnap evaluate --exp work/exp/demo --what detector --data work/reframed/pushin/k2/data.yaml --split test
"""
import argparse

import numpy as np
import yaml
from pathlib import Path
from PIL import Image

from pillsnap.aihub import yolo_label
from pillsnap.sources import label_boxes, label_of, split_images
from pillsnap.metrics import xyxy_to_xywh


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
        b = label_boxes(label_of(f), w, h)
        if len(b): boxes.append(b + [ox, oy, ox, oy])
    return out, (np.concatenate(boxes) if boxes else np.zeros((0, 4)))


def zoomed(f:Path, frac:float, side:int=640)->tuple|None:
    "(the photo cut to the square around its one pill that the pill spans `frac` of, resized to `side`; its box) or None."
    with Image.open(f) as im: im = im.convert('RGB')
    b = label_boxes(label_of(f), im.width, im.height)
    if len(b) != 1: return None
    x1, y1, x2, y2 = b[0]
    c = max(x2 - x1, y2 - y1) / frac
    x0, y0 = (x1 + x2 - c) / 2, (y1 + y2 - c) / 2
    a = np.asarray(im)  # past the photo's edge: its edge repeated
    ys = np.clip(np.floor(y0 + (np.arange(side) + 0.5) * c / side).astype(int), 0, im.height - 1)
    xs = np.clip(np.floor(x0 + (np.arange(side) + 0.5) * c / side).astype(int), 0, im.width - 1)
    return Image.fromarray(a[np.ix_(ys, xs)]), (b - [x0, y0, x0, y0]) * side / c


def write_labels(path:Path, b:np.ndarray, W:int, H:int):
    "The one-class YOLO label file of boxes `b` (xyxy) in a W×H photo."
    path.write_text(yolo_label([xyxy_to_xywh(x) for x in b], W, H))


def write_yaml(out:Path)->Path:
    (out/'data.yaml').write_text(yaml.safe_dump(dict(path=str(out.resolve()), train='images/test', val='images/test',
                                                     test='images/test', names={0: 'pill'}), sort_keys=False))
    return out/'data.yaml'


def write_zoomed(data:str, splits:list, frac:float, out:Path)->tuple:
    "Write `out`'s one-class YOLO set of close-ups; (its data.yaml, photos)."
    im_dir, lb_dir = out/'images'/'test', out/'labels'/'test'
    im_dir.mkdir(parents=True, exist_ok=True); lb_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for f in sorted((Path(f) for s in splits for f in split_images(data, s)), key=lambda p: p.name):
        if (z := zoomed(f, frac)) is None: continue
        z[0].save(im_dir/f'zoom-{n:04d}.jpg', quality=95); write_labels(lb_dir/f'zoom-{n:04d}.txt', z[1], 640, 640); n += 1
    if not n: raise SystemExit(f'{data} ({", ".join(splits)}) has no photo of one pill to zoom into')
    return write_yaml(out), n


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
        write_labels(lb_dir/f'tiled-{i:04d}.txt', b, W, H)
        pills += len(b)
    n = len(list(im_dir.iterdir()))
    if not n: raise SystemExit(f'{data} ({", ".join(splits)}) has fewer than {k * k} photos of one size: nothing to tile')
    return write_yaml(out), n, pills


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('data', help="a YOLO data.yaml of real photos")
    ap.add_argument('out', help='where the tiled sets go (k2/, k3/, ...)')
    ap.add_argument('--splits', nargs='+', default=['test', 'val'], help="the data's splits to tile")
    ap.add_argument('--k', nargs='*', type=int, default=[2, 3], help='photos per side of a tiled photo')
    ap.add_argument('--zoom', nargs='*', type=float, default=[], help="close-ups: the share of the side a photo's one pill spans")
    ap.add_argument('--scale', type=float, default=1.0, help='each tiled photo enlarged this many times')
    a = ap.parse_args()
    if a.scale <= 0: raise SystemExit(f'--scale {a.scale}: give a factor above 0')
    for k in a.k:
        if k < 1: raise SystemExit(f'--k {k}: photos per side must be 1 or more')
        path, n, pills = write_set(a.data, a.splits, k, Path(a.out)/f'k{k}', a.scale)
        print(f'k={k}: {n} photos, {pills} pills  {path}')
    for z in a.zoom:
        if not 0 < z <= 1: raise SystemExit(f'--zoom {z}: give the share of the side the pill spans, above 0 and at most 1')
        path, n = write_zoomed(a.data, a.splits, z, Path(a.out)/f'zoom{z:g}')
        print(f'zoom {z:g}: {n} photos  {path}')


if __name__ == '__main__':
    main()
