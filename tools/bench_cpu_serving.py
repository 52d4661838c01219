"""What a CPU-only deployment gives with the production architectures (nbs/90_benchmarks.ipynb: Export and serving speed).

Builds an experiment with the production models — EfficientNetV2-S at 384 px and YOLO11m at 640 px, each
trained for one epoch on a few synthetic photos at the release's 976x1280 (their weights are as good as
random: this measures speed, not accuracy) — exports it to ONNX (`pillsnap export`), then measures
single and combo mode end to end on its validation photos (`measure_latency`, `06a_judge.gates`: p50/p95 of the
whole call and of its detect and classify parts) with PyTorch, ONNX Runtime and the INT8 classifier.

    python tools/bench_cpu_serving.py --out work/bench-cpu [--photos 20] [--threads N]

With --configs it times the candidates of a CPU deployment instead, one experiment each (sizes, not accuracy: the
benchmarks page puts each beside the accuracy measured for its models elsewhere):

    python tools/bench_cpu_serving.py --out work/bench-cpu-grid --configs all --backends onnx,onnx-int8

With --rules EXP it times a trained experiment (its own validation photos, its served backend) with today's
defaults and again with each reading rule or gallery option turned off: what each costs in single and combo mode.

    python tools/bench_cpu_serving.py --out work/bench-cpu-rules --rules work/exp/demo

With --images, --rules times those photos in both modes instead of the experiment's validation photos (real phone
photos: their size and their pills); --pills LO,HI keeps the photos of a YOLO tree whose labels hold LO to HI pills
(trays of 5-8):

    python tools/bench_cpu_serving.py --out work/bench-cpu-real --rules work/exp/cpu --photos 60 \
        --images 'work/realdata/pushin-pill/images/*/*.jpg' [--pills 5,8]
"""
import argparse, glob, json, os, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ['classifier.model=tf_efficientnetv2_s', 'classifier.img_size=384', 'detector.model=yolo11m', 'detector.img_size=640']
# candidates for a CPU-only deployment: (classifier, its size, detector, its size)
CONFIGS = {'production': ('tf_efficientnetv2_s', 384, 'yolo11m', 640),
           'v2s384-y11n640': ('tf_efficientnetv2_s', 384, 'yolo11n', 640),
           'lite0-224-y11s640': ('tf_efficientnet_lite0', 224, 'yolo11s', 640),
           'lite0-224-y11n640': ('tf_efficientnet_lite0', 224, 'yolo11n', 640),
           'lite0-224-y11n480': ('tf_efficientnet_lite0', 224, 'yolo11n', 480),
           'lite0-224-y11n416': ('tf_efficientnet_lite0', 224, 'yolo11n', 416),
           'lite0-160-y11n320': ('tf_efficientnet_lite0', 160, 'yolo11n', 320)}


def settings_of(name:str)->list:
    cm, cs, dm, ds = CONFIGS[name]
    return [f'classifier.model={cm}', f'classifier.img_size={cs}', f'detector.model={dm}', f'detector.img_size={ds}']


