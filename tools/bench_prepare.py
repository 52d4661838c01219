"""`prepare` at the AI Hub release's scale, on labels-only synthetic releases (nbs/90_benchmarks.ipynb: Data).

For each fraction of the release (4,523 drugs; 500 single-pill photos per drug in "train", 25 in "val", 200,000
combination photos in "train" and a fifth of that in "val": about 2.6 M photos and 3.1 M labels at 1.0), writes a
labels-only release (`pillsnap synth --labels-only`: labels and an empty file per photo) and runs
`pillsnap prepare --root REL --exp EXP data.cache=false` in a child process, then reports per fraction:
photos, labels, files, time to write, time to prepare (and its index, split and YOLO-tree phases from the log),
the child's peak memory and the bytes on disk, with the cost per photo — the check that it grows linearly.

    python tools/bench_prepare.py --fractions 0.01,0.1,1.0 --out work/bench-prepare [--keep]
"""
import argparse, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

RELEASE = dict(classes=4523, per_class=500, val_per_class=25, combos=200_000)
ROOT = Path(__file__).resolve().parents[1]


def du_bytes(path:Path)->int:
    "Bytes on disk under `path` (allocated blocks, as `du` counts them)."
    total = 0
    for dp, dns, fns in os.walk(path):
        for f in fns:
            try: total += os.lstat(os.path.join(dp, f)).st_blocks * 512
            except OSError: pass
    return total


def run(cmd:list, log:Path)->dict:
    "Run a pillsnap command in a child; its wall time and its own peak resident memory (its worker processes aside)."
    t0 = time.perf_counter()
    with open(log, 'w') as f:
        p = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    secs = time.perf_counter() - t0
    if p.returncode: raise SystemExit(f'{" ".join(map(str, cmd))} failed ({p.returncode}) — see {log}')
    return dict(seconds=round(secs, 1), peak_rss_mb=round(usage.ru_maxrss / 1024, 1))  # Linux: KB


def phases(log:Path)->dict:
    "Seconds of prepare's phases, from the timestamps of its log lines."
    stamps = []
    for line in log.read_text(errors='replace').splitlines():
        m = re.match(r'(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \w+\s+\S+ \| (.*)', line)
        if m: stamps.append((time.mktime(time.strptime(m.group(1), '%Y-%m-%d %H:%M:%S')), m.group(2)))
    find = lambda s: next((t for t, msg in stamps if msg.startswith(s)), None)
    t_index, t_split, t_yolo, t_end = find('indexing'), find('building the split'), find('YOLO tree'), find('prepare finished')
    out = {}
    if t_index and t_split: out['index_s'] = t_split - t_index
    if t_split and t_yolo: out['split_manifests_yolo_s'] = t_yolo - t_split  # the YOLO tree's line comes when it is built
    if t_yolo and t_end: out['summary_s'] = t_end - t_yolo
    m = re.search(r'indexed (\d+) photos from (\d+) labels in ([\d.]+)s \((\d+) labels/s\)', log.read_text(errors='replace'))
    if m: out.update(indexed=int(m.group(1)), labels=int(m.group(2)), labels_per_s=int(m.group(4)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--fractions', default='0.01,0.1')
    ap.add_argument('--out', default='work/bench-prepare')
    ap.add_argument('--workers', type=int, default=0, help='synth and indexing processes (0: one per core)')
    ap.add_argument('--keep', action='store_true', help='keep the releases and experiments (they are large)')
    ap.add_argument('--reuse', action='store_true', help='prepare releases kept by an earlier --keep run instead of writing them again')
    a = ap.parse_args(argv)
    out, pillsnap, rows = Path(a.out).resolve(), Path(sys.executable).parent/'pillsnap', []
    out.mkdir(parents=True, exist_ok=True)
    for f in map(float, a.fractions.split(',')):
        name = f'release-{f:g}'
        rel, exp = out/name, out/f'exp-{f:g}'
        shutil.rmtree(exp, ignore_errors=True)
        reuse = a.reuse and (rel/'synth_summary.json').exists()
        if not reuse: shutil.rmtree(rel, ignore_errors=True)
        n = dict(classes=RELEASE['classes'], per_class=max(1, round(RELEASE['per_class'] * f)), combos=round(RELEASE['combos'] * f))
        synth = dict(seconds=None, peak_rss_mb=None) if reuse else run([pillsnap, 'synth', rel, '--labels-only', '--classes', n['classes'], '--per-class', n['per_class'], '--combos', n['combos'],
                     f"synth.val_per_class={max(1, round(RELEASE['val_per_class'] * f))}", f'synth.workers={a.workers}', 'synth.image_size=976,1280'],
                    out/f'{name}-synth.log')
        summary = json.loads((rel/'synth_summary.json').read_text())
        photos = sum(summary[s]['single_images'] + summary[s]['combo_images'] for s in ('train', 'val'))
        files = sum(len(fs) for _, _, fs in os.walk(rel/'data'))
        disk_rel = du_bytes(rel)
        prep = run([pillsnap, 'prepare', '--root', rel, '--exp', exp, 'data.cache=false', 'data.paste_photos=0', 'data.wild_photos=0', f'data.workers={a.workers}'], out/f'{name}-prepare.log')
        row = dict(fraction=f, photos=photos, files=files, synth_s=synth['seconds'], synth_peak_rss_mb=synth['peak_rss_mb'], prepare_s=prep['seconds'],
                   prepare_peak_rss_mb=prep['peak_rss_mb'],
                   release_mb=round(disk_rel / 2**20, 1), exp_data_mb=round(du_bytes(exp/'data') / 2**20, 1), **phases(out/f'{name}-prepare.log'))
        row['prepare_ms_per_photo'] = round(1000 * row['prepare_s'] / photos, 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not a.keep: shutil.rmtree(rel, ignore_errors=True); shutil.rmtree(exp, ignore_errors=True)
    (out/'bench_prepare.json').write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == '__main__': main()
