"""Slow uploads against `pillsnap serve` on loopback, bounded (nbs/91_operations.ipynb: Security model).

Starts the service for an experiment, measures a keyed client's /health and /predict (p50/p95) alone, then again while N
attacker connections from another loopback address (127.0.0.2) each send the head of a `POST /predict` with a 10 MB
Content-Length and then one body byte every GAP seconds, reopening whatever the server closes, for SECONDS. Prints JSON:
the keyed client's latencies and statuses before and during, and what the attackers were answered.

    python tools/slow_attack.py --exp work/exp/demo --attackers 260 --gap 10 --seconds 30 [--stolen-key]
"""
import argparse, json, secrets, socket, threading, time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np


def attacker(port:int, key:str|None, gap:float, until:float, seen:Counter, held:list):
    "One connection at a time, reopened when closed: a slow POST /predict body, one byte every `gap` s, until `until`."
    head = (b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000\r\n'
            + (b'X-API-Key: ' + key.encode() + b'\r\n' if key else b'') + b'\r\n')
    while time.time() < until:
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=gap + 5, source_address=('127.0.0.2', 0)) as c:
                c.sendall(head); held[0] += 1
                try:
                    while time.time() < until:
                        c.settimeout(gap)
                        try:
                            answer = c.recv(200)
                            seen[answer.split(b'\r\n')[0].decode(errors='replace') or 'closed'] += 1; break
                        except socket.timeout: c.sendall(b'-')
                finally: held[0] -= 1
        except OSError as e: seen[type(e).__name__] += 1
        time.sleep(gap)  # a slow attacker: back after the gap, not a flood of new connections


def keyed_client(url:str, key:str, photo:bytes, seconds:float)->dict:
    "A keyed client's /health and /predict, one after the other for `seconds`: latencies (ms) and statuses."
    out, end = {'health': [], 'predict': []}, time.time() + seconds
    with httpx.Client(timeout=60) as c:
        while time.time() < end:
            for route in out:
                t = time.perf_counter()
                r = (c.get(url + '/health') if route == 'health' else
                     c.post(url + '/predict', files={'image': ('p.png', photo, 'image/png')}, headers={'X-API-Key': key}))
                out[route].append((round((time.perf_counter() - t) * 1000, 1), r.status_code))
    return {k: dict(n=len(v), p50_ms=float(np.percentile([t for t, _ in v], 50)), p95_ms=float(np.percentile([t for t, _ in v], 95)),
                    statuses=dict(Counter(s for _, s in v))) for k, v in out.items()}


def attack(exp:str|Path, attackers:int=260, gap:float=10, seconds:float=30, stolen_key:bool=False, settings:list=())->dict:
    "The whole measurement (see the module's description)."
    from pillsnap.server import serving
    from loadtest import sample_photos
    key, photo = secrets.token_urlsafe(24), sample_photos(Path(exp))['single']
    with serving(exp, key, *settings) as (url, proc):
        port = int(url.rsplit(':', 1)[1])
        keyed_client(url, key, photo, 3)  # warm-up
        alone = keyed_client(url, key, photo, seconds / 2)
        seen, held, until = Counter(), [0], time.time() + seconds + 5
        threads = [threading.Thread(target=attacker, args=(port, key if stolen_key else None, gap, until, seen, held), daemon=True)
                   for _ in range(attackers)]
        for t in threads: t.start()
        time.sleep(3)  # the attackers are connected
        during = keyed_client(url, key, photo, seconds)
        for t in threads: t.join(gap + 10)
    return dict(attackers=attackers, gap_s=gap, seconds=seconds, stolen_key=stolen_key, alone=alone, during=during,
                attackers_answered=dict(seen))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--exp', required=True)
    ap.add_argument('--attackers', type=int, default=260)
    ap.add_argument('--gap', type=float, default=10)
    ap.add_argument('--seconds', type=float, default=30)
    ap.add_argument('--stolen-key', action='store_true', help='the attackers send a valid key (their bodies still must keep coming)')
    ap.add_argument('settings', nargs='*', help='key=value settings for the service')
    a = ap.parse_args()
    print(json.dumps(attack(a.exp, a.attackers, a.gap, a.seconds, a.stolen_key, a.settings), indent=1))


if __name__ == '__main__': main()