def sh(*cmd, log:Path):
    "Run a pillsnap command; stop with its log when it fails."
    t0 = time.perf_counter()
    with open(log, 'a') as f: r = subprocess.run([str(c) for c in cmd], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode: raise SystemExit(f"{' '.join(map(str, cmd))} failed ({r.returncode}) — see {log}")
    return round(time.perf_counter() - t0, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='work/bench-cpu')
    ap.add_argument('--photos', type=int, default=20, help='validation photos timed per mode')
    ap.add_argument('--backends', default='torch,onnx,onnx-int8')
    ap.add_argument('--fresh', action='store_true', help='rebuild the experiment even if it exists')
    ap.add_argument('--configs', default=None, help=f"candidates to time (comma-separated, or all): {', '.join(CONFIGS)}")
    ap.add_argument('--rules', default=None, help='a trained experiment: the cost of each reading rule and gallery option')
    ap.add_argument('--images', default=None, help="with --rules: a glob of photos to time instead of its validation photos")
    ap.add_argument('--pills', default=None, help='with --images of a YOLO tree: only photos labelled with LO,HI pills')
    a = ap.parse_args(argv)
    out = Path(a.out).resolve(); out.mkdir(parents=True, exist_ok=True)
    if a.rules: return rule_costs(Path(a.rules), a.photos, out, photos_given(a.images, a.pills))
    names = list(CONFIGS) if a.configs == 'all' else a.configs.split(',') if a.configs else [None]
    reports = {}
    for name in names:
        exp = out/'exp' if name is None else out/name
        models = PRODUCTION if name is None else settings_of(name)
        build = build_exp(out/'synth', exp, models, out/'build.log', a.fresh)
        reports[name or 'production'] = report = time_exp(exp, a.photos, a.backends.split(','), models, build)
        (exp.parent/('bench_cpu_serving.json' if name is None else f'{name}.json')).write_text(json.dumps(report, indent=1))
    print(f"\n{'models':<20} {'backend':<11} {'single p50':>10} {'single p95':>10} {'combo-8 p50':>10} {'combo-8 p95':>10}")
    for n, report in reports.items():
        for b, r in report['latency_ms'].items():
            cell = lambda m, q: f"{(r[m].get('total') or r[m])[q]:.0f} ms" if m in r else '—'
            print(f"{n:<20} {b:<11} {cell('single', 'p50'):>10} {cell('single', 'p95'):>10} {cell('combo_8', 'p50'):>10} "
                  f"{cell('combo_8', 'p95'):>10}")
    if a.configs: (out/'grid.json').write_text(json.dumps(reports, indent=1))
    return reports if a.configs else reports['production']


def build_exp(data:Path, exp:Path, models:list, log:Path, fresh:bool)->dict:
    "An experiment with these architectures, one epoch each on a few synthetic photos at the release's size, exported."
    pillsnap, steps = Path(sys.executable).parent/'pillsnap', {}
    if not fresh and (exp/'export'/'classifier.onnx').is_file(): return steps
    shutil.rmtree(exp, ignore_errors=True)
    if not (data/'synth_summary.json').is_file():
        steps['synth_s'] = sh(pillsnap, 'synth', data, '--classes', 6, '--per-class', 3, '--combos', 12, '--image-size', '976,1280',
                              'synth.val_per_class=1', 'synth.photos_per_combo=2', log=log)
    tiny = ['classifier.pretrained=none', 'train.epochs=1', 'train.batch_size=4', 'train.auto_batch=false', 'loader.num_workers=0',
            'detector.epochs=1', 'detector.batch_size=2', 'detector.workers=0', 'data.yolo_singles_per_class=1', 'export.calib_images=8']
    steps['prepare_s'] = sh(pillsnap, 'prepare', '--root', data, '--exp', exp, *models, *tiny, 'data.cache=false', 'data.paste_photos=0',
                            'data.wild_photos=0', log=log)
    steps['train_cls_s'] = sh(pillsnap, 'train-cls', '--exp', exp, '--no-notebook', log=log)
    steps['train_det_s'] = sh(pillsnap, 'train-det', '--exp', exp, '--no-notebook', 'detector.conf=0.001', log=log)
    steps['export_s'] = sh(pillsnap, 'export', '--exp', exp, '--no-notebook', '--no-bench', log=log)
    return steps


def time_exp(exp:Path, photos:int, backends:list, models:list, build:dict)->dict:
    "p50/p95 of single and combo mode (8 boxes kept: a full tray) per backend, on this CPU."
    from pillsnap.gates import machine, measure_latency
    rows = {}
    for backend in backends:
        r = measure_latency(exp, photos, backend=backend, device='cpu', settings=['detector.conf=0.001', 'detector.max_det=8'])
        rows[backend] = {m: r[m] for m in ('single', 'combo') if m in r}
        rows[backend]['identify_8_crops'] = eight = identify_eight(exp, backend, photos)
        if 'combo' in r:  # an untrained detector keeps what its NMS leaves (1-4 boxes here): a tray of 8 is the
            c = r['combo']  # measured call with its classify part replaced by 8 crops' (decoding, detecting, cutting kept)
            rows[backend]['combo_8'] = {q: round(c['total'][q] - c['classify'][q] + eight[q], 1) for q in ('p50', 'p95')}
        print(exp.name, backend, json.dumps(rows[backend]), flush=True)
    return dict(models=models, machine=machine(), cpu_count=os.cpu_count(), photos=photos, build=build, latency_ms=rows)


# each reading rule of today's defaults, and the setting that turns it off (the gallery's views per query are its own,
# chosen when it was built with its thresholds: `pillsnap gallery --rebuild retrieval.query_turns=1`, not a setting here)
RULES = {'look closer (detector.closer)': 'detector.closer=0', 'read farther (detector.farther)': 'detector.farther=0',
         'detect size auto (detector.detect_size)': None,  # filled in: the detector's training size
         'the pill check (pipeline.pill_check)': 'pipeline.pill_check=false',
         'crowds (detector.crowd)': 'detector.crowd=0', 'nested boxes (detector.contain)': 'detector.contain=0',
         'cut-off boxes (detector.edge)': 'detector.edge=0'}


def photos_given(pattern:str|None, pills:str|None)->list|None:
    "The photos --images names, and with --pills those whose YOLO label (labels/ beside images/) holds LO to HI pills."
    if pattern is None: return None
    photos = sorted(glob.glob(pattern))
    if pills is None: return photos
    lo, hi = map(int, pills.split(','))
    def count(f):
        lab = Path(f).parents[2]/'labels'/Path(f).parent.name/f'{Path(f).stem}.txt'
        return sum(1 for l in lab.read_text().splitlines() if l.strip()) if lab.is_file() else -1
    return [f for f in photos if lo <= count(f) <= hi]


def rule_costs(exp:Path, photos:int, out:Path, images:list|None=None)->dict:
    "p50/p95 of single and combo mode with today's defaults, then with each rule off: its cost is the difference."
    if images is not None and not images: raise SystemExit('--images matched no photo')
    from pillsnap.config import exp_config
    from pillsnap.gates import machine, measure_latency
    saved = exp/'reports'/'latency.json'
    kept = saved.read_bytes() if saved.is_file() else None  # the experiment's own reading stays
    size = exp_config(exp).detector.img_size
    rows = {}
    try:
        for name, off in [('today\'s defaults', None), *RULES.items()]:
            off = off or (f'detector.detect_size={size}' if 'detect_size' in name else None)
            r = measure_latency(exp, photos, device='cpu', settings=[off] if off else [], images=images)
            rows[name] = dict(off=off, **{m: r[m]['total'] for m in ('single', 'combo') if m in r})
            print(f"{name:<48} " + '  '.join(f"{m} {v['p50']:.0f}/{v['p95']:.0f} ms" for m, v in rows[name].items()
                                            if isinstance(v, dict)), flush=True)
    finally:
        if kept is not None: saved.write_bytes(kept)
    base = rows["today's defaults"]
    for name, r in rows.items():  # a rule's cost: the defaults' time less the time without it
        r['cost_ms'] = {m: {q: round(base[m][q] - r[m][q], 1) for q in ('p50', 'p95')} for m in ('single', 'combo')
                        if m in r and m in base}
    report = dict(experiment=str(exp), machine=machine(), cpu_count=os.cpu_count(), photos=photos, rules=rows,
                  timed_on=f'{len(images)} photos given' if images else 'its validation photos')
    (out/'rule_costs.json').write_text(json.dumps(report, indent=1))
    return report


def identify_eight(exp:Path, backend:str, calls:int)->dict:
    "p50/p95 of classifying 8 pill crops in one batch (what combo mode does after detecting a tray of 8), ms."
    import numpy as np, torch
    from pillsnap.pipeline import Predictor
    pred = Predictor.from_exp(exp, backend=backend, device='cpu')
    size = pred.cfg.classifier.img_size  # crops come to `identify` cut and resized to the classifier's input
    crops = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8) for _ in range(8)]
    times = []
    for i in range(calls + 2):  # two warm-up calls
        t0 = time.perf_counter(); pred.identify(crops); dt = (time.perf_counter() - t0) * 1000
        if i >= 2: times.append(dt)
    return dict(p50=round(float(np.percentile(times, 50)), 1), p95=round(float(np.percentile(times, 95)), 1))


if __name__ == '__main__': main()
