"""`POST /count` latency on a served experiment (issue 81: p95 <= 150 ms on 2 cores; nbs/90_benchmarks).

Serves the experiment (`pillsnap serve`, as `tests/` start it), then sends N sequential requests of one photo each,
the experiment's validation combination photos in turn, and reports the client-side p50/p95 and the predictor's own.

    python tools/bench_count.py --exp work/exp/demo [--requests 100] [detector.detect_size=640 ...]
"""
import argparse, json, statistics, sys, time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pillsnap.config import Experiment          # noqa: E402
from pillsnap.server import serving             # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--exp', default='work/exp/demo')
    ap.add_argument('--requests', type=int, default=100)
    ap.add_argument('settings', nargs='*', help='key=value settings for the service')
    a = ap.parse_args(argv)
    root = Path(Experiment.open(a.exp).cfg.data.root)
    photos = sorted((root/'data'/'val'/'images'/'combination').rglob('*.png'))[:10]
    if not photos: sys.exit(f'no validation combination photos under {root}: a synthetic release (pillsnap synth) has them')
    key, data = 'bench-count-key-0123456789abcdef', [(p.name, p.read_bytes()) for p in photos]
    with serving(a.exp, key, *a.settings) as (url, _):
        head = {'X-API-Key': key}
        for d in data[:3]: httpx.post(url + '/count', files={'image': d}, headers=head, timeout=60)  # warm-up
        ms, server = [], []
        for i in range(a.requests):
            t = time.perf_counter()
            r = httpx.post(url + '/count', files={'image': data[i % len(data)]}, headers=head, timeout=60)
            ms.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200: sys.exit(f'/count answered {r.status_code}: {r.text[:200]}')
            server.append(r.json()['timing_ms']['total'])
    out = dict(exp=a.exp, settings=a.settings, requests=len(ms), p50_ms=round(statistics.median(ms), 1),
               p95_ms=round(statistics.quantiles(ms, n=20)[18], 1), predictor_p50_ms=round(statistics.median(server), 1))
    print(json.dumps(out))
    return out


if __name__ == '__main__': main()
