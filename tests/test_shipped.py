"The release as AI Hub ships it — zip archives in Korean-named folders — through `pillsnap synth --as-shipped` and `pillsnap prepare`."
import json, shutil, zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import cli

pytestmark = pytest.mark.slow  # two synth and several prepare runs (in this process: `cli`, the console script's code)

TINY = ('--classes', '4', '--per-class', '2', '--combos', '2', '--image-size', '244,320', '--seed', '7')
SETTINGS = ('data.paste_photos=0', 'data.wild_photos=0', 'classifier.img_size=64', 'data.workers=1', 'split.val_fraction=0.34')
TOP = Path('166.약품식별 인공지능 개발을 위한 경구약제 이미지 데이터')/'01.데이터'
SPLIT, ROLE = {'train': '1.Training', 'val': '2.Validation'}, {'images': '원천데이터', 'labels': '라벨링데이터'}
SET, KIND = {'single': '단일경구약제 5000종', 'combination': '경구약제조합 5000종'}, {'single': '단일', 'combo': '조합'}


def shipped_name(shard:Path)->Path:
    "Where the download keeps a canonical shard folder (data/train/images/single/TS_1_single → …/TS_1_단일.zip), written out by hand."
    _, split, role, kind_set, name = shard.parts
    prefix, n, kind = name.split('_')
    return TOP/SPLIT[split]/ROLE[role]/SET[kind_set]/f'{prefix}_{n}_{KIND[kind]}.zip'


def data_offset(archive:Path, info:zipfile.ZipInfo)->int:
    "Where a member's bytes start: after its local header, file name and extra field."
    with open(archive, 'rb') as f: f.seek(info.header_offset); h = f.read(30)
    return info.header_offset + 30 + int.from_bytes(h[26:28], 'little') + int.from_bytes(h[28:30], 'little')


def manifests(exp):
    return {n: pd.read_parquet(Path(exp)/'data'/'manifests'/f'{n}.parquet') for n in ('train', 'val', 'test')}


def copy_download(download, to):
    "The archives only, as they were downloaded (no extracted tree, no markers)."
    shutil.copytree(download, to, ignore=shutil.ignore_patterns('data', '.pillsnap-extract'))
    return to


@pytest.fixture(scope='module')
def releases(tmp_path_factory):
    base = tmp_path_factory.mktemp('releases')
    cli('synth', base/'canonical', *TINY)
    r = cli('synth', base/'download', *TINY, '--as-shipped')
    assert 'zip archives' in r.stdout
    return base/'canonical', base/'download'


@pytest.fixture(scope='module')
def prepared(releases, tmp_path_factory):
    canonical, download = releases
    exps = tmp_path_factory.mktemp('exps')
    cli('prepare', '--root', canonical, '--exp', exps/'canonical', *SETTINGS)
    first = cli('prepare', '--root', download, '--exp', exps/'download', *SETTINGS)
    return exps/'canonical', exps/'download', first.stdout + first.stderr


def test_synth_as_shipped_writes_one_archive_per_shard_in_the_korean_folders(releases):
    canonical, download = releases
    shards = sorted(p.relative_to(canonical) for p in (canonical/'data').glob('*/*/*/*') if p.is_dir())
    assert len(shards) >= 6 and not (download/'data').exists()  # photos and labels of single and combination shards; no tree
    assert sorted(p.relative_to(download) for p in download.rglob('*.zip')) == sorted(map(shipped_name, shards))
    for shard in shards:  # each archive holds its shard folder's files, byte for byte, K-code folders at the top
        files = {p.relative_to(canonical/shard).as_posix(): p.read_bytes() for p in (canonical/shard).rglob('*') if p.is_file()}
        with zipfile.ZipFile(download/shipped_name(shard)) as zf:
            assert {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()} == files
    assert json.loads((download/'synth_summary.json').read_text())['train'] == json.loads((canonical/'synth_summary.json').read_text())['train']


def test_prepare_reads_a_download_as_shipped_like_the_canonical_tree(releases, prepared):
    _, download = releases
    exp_canonical, exp_download, log = prepared
    assert 'extracted' in log and 'archive(s) into' in log
    a, b = manifests(exp_canonical), manifests(exp_download)
    for n in a: pd.testing.assert_frame_equal(a[n], b[n])
    for f in ('class_map.json', 'drug_table.json', 'summary.json'):
        assert json.loads((exp_canonical/'data'/f).read_text()) == json.loads((exp_download/'data'/f).read_text()), f
    assert pd.read_csv(exp_download/'data'/'problems.csv').empty
    # the experiment records the download folder, which now holds the tree every later command reads
    root = Path(yaml.safe_load((exp_download/'config.yaml').read_text())['data']['root'])
    assert root == download.resolve()
    assert all((root/p).is_file() for m in b.values() for p in m.image)


