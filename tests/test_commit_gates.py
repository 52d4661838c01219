"""The commit gates: notebooks are clean (`nbdev-clean` changes nothing) and the package is in sync
(`nbdev-export` changes nothing). Checked on a copy of the working tree, so the checkout is never touched."""
import shutil, subprocess, sys

import pytest

from conftest import BIN, ROOT


def _files(root):
    r = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=root, capture_output=True, text=True, check=True)
    return [f for f in r.stdout.splitlines() if (root/f).is_file()]


@pytest.fixture(scope='module')
def copy(tmp_path_factory):
    dst = tmp_path_factory.mktemp('gates')/'repo'
    for f in _files(ROOT):
        (dst/f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT/f, dst/f)
    return dst


def _changed(copy, folder):
    return [str(p.relative_to(copy)) for p in sorted((copy/folder).rglob('*'))
            if p.is_file() and '__pycache__' not in p.parts
            and (not (ROOT/p.relative_to(copy)).exists() or (ROOT/p.relative_to(copy)).read_bytes() != p.read_bytes())]


@pytest.mark.parametrize('tool,folder', [('nbdev-clean', 'nbs'), ('nbdev-export', 'pillsnap')])
def test_gate_leaves_no_diff(copy, tool, folder):
    subprocess.run([str(BIN/tool)], cwd=copy, check=True, capture_output=True, timeout=300)
    changed = _changed(copy, folder)
    assert not changed, f'{tool} changed {changed}: run `{tool}` and commit the result'


def test_readme_is_generated_from_index():
    r = subprocess.run([sys.executable, 'tools/readme.py', '--check'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_stored_outputs_carry_no_progress_bars():
    "fastprogress's HTML bars and tqdm's lines change on every run and say nothing in the docs."
    r = subprocess.run([sys.executable, 'tools/clean_outputs.py', '--check'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
