"The `pillsnap` console script as a user runs it."
import json
from pathlib import Path

import pytest
from PIL import Image

from conftest import cli_main, run_cli


@pytest.mark.slow  # two launches of pillsnap
def test_help_lists_commands_and_command_help_shows_docments():
    out = run_cli('--help').stdout
    assert all(c in out for c in ('synth', 'demo', 'config'))
    h = run_cli('synth', '--help').stdout
    assert '--per-class' in h and 'single-pill photos per class' in h and '--image-size' in h


def test_unknown_command_suggests_the_closest(tmp_path):
    r = run_cli('sytnh', check=False)
    assert r.returncode == 2 and "did you mean 'synth'?" in r.stderr


@pytest.mark.slow  # three launches, and a dataset written
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


@pytest.mark.slow  # the demo job: synth, prepare, a detector trained and evaluated
def test_demo_detector_only_runs_the_bench_det_preset_without_a_classifier(tmp_path):
    exp, root = tmp_path/'exp', tmp_path/'data'
    r = run_cli('demo', '--preset', 'bench-det', '--detector-only', f'paths.exp_dir={exp}', f'data.root={root}',
                'synth.classes=6', 'synth.combos=12', 'synth.photos_per_combo=2', 'synth.val_per_class=1', 'synth.sheet_classes=6',
                'synth.workers=1', 'data.workers=1', 'detector.img_size=128', 'detector.epochs=1', 'detector.batch_size=8',
                'detector.workers=0', 'detector.close_mosaic=0', 'detector.conf=0.001')
    val, test = json.loads((exp/'detector'/'metrics.json').read_text()), json.loads((exp/'reports'/'detector-yolo-test.json').read_text())
    assert (val['split'], test['split']) == ('val', 'test') and val['images'] and test['images']
    assert f"{val['map50']:.3f} on val ({val['images']} photos" in r.stdout and f"{test['map50']:.3f} on test" in r.stdout
    # the preset's detector data holds combination photos only, and no classifier was trained (nor its crop cache built)
    tree = Path(val['data']).parent
    assert all(p.name.split('_')[0].count('-') > 1 for p in (tree/'images'/'test').iterdir())  # K-xxxxxx-yyyyyy-…: a combination
    assert not (exp/'classifier'/'best.pt').exists() and not (exp/'data'/'cache').exists()
    assert list((exp/'runs').glob('train-det-*.ipynb')) and not list((exp/'runs').glob('train-cls-*.ipynb'))
    both = run_cli('demo', '--classifier-only', '--detector-only', check=False)
    assert both.returncode == 2 and 'exclude each other' in both.stderr


def test_count_never_loads_the_classifier_and_predict_takes_boxes(trained_exp, monkeypatch, tmp_path):
    """`pillsnap count` (issue 81): the count and the boxes, the classifier never loaded; `predict --boxes`: each box
    identified, no detector named; `predict --journal`: the tray check kept in the journal `checks` lists."""
    import pillsnap.pipeline
    from pillsnap.config import load_config
    from pillsnap.data import load_manifest
    exp = trained_exp[0]
    m = load_manifest(exp/'data', 'val')
    photo = Path(load_config(path=exp/'config.yaml').data.root)/m[m.kind == 'combo'].image.iloc[0]
    def refuse(*a, **k): raise AssertionError('counting loaded the classifier')
    with monkeypatch.context() as mp:
        mp.setattr(pillsnap.pipeline, 'load_classifier', refuse)
        n = json.loads(cli_main('count', '--exp', exp, photo, '--json')[1])
        text = cli_main('count', '--exp', exp, photo, photo)[1]
    assert n['count'] == len(n['boxes']) > 0 and 'candidates' not in json.dumps(n)
    assert [l.split(' (')[0] for l in text.splitlines()] == [f"{photo}: {n['count']} pill(s)"] * 2  # a line a photo
    given = n['boxes'][:2] + [[0.0, 0.0, 30.0, 30.0]]
    a = json.loads(cli_main('predict', '--exp', exp, photo, '--mode', 'combo', '--json',
                            '--boxes', ';'.join(','.join(map(str, b)) for b in given))[1])
    assert [p['box'] for p in a['pills']] == given and {p['found_by'] for p in a['pills']} == {'user'}
    assert a['models']['detector'] is None and a['models']['classifier']  # no detector found these pills
    rx, kept_in = f"{a['pills'][0]['candidates'][0]['k_code']} x2", f'checks.dir={tmp_path}'
    code, out, err = cli_main('predict', '--exp', exp, photo, '--mode', 'combo', '--json', '--expect', rx,
                              '--journal', kept_in)
    listed = cli_main('checks', '--exp', exp, '--list', kept_in)[1]
    assert json.loads(out)['check']['id'] in listed and listed.startswith(f'{tmp_path}: 1 check(s)')
    assert 'tray check(s) kept in' in err
    code, _, err = cli_main('predict', '--exp', exp, photo, '--journal', check=False)
    assert code == 2 and '--mode combo' in err
    (blocked := tmp_path/'a-file').write_text('')  # a journal that cannot be written: the answer is printed all the same
    code, out, err = cli_main('predict', '--exp', exp, photo, '--mode', 'combo', '--json', '--expect', rx, '--journal',
                              f'checks.dir={blocked}', check=False)
    assert code == 2 and 'not kept' in err and json.loads(out)['pills']
    assert len((tmp_path/'checks.jsonl').read_text().splitlines()) == 1  # the refused run kept nothing
    code, _, err = cli_main('predict', '--exp', exp, photo, '--mode', 'combo', '--boxes', '0,0,30', check=False)
    assert code == 2 and 'four numbers each' in err
