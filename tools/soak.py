"""Soak test of `pillsnap serve` on loopback: mixed traffic for a bounded time, latency over time and the memory slope.

Starts the service in a child process on a free 127.0.0.1 port (an experiment, or a release with `--release`),
then runs `--clients` clients for `--minutes` (and at most `--max-requests` requests) of mixed traffic:
single- and combo-mode photos, two-photo batches, imprint searches, /health, and bad uploads (a truncated
PNG, a text file) that must be refused with a 4xx. Every `--window` seconds it records requests, errors
(anything not answered as expected), latency percentiles per kind and the server's resident memory;
the memory slope is fitted after the warm-up (`--warmup-minutes`). Writes a JSON report and a plot, and
exits 1 on any error or when memory grows after warm-up by more than `--max-growth-mb`.

    python tools/soak.py --exp work/exp/demo --minutes 30 --clients 4 [--backend onnx] [serve.batch_max=1]
    python tools/soak.py --release work/releases --minutes 30
"""
import argparse, json, os, random, secrets, threading, time
from pathlib import Path

import httpx
import numpy as np

from loadtest import rss_mb, sample_photos

# what each kind of request sends, and the statuses that count as answered correctly
KINDS = {'single': 5, 'combo': 3, 'batch': 1, 'search': 1, 'health': 1, 'bad': 1}  # relative frequency


def request(c:httpx.Client, url:str, kind:str, photos:dict, rng:random.Random)->bool:
    "Send one request of `kind`; whether it was answered as it should be."
    if kind in ('single', 'combo'):
        r = c.post(f'{url}/predict', params={'pipeline': kind}, files={'image': ('photo.png', photos[kind], 'image/png')})
        return r.status_code == 200 and 'pills' in r.json()
    if kind == 'batch':
        files = [('images', (f'p{i}.png', photos['single'], 'image/png')) for i in range(2)]
        r = c.post(f'{url}/batch', params={'pipeline': 'single'}, files=files)
        return r.status_code == 200 and len(r.json()['results']) == 2
    if kind == 'search':
        r = c.get(f'{url}/search', params={'q': rng.choice(['TQ 250', 'K 100', 'AB', '50'])})
        return r.status_code == 200 and 'results' in r.json()
    if kind == 'health': return c.get(f'{url}/health').status_code == 200
    bad = rng.choice([photos['single'][:200], b'not a photo at all'])  # a truncated PNG, or text
    return 400 <= c.post(f'{url}/predict', files={'image': ('bad.png', bad, 'image/png')}).status_code < 500


def soak(url:str, key:str, pid:int, photos:dict, minutes:float, clients:int, window_s:float, max_requests:int, seed:int=0)->list:
    "Run the traffic; one record per window."
    kinds = [k for k in KINDS if k != 'combo' or 'combo' in photos]
    weights = [KINDS[k] for k in kinds]
    end, lock, done = time.perf_counter() + minutes * 60, threading.Lock(), [0]
    current = {'lat': {k: [] for k in kinds}, 'errors': [], 'requests': 0}
    def client(i):
        rng = random.Random(seed * 1000 + i)
        with httpx.Client(headers={'X-API-Key': key}, timeout=120) as c:
            while time.perf_counter() < end:
                with lock:
                    if done[0] >= max_requests: return
                    done[0] += 1
                kind, t = rng.choices(kinds, weights)[0], time.perf_counter()
                try: ok, why = request(c, url, kind, photos, rng), None
                except Exception as e: ok, why = False, f'{type(e).__name__}: {e}'
                with lock:
                    current['lat'][kind].append(time.perf_counter() - t); current['requests'] += 1
                    if not ok: current['errors'].append(f'{kind}: {why or "unexpected answer"}')
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads: t.start()
    windows, rss = [], []
    while any(t.is_alive() for t in threads):
        w_end = time.perf_counter() + window_s
        while time.perf_counter() < w_end and any(t.is_alive() for t in threads):
            time.sleep(min(1.0, window_s)); rss.append((time.perf_counter() - t0, rss_mb(pid)))
        with lock: cur, current['lat'], current['errors'], current['requests'] = dict(current), {k: [] for k in kinds}, [], 0
        lat = {k: np.array(v) * 1000 for k, v in cur['lat'].items() if v}
        windows.append(dict(t_s=round(time.perf_counter() - t0, 1), requests=cur['requests'], errors=len(cur['errors']), error_examples=cur['errors'][:3],
                            rss_mb=round(rss[-1][1], 1) if rss else None,
                            latency_ms={k: {p: round(float(np.percentile(v, q)), 1) for p, q in (('p50', 50), ('p95', 95), ('p99', 99))} for k, v in lat.items()}))
        print(f"[{windows[-1]['t_s']:7.0f} s] {cur['requests']:5d} requests, {len(cur['errors'])} errors, rss {windows[-1]['rss_mb']} MB, "
              + ', '.join(f"{k} p95 {v['p95']:.0f} ms" for k, v in windows[-1]['latency_ms'].items() if k in ('single', 'combo')), flush=True)
    return windows, rss


