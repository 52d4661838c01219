"The data pipeline as a user runs it: `pillsnap prepare` on a release with damaged files, splits, reuse, class map."
import io, json, shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import cli, run_cli

SETTINGS = ('data.paste_photos=0', 'data.wild_photos=0', 'classifier.img_size=64', 'data.workers=1', 'split.val_fraction=0.34')


def prepare(root, exp, *settings):
    "`pillsnap prepare` in this test process (`cli`: no interpreter start-up, a dozen calls); its console script is run below."
    return cli('prepare', '--root', root, '--exp', exp, *SETTINGS, *settings)


def manifests(exp):
    return {n: pd.read_parquet(Path(exp)/'data'/'manifests'/f'{n}.parquet') for n in ('train', 'val', 'test')}


@pytest.fixture(scope='module')
def prepared(tiny_root, tmp_path_factory):
    exp = tmp_path_factory.mktemp('exp')/'e'
    prepare(tiny_root, exp)
    return exp


def test_prepare_writes_every_artifact(prepared):
    d = prepared/'data'
    for f in ('label_index.parquet', 'index_report.json', 'drug_table.json', 'class_map.json', 'splits.json', 'summary.json',
              'yolo/data.yaml', 'cache/train/cache.json', 'cache/val/cache.json'):
        assert (d/f).exists(), f
    table, cmap = json.loads((d/'drug_table.json').read_text()), json.loads((d/'class_map.json').read_text())
    assert len(cmap) == 12 and sorted(cmap.values()) == list(range(12))
    assert all(table[k]['class_index'] == i for k, i in cmap.items())
    assert all(isinstance(r['edi_codes'], list) for r in table.values())
    # the YOLO tree links (never copies) and has one label line per pill
    links = list((d/'yolo'/'images').rglob('*.png'))
    assert links and all(p.is_symlink() for p in links)
    m = pd.concat(manifests(prepared).values())
    pills = dict(zip(m.image.map(lambda p: Path(p).name), m.k_codes.map(len)))
    for p in links:
        lines = (d/'yolo'/'labels'/p.parent.name/(p.stem + '.txt')).read_text().splitlines()
        assert len(lines) == pills[p.name] and all(l.startswith('0 ') for l in lines)


def test_splits_are_stratified_grouped_and_the_test_set_is_isolated(prepared):
    m = manifests(prepared)
    train, val, test = m['train'], m['val'], m['test']
    s_train, s_val = train[train.kind == 'single'], val[val.kind == 'single']
    assert set(s_train.code) == set(s_val.code) and len(set(s_val.code)) == 12  # every class on both sides
    assert abs(len(s_val) / (len(s_train) + len(s_val)) - 0.34) < 0.1
    combos = pd.concat([train[train.kind == 'combo'].assign(s='train'), val[val.kind == 'combo'].assign(s='val')])
    assert combos.groupby('code').s.nunique().max() == 1 and combos.s.nunique() == 2  # grouped, both sides used
    assert all(p.startswith('data/train/') for p in pd.concat([train, val]).image)
    assert len(test) and all(p.startswith('data/val/') for p in test.image)
    assert not set(train.image) & set(val.image) and not set(test.image) & set(train.image)
    from pillsnap.data import TestSetLocked, final_evaluation, load_manifest
    with pytest.raises(TestSetLocked, match='reserved for the final evaluation'): load_manifest(prepared/'data', 'test')
    with final_evaluation(): assert len(load_manifest(prepared/'data', 'test')) == len(test)


@pytest.mark.slow  # several runs of pillsnap prepare
def test_prepare_reuses_valid_results_and_rebuilds_when_the_data_changes(tiny_root, tmp_path):
    root, exp = tmp_path/'release', tmp_path/'exp'
    shutil.copytree(tiny_root, root)
    first = prepare(root, exp)
    assert 'building the split: no saved split' in first.stderr
    split_file = exp/'data'/'splits.json'
    before = split_file.read_text()
    again = prepare(root, exp)
    assert 'label index is up to date' in again.stderr and 'splits.json is valid' in again.stderr and 'complete — reusing' in again.stderr
    assert split_file.read_text() == before
    label = sorted((root/'data'/'train'/'labels'/'single').rglob('*.json'))[0]
    lbl = json.loads(label.read_text()); lbl['annotations'][0]['bbox'][0] += 3
    label.write_text(json.dumps(lbl, ensure_ascii=False))
    changed = prepare(root, exp)
    assert 'the release changed since the last index' in changed.stderr
    assert 'building the split: the data changed: photo paths, K-codes or boxes differ' in changed.stderr
    assert 'rebuilding it' in changed.stderr  # the crop cache of the changed rows
    other = prepare(root, exp, 'split.seed=7')
    assert 'building the split: split settings changed' in other.stderr


