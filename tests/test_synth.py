"The synthetic dataset against the real release: layout, names, label schema, boxes, determinism."
import hashlib, json, re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY
from pillsnap.schema import CAPTURE_FIELDS, LABEL_FIELDS
from pillsnap.metrics import box_iou, xywh_to_xyxy
from pillsnap.render import CAMERA_LA, make_drugs
from pillsnap.synth import json_kind, parse_photo_name, plan_dataset, render_job, synth_dataset

CODE = r'K-\d{6}'
NAME = r'(?P<code>K-\d{6}(?:-\d{6})*)_0_[012]_[01]_[012]_(?:60|70|75|90)_\d{3}_200\.(?:png|json)'
IMAGE_RE = {('train', 'single'): rf'data/train/images/single/TS_(?P<shard>\d+)_single/(?P<folder>{CODE})/{NAME}',
            ('val', 'single'): rf'data/val/images/single/VS_(?P<shard>\d+)_single/(?P<folder>{CODE})/{NAME}',
            ('train', 'combo'): rf'data/train/images/combination/TS_(?P<shard>\d+)_combo/(?P<folder>{CODE}(?:-\d{{6}})+)/{NAME}',
            ('val', 'combo'): rf'data/val/images/combination/VS_(?P<shard>\d+)_combo/(?P<folder>{CODE}(?:-\d{{6}})+)/{NAME}'}
LABEL_RE = {('train', 'single'): rf'data/train/labels/single/TL_(?P<shard>\d+)_single/(?P<folder>{CODE})_json/{NAME}',
            ('val', 'single'): rf'data/val/labels/single/VL_(?P<shard>\d+)_single/(?P<folder>{CODE})_json/{NAME}',
            ('train', 'combo'): rf'data/train/labels/combination/TL_(?P<shard>\d+)_combo/(?P<folder>{CODE}(?:-\d{{6}})+)_json/(?P<pill>{CODE})/{NAME}',
            ('val', 'combo'): rf'data/val/labels/combination/VL_(?P<shard>\d+)_combo/(?P<folder>{CODE}(?:-\d{{6}})+)_json/(?P<pill>{CODE})/{NAME}'}


def iou(a:list, b:list)->float:
    "IoU of two [x, y, w, h] boxes (the labels' form)."
    return float(box_iou(xywh_to_xyxy([a]), xywh_to_xyxy([b]))[0, 0])


def _files(root, ext): return sorted(str(p.relative_to(root)) for p in Path(root, 'data').rglob(f'*.{ext}'))


def _labels(root):
    return {str(p.relative_to(root)): json.loads(p.read_text(encoding='utf-8')) for p in Path(root, 'data').rglob('*.json')}


def test_every_path_follows_the_release_layout(tiny_root):
    images, labels = _files(tiny_root, 'png'), _files(tiny_root, 'json')
    assert images and labels
    for rel in images:
        m = [re.fullmatch(rx, rel) for rx in IMAGE_RE.values()]
        assert any(m), f'unexpected image path {rel}'
        m = next(x for x in m if x)
        assert m['folder'] == m['code'], rel
    for rel in labels:
        m = next((x for x in (re.fullmatch(rx, rel) for rx in LABEL_RE.values()) if x), None)
        assert m, f'unexpected label path {rel}'
        assert m['folder'] == m['code'], rel
        if m.groupdict().get('pill'): assert m['pill'] in m['code'].split('-', 1)[1].split('-') or m['pill'][2:] in m['code'], rel
    # every image has its label(s) and every label its image
    stems_img = {Path(p).stem for p in images}
    stems_lbl = {Path(p).stem for p in labels}
    assert stems_img == stems_lbl