def test_a_second_prepare_does_not_extract_again(releases, prepared, tmp_path):
    _, download = releases
    files = [p for p in (download/'data').rglob('*') if p.is_file()]
    stamps = {p: p.stat().st_mtime_ns for p in files}
    r = cli('prepare', '--root', download, '--exp', tmp_path/'again', *SETTINGS)
    log = r.stdout + r.stderr
    assert 'extracted before' in log and 'reusing them' in log and 'archive(s) into' not in log
    assert {p: p.stat().st_mtime_ns for p in files} == stamps


def test_a_damaged_member_is_named_and_everything_else_is_prepared(releases, prepared, tmp_path):
    _, download = releases
    dl = copy_download(download, tmp_path/'dl')
    archive = next(dl.rglob('TS_1_단일.zip'))
    with zipfile.ZipFile(archive) as zf: victim = [i for i in zf.infolist() if i.filename.endswith('.png')][1]
    with open(archive, 'r+b') as f:  # rewrite 16 bytes in the middle of the photo's bytes
        f.seek(data_offset(archive, victim) + victim.compress_size // 2); old = f.read(16)
        f.seek(-16, 1); f.write(bytes(b ^ 0xFF for b in old))
    cli('prepare', '--root', dl, '--exp', tmp_path/'exp', *SETTINGS)
    problems = pd.read_csv(tmp_path/'exp'/'data'/'problems.csv')
    extract = problems[problems.stage == 'extract']
    assert list(extract.kind) == ['photo'] and extract.path.item() == f'{archive.relative_to(dl).as_posix()}!{victim.filename}'
    assert 'CRC' in extract.reason.item() and 'download TS_1_단일.zip again' in extract.reason.item()
    stem = Path(victim.filename).stem
    assert [(k, r) for k, p, r in zip(problems.kind, problems.path, problems.reason) if p.endswith(f'{stem}.json')] == [('label', 'no photo')]
    # everything else is prepared: the manifests hold every photo of the download but the damaged one
    _, exp_download, _ = prepared
    everything = {p for m in manifests(exp_download).values() for p in m.image}
    now = {p for m in manifests(tmp_path/'exp').values() for p in m.image}
    assert everything - now == {f'data/train/images/single/TS_1_single/{victim.filename}'} and now < everything


def test_a_member_that_would_escape_the_tree_is_refused(releases, tmp_path):
    _, download = releases
    dl = copy_download(download, tmp_path/'dl')
    archive = next(dl.rglob('TL_1_단일.zip'))
    evil = ('../../../../../../escaped.json', f'{tmp_path}/absolute-escaped.json')
    with zipfile.ZipFile(archive, 'a') as zf:
        for name in evil: zf.writestr(name, '{}')
    cli('prepare', '--root', dl, '--exp', tmp_path/'exp', *SETTINGS)
    problems = pd.read_csv(tmp_path/'exp'/'data'/'problems.csv')
    refused = problems[problems.stage == 'extract']
    assert sorted(refused.path) == sorted(f'{archive.relative_to(dl).as_posix()}!{n}' for n in evil)
    assert set(refused.kind) == {'label'} and refused.reason.str.contains('refused').all()
    assert not list(tmp_path.rglob('*escaped.json')) and not Path(evil[1]).exists()


def test_prepare_reads_a_download_unpacked_by_hand_without_copying_it(releases, prepared, tmp_path):
    _, download = releases
    exp_canonical = prepared[0]
    unpacked = tmp_path/'unpacked'
    for a in download.rglob('*.zip'):  # what an unzip tool makes of each archive: a folder named like it, beside where it was
        with zipfile.ZipFile(a) as zf: zf.extractall(unpacked/a.relative_to(download).parent/a.stem)
    r = cli('prepare', '--root', unpacked, '--exp', tmp_path/'exp', *SETTINGS)
    assert 'linked' in r.stdout + r.stderr and 'unpacked folder(s) into' in r.stdout + r.stderr
    a, b = manifests(exp_canonical), manifests(tmp_path/'exp')
    for n in a: pd.testing.assert_frame_equal(a[n], b[n])
    assert all((unpacked/p).is_symlink() for m in b.values() for p in m.image)  # the photos are read where they were unpacked
