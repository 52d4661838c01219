"The HTTP service on a real uvicorn server: auth, CORS, schema, limits, the bad-input corpus, concurrency, logs, the web page in Chromium."
import io, json, os, shutil, socket, struct, subprocess, sys, time, zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import BIN

KEY, KEY2 = 'test-key-0123456789abcdef', 'other-key-fedcba9876543210'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def start_server(exp, tmp, *extra, env=None):
    port, log = free_port(), open(tmp/f'serve-{time.time_ns()}.log', 'w+')
    proc = subprocess.Popen([str(BIN/'pillsnap'), 'serve', '--exp', str(exp), '--port', str(port), *extra], cwd=tmp, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, 'PILLSNAP_API_KEYS': f'{KEY},{KEY2}', **(env or {})})
    url = f'http://127.0.0.1:{port}'
    for _ in range(600):
        if proc.poll() is not None: log.seek(0); raise AssertionError(f'server exited {proc.returncode}:\n{log.read()}')
        try:
            if httpx.get(url + '/health', timeout=1).status_code == 200: return proc, url, log
        except httpx.TransportError: pass
        time.sleep(0.2)
    proc.kill(); raise AssertionError('server did not start in 120 s')


@pytest.fixture(scope='module')
def server(trained_exp, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('serve')
    proc, url, log = start_server(trained_exp[0], tmp)
    yield url, log, proc
    proc.terminate(); proc.wait(20)


@pytest.fixture(scope='module')
def photos(trained_exp):
    from pillsnap.config import load_config
    from pillsnap.data import load_manifest
    e = trained_exp[0]
    root = Path(load_config(path=e/'config.yaml').data.root)
    m = load_manifest(e/'data', 'val')
    return root/m[m.kind == 'single'].image.iloc[0], root/m[m.kind == 'combo'].image.iloc[0]


def post(url, path, photo=None, key=KEY, files=None, **params):
    files = files if files is not None else {'image': (Path(photo).name, Path(photo).read_bytes(), 'image/png')}
    return httpx.post(url + path, params=params, files=files, headers={'X-API-Key': key} if key else {}, timeout=60)


def check_prediction(r, mode, k):
    assert r['mode'] == mode and set(r) >= {'pills', 'hints', 'timing_ms', 'models', 'image_size'}
    assert r['pills'] and all(len(p['candidates']) == k and p['candidates'][0]['k_code'].startswith('K-') for p in r['pills'])
    assert 'dl_name' in r['pills'][0]['candidates'][0] and isinstance(r['pills'][0]['candidates'][0]['edi_codes'], list)


def test_health_is_public_and_names_the_models(server):
    url = server[0]
    r = httpx.get(url + '/health')
    h = r.json()
    assert r.status_code == 200 and h['status'] == 'ok' and h['backend'] == 'torch' and h['modes'] == ['single', 'combo']
    assert h['models']['classifier'].startswith('test_efficientnet-') and h['models']['detector'].startswith('yolo11n-') and h['uptime_s'] >= 0
    assert len(r.headers['x-request-id']) == 16
    assert httpx.get(url + '/openapi.json').json()['paths'].keys() >= {'/predict', '/batch', '/health', '/metrics'}


def test_api_key_is_required_and_checked(server, photos):
    url = server[0]
    r = post(url, '/predict', photos[0], key=None)
    assert r.status_code == 401 and 'missing X-API-Key' in r.json()['detail']
    assert post(url, '/predict', photos[0], key='wrong-key-0123456789abcdef').status_code == 403
    assert post(url, '/predict', photos[0], key=KEY[:-1]).status_code == 403
    assert post(url, '/predict', photos[0], key=KEY2).status_code == 200  # every configured key works
    assert post(url, '/batch', files={'images': ('a.png', photos[0].read_bytes())}, key=None).status_code == 401
    assert httpx.get(url + '/metrics').status_code == 401 and httpx.get(url + '/metrics', headers={'X-API-Key': KEY}).status_code == 200


def test_predict_and_batch_answer_with_the_schema(server, photos):
    url = server[0]
    r = post(url, '/predict', photos[0], pipeline='single', top_k=3)
    assert r.status_code == 200; check_prediction(r.json(), 'single', 3)
    r = post(url, '/predict', photos[1], pipeline='combo', top_k=2)
    assert r.status_code == 200; check_prediction(r.json(), 'combo', 2)
    assert len(r.json()['pills']) > 1
    files = [('images', (p.name, p.read_bytes(), 'image/png')) for p in (photos[0], photos[1], photos[0])]
    r = post(url, '/batch', files=files, pipeline='combo', top_k=1)
    assert r.status_code == 200 and len(r.json()['results']) == 3
    for x in r.json()['results']: check_prediction(x, 'combo', 1)
    for bad in ({'pipeline': 'auto'}, {'top_k': 0}, {'top_k': 101}, {'top_k': 'many'}):
        assert post(url, '/predict', photos[0], **bad).status_code == 422, bad


def bomb_png():
    "A small PNG whose header claims 60000 x 60000 pixels."
    buf = io.BytesIO(); Image.new('L', (8, 8)).save(buf, 'PNG'); b = bytearray(buf.getvalue())
    b[16:24] = struct.pack('>II', 60000, 60000)
    b[29:33] = struct.pack('>I', zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def hdr_bomb(side=8000):
    "A valid 4 MB run-length-coded Radiance HDR of side x side pixels: a format Pillow does not read (OpenCV would, to 64 Mpx / 3 GB)."
    runs = bytes([255, 128]) * (side // 127) + bytes([128 + side % 127, 128])
    return b'#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n' % (side, side) + (bytes([2, 2, side >> 8, side & 255]) + runs * 4) * side


def corpus(photo):
    good = Path(photo).read_bytes()
    return {
        'zero bytes': (b'', 400, 'empty file'),
        'text file': (b'hello, this is not a photo\n' * 10, 415, 'not an image'),
        'pdf': (b'%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF', 415, 'not an image'),
        'svg': (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>', 415, 'not an image'),
        'truncated png': (good[:len(good) // 2], 400, 'truncated|corrupt'),
        'png header only': (good[:20], 400, 'corrupt'),
        'jpeg garbage': (b'\xff\xd8\xff\xe0' + os.urandom(2000), 400, 'truncated|corrupt'),
        'decompression bomb': (bomb_png(), 413, 'too large'),
        'hdr bomb': (hdr_bomb(), 415, 'not an image'),
        'over 10 MB': (os.urandom(11 * 2**20), 413, 'over'),
    }


def test_bad_input_corpus_gets_4xx_and_the_service_stays_up(server, photos):
    import re
    url, _, proc = server
    for name, (data, status, why) in corpus(photos[0]).items():
        for path, field in (('/predict', 'image'), ('/batch', 'images')):
            r = post(url, path, files={field: (f'{name}.png', data, 'image/png')})
            assert r.status_code == status, (name, path, r.status_code, r.text)
            assert re.search(why, r.json()['detail']), (name, r.json())
        assert proc.poll() is None, f'the server died on {name}'
        assert post(url, '/predict', photos[0]).status_code == 200, f'no good answer after {name}'
    # not a multipart body, no file field, a batch over the limit, a body without Content-Length over the limit
    assert httpx.post(url + '/predict', content=b'{}', headers={'X-API-Key': KEY, 'Content-Type': 'application/json'}).status_code == 422
    assert post(url, '/predict', files={'photo': ('x.png', photos[0].read_bytes())}).status_code == 422
    many = [('images', (f'{i}.png', photos[0].read_bytes())) for i in range(17)]
    assert post(url, '/batch', files=many).status_code == 413

    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
        for _ in range(12): yield os.urandom(2**20)
        yield b'\r\n--b--\r\n'
    r = httpx.post(url + '/predict', content=chunks(), headers={'X-API-Key': KEY, 'Content-Type': 'multipart/form-data; boundary=b'})
    assert r.status_code == 413, r.text
    assert proc.poll() is None and post(url, '/predict', photos[0]).status_code == 200


def test_cors_allows_only_the_configured_origins(server):
    url = server[0]
    pre = {'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'x-api-key'}
    r = httpx.options(url + '/predict', headers={'Origin': 'https://pillsnap.co.kr', **pre})
    assert r.status_code == 200 and r.headers['access-control-allow-origin'] == 'https://pillsnap.co.kr'
    assert 'x-api-key' in r.headers['access-control-allow-headers'].lower()
    r = httpx.options(url + '/predict', headers={'Origin': 'https://evil.example', **pre})
    assert r.status_code == 400 and 'access-control-allow-origin' not in r.headers
    assert httpx.get(url + '/health', headers={'Origin': 'http://localhost:3000'}).headers['access-control-allow-origin'] == 'http://localhost:3000'
    assert 'access-control-allow-origin' not in httpx.get(url + '/health', headers={'Origin': 'https://evil.example'}).headers


def test_concurrent_requests_get_their_own_answers(server, photos):
    "Concurrent requests share inference batches; each still gets the answer for its own photo."
    url = server[0]
    alone = {m: post(url, '/predict', photos[i], pipeline=m, top_k=2).json() for i, m in enumerate(('single', 'combo'))}
    jobs = [('single', photos[0]), ('combo', photos[1])] * 8
    with ThreadPoolExecutor(16) as ex:
        res = list(ex.map(lambda j: post(url, '/predict', j[1], pipeline=j[0], top_k=2), jobs))
    assert [r.status_code for r in res] == [200] * len(jobs)
    for (mode, _), r in zip(jobs, res):
        got, want = r.json(), alone[mode]
        assert [p['box'] for p in got['pills']] == [p['box'] for p in want['pills']]
        assert [[c['k_code'] for c in p['candidates']] for p in got['pills']] == [[c['k_code'] for c in p['candidates']] for p in want['pills']]
    assert len({r.headers['x-request-id'] for r in res}) == len(jobs)
    m = httpx.get(url + '/metrics', headers={'X-API-Key': KEY}).text
    assert 'pillsnap_requests_total{route="/predict",status="200"}' in m and 'pillsnap_batch_size_mean' in m


def test_access_log_has_request_ids_and_never_the_keys(server, photos):
    url, log, _ = server
    r = post(url, '/predict', photos[0], key=KEY2)
    rid = r.headers['x-request-id']
    time.sleep(0.3)
    log.flush(); text = Path(log.name).read_text()
    lines = [json.loads(l.split(' | ', 1)[1]) for l in text.splitlines() if '"event": "access"' in l]
    mine = [l for l in lines if l['request_id'] == rid]
    assert mine and mine[0]['route'] == '/predict' and mine[0]['status'] == 200 and mine[0]['latency_ms'] > 0
    assert KEY not in text and KEY2 not in text and 'wrong-key' not in text


def test_service_refuses_to_start_without_keys(trained_exp, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'PILLSNAP_API_KEYS'}
    r = subprocess.run([str(BIN/'pillsnap'), 'serve', '--exp', str(trained_exp[0]), '--port', str(free_port())], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and 'PILLSNAP_API_KEYS' in r.stderr, r.stderr
    (tmp_path/'.env').write_text('PILLSNAP_API_KEYS=short\n')
    r = subprocess.run([str(BIN/'pillsnap'), 'serve', '--exp', str(trained_exp[0])], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and 'at least 16 characters' in r.stderr and 'short' not in r.stderr.replace('at least', ''), r.stderr


CHROMIUM, DRIVER = shutil.which('chromium'), shutil.which('chromedriver')


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason='Debian chromium and chromium-driver are not installed (make test installs them)')
def test_web_page_in_headless_chromium(server, photos):
    "Upload a synthetic combination photo in the page, in combo mode, and see the boxes and candidates."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    url = server[0]
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'): opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        drv.get(url + '/')
        assert 'pillsnap' in drv.title
        drv.find_element(By.ID, 'key').send_keys(KEY)
        drv.find_element(By.ID, 'file').send_keys(str(photos[1]))
        drv.find_element(By.CSS_SELECTOR, 'input[name=mode][value=combo]').click()
        drv.find_element(By.ID, 'go').click()
        WebDriverWait(drv, 60).until(lambda d: 'done' in d.find_element(By.ID, 'status').text or 'err' in d.find_element(By.ID, 'status').get_attribute('class'))
        status, results = drv.find_element(By.ID, 'status').text, drv.find_element(By.ID, 'results').text
        assert status.startswith('done'), status
        assert 'combo mode' in results and 'Pill 1' in results and 'Pill 2' in results and 'K-' in results
        canvas = drv.find_element(By.ID, 'canvas')
        assert int(canvas.get_attribute('width')) > 100
        # the drawn boxes: orange pixels on the canvas
        orange = drv.execute_script("""const c = document.getElementById('canvas'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 240 && d[i+1] > 120 && d[i+1] < 160 && d[i+2] < 30) n++; return n;""")
        assert orange > 100, orange
        drv.find_element(By.ID, 'key').clear(); drv.find_element(By.ID, 'key').send_keys('wrong-key-0123456789abcdef')
        drv.find_element(By.ID, 'go').click()
        WebDriverWait(drv, 30).until(lambda d: '403' in d.find_element(By.ID, 'status').text)
    finally: drv.quit()
