"Shared fixtures, and the one summary line CI counts: `N passed, N failed`."
import json, os, shutil, subprocess, sys, types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Under pytest-xdist (`make test`: several test processes on one machine) each process and the commands it starts compute on one
# thread: torch's default (a thread per core in every process) would have the processes' thread pools fight over the same cores.
if os.environ.get('PYTEST_XDIST_WORKER'): os.environ.setdefault('OMP_NUM_THREADS', '1')
BIN = Path(sys.executable).parent
SAMPLES = ROOT/'tests'/'data'/'aihub'
# The web page's and the advisor menu's tests drive Debian's Chromium headless (`make browser` installs it).
CHROMIUM, DRIVER = shutil.which('chromium'), shutil.which('chromedriver')
needs_chromium = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                    reason='Debian chromium and chromium-driver are not installed (make test installs them)')


def pytest_terminal_summary(terminalreporter):
    stats = terminalreporter.stats
    passed = len(stats.get('passed', []))
    failed = len(stats.get('failed', [])) + len(stats.get('error', []))
    terminalreporter.write_line(f'{passed} passed, {failed} failed')


def run_cli(*args, cwd=ROOT, env=None, check=True):
    "Run the installed `pillsnap` console script; returns the CompletedProcess."
    r = subprocess.run([str(BIN/'pillsnap'), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=600)
    if check and r.returncode != 0: raise AssertionError(f'pillsnap {args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}')
    return r


def run_tool(name:str, *args, timeout:int=600):
    "Run `tools/NAME.py ARGS` as its command line does, from the repository's root; returns the CompletedProcess."
    return subprocess.run([str(BIN/'python'), f'tools/{name}.py', *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def load_tool(name:str):
    "`tools/NAME.py` as a module (its constants and functions), without running it."
    from importlib.util import module_from_spec, spec_from_file_location
    spec = spec_from_file_location(name, ROOT/'tools'/f'{name}.py')
    tool = module_from_spec(spec); spec.loader.exec_module(tool)
    return tool


def cli_main(*args, check=True):
    "The `pillsnap` command in this process (no interpreter start-up): (exit status, stdout, stderr)."
    import contextlib, io
    from pillsnap.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): code = main([str(a) for a in args])
    if check and code != 0: raise AssertionError(f'pillsnap {args} failed ({code}):\n{out.getvalue()}\n{err.getvalue()}')
    return code, out.getvalue(), err.getvalue()


def cli(*args, check=True):
    "`cli_main` answering like `run_cli` (`.returncode`, `.stdout`, `.stderr`): the command line's code without an interpreter start per command."
    code, out, err = cli_main(*args, check=check)
    return types.SimpleNamespace(returncode=code, stdout=out, stderr=err)


TINY = dict(classes=12, per_class=3, combos=6, seed=3, image_size=(244, 320), val_per_class=1, photos_per_combo=2,
            classes_per_shard=5, quirk_rate=0.0, workers=1)


@pytest.fixture(scope='session')
def tiny_root(tmp_path_factory):
    "A small synthetic dataset without quirks (so label types must match the real samples exactly)."
    from pillsnap.synth import synth_dataset
    root = tmp_path_factory.mktemp('synth')/'tiny'
    synth_dataset(root, **TINY)
    return root


def prepare_exp(root:Path, exp:Path, *settings:str)->Path:
    "`pillsnap prepare` of `root` into `exp` in this process: the prepared experiment a module's fixture shares (copy it before training in it)."
    cli('prepare', '--root', root, '--exp', exp, *settings)
    return exp


@pytest.fixture(scope='session')
def real_labels():
    return [json.loads(p.read_text(encoding='utf-8')) for p in sorted(SAMPLES.glob('*.json'))]


EXP_TINY = ['data.paste_photos=0', 'data.wild_photos=0', 'classifier.pretrained=none', 'train.augment.phone=0', 'classifier.model=test_efficientnet', 'classifier.img_size=64', 'train.epochs=1', 'train.batch_size=8', 'loader.num_workers=0',
            'data.workers=1', 'detector.model=yolo11n', 'detector.img_size=128', 'detector.epochs=1', 'detector.batch_size=8',
            'detector.workers=0', 'detector.close_mosaic=0', 'detector.conf=0.001', 'detector.max_det=12']


@pytest.fixture(scope='session')
def trained_exp(tmp_path_factory):
    "Copies of the book's tiny trained experiment (`pillsnap.tiny`: built once, then cached): one whole, one without the detector."
    from pillsnap.tiny import tiny_experiment
    loose = ('detector.conf=0.001', 'detector.max_det=12')  # every box the detector half-sees: schema and parity checks get boxes on any photo
    return (tiny_experiment(tmp_path_factory.mktemp('pipe')/'exp', settings=loose),
            tiny_experiment(tmp_path_factory.mktemp('pipe')/'no-detector', detector=False, settings=loose))
