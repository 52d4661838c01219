"""Bounded load test of `pillsnap serve` on loopback (nbs/90_benchmarks.ipynb: The service under load).

Starts the service for an experiment in a child process, sends N concurrent clients' requests to
/predict for a fixed time per mode, and reports requests/s, latency p50/p95/p99, errors (must be 0)
and the server's resident memory sampled every second (start, end, slope).

    python tools/loadtest.py --exp work/exp/demo --clients 8 --seconds 30 [--backend onnx] [serve.batch_max=1]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--exp', required=True)
    ap.add_argument('--clients', type=int, default=8)
    ap.add_argument('--seconds', type=float, default=30)
    ap.add_argument('--modes', default='single,combo')
    ap.add_argument('--backend', default=None)
    ap.add_argument('--out', default=None, help='JSON report (default: {exp}/reports/loadtest-{backend}.json)')
    ap.add_argument('settings', nargs='*', help='key=value settings for the server')
    a = ap.parse_args()
    exp = Path(a.exp).resolve()
    photos = sample_photos(exp)
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
