"""pillsnap installed, not cloned (issue 37 §1): the wheel `pip wheel` makes, installed into a fresh virtual environment,
its commands run from an empty folder — the defaults come from the package, the outputs land in that folder."""
import json, os, shutil, subprocess, sys, sysconfig
from pathlib import Path

import pytest

from conftest import BIN, ROOT, TINY


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    "The bin folder of a new virtual environment holding pillsnap's wheel (its dependencies read from this environment's)."
    d = tmp_path_factory.mktemp('install')
    skip = shutil.ignore_patterns('.git', '.venv', 'work', 'build', '_proc', '_docs', '*.egg-info', '__pycache__')
    shutil.copytree(ROOT, d/'src', ignore=skip)  # built from a copy: the build leaves nothing in the checkout
    subprocess.run([str(BIN/'python'), '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(d/'dist'), str(d/'src')],
                   check=True, capture_output=True, timeout=300)
    wheel, = (d/'dist').glob('pillsnap-*.whl')
    subprocess.run([sys.executable, '-m', 'venv', str(d/'venv')], check=True, timeout=300)
    venv = d/'venv'/'bin'
    subprocess.run([str(venv/'python'), '-m', 'pip', 'install', '--no-deps', '--no-index', '-q', str(wheel)],
                   check=True, capture_output=True, timeout=300)
    # the dependencies (torch & co.) from this environment — added after the install, so pip never sees this one's pillsnap
    site = subprocess.run([str(venv/'python'), '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, '_pillsnap_deps.pth').write_text(sysconfig.get_path('purelib') + '\n')
    return venv


def run(venv, cwd, *args, check=True):
    env = {k: v for k, v in os.environ.items() if k != 'PILLSNAP_CONFIG'}
    r = subprocess.run([str(venv/'pillsnap'), *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if check: assert r.returncode == 0, f'pillsnap {args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}'
    return r


@pytest.mark.slow  # a wheel, a virtual environment, and a short run of prepare and train-cls in it
def test_the_wheel_works_from_an_empty_folder(installed, tmp_path, trained_exp):
    empty = tmp_path/'empty'; empty.mkdir()
    where = subprocess.run([str(installed/'python'), '-c', 'import pillsnap, pillsnap.config as c; print(pillsnap.__file__, c.find_config())'],
                           cwd=empty, capture_output=True, text=True, check=True).stdout.split()
    assert Path(where[0]).is_relative_to(installed.parent) and Path(where[1]).is_relative_to(installed.parent), where  # the wheel's
    assert not Path(where[1]).is_symlink()  # a real file in the wheel, not the checkout's link
    size = ','.join(map(str, TINY['image_size']))
    run(installed, empty, 'synth', 'data/tiny', '--classes', '6', '--per-class', '3', '--combos', '2', '--image-size', size)
    tiny = ['data.paste_photos=0', 'data.wild_photos=0', 'classifier.pretrained=none', 'train.augment.phone=0',
            'classifier.model=test_efficientnet', 'classifier.img_size=64', 'train.epochs=1', 'train.batch_size=8',
            'loader.num_workers=0', 'data.workers=1', 'retrieval.build=false']
    run(installed, empty, 'prepare', '--root', 'data/tiny', '--exp', 'work/exp/first', *tiny)
    r = run(installed, empty, 'train-cls', '--exp', 'work/exp/first')
    assert 'without its report' in r.stderr  # the stage notebooks are not in the wheel: the job runs in process
    assert (empty/'work'/'exp'/'first'/'classifier'/'best.pt').is_file()  # relative paths from the working folder
    assert not any(installed.parent.rglob('work'))  # never inside the installed package
    # commands on a trained experiment need only its snapshot
    exp = trained_exp[0]
    photo = next(p for p in sorted((empty/'data'/'tiny').rglob('*')) if p.suffix.lower() in ('.png', '.jpg'))
    answer = json.loads(run(installed, empty, 'predict', photo, '--exp', exp, '--json', 'device=cpu').stdout)
    assert answer['pills'] and answer['pills'][0]['candidates']
    r = run(installed, empty, 'evaluate', '--exp', exp, '--what', 'pipeline', '--max-photos', '2', 'device=cpu')
    assert 'single top-1' in r.stdout
    r = run(installed, empty, 'gate', '--exp', exp, '--stage', '1', '--latency-photos', '1', 'device=cpu')
    assert 'decision' in r.stdout


def test_the_gpu_switch_is_kept_by_every_later_install(tmp_path):
    "Issue 80 §5: `make install-gpu` swapped in onnxruntime-gpu, and the next `make install` put the CPU wheel back over it."
    venv = tmp_path/'venv'; venv.mkdir()
    def dry(*args):  # what `make install` would run for this (empty) environment: a whole install, as after a pyproject change
        return subprocess.run(['make', '-n', '-C', str(ROOT), 'install', f'VENV={venv}', *args],
                              capture_output=True, text=True, check=True, timeout=60).stdout
    gpu = "'onnxruntime-gpu>=1.20'"
    assert gpu not in dry() and f'rm -f {venv}/.pillsnap-gpu' in dry()  # without the switch: the CPU build, nothing remembered
    first = dry('GPU=1')
    assert f'touch {venv}/.pillsnap-gpu' in first and first.index(".[dev]'") < first.index(gpu)  # swapped after the reinstall
    (venv/'.pillsnap-gpu').touch()  # what `make install GPU=1` leaves behind
    later = dry()  # a plain `make install` later, reinstalling everything
    assert later.index(".[dev]'") < later.index(gpu)  # the GPU build put back after the requirements' CPU one
    assert gpu not in dry('GPU=0') and "'onnxruntime>=1.20'" in dry('GPU=0')  # and the way back