def test_counts_match_the_request(tiny_root):
    s = json.loads((tiny_root/'synth_summary.json').read_text())
    n, k = TINY['classes'], TINY['per_class']
    assert s['train']['single_images'] == s['train']['single_labels'] == n * k
    assert s['val']['single_images'] == n * TINY['val_per_class']
    assert s['train']['classes'] == s['val']['classes'] == n
    assert s['train']['combo_images'] == TINY['combos']
    assert s['train']['shards'] == ['TS_1_combo', 'TS_1_single', 'TS_2_single', 'TS_3_single']
    assert s['val']['shards'] == ['VS_1_combo', 'VS_1_single', 'VS_2_single', 'VS_3_single']


def test_labels_have_the_real_schema(tiny_root, real_labels):
    real_keys = [list(l['images'][0]) for l in real_labels]
    assert real_keys[0] == real_keys[1] == list(LABEL_FIELDS)
    kinds = {k: {json_kind(l['images'][0][k]) for l in real_labels} for k in LABEL_FIELDS}
    for rel, lbl in _labels(tiny_root).items():
        assert list(lbl) == list(real_labels[0]), rel
        assert len(lbl['images']) == 1 and len(lbl['annotations']) == 1 and len(lbl['categories']) == 1, rel
        img = lbl['images'][0]
        assert list(img) == list(LABEL_FIELDS), rel
        for k, v in img.items(): assert json_kind(v) in kinds[k], f'{rel}: {k}={v!r} is {json_kind(v)}, real is {kinds[k]}'
        ann = lbl['annotations'][0]
        assert list(ann) == list(real_labels[0]['annotations'][0])
        assert ann['image_id'] == img['id'] and ann['area'] == ann['bbox'][2] * ann['bbox'][3]
        x, y, w, h = ann['bbox']
        assert 0 <= x and 0 <= y and x + w <= img['width'] and y + h <= img['height'] and w > 0 and h > 0
        assert img['drug_N'] == img['dl_mapping_code'] and img['dl_idx'] == str(int(img['drug_N'][2:]) - 1)
        assert ann['category_id'] == (int(img['dl_idx']) if '/combination/' in rel else 1)  # as in the two releases


def test_names_agree_with_label_fields(tiny_root):
    for rel, lbl in _labels(tiny_root).items():
        img = lbl['images'][0]
        assert img['file_name'] == img['imgfile'] == Path(rel).with_suffix('.png').name
        parsed = parse_photo_name(img['file_name'])
        assert img['drug_N'] in parsed['k_codes']
        assert parsed['k_codes'] == sorted(parsed['k_codes'])
        for k in CAPTURE_FIELDS: assert parsed[k] == img[k], (rel, k)
        with Image.open(_image_for(tiny_root, rel)) as im:
            assert im.size == (img['width'], img['height'])


def _image_for(root, rel):
    "data/{split}/labels/{kind}/{TL|VL}_n_x/{code}_json/[{pill}/]{name}.json -> its image path."
    p = Path(rel)
    split, folder, shard, code = p.parts[1], p.parts[3], p.parts[4], p.parts[5].removesuffix('_json')
    return Path(root, 'data', split, 'images', folder, shard[0] + 'S' + shard[2:], code, p.with_suffix('.png').name)


def test_one_registry_record_per_k_code_and_capture_varies(tiny_root):
    registry = [k for k in LABEL_FIELDS if k not in CAPTURE_FIELDS + ('file_name', 'imgfile', 'width', 'height', 'id')]
    records, captures = defaultdict(set), defaultdict(set)
    for lbl in _labels(tiny_root).values():
        img = lbl['images'][0]
        records[img['drug_N']].add(json.dumps([img[k] for k in registry], ensure_ascii=False))
        for k in CAPTURE_FIELDS: captures[k].add(img[k])
    assert all(len(v) == 1 for v in records.values())
    assert captures['drug_dir'] == {'앞면', '뒷면'} and len(captures['light_color']) == 3 and len(captures['back_color']) == 3
    assert captures['camera_la'] <= set(CAMERA_LA) and len(captures['camera_la']) >= 3
    assert all(0 <= lo < 360 for lo in captures['camera_lo']) and len(captures['camera_lo']) > 20