@pytest.mark.slow  # several runs of pillsnap prepare
def test_class_map_never_renumbers_when_classes_are_added(tiny_root, tmp_path):
    exp = tmp_path/'exp'
    prepare(tiny_root, exp, 'data.max_classes=5', 'data.cache=false')
    small = json.loads((exp/'data'/'class_map.json').read_text())
    prepare(tiny_root, exp, 'data.max_classes=null')  # the experiment's own max_classes=5 stays unless changed
    full = json.loads((exp/'data'/'class_map.json').read_text())
    assert len(small) == 5 and len(full) == 12
    assert {k: full[k] for k in small} == small and sorted(full.values()) == list(range(12))
    prepare(tiny_root, exp, 'data.max_classes=3', 'data.cache=false')  # a smaller selection takes nothing away
    assert json.loads((exp/'data'/'class_map.json').read_text()) == full


def _png(im):
    b = io.BytesIO(); im.save(b, 'PNG'); return b.getvalue()


def test_damaged_photos_are_skipped_and_counted_by_reason(tiny_root, tmp_path):
    "Every bad input is skipped with its reason, in `prepare`'s cache and in a multi-worker loader, and odd-but-valid images load."
    root, exp = tmp_path/'release', tmp_path/'exp'
    shutil.copytree(tiny_root, root)
    photos = sorted((root/'data'/'train'/'images'/'single').rglob('*.png'))
    good = photos[0].read_bytes()
    damage = {'empty file': [b'', b''], 'not an image': [b'<html>not a photo</html>'], 'truncated': [good[:len(good) // 2]],
              'corrupt': [good[:good.index(b'IDAT') + 204] + b'\xff' * 64 + good[good.index(b'IDAT') + 268:]],
              'too large': [_png(Image.new('1', (12_000, 12_000)))]}
    targets = iter(photos[1:])
    for reason, blobs in damage.items():
        for b in blobs: next(targets).write_bytes(b)
    odd = [next(targets) for _ in range(4)]  # valid photos in other modes must load, not be skipped
    rgb = Image.open(odd[0]).convert('RGB')
    odd[0].write_bytes(_png(rgb.convert('L')))
    odd[1].write_bytes(_png(rgb.convert('RGBA')))
    odd[2].write_bytes(_png(rgb.convert('P')))
    odd[3].write_bytes(_png(Image.fromarray((np.asarray(rgb.convert('L')).astype(np.uint16) * 257))))
    prepare(root, exp)
    expected = Counter({r: len(b) for r, b in damage.items()})
    assert Counter(json.loads((exp/'data'/'summary.json').read_text())['unreadable']) == expected

    from pillsnap.data import load_manifest, pill_rows
    from pillsnap.crops import UnifiedPreprocessor
    from pillsnap.loaders import PillDataset, make_loader, skip_counts
    next(targets).unlink()  # a photo that disappears after prepare
    expected['missing'] = 1
    rows = pd.concat([pill_rows(load_manifest(exp/'data', n)) for n in ('train', 'val')], ignore_index=True)
    ds = PillDataset(rows, root, UnifiedPreprocessor(64), skip_dir=tmp_path/'skips')
    seen = sum(len(yb) for _, yb in make_loader(ds, 8, num_workers=2, persistent_workers=False))
    assert seen == len(rows) - sum(expected.values())
    assert skip_counts(tmp_path/'skips') == expected


def test_prepare_fails_fast_on_a_wrong_root(tmp_path):
    r = run_cli('prepare', '--root', tmp_path/'nowhere', '--exp', tmp_path/'exp', check=False)
    assert r.returncode == 2 and 'has no data/ folder' in r.stderr and 'Traceback' not in r.stderr
    assert not (tmp_path/'exp').exists()  # nothing made for a request that cannot work


MEMORY_CHECK = r'''
import json, resource
from PIL import Image
from pillsnap.data import open_image_safely
from pillsnap.crops import UnifiedPreprocessor
vm = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (2 << 30), resource.RLIM_INFINITY))  # the old crop asked for 3-10 GB: fail, don't swap
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
pre, out = UnifiedPreprocessor(), {}
for w in (14_000, 40_000):
    im = Image.new('RGB', (w, 1), (200, 30, 30))
    before = peak(); crop = pre.crop(im)
    out[f'crop {w}x1'] = dict(growth_mb=peak() - before, size=crop.size, colour=crop.getpixel((0, 0)))
im = Image.new('L', (49_999_999, 1)); im.save('skinny.png'); del im
before = peak(); _, why = open_image_safely('skinny.png')
out['open 49999999x1'] = dict(growth_mb=peak() - before, reason=why)
print(json.dumps(out))
'''


def test_memory_per_photo_is_bounded_whatever_its_shape(tmp_path):
    "A skinny photo's whole-photo crop costs megabytes, not the square of its long side (2.9 GB and 9 s for 14000x1 before); a 50 Mpx 1-pixel-high PNG is refused from its header."
    import subprocess, sys
    r = subprocess.run([sys.executable, '-c', MEMORY_CHECK], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.splitlines()[-1])
    for w in (14_000, 40_000):
        c = out[f'crop {w}x1']
        assert c['growth_mb'] < 64 and c['size'] == [442, 442] and c['colour'] == [200, 30, 30], c
    o = out['open 49999999x1']
    assert o['growth_mb'] < 64 and o['reason'].startswith('aspect ratio 49999999:1 is beyond 20:1'), o


def _damaged_release(tiny_root, tmp_path):
    root = tmp_path/'release'
    shutil.copytree(tiny_root, root)
    photos = sorted((root/'data'/'train'/'images'/'single').rglob('*.png'))
    truncated, empty, unlabelled = photos[0], photos[3], photos[6]
    truncated.write_bytes(truncated.read_bytes()[:300])
    empty.write_bytes(b'')
    label = next((root/'data'/'train'/'labels'/'single').rglob(unlabelled.stem + '.json'))
    label.write_text('{"images": [{"file_name": ')
    rel = lambda p: str(p.relative_to(root))
    return root, {('photo', rel(truncated), 'truncated', 'crop cache'), ('photo', rel(empty), 'empty file', 'crop cache'),
                  ('label', rel(label), 'broken JSON', 'index'), ('photo', rel(unlabelled), 'unusable label (broken JSON)', 'index')}


@pytest.mark.slow  # several runs of pillsnap prepare
def test_problems_are_listed_by_path_and_reason(tiny_root, tmp_path):
    "`prepare` names every unreadable photo and bad label in {exp}/data/problems.csv, and the log says where the list is."
    root, expected = _damaged_release(tiny_root, tmp_path)
    r = prepare(root, tmp_path/'exp')
    report = tmp_path/'exp'/'data'/'problems.csv'
    rows = pd.read_csv(report, dtype=str)
    assert list(rows.columns) == ['kind', 'path', 'reason', 'stage']
    assert set(map(tuple, rows.values)) == expected and len(rows) == len(expected)
    assert f'4 unusable files, listed by path and reason in {report}' in r.stderr
    assert '1 truncated' in r.stderr and '1 empty file' in r.stderr and '1 broken JSON' in r.stderr
    again = prepare(root, tmp_path/'exp')  # reused steps report the same list
    assert pd.read_csv(report, dtype=str).equals(rows) and str(report) in again.stderr


@pytest.mark.slow  # several runs of pillsnap prepare
def test_damaged_prepared_files_are_rebuilt_with_the_reason_logged(tiny_root, tmp_path):
    "Unreadable means missing: each damaged file of a prepared experiment is rebuilt, the class map with its old numbering."
    exp = tmp_path/'exp'; d = exp/'data'
    prepare(tiny_root, exp)
    cmap = json.loads((d/'class_map.json').read_text())
    cut = lambda f: (d/f).write_bytes((d/f).read_bytes()[:len((d/f).read_bytes()) // 2])
    expected = {'splits.json': 'building the split: splits.json is damaged',
                'class_map.json': 'class_map.json is damaged',
                'label_index.parquet': 'label_index.parquet is missing or damaged',
                'index_report.json': 'index_report.json is damaged',
                'drug_table.json': 'drug_table.json is damaged',
                'cache/train/cache.json': 'cache.json is damaged',
                'cache/val/part-00000.npy': 'damaged chunk(s), rebuilding them: part-00000 is unreadable'}
    for f, why in expected.items():
        cut(f)
        r = prepare(tiny_root, exp)
        assert why in r.stderr and 'Traceback' not in r.stderr, (f, r.stderr[-3000:])
        assert json.loads((d/'class_map.json').read_text()) == cmap, f
    bin_ = d/'cache'/'train'/'part-00000.bin'
    garbled = bytearray(bin_.read_bytes()); garbled[2000:2100] = bytes(100); bin_.write_bytes(garbled)
    r = prepare(tiny_root, exp)
    assert 'part-00000.bin does not match its SHA-256' in r.stderr
    assert 'crop cache' in r.stderr and 'is complete — reusing it' in r.stderr  # the val cache, untouched


def test_a_garbled_cache_still_yields_every_item(tiny_root, tmp_path):
    "Cache bytes damaged after prepare: the dataset crops those items from their photos instead of crashing or feeding noise."
    from pillsnap.data import load_manifest, pill_rows
    from pillsnap.crops import UnifiedPreprocessor
    from pillsnap.loaders import PillDataset, make_loader
    exp = tmp_path/'exp'
    prepare(tiny_root, exp)
    bin_ = exp/'data'/'cache'/'train'/'part-00000.bin'
    offsets = np.load(bin_.with_suffix('.npy'))
    i = len(offsets) // 2  # garble the middle of one crop
    garbled = bytearray(bin_.read_bytes()); garbled[offsets[i] + 200:offsets[i] + 400] = bytes(200); bin_.write_bytes(garbled)
    rows, pre = pill_rows(load_manifest(exp/'data', 'train')), UnifiedPreprocessor(64)
    ds, photos = PillDataset(rows, tiny_root, pre, cache=exp/'data'/'cache'/'train'), PillDataset(rows, tiny_root, pre)
    assert all(ds.crop(i)[0] is not None for i in range(len(rows)))
    import torch
    assert torch.equal(ds.crop(i)[0], photos.crop(i)[0])
    assert sum(len(yb) for _, yb in make_loader(ds, 8, num_workers=2, persistent_workers=False)) == len(rows)
