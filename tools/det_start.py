"""Make the pill start that detector training begins from (`detector.start: auto`, nbs/04b_train.detector).

    python tools/det_start.py work/exp/phone-det pillsnap/starts/yolo11n-pill.safetensors
    python tools/det_start.py work/exp/phone-det-gpu-start pillsnap/starts/   # a folder: named <architecture>-pill.safetensors

`make det-start` runs it twice: after training the default recipe at bench-det's data size from random weights
(`pillsnap demo --preset phone-det --detector-only`: synthetic studio photos and phone-like scenes, no real
photo), and after training the same recipe again from that first round's file (`detector.weights_path`); the
second is the start that ships (`make det-start`: YOLO11n, the preset `phone-det`; `make det-start
DET_PRESET=phone-det-gpu`: YOLO11m at 640 px, for a GPU). The experiment's `detector/detector.safetensors` is stored again in half precision (half the size;
the start is trained on afterwards), with its source in the metadata, and checked: it loads through the
same safe loader as any detector file (which checks its metadata), and its boxes on a validation photo match the full-precision file's.
Prints the SHA-256 that `PILL_STARTS` in nbs/04b_train.detector must record for the new file: the file's own,
since two writes of the same weights differ in bytes (safetensors orders the metadata keys differently each time).
"""
import argparse, json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from pillsnap.sources import split_images
from pillsnap.yolo import detector_meta, load_detector
from pillsnap.io import atomic_write, file_sha256, read_json


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('exp', help='an experiment with a trained detector (detector/detector.safetensors)')
    ap.add_argument('out', help='the .safetensors file to write, or a folder: <architecture>-pill.safetensors in it')
    a = ap.parse_args()
    exp = Path(a.exp)
    src = exp/'detector'/'detector.safetensors'
    meta = detector_meta(src)  # refuses anything but a pillsnap detector file
    with safe_open(str(src), 'pt') as f: stored = f.metadata()
    m, why = read_json(exp/'detector'/'metrics.json')
    if why: raise SystemExit(f"{exp/'detector'/'metrics.json'} is {why}: train the detector there first")
    t = m.get('training', {})
    source = dict(experiment=exp.name, commit=t.get('code', {}).get('commit'), epochs=t.get('epochs'),
                  img_size=meta['imgsz'], val_map50=m.get('map50'))
    state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(src)).items()}
    out = Path(a.out)
    if a.out.endswith('/') or out.is_dir():  # named as PILL_STARTS names a start: yolo11m-pill.safetensors
        out = out/f"{meta['yaml'].get('yaml_file', 'yolo').removesuffix('.yaml')}-pill.safetensors"
    out = atomic_write(out, lambda tmp: save_file(state, str(tmp),
                                                        metadata={**stored, 'source': json.dumps(source)}))
    photo = split_images(m['data'], 'val')[0]
    full, half = load_detector(src), load_detector(out)
    kw = dict(imgsz=meta['imgsz'], conf=0.25, device='cpu', verbose=False)
    b32, b16 = (y.predict(str(photo), **kw)[0].boxes for y in (full, half))
    assert len(b32) == len(b16), f'{len(b32)} boxes in full precision, {len(b16)} in half'
    if len(b32): assert torch.allclose(b32.xyxy, b16.xyxy, atol=2.0), 'the boxes moved by more than 2 px'
    print(f'{out}: {out.stat().st_size / 2**20:.1f} MiB, {len(b32)} boxes on {photo.name} as in full precision')
    print(f"sha256='{file_sha256(out)}'  # from {json.dumps(source)}")


if __name__ == '__main__':
    main()
