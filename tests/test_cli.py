"The `pillsnap` console script as a user runs it."
import json
from pathlib import Path

from PIL import Image

from conftest import run_cli


def test_help_lists_commands_and_command_help_shows_docments():
    out = run_cli('--help').stdout
    assert all(c in out for c in ('synth', 'demo', 'config'))
    h = run_cli('synth', '--help').stdout
    assert '--per-class' in h and 'single-pill photos per class' in h and '--image-size' in h


def test_unknown_command_suggests_the_closest(tmp_path):
    r = run_cli('sytnh', check=False)
    assert r.returncode == 2 and "did you mean 'synth'?" in r.stderr


def test_synth_writes_a_dataset_and_contact_sheet(tmp_path):
    out = tmp_path/'ds'
    r = run_cli('synth', out, '--classes', 5, '--per-class', 2, '--combos', 2, '--seed', 1, '--image-size', '244,320',
                'synth.val_per_class=1', '--sheet')
    assert 'single_images' in r.stdout and 'contact sheet' in r.stdout
    spec = json.loads((out/'synth_spec.json').read_text())
    assert (spec['classes'], spec['per_class'], spec['combos'], spec['seed'], spec['image_size']) == (5, 2, 2, 1, [244, 320])
    pngs = list((out/'data'/'train'/'images'/'single').rglob('*.png'))
    assert len(pngs) == 10 and Image.open(pngs[0]).size == (244, 320)
    assert Image.open(out/'contact_sheet.png').size[0] > 300
    # same request again: reused; different request: refused with the fix, and nothing is lost
    again = run_cli('synth', out, '--classes', 5, '--per-class', 2, '--combos', 2, '--seed', 1, '--image-size', '244,320', 'synth.val_per_class=1')
    assert 'reusing' in again.stderr
    r = run_cli('synth', out, '--classes', 6, check=False)
    assert r.returncode == 2 and 'pass --force' in r.stderr and len(list((out/'data').rglob('*.png'))) > 10


def test_synth_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path/'data'/'train').mkdir(parents=True)
    (tmp_path/'data'/'train'/'precious.txt').write_text('real data')
    r = run_cli('synth', tmp_path, '--classes', 2, check=False)
    assert r.returncode == 2 and 'not made by pillsnap synth' in r.stderr
    assert (tmp_path/'data'/'train'/'precious.txt').read_text() == 'real data'
