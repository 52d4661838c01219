"Hostile or broken data files (issue 39 §7): each is refused with its reason or is a `problems.csv` row, never a hang."
import json, os, shutil, subprocess, sys, zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import BIN, ROOT
from pillsnap.config import ConfigError, read_yaml

SETTINGS = ('data.paste_photos=0', 'data.wild_photos=0', 'classifier.img_size=64', 'data.workers=1', 'split.val_fraction=0.34')


def prepare(root, exp, timeout=180):
    "`pillsnap prepare` in its own process, stopped after `timeout` seconds: a regression fails instead of hanging."
    r = subprocess.run([str(BIN/'pillsnap'), 'prepare', '--root', str(root), '--exp', str(exp), *SETTINGS], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f'prepare failed ({r.returncode}):\n{r.stderr[-3000:]}'
    return pd.read_csv(Path(exp)/'data'/'problems.csv', dtype=str), r


def run_py(code, timeout=60, mem_gb=3):
    "Python `code` in its own process with a time and a memory limit; what it printed last, as JSON."
    pre = f'import resource; resource.setrlimit(resource.RLIMIT_AS, ({mem_gb << 30}, {mem_gb << 30}))\n'
    r = subprocess.run([sys.executable, '-c', pre + code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def bomb(levels=9):
    "A 'billion laughs' YAML: each level repeats the one before nine times (9**levels strings once walked)."
    lines = ['l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]']
    lines += [f'l{i}: &l{i} [' + ', '.join([f'*l{i - 1}'] * 9) + ']' for i in range(1, levels)]
    return '\n'.join(lines) + '\n'


# ---- 1. YAML aliases, sizes and depths ------------------------------------------------------------

def test_settings_files_refuse_yaml_aliases_size_and_depth(tmp_path):
    f = tmp_path/'config.yaml'
    f.write_text(bomb())
    with pytest.raises(ConfigError, match=r'config.yaml:2 uses a YAML alias \(\*l0\)'): read_yaml(f)
    f.write_text('train: &t {epochs: 3}\nother: {<<: *t}\n')  # a merge key is an alias too
    with pytest.raises(ConfigError, match=r'alias \(\*t\)'): read_yaml(f)
    f.write_text('seed: 1\nx: ' + '[' * 5000 + ']' * 5000 + '\n')
    with pytest.raises(ConfigError, match='nested too deeply'): read_yaml(f)
    f.write_text('seed: 1\n' + '# padding\n' * 600_000)
    with pytest.raises(ConfigError, match='larger than'): read_yaml(f)
    f.unlink(); os.mkfifo(f)
    with pytest.raises(ConfigError, match='not a regular file'): read_yaml(f)  # read, it would wait for a writer
    f.unlink(); f.write_text('seed: &s 1\n')  # an anchor that nothing repeats is harmless
    assert read_yaml(f) == {'seed': 1}


def test_the_config_command_refuses_an_alias_bomb(tmp_path):
    (tmp_path/'config.yaml').write_text(bomb(7))
    r = subprocess.run([str(BIN/'pillsnap'), 'config'], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and 'uses a YAML alias (*l0)' in r.stderr and 'Traceback' not in r.stderr


def test_a_yolo_sources_data_yaml_refuses_aliases(tmp_path):
    from pillsnap.sources import example_sources, yolo_source
    src = example_sources(tmp_path)[0]
    data = Path(src['path'])/'data.yaml'
    data.write_text(data.read_text() + bomb())
    with pytest.raises(ConfigError, match=r'data.yaml:\d+ uses a YAML alias'): yolo_source(src['path'], 'phone')


def test_detector_yaml_reads_refuse_aliases_and_download_scripts(tmp_path):
    from pillsnap.sources import split_images
    data = tmp_path/'data.yaml'
    data.write_text('names: {0: pill}\nval: &v images/val\ntest: *v\n')
    with pytest.raises(ConfigError, match=r'data.yaml:3 uses a YAML alias \(\*v\)'): split_images(data, 'val')
    pwned = tmp_path/'pwned'
    script = f"open({str(pwned)!r}, 'w')"
    data.write_text(yaml.safe_dump({'names': {0: 'pill'}, 'val': 'images/val', 'download': script}))
    with pytest.raises(ConfigError, match='download'): split_images(data, 'val')  # ultralytics would exec() it
    assert not pwned.exists()


def test_detector_data_and_resume_refuse_aliases(tmp_path, monkeypatch):
    from pillsnap import detector, sources
    from pillsnap.config import load_config
    data, exp = tmp_path/'data.yaml', tmp_path/'exp'
    data.write_text('names: &n {0: pill}\nval: images/val\nother: *n\n')
    cfg = load_config({'paths.exp_dir': str(exp), 'detector.data_path': str(data), 'detector.resume': 'last'})
    with pytest.raises(ConfigError, match='data.yaml:3 uses a YAML alias'): sources.detector_data(cfg)
    data.write_text('names: {0: pill}\nval: images/val\n')
    wdir = exp/'detector'/'train'/'weights'; wdir.mkdir(parents=True); (wdir/'last.pt').write_bytes(b'')
    (wdir.parent/'args.yaml').write_text(f'save_dir: &d {wdir.parent}\nproject: *d\n')  # the record of a resumable run
    monkeypatch.setattr(detector, 'recorded', lambda p: p)  # the checkpoint itself is not what this test is about
    monkeypatch.setattr(detector, 'read_checkpoint', lambda p: None)
    with pytest.raises(ConfigError, match='args.yaml:2 uses a YAML alias'): detector.check_detector(cfg)


# ---- 2. Labels that used to stop prepare ----------------------------------------------------------

def _hostile_labels(labels:list)->dict:
    "Turn the given label files into one hostile file each; {file: the start of the reason problems.csv must give}."
    good = json.loads(labels[0].read_text(encoding='utf-8'))
    def label(**change):
        lbl = json.loads(json.dumps(good))
        for k, v in change.items():
            if k == 'bbox': lbl['annotations'][0]['bbox'] = v
            elif k == 'annotations': lbl['annotations'] = v
            else: lbl['images'][0][k] = v
        return json.dumps(lbl)
    want, it = {}, iter(labels)
    def plant(why, text=None, make=None):
        f = next(it); want[f] = why
        if make: f.unlink(); make(f)
        else: f.write_text(text, encoding='utf-8')
    plant('broken JSON (nested too deeply)', '{"images": ' + '[' * 100_000 + ']' * 100_000 + '}')
    plant('bbox is not 4 finite numbers', label(bbox=[float('nan'), 10, 20, 20]))  # json writes NaN and reads it back
    plant('bbox is not 4 finite numbers', label(bbox=[0, 0, 10**400, 10]))  # float() of it overflows
    plant('bbox is not 4 finite numbers', label(bbox=[1e400, 0, 10, 10]))  # inf
    plant('bad image size', label(width=10**20))
    plant('not a regular file (a character device)', make=lambda f: f.symlink_to('/dev/zero'))
    plant('not a regular file (a named pipe)', make=os.mkfifo)
    plant('unreadable', make=lambda f: f.symlink_to(f.with_name('gone.json')))  # a dangling link
    plant('unreadable', make=lambda f: f.symlink_to(f))  # a link to itself
    plant('larger than', label(annotations=[{'bbox': [1, 1, 10, 10], 'category_id': 1}] * 200_000))
    plant('too many boxes (1000', label(annotations=[{'bbox': [1, 1, 10, 10], 'category_id': 1}] * 1000))
    plant('bad value of drug_S', label(drug_S={'a': [1, 2]}))  # the index's Parquet could not hold it
    return want


def test_a_label_read_never_blocks_or_exhausts_memory(tmp_path):
    "The two labels that hang or eat memory, parsed in a process that has 60 s and 3 GB."
    for name, make in (('zero.json', lambda f: f.symlink_to('/dev/zero')), ('pipe.json', os.mkfifo)):
        make(tmp_path/name)
        why = run_py("import json\nfrom pillsnap.aihub import LabelError, parse_label\n"
                     f"try: parse_label({str(tmp_path/name)!r})\nexcept LabelError as e: print(json.dumps(str(e)))")
        assert why.startswith('not a regular file'), why


def test_hostile_labels_become_problem_rows(tiny_root, tmp_path):
    root = tmp_path/'release'
    shutil.copytree(tiny_root, root)
    labels = sorted((root/'data'/'train'/'labels'/'single').rglob('*.json'))
    want = _hostile_labels(labels[1:])
    photo = sorted((root/'data'/'train'/'images'/'single').rglob('*.png'))[0]
    photo.unlink(); os.mkfifo(photo)  # a photo that is a named pipe: reading it would wait for ever
    problems, _ = prepare(root, tmp_path/'exp')
    got = {r.path: r.reason for r in problems.itertuples() if r.kind == 'label' and r.stage == 'index'}
    for f, why in want.items():
        rel = f.relative_to(root).as_posix()
        assert rel in got and got[rel].startswith(why), (rel, got.get(rel), why)
    assert any(photo.name in str(r.path) and 'named pipe' in str(r.reason) for r in problems.itertuples()), problems.to_string()


# ---- 3. Symlink loops -----------------------------------------------------------------------------

def test_walk_files_follows_links_but_never_into_a_loop(tmp_path):
    (tmp_path/'a'/'b').mkdir(parents=True); (tmp_path/'a'/'b'/'f.txt').write_text('x')
    (tmp_path/'other').mkdir(); (tmp_path/'other'/'g.txt').write_text('y')
    (tmp_path/'a'/'b'/'up').symlink_to('..'); (tmp_path/'a'/'b'/'again').symlink_to('../b')
    (tmp_path/'a'/'me').symlink_to('.'); (tmp_path/'a'/'me2').symlink_to('.')
    (tmp_path/'a'/'disk2').symlink_to(tmp_path/'other')  # a link to a folder elsewhere is followed
    walk = f"from pillsnap.io import walk_files\nimport json; print(json.dumps(walk_files({str(tmp_path/'a')!r})))"
    got = sorted(run_py(walk))
    assert [Path(p).relative_to(tmp_path/'a').as_posix() for p in got] == ['b/f.txt', 'disk2/g.txt']


def test_link_loops_in_a_download_do_not_stop_prepare(tiny_root, tmp_path):
    root = tmp_path/'download'
    shutil.copytree(tiny_root, root)
    (root/'here').symlink_to('.'); (root/'again').symlink_to('.')  # two links to the download's own top
    (root/'data'/'train'/'loop').symlink_to('..')  # and a loop under data/
    problems, r = prepare(root, tmp_path/'exp', timeout=120)
    assert 'Traceback' not in r.stderr
    clean, _ = prepare(tiny_root, tmp_path/'clean', timeout=120)
    assert len(problems) == len(clean)
    index = pd.read_parquet(tmp_path/'exp'/'data'/'label_index.parquet')
    assert len(index) == len(pd.read_parquet(tmp_path/'clean'/'data'/'label_index.parquet'))


# ---- 4. A YOLO data.yaml that points outside its folder -------------------------------------------

def _outside_source(tmp_path):
    "A YOLO source whose data.yaml names a training folder outside its own, which holds one labelled photo."
    from pillsnap.sources import example_sources
    src = example_sources(tmp_path/'mine')[0]
    elsewhere = tmp_path/'elsewhere'
    (elsewhere/'images').mkdir(parents=True); (elsewhere/'labels').mkdir()
    Image.new('RGB', (64, 48)).save(elsewhere/'images'/'private.jpg')
    (elsewhere/'labels'/'private.txt').write_text('0 0.5 0.5 0.2 0.2\n')
    shutil.rmtree(Path(src['path'])/'train')
    spec = yaml.safe_load((Path(src['path'])/'data.yaml').read_text())
    (Path(src['path'])/'data.yaml').write_text(yaml.safe_dump({**spec, 'train': str(elsewhere/'images')}))
    return src


def test_a_yolo_source_reading_outside_its_folder_is_refused_unless_allowed(tmp_path):
    from pillsnap.sources import index_sources
    src = _outside_source(tmp_path)
    with pytest.raises(ConfigError, match=r'outside .*allow_outside: true'): index_sources([src])
    index, _, _ = index_sources([{**src, 'allow_outside': True}])
    assert any(p.endswith('private.jpg') for p in index.image)


def test_a_yolo_source_skips_hostile_files(tmp_path):
    "A label that is a pipe or a device, a NaN box, too many boxes, a photo that is a pipe: each a reason."
    from pillsnap.sources import example_sources
    src = example_sources(tmp_path)[0]
    labels = sorted((Path(src['path'])/'train'/'labels').glob('*.txt'))
    labels[0].unlink(); os.mkfifo(labels[0])
    labels[1].unlink(); labels[1].symlink_to('/dev/zero')
    labels[2].write_text('0 nan 0.5 0.2 0.2\n')
    labels[3].write_text('0 0.5 0.5 0.2 0.2\n' * 1000)
    photo = sorted((Path(src['path'])/'valid'/'images').glob('*.jpg'))[0]
    photo.unlink(); os.mkfifo(photo)
    left = run_py(f"from pillsnap.sources import yolo_source\nimport json\n"
                  f"print(json.dumps(yolo_source({src['path']!r}, 'p')[2]))")
    reasons = sorted(left)
    assert any(r.startswith('not a regular file (a named pipe)') for r in reasons), reasons
    assert any(r.startswith('not a regular file (a character device)') for r in reasons), reasons
    assert 'bbox is not 4 finite numbers' in reasons, reasons
    assert any(r.startswith('too many boxes (1000') for r in reasons), reasons
    assert left.pop('class 9 is not in names')  # the example's own bad label
    assert sum(map(len, left.values())) == 5, left


# ---- 5. Archive members too large or too compressed -----------------------------------------------

def _forge_size(archive:Path, member:str, size:int):
    "Make the archive's directory claim `size` bytes for `member` (compressed and not): a header that lies."
    data = bytearray(archive.read_bytes())
    at = data.index(b'PK\x01\x02')  # the central directory: one record per member
    while True:
        n, m, k = (int.from_bytes(data[at + o:at + o + 2], 'little') for o in (28, 30, 32))
        if data[at + 46:at + 46 + n].decode() == member:
            data[at + 20:at + 28] = size.to_bytes(4, 'little') * 2; break
        at += 46 + n + m + k
    archive.write_bytes(bytes(data))


def test_archive_members_are_bounded_in_size_and_ratio(tmp_path):
    from pillsnap.aihub import extract_release
    root = tmp_path/'download'; root.mkdir()
    archive = root/'TS_1_단일.zip'
    with zipfile.ZipFile(archive, 'w', zipfile.ZIP_DEFLATED) as zf:
        zf.writestr('K-000001/ok.png', os.urandom(2000))
        zf.writestr('K-000001/bomb.png', bytes(3 << 20))  # 3 MiB of zeros: a few kB compressed
        zf.writestr('K-000001/liar.png', os.urandom(2000), compress_type=zipfile.ZIP_STORED)
    _forge_size(archive, 'K-000001/liar.png', 100 << 20)
    os.mkfifo(root/'TS_2_단일.zip'); (root/'VS_1_단일.zip').symlink_to(root/'gone.zip')  # a pipe and a dead link: no archives
    out = extract_release(root, workers=1)
    why = {p['path'].split('!')[1]: p['reason'] for p in out['problems']}
    assert set(why) == {'K-000001/bomb.png', 'K-000001/liar.png'}, why
    assert 'compressed' in why['K-000001/bomb.png'] and 'larger than' in why['K-000001/liar.png'], why
    shard = root/'data'/'train'/'images'/'single'/'TS_1_single'/'K-000001'
    assert sorted(p.name for p in shard.iterdir()) == ['ok.png']