def memory_trend(rss:list, warmup_s:float)->dict:
    "RSS after the warm-up: start, end, the fitted slope (MB per minute) and the fitted growth over that time."
    after = [(t, m) for t, m in rss if t >= warmup_s] or rss
    t, m = np.array([a for a, _ in after]), np.array([b for _, b in after])
    slope = float(np.polyfit(t / 60, m, 1)[0]) if len(t) > 2 else 0.0
    return dict(after_warmup_s=round(float(t[0]), 1), rss_mb_start=round(float(m[0]), 1), rss_mb_end=round(float(m[-1]), 1), rss_mb_max=round(float(m.max()), 1),
                slope_mb_per_min=round(slope, 3), fitted_growth_mb=round(slope * float(t[-1] - t[0]) / 60, 1))


def plot(report:dict, rss:list, out:Path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ts = [w['t_s'] / 60 for w in report['windows']]
    for kind in ('single', 'combo', 'batch'):
        ys = [w['latency_ms'].get(kind, {}).get('p95', np.nan) for w in report['windows']]
        if not all(np.isnan(ys)): a.plot(ts, ys, marker='.', label=f'{kind} p95')
    a.set_ylabel('latency ms'); a.legend(); a.set_title(f"soak: {report['requests']} requests, {report['errors']} errors, {report['clients']} clients")
    b.plot([t / 60 for t, _ in rss], [m for _, m in rss], lw=1)
    b.axvline(report['memory']['after_warmup_s'] / 60, color='grey', ls='--', lw=1)
    b.set_ylabel('server RSS MB'); b.set_xlabel('minutes')
    fig.tight_layout(); fig.savefig(out, dpi=90); plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument('--exp'); src.add_argument('--release')
    ap.add_argument('--minutes', type=float, default=30)
    ap.add_argument('--clients', type=int, default=4)
    ap.add_argument('--max-requests', type=int, default=1_000_000)
    ap.add_argument('--window', type=float, default=60, help='seconds per reported window')
    ap.add_argument('--warmup-minutes', type=float, default=None, help='memory is judged after this (default: a fifth of the run)')
    ap.add_argument('--max-growth-mb', type=float, default=20, help='fitted RSS growth after warm-up that fails the run')
    ap.add_argument('--backend', default=None)
    ap.add_argument('--out', default=None, help='JSON report (default: {exp}/reports/soak.json; a release: beside it, soak.json)')
    ap.add_argument('settings', nargs='*', help='key=value settings for the server')
    a = ap.parse_args(argv)
    from pillsnap.server import serving
    if a.release:
        from pillsnap.release import MANIFEST, resolve_release
        exp = Path(json.loads((resolve_release(a.release)/MANIFEST).read_text())['source'])  # photos from the experiment it was packed from
        args = ['--release', a.release]
        out = Path(a.out or Path(a.release)/'soak.json')
    else: exp, args, out = Path(a.exp).resolve(), [], Path(a.out or Path(a.exp)/'reports'/'soak.json')
    photos, key = sample_photos(Path(exp)), secrets.token_urlsafe(24)
    args += [*a.settings, *(['--backend', a.backend] if a.backend else [])]
    out.parent.mkdir(parents=True, exist_ok=True)
    with serving(None if a.release else exp, key, *args, log_file=out.with_suffix('.serve.log')) as (url, proc):
        health = httpx.get(url + '/health').json()
        if 'combo' not in health['modes']: photos.pop('combo', None)  # no detector: no combo traffic
        windows, rss = soak(url, key, proc.pid, photos, a.minutes, a.clients, a.window, a.max_requests)
    warmup = (a.warmup_minutes if a.warmup_minutes is not None else a.minutes / 5) * 60
    report = dict(source=str(a.release or exp), release=(health.get('release') or {}).get('version'), backend=health['backend'], settings=a.settings,
                  clients=a.clients, minutes=a.minutes, max_growth_mb=a.max_growth_mb, cpu_count=os.cpu_count(), requests=sum(w['requests'] for w in windows),
                  errors=sum(w['errors'] for w in windows), memory=memory_trend(rss, warmup), windows=windows)
    report['verdict'] = 'pass' if report['errors'] == 0 and report['memory']['fitted_growth_mb'] <= a.max_growth_mb else 'fail'
    out.write_text(json.dumps(report, indent=1))
    plot(report, rss, out.with_suffix('.png'))
    print(json.dumps({k: v for k, v in report.items() if k != 'windows'}, indent=1))
    print(f'report {out}, plot {out.with_suffix(".png")}')
    if report['verdict'] != 'pass': raise SystemExit(f"soak failed: {report['errors']} errors, memory grew {report['memory']['fitted_growth_mb']} MB after warm-up")
    return report


if __name__ == '__main__': main()
