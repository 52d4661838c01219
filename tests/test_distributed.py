"""Data-parallel classifier training in two gloo processes on this CPU (`pillsnap train-cls --nproc 2`, torchrun):
the replicas stay equal, the first process alone writes, a resumed run continues, and the metrics match one process's."""
import json

import pytest
import torch

from conftest import cli, run_cli

pytestmark = pytest.mark.slow  # two trainings in two processes each


def test_two_processes_train_resume_and_match_one(tmp_path):
    from pillsnap.tiny import tiny_experiment, tiny_metrics
    exp = tiny_experiment(tmp_path/'exp', detector=False)  # trained by one process: 20 epochs, global batch 16
    one = tiny_metrics()['classifier']
    cls = exp/'classifier'
    for f in ('best.pt', 'last.pt', 'history.json', 'metrics.json'): (cls/f).unlink()
    tb = exp/'tb'/'classifier'
    before_tb = set(tb.rglob('events.*')) if tb.exists() else set()

    # 12 epochs in 2 processes, P×K batches (each process: 2 drugs × 4 photos of the global 4 × 4), then stop
    # (never stopping early: the run is to reach the epochs asked for, whatever the tiny model's validation does)
    r = run_cli('train-cls', '--exp', exp, '--nproc', '2', '--force', 'train.epochs=12', 'loader.pk_per_class=4',
                'train.patience=0')
    first = json.loads((cls/'metrics.json').read_text())['training']
    assert (first['processes'], first['batch_size'], first['replicas_identical'], first['epochs']) == (2, 16, True, 12)
    log = (exp/'logs'/'train-cls.log').read_text()
    assert log.count('epoch 12: saved last.pt') == 1 and log.count('2 processes × 8') == 1  # the first process logs, once
    assert len(set(tb.rglob('events.*')) - before_tb) == 1  # one TensorBoard writer
    assert '[rank1]' not in r.stderr and 'Traceback' not in r.stderr
    ck = torch.load(cls/'last.pt', weights_only=True)
    assert (ck['epoch'], ck['batch_size']) == (12, 16)

    # resumed in 2 processes to the recipe's 20 epochs: continues from epoch 12, ends near the one-process run
    run_cli('train-cls', '--exp', exp, '--nproc', '2', '--resume', 'last', 'train.epochs=20', 'train.patience=0')
    history = json.loads((cls/'history.json').read_text())
    assert [h['epoch'] for h in history] == list(range(1, 21))
    assert 'resuming from' in (exp/'logs'/'train-cls.log').read_text()
    two = json.loads((cls/'metrics.json').read_text())
    assert two['training']['replicas_identical'] is True
    assert abs(two['top1'] - one['top1']) <= 0.25, (two['top1'], one['top1'])  # 12 validation crops: 3 crops of noise


def test_nproc_refusals(tmp_path):
    from pillsnap.tiny import tiny_experiment
    exp = tiny_experiment(tmp_path/'exp', detector=False)
    before = (exp/'classifier'/'metrics.json').read_bytes()
    r = cli('train-cls', '--exp', exp, '--nproc', '3', '--force', check=False)  # 16 is not shared by 3
    assert r.returncode == 2 and 'multiple of 3' in r.stderr
    r = cli('train-cls', '--exp', exp, '--nproc', '2', '--force', 'loader.pk_per_class=4', 'train.batch_size=12', check=False)
    assert r.returncode == 2 and 'multiple of 8' in r.stderr  # each process's 6 photos would split runs of 4
    r = cli('train-cls', '--exp', exp, '--nproc', '0', '--force', check=False)
    assert r.returncode == 2 and '1 or more' in r.stderr
    assert (exp/'classifier'/'metrics.json').read_bytes() == before  # refused before anything was written
