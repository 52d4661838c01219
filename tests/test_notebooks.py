"Every notebook is a test: `nbdev-test` runs it (skipping `slow`/`cuda` cells); one pytest case each."
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT

NOTEBOOKS = sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb'))


@pytest.mark.parametrize('nb', NOTEBOOKS)
def test_notebook(nb):
    r = subprocess.run([str(BIN/'nbdev-test'), f'nbs/{nb}'], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and 'Success' in r.stdout + r.stderr, f'{nb} failed:\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}'
