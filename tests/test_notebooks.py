"Every notebook is a test: `nbdev-test` runs it (skipping `slow`/`cuda` cells); one pytest case each."
import subprocess

import pytest

from conftest import BIN, ROOT

# these notebooks train a tiny classifier and/or detector, or use the cached tiny experiment (built once, in minutes, by the first)
TRAINS = {'04a_train.classifier.ipynb', '04b_train.detector.ipynb', '04c_train.tiny.ipynb', '05f_infer.pipeline.ipynb', '05g_infer.pill_check.ipynb', '05h_infer.answer.ipynb', '06_judge.evaluate.ipynb', '06a_judge.gates.ipynb', '06b_judge.advisor.ipynb',
          '07_ship.export.ipynb', '07c_ship.serve.ipynb', '08b_run.cli.ipynb', '93_tutorial.ipynb'}
NOTEBOOKS = [pytest.param(p.name, marks=pytest.mark.slow) if p.name in TRAINS else p.name for p in sorted((ROOT/'nbs').glob('*.ipynb'))]


@pytest.mark.parametrize('nb', NOTEBOOKS)
def test_notebook(nb):
    r = subprocess.run([str(BIN/'nbdev-test'), f'nbs/{nb}'], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and 'Success' in r.stdout + r.stderr, f'{nb} failed:\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}'


def test_every_notebook_named_slow_exists():
    "A renamed training notebook would otherwise land in the fast tier unnoticed."
    assert TRAINS <= {p.name for p in (ROOT/'nbs').glob('*.ipynb')}
