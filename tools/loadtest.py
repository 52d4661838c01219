"""Bounded load test of `pillsnap serve` on loopback (nbs/90_benchmarks.ipynb: The service under load).

Starts the service for an experiment in a child process, sends N concurrent clients' requests to
/predict for a fixed time per mode, and reports requests/s, latency p50/p95/p99, errors (must be 0)
and the server's resident memory sampled every second (start, end, slope).

    python tools/loadtest.py --exp work/exp/demo --clients 8 --seconds 30 [--backend onnx] [serve.batch_max=1]

With --flood N it measures public mode instead (serve.public=true): a polite client without a key, from another
address (127.0.0.2), sends a photo at 80 % of its share (serve.public_per_min) for --seconds alone, then as long
again while N threads without a key flood from 127.0.0.1 with /batch requests of as many many-pill trays as a key-less
request may carry (serve.public_batch_images; each tray four of the experiment's combination photos side by side),
in combo mode; it reports the polite client's latency in both phases and what the flood got (its 429s).

    python tools/loadtest.py --exp work/exp/demo --flood 8 --seconds 60
"""
import argparse, json, os, secrets, threading, time
from pathlib import Path

import httpx
import numpy as np


def rss_mb(pid):
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024
    return float('nan')


def cpu_s(pid)->float:
    "CPU seconds (user + system) a process has used so far."
    import psutil
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def sample_photos(exp:Path)->dict:
    "A single-pill and a combination photo of the experiment's validation split (the bytes on disk)."
    from pillsnap.config import exp_config
    from pillsnap.data import load_manifest
    m, root = load_manifest(exp/'data', 'val'), Path(exp_config(exp).data.root)
    return {k: (root/m[m.kind == k].image.iloc[0]).read_bytes() for k in ('single', 'combo') if (m.kind == k).any()}


def percentiles(lat:list)->dict:
    ms = np.array(lat) * 1000
    return dict(requests=len(lat), p50_ms=round(float(np.percentile(ms, 50)), 1), p95_ms=round(float(np.percentile(ms, 95)), 1))