def test_combination_pills_have_one_label_each_and_never_overlap(tiny_root):
    per_photo = defaultdict(list)
    for rel, lbl in _labels(tiny_root).items():
        if '/combination/' in rel: per_photo[lbl['images'][0]['file_name']].append(lbl)
    assert len(per_photo) == TINY['combos'] + (TINY['combos'] + 4) // 5
    for name, lbls in per_photo.items():
        codes = sorted(l['images'][0]['drug_N'] for l in lbls)
        assert parse_photo_name(name)['k_codes'] == codes
        assert len({l['annotations'][0]['id'] for l in lbls}) == len(lbls) and len({l['images'][0]['id'] for l in lbls}) == 1
        boxes = [l['annotations'][0]['bbox'] for l in lbls]
        assert all(iou(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1:]), name


def test_boxes_are_tight_around_the_render_mask(tiny_root):
    kw = {k: TINY[k] for k in ('per_class', 'val_per_class', 'combos', 'photos_per_combo', 'image_size', 'classes_per_shard', 'seed')}
    drugs = make_drugs(TINY['classes'], TINY['seed'], quirk_rate=TINY['quirk_rate'])
    jobs = plan_dataset(drugs, **kw)
    labels = {(l['images'][0]['file_name'], l['images'][0]['drug_N']): l for l in _labels(tiny_root).values()}
    checked = 0
    for job in jobs[::3]:
        im, boxes, masks, _ = render_job(job)
        for d, box, (alpha, x0, y0) in zip(job['drugs'], boxes, masks):
            ys, xs = np.nonzero(alpha > 0.5)
            mask_box = [x0 + xs.min(), y0 + ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            label_box = labels[(job['name'], d['k_code'])]['annotations'][0]['bbox']
            assert iou(label_box, mask_box) >= 0.95, (job['name'], label_box, mask_box)
            # and the pill really is there: inside the box the photo differs from the frame's border colour
            arr = np.asarray(im, np.float32)
            inside = arr[label_box[1]:label_box[1] + label_box[3], label_box[0]:label_box[0] + label_box[2]]
            border = np.concatenate([arr[:3].reshape(-1, 3), arr[-3:].reshape(-1, 3)]).mean(0)
            assert np.abs(inside - border).sum(-1).max() > 30
            checked += 1
    assert checked > 10


def test_same_seed_same_bytes_any_worker_count(tmp_path):
    kw = dict(classes=5, per_class=2, combos=3, seed=11, image_size=(122, 160), val_per_class=1, photos_per_combo=1)
    synth_dataset(tmp_path/'one', workers=1, **kw)
    synth_dataset(tmp_path/'two', workers=2, **kw)
    digest = lambda r: {str(p.relative_to(r)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(Path(r, 'data').rglob('*.*'))}
    a, b = digest(tmp_path/'one'), digest(tmp_path/'two')
    assert a == b and len(a) > 2 * (5 * 3)
    c = synth_dataset(tmp_path/'three', workers=1, **{**kw, 'seed': 12})
    assert digest(tmp_path/'three') != a and c['spec']['seed'] == 12


def test_quirks_appear_at_the_configured_rate():
    drugs = make_drugs(400, seed=2, quirk_rate=0.25)
    rate = sum(bool(d['quirks']) for d in drugs) / len(drugs)
    assert 0.18 < rate < 0.32
    quirky = [d['record'] for d in drugs if d['quirks']]
    assert any(None in r.values() for r in quirky) and any(r['thick'] == 0 for r in quirky) and any(r['di_edi_code'] == '' for r in quirky)


def test_lookalike_groups_differ_only_by_imprint():
    drugs = make_drugs(60, seed=4, confusable_fraction=0.6, group_size=3)
    groups = defaultdict(list)
    for d in drugs:
        if d['group'] is not None: groups[d['group']].append(d['look'])
    assert len(groups) == 12
    for looks in groups.values():
        body = {(l['shape'], l['color1'], l['color2'], l['long'], l['short'], l['line_front']) for l in looks}
        assert len(body) == 1 and len({l['print_front'] for l in looks}) == 3 and len({l['print_back'] for l in looks}) == 3
    assert len({d['look']['print_front'] for d in drugs}) == 60


def test_as_shipped_is_reused_and_force_replaces_its_archives(tmp_path):
    from pillsnap.config import ConfigError
    kw = dict(classes=2, per_class=1, combos=0, seed=1, image_size=(122, 160), val_per_class=1, classes_per_shard=1, workers=1)
    synth_dataset(tmp_path, **kw, as_shipped=True)
    zips = sorted(tmp_path.rglob('*.zip'))
    assert len(zips) == 8 and not (tmp_path/'data').exists()  # 2 shards x (photos, labels) x (train, val)
    stamps = [p.stat().st_mtime_ns for p in zips]
    synth_dataset(tmp_path, **kw, as_shipped=True)  # the same request: nothing rewritten
    assert [p.stat().st_mtime_ns for p in zips] == stamps
    with pytest.raises(ConfigError, match='pass --force'): synth_dataset(tmp_path, **kw)  # the canonical tree is another dataset
    synth_dataset(tmp_path, **kw, force=True)
    assert not list(tmp_path.rglob('*.zip')) and (tmp_path/'data'/'train').is_dir()


def test_wild_scenes_through_the_cli_keep_the_layout_and_record_what_is_hidden(tmp_path):
    from conftest import run_cli
    out = tmp_path/'wild'
    run_cli('synth', out, '--classes', '6', '--per-class', '2', '--combos', '6', '--image-size', '160,200', '--scene', 'wild',
            'synth.pills_per_combo=[3,6]', 'synth.val_per_class=1', 'synth.workers=1')
    labels = _labels(out)
    for rel in _files(out, 'png'): assert any(re.fullmatch(rx, rel) for rx in IMAGE_RE.values()), rel
    anns = [l['annotations'][0] for l in labels.values()]
    assert all('occluded' in a and 0 <= a['occluded'] <= 0.5 for a in anns)
    assert json.loads((out/'synth_spec.json').read_text())['scene'] == 'wild'
    sizes = [a['bbox'][2] * a['bbox'][3] / (160 * 200) for a in anns]
    assert min(sizes) < 0.01 < 0.05 < max(sizes)  # pills near and far


def test_labels_only_writes_the_same_release_without_pixels_and_indexes_whole(tiny_root, tmp_path):
    "Labels only (`pillsnap synth --labels-only`): the files and label records of the rendered release with the same settings, empty images, every photo indexed."
    from pillsnap.aihub import index_release
    lo = synth_dataset(tmp_path/'lo', **TINY, labels_only=True)
    assert lo['spec']['labels_only'] is True
    assert _files(tmp_path/'lo', 'json') == _files(tiny_root, 'json') and _files(tmp_path/'lo', 'png') == _files(tiny_root, 'png')
    assert all(p.stat().st_size == 0 for p in (tmp_path/'lo'/'data').rglob('*.png'))
    a, b = _labels(tmp_path/'lo'), _labels(tiny_root)
    for rel in list(a)[:50]:  # the same records and captures; only the boxes differ (nothing was drawn to fit them)
        assert a[rel]['images'][0] == b[rel]['images'][0] and a[rel]['categories'] == b[rel]['categories']
    index, drugs, report = index_release(tmp_path/'lo', workers=1)
    assert len(index) == report['photos'] == len(_files(tiny_root, 'png'))
    assert not (report['orphan_labels'] or report['orphan_images'] or report['bad_labels'] or report['unusable_photos'])
    with pytest.raises(ValueError, match='labels_only'):
        synth_dataset(tmp_path/'x', **TINY, labels_only=True, scene='wild')
