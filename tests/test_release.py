"Releases end to end: pack, list, switch and roll back from the command line; a real service started from a release, switched on SIGHUP under traffic, refusing a damaged one."
import signal, threading, time
from pathlib import Path

import httpx
import pytest

from conftest import cli

KEY = 'release-key-0123456789abcdef'


def current(root): return (root/'current').resolve().name


def test_release_command_packs_switches_rolls_back_and_lists(trained_exp, tmp_path):
    e, root = trained_exp[0], tmp_path/'releases'
    r = cli('release', '--exp', e, '--tag', 'v1', '--activate', '--root', root)
    assert 'packed' in r.stdout and current(root) == 'v1'
    r = cli('release', '--exp', e, '--tag', 'v2', '--checkpoint', 'last', '--root', root)
    assert 'pillsnap release --switch v2' in r.stdout and current(root) == 'v1'  # packing alone changes nothing served
    r = cli('release', '--exp', e, '--tag', 'v2', '--root', root, check=False)
    assert r.returncode == 2 and 'never overwritten' in r.stderr
    cli('release', '--switch', 'v2', '--root', root)
    assert current(root) == 'v2'
    r = cli('release', '--rollback', '--root', root)
    assert current(root) == 'v1' and 'current → v1' in r.stdout
    rows = [l.split() for l in cli('release', '--list', '--root', root).stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ['v1', 'v2'] and rows[0][1] == '*' and '*' not in rows[1]  # v1 is current
    r = cli('release', '--switch', 'v9', '--root', root, check=False)
    assert r.returncode == 2 and 'there are: v1, v2' in r.stderr
    r = cli('release', '--exp', tmp_path/'nothing', '--root', root, check=False)
    assert r.returncode == 2 and 'not an experiment folder' in r.stderr


@pytest.fixture
def photo(trained_exp):
    from pillsnap.config import exp_config
    from pillsnap.data import load_manifest
    e = trained_exp[0]
    row = load_manifest(e/'data', 'val').iloc[0]
    return (Path(exp_config(e).data.root)/row.image).read_bytes()


@pytest.mark.slow  # a real server, reloaded twice under traffic
def test_a_served_release_switches_on_sighup_without_a_failed_request(trained_exp, photo, tmp_path, monkeypatch):
    from pillsnap.serve import serving
    e, root = trained_exp[0], tmp_path/'releases'
    cli('release', '--exp', e, '--tag', 'v1', '--activate', '--root', root)
    cli('release', '--exp', e, '--tag', 'v2', '--checkpoint', 'last', '--root', root)
    with serving(None, KEY, '--release', root, log_file=tmp_path/'serve.log') as (url, proc):
        health = lambda: httpx.get(url + '/health', timeout=10).json()
        assert health()['release']['version'] == 'v1' and health()['last_switch'] is None
        codes, stop = [], threading.Event()
        def client():
            with httpx.Client(timeout=60) as c:
                while not stop.is_set():
                    codes.append(c.post(url + '/predict', files={'image': ('pill.png', photo, 'image/png')}, headers={'X-API-Key': KEY}).status_code)
        t = threading.Thread(target=client); t.start()
        try:
            while len(codes) < 3: time.sleep(0.1)  # traffic before the switch
            def switched():
                deadline = time.time() + 120
                while (h := health())['last_switch'] is None or h['last_switch']['at'] == seen: 
                    assert time.time() < deadline, h
                    time.sleep(0.2)
                return h
            cli('release', '--switch', 'v2', '--root', root)
            seen = None; proc.send_signal(signal.SIGHUP)
            h = switched()
            assert h['release']['version'] == 'v2' and h['last_switch']['ok'], h
            n = len(codes)
            while len(codes) < n + 3: time.sleep(0.1)  # the new release answers
            cli('release', '--switch', 'v1', '--root', root)  # verified when switched to; damaged after, as a disk might
            best = root/'v1'/'classifier'/'best.pt'
            best.write_bytes(best.read_bytes()[:-1] + bytes([best.read_bytes()[-1] ^ 1]))
            seen = h['last_switch']['at']; time.sleep(1.1)  # a new second: the next switch has a new time
            proc.send_signal(signal.SIGHUP)
            h = switched()
            assert h['release']['version'] == 'v2' and not h['last_switch']['ok'] and 'classifier/best.pt has changed' in h['last_switch']['error'], h
        finally: stop.set(); t.join()
        assert len(codes) > 6 and set(codes) == {200}, codes  # no request failed across both reloads
    log = (tmp_path/'serve.log').read_text()
    assert 'now serving release v2' in log and 'release switch failed, still serving v2' in log
    assert (root/'logs'/'serve.log').is_file() and not (root/'v1'/'logs').exists()  # logs beside the releases, never inside one
    monkeypatch.setenv('PILLSNAP_API_KEYS', KEY)
    r = cli('serve', '--release', root, check=False)  # current is the damaged v1: refused before anything is served
    assert r.returncode == 2 and 'is damaged' in r.stderr and 'classifier/best.pt has changed' in r.stderr
