"""Stage 4, rehearsed on this machine: a synthetic release of all 4,523 drugs through the user's path under a 1,024-file limit.

The path: synth, prepare, train-cls, evaluate (classifier, detector, pipeline), train-det, gate, gallery (rebuilt from
every trained drug's crops), export, release (packed and made current), and the service answering a short load test
(tools/loadtest.py on the experiment, 4 clients per mode; its server is a child of the step, under the same limit).

    python tools/rehearse.py --out work/rehearse          (make rehearse)

Photos are small and few per drug so the whole path fits this machine, but the counts that break things at stage 4
are the real ones: 4,523 classes (the look-alike groups included), ~2,000 crop-cache files (`data.cache_chunk` made
small), loader workers that each read all of them. Every step is the `pillsnap` command a user types, started with a
soft and hard limit of 1,024 open files (so `start_run` cannot raise it), and records its wall time, peak memory,
most open descriptors of its process tree and files written. The table is printed and written to `rehearsal.json`
with each step extrapolated to stage 4's photo count (time and files linearly; descriptors should not grow).
A step that fails stops the rehearsal with its output; so does a training run that lost a crop.
"""
import argparse, json, os, resource, shutil, subprocess, sys, threading, time
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent
LIMIT = 1024
STAGE4_PHOTOS = 500_000  # stage 4's single-pill photos (`stages.4.max_samples`)
PER_PHOTO = ('prepare', 'train-cls', 'evaluate classifier', 'train-det', 'evaluate detector')  # the rest are capped
# The recipe made small: what each step costs at this scale, not a model worth having.
SETTINGS = ['classifier.model=test_efficientnet', 'classifier.img_size=64', 'classifier.pretrained=none',
            'train.epochs=1', 'train.batch_size=64', 'train.augment.phone=0', 'loader.num_workers=2',
            'detector.model=yolo11n', 'detector.img_size=160', 'detector.epochs=1', 'detector.batch_size=16',
            'detector.workers=2', 'data.workers=2', 'data.paste_photos=200', 'data.wild_photos=100',
            'data.paste_size=192,256', 'eval.pipeline_photos=200']


def limit_files():
    "In the child, before it runs: at most LIMIT open files, soft and hard."
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def count_files(folder:Path)->int: return sum(len(fs) for _, _, fs in os.walk(folder)) if folder.exists() else 0