def tray(photo:bytes)->bytes:
    "Four copies of a combination photo side by side, 2 × 2: a tray of many pills (PNG bytes)."
    import io
    from PIL import Image
    im = Image.open(io.BytesIO(photo)).convert('RGB')
    out = Image.new('RGB', (im.width * 2, im.height * 2))
    for i in range(4): out.paste(im, (im.width * (i % 2), im.height * (i // 2)))
    buf = io.BytesIO(); out.save(buf, 'PNG')
    return buf.getvalue()


def flood(exp:Path, photo:bytes, n:int, seconds:float, settings:list, rate:float=0, trays:bytes|None=None)->dict:
    """Public mode: the polite client's latency alone and beside `n` flooding threads (each at most `rate` requests/s, 0: as
    fast as it can) sending /batch requests of many-pill `trays` in combo mode (None: the polite photo to /predict), what
    the flood got and the server's CPU time beside it."""
    from pillsnap.config import exp_config
    from pillsnap.server import serving
    s = exp_config(exp, ['serve.public=true', *settings]).serve
    every = 60 / s.public_per_min / 0.8  # the polite client's pace: 80 % of its share
    files = lambda: {'image': ('photo.png', photo, 'image/png')}
    def polite(url, until):
        lat, codes = [], []
        with httpx.Client(transport=httpx.HTTPTransport(local_address='127.0.0.2'), timeout=120) as c:
            while time.perf_counter() < until:
                t = time.perf_counter()
                r = c.post(f'{url}/predict', files=files())
                lat.append(time.perf_counter() - t); codes.append(r.status_code)
                time.sleep(max(0, every - (time.perf_counter() - t)))
        return lat, codes
    flooded = []
    many = [('images', (f'tray{i}.png', trays, 'image/png')) for i in range(s.public_batch_images)] if trays else None
    def flooder(url, until):
        with httpx.Client(timeout=120) as c:
            while time.perf_counter() < until:
                t = time.perf_counter()
                r = (c.post(f'{url}/batch', params={'pipeline': 'combo'}, files=many) if many else
                     c.post(f'{url}/predict', files=files()))
                flooded.append(r.status_code)
                if rate: time.sleep(max(0, 1 / rate - (time.perf_counter() - t)))
    with serving(exp, secrets.token_urlsafe(24), 'serve.public=true', *settings,
                 log_file=exp/'logs'/'loadtest-serve.log') as (url, proc):
        alone, alone_codes = polite(url, time.perf_counter() + seconds)
        until, cpu0 = time.perf_counter() + seconds, cpu_s(proc.pid)
        threads = [threading.Thread(target=flooder, args=(url, until)) for _ in range(n)]
        for t in threads: t.start()
        beside, beside_codes = polite(url, until)
        for t in threads: t.join()
        cpu = cpu_s(proc.pid) - cpu0
    codes = np.array(flooded)
    return dict(exp=str(exp), settings=settings, public_per_min=s.public_per_min, public_burst=s.public_burst,
                flood_threads=n, flood_rate_per_thread=rate or None, seconds=seconds, cpu_count=os.cpu_count(),
                flood_request=(f'/batch of {s.public_batch_images} trays, combo mode' if trays else '/predict, single mode'),
                server_cpu_s_beside_flood=round(cpu, 1),
                polite_alone=dict(**percentiles(alone), errors=sum(c != 200 for c in alone_codes)),
                polite_beside_flood=dict(**percentiles(beside), errors=sum(c != 200 for c in beside_codes)),
                flood=dict(requests=len(codes), answered=int((codes == 200).sum()), refused_429=int((codes == 429).sum()),
                           other=int(((codes != 200) & (codes != 429)).sum())))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--exp', required=True)
    ap.add_argument('--clients', type=int, default=8)
    ap.add_argument('--seconds', type=float, default=30)
    ap.add_argument('--modes', default='single,combo')
    ap.add_argument('--backend', default=None)
    ap.add_argument('--flood', type=int, default=0, help='public mode: N flooding threads beside a polite client')
    ap.add_argument('--flood-rate', type=float, default=0, help='requests/s per flooding thread (default: as fast as it can)')
    ap.add_argument('--out', default=None, help='JSON report (default: {exp}/reports/loadtest-{backend}.json)')
    ap.add_argument('settings', nargs='*', help='key=value settings for the server')
    a = ap.parse_args()
    exp = Path(a.exp).resolve()
    photos = sample_photos(exp)
    if a.flood:
        report = flood(exp, photos['single'], a.flood, a.seconds, a.settings, a.flood_rate,
                       tray(photos['combo']) if 'combo' in photos else None)
        out = Path(a.out or exp/'reports'/f"loadtest-public{'-rate' if a.flood_rate else ''}.json")
        out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(report, indent=1))
        print(json.dumps(report, indent=1))
        if report['polite_alone']['errors'] or report['polite_beside_flood']['errors']: raise SystemExit('the polite client was refused')
        return
    from pillsnap.server import serving
    key, args = secrets.token_urlsafe(24), [*a.settings, *(['--backend', a.backend] if a.backend else [])]
    with serving(exp, key, *args, log_file=exp/'logs'/'loadtest-serve.log') as (url, proc):
        health = httpx.get(url + '/health').json()
        report = dict(exp=str(exp), backend=health['backend'], settings=a.settings, clients=a.clients, seconds=a.seconds,
                      cpu_count=os.cpu_count(), rss_mb_idle=round(rss_mb(proc.pid), 1), modes={})
        for mode in a.modes.split(','):
            lat, codes, pipe_ms, stop = [], [], [], time.perf_counter() + a.seconds
            def client():
                with httpx.Client(headers={'X-API-Key': key}, timeout=120) as c:
                    while time.perf_counter() < stop:
                        t = time.perf_counter()
                        r = c.post(f'{url}/predict', params={'pipeline': mode}, files={'image': ('photo.png', photos[mode], 'image/png')})
                        lat.append(time.perf_counter() - t); codes.append(r.status_code)
                        if r.status_code == 200: pipe_ms.append(r.json()['timing_ms']['total'])  # the pipeline's own time per photo
            rss, t0, cpu0 = [rss_mb(proc.pid)], time.perf_counter(), cpu_s(proc.pid)
            threads = [threading.Thread(target=client) for _ in range(a.clients)]
            for t in threads: t.start()
            while any(t.is_alive() for t in threads): time.sleep(1); rss.append(rss_mb(proc.pid))
            wall, cpu = time.perf_counter() - t0, cpu_s(proc.pid) - cpu0
            ms = np.array(lat) * 1000
            slope = float(np.polyfit(np.arange(len(rss)), rss, 1)[0]) if len(rss) > 2 else 0.0
            report['modes'][mode] = dict(requests=len(lat), errors=sum(c != 200 for c in codes), requests_per_s=round(len(lat) / wall, 2),
                                         p50_ms=round(float(np.percentile(ms, 50)), 1), p95_ms=round(float(np.percentile(ms, 95)), 1),
                                         p99_ms=round(float(np.percentile(ms, 99)), 1), rss_mb_start=round(rss[0], 1),
                                         rss_mb_end=round(rss[-1], 1), rss_mb_per_s=round(slope, 3),
                                         server_cpu_ms_per_request=round(1000 * cpu / max(len(lat), 1), 1),  # all of the server's threads
                                         pipeline_ms_per_photo=round(float(np.mean(pipe_ms)), 1) if pipe_ms else None)
        metrics = httpx.get(url + '/metrics', headers={'X-API-Key': key}).text
        report['batch_size_mean'] = next((float(l.split()[-1]) for l in metrics.splitlines() if l.startswith('pillsnap_batch_size_mean')), None)
    out = Path(a.out or exp/'reports'/f"loadtest-{report['backend']}.json")
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    if any(v['errors'] for v in report['modes'].values()): raise SystemExit('errors under load')


if __name__ == '__main__': main()
