"""Every notebook is a test: `nbdev-test` runs it (skipping `slow`/`cuda` cells); one pytest case each.

Each notebook runs in a process of its own, as `nbdev-test NOTEBOOK` would run it, but forked from one server process per test
process that has already imported torch, timm, fastai, ultralytics and pillsnap (`multiprocessing`'s forkserver with a preload):
a notebook starts in a fresh process without paying its ten seconds of imports (49 notebooks: about eight minutes of a run)."""
import multiprocessing, os, sys, tempfile

import pytest

from conftest import ROOT

# these notebooks train a tiny classifier and/or detector, or use the cached tiny experiment (built once, in minutes, by the first)
TRAINS = {'04a_train.classifier.ipynb', '04b_train.detector.ipynb', '04c_train.tiny.ipynb', '05f_infer.pipeline.ipynb', '05g_infer.pill_check.ipynb', '05h_infer.answer.ipynb', '06_judge.evaluate.ipynb', '06a_judge.gates.ipynb', '06b_judge.advisor.ipynb',
          '07_ship.export.ipynb', '07c_ship.serve.ipynb', '08b_run.cli.ipynb', '93_tutorial.ipynb'}
NOTEBOOKS = [pytest.param(p.name, marks=pytest.mark.slow) if p.name in TRAINS else p.name for p in sorted((ROOT/'nbs').glob('*.ipynb'))]

# imported once in the server process; each notebook's process is forked from it with these already loaded
PRELOAD = ['IPython', 'execnb.shell', 'nbdev.test', 'numpy', 'pandas', 'scipy', 'sklearn.metrics', 'cv2', 'torch', 'timm',
           'fastai.vision.all', 'ultralytics', 'onnxruntime', 'fastapi', 'pillsnap.tiny', 'pillsnap.pipeline', 'pillsnap.evaluate',
           'pillsnap.export', 'pillsnap.serve', 'pillsnap.cli']
FORKS = multiprocessing.get_context('forkserver')
FORKS.set_forkserver_preload(PRELOAD)


def run_notebook(path:str, log:str):
    "In the forked process: `nbdev-test PATH` with everything it prints (cells' errors included) written to LOG; exits 1 on failure."
    fd = os.open(log, os.O_WRONLY)
    sys.stdout.flush(); sys.stderr.flush()
    os.dup2(fd, 1); os.dup2(fd, 2)
    # a process forked by the server would start its own with the server's method; a fresh interpreter uses the platform's
    multiprocessing.set_start_method(multiprocessing.get_all_start_methods()[0], force=True)
    from nbdev.test import nbdev_test
    nbdev_test(path=path, n_workers=0)  # sys.exit(1) when a cell fails


@pytest.mark.parametrize('nb', NOTEBOOKS)
def test_notebook(nb):
    with tempfile.NamedTemporaryFile('r', suffix='.log') as log:
        p = FORKS.Process(target=run_notebook, args=(str(ROOT/'nbs'/nb), log.name))
        p.start(); p.join(900)
        if p.is_alive(): p.kill(); p.join()
        said = log.read()
    assert p.exitcode == 0 and 'Success' in said, f'{nb} failed (exit {p.exitcode}):\n{said[-12000:]}'


def test_every_notebook_named_slow_exists():
    "A renamed training notebook would otherwise land in the fast tier unnoticed."
    assert TRAINS <= {p.name for p in (ROOT/'nbs').glob('*.ipynb')}