def run_step(name:str, args:list, exp:Path, log:Path)->dict:
    "Run one `pillsnap` command (or a tools/ script) under the limit: seconds, peak memory, most open descriptors, files written."
    before, t0, most = count_files(exp), time.perf_counter(), [0]
    cmd = [sys.executable, *args] if str(args[0]).startswith('tools/') else [str(BIN/'pillsnap'), *args]
    with open(log, 'w') as out:
        p = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, preexec_fn=limit_files,
                             cwd=Path(__file__).resolve().parents[1])
        done = threading.Event()
        def watch():  # the most descriptors held by the command and its workers at once (per process)
            while not done.is_set():
                try:
                    tree = [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
                    most[0] = max(most[0], *(q.num_fds() for q in tree))
                except (psutil.NoSuchProcess, psutil.AccessDenied): pass
                done.wait(0.2)
        threading.Thread(target=watch, daemon=True).start()
        _, status, usage = os.wait4(p.pid, 0)
        done.set()
    code = os.waitstatus_to_exitcode(status)
    row = dict(step=name, command=('python ' if cmd[0] == sys.executable else 'pillsnap ') + ' '.join(map(str, args[:3])) + ' …',
               exit=code,
               seconds=round(time.perf_counter() - t0, 1), peak_mb=round(usage.ru_maxrss / 1024),
               most_open_files=most[0], files_written=count_files(exp) - before)
    print(f"{name:<22} {row['seconds']:>8.1f} s {row['peak_mb']:>7} MB {row['most_open_files']:>6} files open "
          f"{row['files_written']:>8} written", flush=True)
    if code != 0:
        print(log.read_text()[-4000:]); raise SystemExit(f'{name} failed (exit {code}); its output: {log}')
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='work/rehearse', help='folder for the release, the experiment and the logs')
    ap.add_argument('--classes', type=int, default=4523)
    ap.add_argument('--per-class', type=int, default=3, help="single-pill photos per drug in AI Hub 'train'")
    ap.add_argument('--chunk', type=int, default=5, help='crops per cache file (5: ~2,000 files at 4,523 drugs)')
    ap.add_argument('--keep', action='store_true', help='keep an earlier rehearsal in --out instead of starting afresh')
    a = ap.parse_args()
    out = Path(a.out).resolve()
    if out.exists() and not a.keep: shutil.rmtree(out)
    (out/'logs').mkdir(parents=True, exist_ok=True)
    rel, exp = out/'release', out/'exp'
    settings = [*SETTINGS, f'data.cache_chunk={a.chunk}']
    steps = [('synthetic release', ['synth', rel, '--classes', a.classes, '--per-class', a.per_class, '--combos', 400,
                                    '--image-size', '192,256', 'synth.val_per_class=1', 'synth.photos_per_combo=2']),
             ('prepare', ['prepare', '--root', rel, '--exp', exp, *settings]),
             ('train-cls', ['train-cls', '--exp', exp, '--no-notebook']),
             ('evaluate classifier', ['evaluate', '--exp', exp, '--what', 'classifier', '--no-notebook']),
             ('train-det', ['train-det', '--exp', exp, '--no-notebook']),
             ('evaluate detector', ['evaluate', '--exp', exp, '--what', 'detector']),
             ('evaluate pipeline', ['evaluate', '--exp', exp, '--what', 'pipeline']),
             ('gate', ['gate', '--exp', exp, '--stage', 4, '--latency-photos', 5]),
             ('gallery', ['gallery', '--exp', exp, '--rebuild']),
             ('export', ['export', '--exp', exp, '--no-bench', '--no-notebook']),
             ('release', ['release', '--exp', exp, '--root', out/'releases', '--tag', 'rehearsal', '--activate']),
             ('serve under load', ['tools/loadtest.py', '--exp', exp, '--clients', 4, '--seconds', 20,
                                   '--out', out/'loadtest.json'])]
    rows = []
    for name, args in steps:
        rows.append(run_step(name, args, exp, out/'logs'/f"{name.replace(' ', '-')}.log"))
        if name == 'prepare':
            chunks = len(list((exp/'data'/'cache'/'train').glob('part-*.bin')))
            summary = json.loads((exp/'data'/'summary.json').read_text())
            print(f"  {chunks:,} training cache files, {summary['train']['classes']:,} classes, "
                  f"{summary['train']['photos']:,} training photos", flush=True)
        if name == 'train-cls':  # zero crops lost: no skip records, no damaged-cache fallback
            skipped = list((exp/'logs'/'skipped').glob('*.jsonl')) if (exp/'logs'/'skipped').exists() else []
            lost = sum(len(f.read_text().splitlines()) for f in skipped)
            damaged = 'is damaged' in (exp/'logs'/'train-cls.log').read_text()
            if lost or damaged: raise SystemExit(f'train-cls lost crops: {lost} skip records, damaged cache: {damaged}')
            print('  zero crops lost', flush=True)
    photos = summary['train']['photos'] + summary['val']['photos']
    scale = STAGE4_PHOTOS / max(photos, 1)
    for r in rows:  # what grows with the photos: time of the steps that read them all, files of prepare
        r['stage4_seconds'] = round(r['seconds'] * scale) if r['step'] in PER_PHOTO else None
        r['stage4_files'] = round(r['files_written'] * scale) if r['step'] == 'prepare' else None
    report = dict(limit_open_files=LIMIT, classes=summary['train']['classes'], photos=photos, cache_files=chunks,
                  chunk=a.chunk, stage4_scale=round(scale, 1), steps=rows, machine=dict(cpus=os.cpu_count()))
    load = json.loads((out/'loadtest.json').read_text())
    report['service'] = load
    (out/'rehearsal.json').write_text(json.dumps(report, indent=1))
    print(json.dumps(load)[:600])
    print(f"\n{len(rows)} steps passed under a {LIMIT}-file limit with {chunks:,} cache files; "
          f"stage 4 is {scale:.0f}× these photos — {out/'rehearsal.json'}")


if __name__ == '__main__': main()
