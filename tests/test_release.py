"Releases end to end: pack, list, switch and roll back from the command line; a real service started from a release, switched on SIGHUP under traffic, refusing a damaged one."
import json, signal, threading, time
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, cli

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


def test_two_packs_of_one_tag_a_switch_to_current_and_a_torn_history_end_cleanly(trained_exp, tmp_path):
    "Two `release --tag v1` at once: one packs, the other says the release exists; --switch current is refused; a torn history still rolls back."
    import subprocess
    from conftest import BIN
    e, root = trained_exp[0], tmp_path/'releases'
    run = lambda: subprocess.Popen([str(BIN/'pillsnap'), 'release', '--exp', str(e), '--tag', 'v1', '--root', str(root)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs = [run(), run()]
    codes, errs = [p.wait(timeout=300) for p in procs], [p.stderr.read() for p in procs]
    assert sorted(codes) == [0, 2] and 'never overwritten' in errs[codes.index(2)] and 'Traceback' not in ''.join(errs), errs
    assert sorted(p.name for p in root.iterdir()) == ['.lock', 'v1']  # no partial folder left
    cli('release', '--exp', e, '--tag', 'v2', '--root', root)
    cli('release', '--switch', 'v1', '--root', root); cli('release', '--switch', 'v2', '--root', root)
    r = cli('release', '--switch', 'current', '--root', root, check=False)
    assert r.returncode == 2 and "'current' is the link" in r.stderr and current(root) == 'v2'
    with open(root/'history.jsonl', 'ab') as f: f.write(b'{"time": "2026-11-24T0')  # a crash in the middle of a line
    assert 'current → v1' in cli('release', '--rollback', '--root', root).stdout and current(root) == 'v1'


@pytest.fixture
def photo(trained_exp):
    from pillsnap.config import exp_config
    from pillsnap.data import load_manifest
    e = trained_exp[0]
    row = load_manifest(e/'data', 'val').iloc[0]
    return (Path(exp_config(e).data.root)/row.image).read_bytes()


@pytest.mark.slow  # a real server, reloaded twice under traffic
def test_a_served_release_switches_on_sighup_without_a_failed_request(trained_exp, photo, tmp_path, monkeypatch):
    from pillsnap.server import serving
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


def test_commands_pointed_at_a_release_leave_it_sealed(trained_exp, photo, tmp_path):
    "Before: predict --exp RELEASE wrote its logs and enrol its gallery inside the release, which then failed its own verification."
    from pillsnap.release import verify_release
    root = tmp_path/'releases'
    cli('release', '--exp', trained_exp[0], '--tag', 'v1', '--root', root)
    rel, f = root/'v1', tmp_path/'pill.png'
    f.write_bytes(photo)
    r = cli('predict', f, '--exp', rel)
    assert 'sealed release' in r.stderr and (root/'logs'/'v1'/'settings.jsonl').is_file()
    for args in (('enrol', f, '--code', 'K-900001'), ('gallery', '--rebuild'), ('evaluate', '--what', 'pipeline'), ('export',)):
        r = cli(*args, '--exp', rel, check=False)
        assert r.returncode == 2 and 'is a release, and a release is sealed' in r.stderr, (args, r.stderr)
    verify_release(rel)  # still whole: the next serve --release starts


def test_verification_never_follows_links_or_parent_entries(trained_exp, tmp_path):
    "Before: a manifest entry '../x' or a file replaced by a link to the same bytes elsewhere verified as whole."
    import json, os, shutil
    from pillsnap.io import file_sha256
    from pillsnap.release import ReleaseError, verify_release
    root = tmp_path/'releases'
    cli('release', '--exp', trained_exp[0], '--tag', 'v1', '--root', root)
    linked, parent = root/'linked', root/'parent'
    shutil.copytree(root/'v1', linked); shutil.copytree(root/'v1', parent)
    table = linked/'data'/'drug_table.json'
    shutil.copy(table, tmp_path/'elsewhere.json'); table.unlink(); os.symlink(tmp_path/'elsewhere.json', table)
    (tmp_path/'outside.json').write_text('{}')
    m = json.loads((parent/'manifest.json').read_text())
    m['files']['../../outside.json'] = {'sha256': file_sha256(tmp_path/'outside.json'), 'bytes': 2}
    (parent/'manifest.json').write_text(json.dumps(m))
    with pytest.raises(ReleaseError, match='data/drug_table.json is a link'): verify_release(linked)
    with pytest.raises(ReleaseError, match=r'\.\./\.\./outside\.json points outside the release'): verify_release(parent)


@pytest.mark.slow  # a real server from a tampered release
def test_the_operators_keys_and_settings_win_over_a_releases(trained_exp, photo, tmp_path):
    "Before: a release's own config.yaml chose the keys' file, the address and CORS: the operator's key got 403 and the release's 200."
    import json, os, shutil, socket, subprocess, sys, yaml
    from pillsnap.io import file_sha256
    root, op = tmp_path/'releases', tmp_path/'operator'
    cli('release', '--exp', trained_exp[0], '--tag', 'v1', '--root', root)
    rel, theirs, ours = root/'v1', 'shipped-key-0123456789abcdef', 'operator-key-0123456789abcdef'
    (rel/'keys.env').write_text(f'PILLSNAP_API_KEYS={theirs}\n')
    snap = yaml.safe_load((rel/'config.yaml').read_text())
    snap['serve'].update(env_file=str(rel/'keys.env'), cors_origins=['https://evil.example'])
    (rel/'config.yaml').write_text(yaml.safe_dump(snap))
    m = json.loads((rel/'manifest.json').read_text())  # re-sealed by whoever tampered with it: it still verifies
    m['files'] |= {n: {'sha256': file_sha256(rel/n), 'bytes': (rel/n).stat().st_size} for n in ('config.yaml', 'keys.env')}
    (rel/'manifest.json').write_text(json.dumps(m))
    op.mkdir(); shutil.copy(Path(__file__).resolve().parents[1]/'config.yaml', op/'config.yaml'); (op/'.env').write_text(f'PILLSNAP_API_KEYS={ours}\n')
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != 'PILLSNAP_API_KEYS'}
    proc = subprocess.Popen([sys.executable, '-m', 'pillsnap', 'serve', '--release', str(rel),
                             '--port', str(port)], cwd=op, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(600):
            assert proc.poll() is None, 'the service exited'
            try:
                if httpx.get(url + '/health', timeout=1).status_code == 200: break
            except httpx.TransportError: time.sleep(0.2)
        post = lambda key: httpx.post(url + '/predict', files={'image': ('p.png', photo, 'image/png')}, headers={'X-API-Key': key}, timeout=60).status_code
        assert (post(ours), post(theirs)) == (200, 403)
        pre = httpx.options(url + '/predict', headers={'Origin': 'https://evil.example', 'Access-Control-Request-Method': 'POST'})
        assert 'access-control-allow-origin' not in pre.headers
        assert 'source' not in httpx.get(url + '/health').json()['release']  # the public health check names no folder
    finally:
        proc.terminate(); proc.wait(30)


@pytest.mark.slow  # a release served as the operations page's systemd unit starts it
def test_the_documented_unit_keeps_reports_and_an_unwritable_folder_stops_the_start(trained_exp, photo, tmp_path, monkeypatch):
    "Issue 83 §7: under the documented unit every POST /feedback answered 500 (its working folder read-only); now the unit names a writable one."
    import re, shlex
    from pillsnap.server import serving
    ops = json.loads((ROOT/'nbs'/'91_operations.ipynb').read_text())
    text = '\n'.join(''.join(c['source']) for c in ops['cells'])
    unit = next(u for u in re.findall(r'```ini\n(.*?)```', text, re.S) if 'serve --release' in u)
    keys = dict(l.split('=', 1) for l in unit.splitlines() if '=' in l and not l.startswith('#'))
    state = '/var/lib/' + keys['StateDirectory']  # systemd makes it, writable by the service's user
    args = shlex.split(keys['ExecStart'])[2:]
    writes = [a.split('=', 1)[1] for a in args if a.startswith(('feedback.dir=', 'checks.dir='))]
    assert len(writes) == 2 and all(w.startswith(state + '/') for w in writes), (writes, state)  # every folder it writes is one systemd opens
    root, var = tmp_path/'releases', tmp_path/'state'
    cli('release', '--exp', trained_exp[0], '--tag', 'v1', '--activate', '--root', root)
    mine = [a.replace('/srv/pillsnap/work/releases', str(root)).replace(state, str(var)) for a in args if a not in ('--backend', 'onnx')]  # no ONNX files in the tiny release
    with serving(None, KEY, *mine, log_file=tmp_path/'serve.log') as (url, proc):
        r = httpx.post(url + '/feedback', files={'image': ('p.png', photo, 'image/png')}, data={'answered': 'K-000001'},
                       headers={'X-API-Key': KEY}, timeout=60)
        assert r.status_code == 200, r.text
    assert (var/'feedback'/'reports.jsonl').is_file()
    blocked = tmp_path/'a-file'; blocked.write_text('')
    monkeypatch.setenv('PILLSNAP_API_KEYS', KEY)
    r = cli('serve', '--release', root, f'feedback.dir={blocked}/feedback', check=False)  # refused at start, not per report
    assert r.returncode == 2 and 'is not writable by this service' in r.stderr and 'feedback.dir' in r.stderr, r.stderr[-800:]


def test_who_may_reach_the_service_comes_from_the_operator_only(trained_exp, tmp_path, monkeypatch):
    "Issue 83 §6: a config.yaml in any parent folder made a release's service public, silently; an experiment's snapshot chose its access."
    import shutil, yaml
    root = tmp_path/'releases'
    cli('release', '--exp', trained_exp[0], '--tag', 'v1', '--activate', '--root', root)
    shared = tmp_path/'shared'; (shared/'me').mkdir(parents=True)
    theirs = yaml.safe_load((ROOT/'config.yaml').read_text()); theirs['serve']['public'] = True
    (shared/'config.yaml').write_text(yaml.safe_dump(theirs))  # another user's file in a parent folder
    monkeypatch.setenv('PILLSNAP_API_KEYS', KEY); monkeypatch.delenv('PILLSNAP_CONFIG', raising=False)
    monkeypatch.chdir(shared/'me')
    r = cli('serve', '--release', root, check=False)
    assert r.returncode == 2 and 'serve.public=True comes from' in r.stderr and str(shared/'config.yaml') in r.stderr, r.stderr[-800:]
    exp = tmp_path/'exp'; shutil.copytree(trained_exp[0], exp)
    snap = yaml.safe_load((exp/'config.yaml').read_text()); snap['serve']['allow_enrol'] = True
    (exp/'config.yaml').write_text(yaml.safe_dump(snap))  # the experiment's own snapshot opening enrolment
    monkeypatch.chdir(ROOT)
    r = cli('serve', '--exp', exp, check=False)
    assert r.returncode == 2 and 'serve.allow_enrol=True comes from' in r.stderr, r.stderr[-800:]
