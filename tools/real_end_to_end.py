"""Both modes end to end on a real YOLO set with an experiment's models (nbs/90_benchmarks.ipynb, issue 35).

    python tools/real_end_to_end.py work/exp/demo work/exp/demo-e2e [--real ../shared/realdata/pushin-pill] [--shots 3]
                                    [--hold-out 5 --seed 0]

The experiment is copied (its models, data and gallery; not its training runs), so it is never changed. In the
copy, every product of the set that has single-pill *training* photos is enrolled from up to `--shots` of them
(distinct source photos, in name order; Roboflow saves each photo several times), under the set's own class name
(a name that is not a valid code, e.g. one with a space, is left out). Then the set's val + test photos are read
as a real set (`evaluate`'s `real_set_report`): combo mode's pills found, found and named, the count; single
mode's pill found and named. `reports/real/<set>.json` in the copy holds the numbers.

`--hold-out N` leaves N products (a seeded draw) out of the enrolment: their pills are drugs the models have never
seen, and the report says how often each mode answers them "unknown" (`never_seen_answered_unknown`) and how often
it calls a pill of an enrolled product unknown (`known_called_unknown`) — with the threshold the gallery chose
itself: on the enrolment photos, each left out in turn, when no real set chose it (`Gallery.calibrate_enrolled`).
"""
import argparse, json, shutil

import numpy as np
from pathlib import Path

from pillsnap.evaluate import real_set_report
from pillsnap.pipeline import K_CODE, Predictor
from pillsnap.sources import real_rows, real_sets, source_group


def not_runs(folder, names):
    "What `copytree` leaves out: training runs (`runs`, `tb`, ultralytics' `detector/train`), never the photos of `data/yolo/images/train`."
    return [n for n in names if n in ('runs', 'tb') or (n == 'train' and Path(folder).name == 'detector')]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('exp', help='a trained experiment with a gallery')
    ap.add_argument('out', help='where the copy goes (replaced)')
    ap.add_argument('--real', default='../shared/realdata/pushin-pill', help='a YOLO export with train, val and test')
    ap.add_argument('--shots', type=int, default=3, help='most training photos enrolled per product')
    ap.add_argument('--hold-out', type=int, default=0, help='products left out of the enrolment (never seen)')
    ap.add_argument('--seed', type=int, default=0, help='which products are held out')
    a = ap.parse_args()
    src, dst, real = Path(a.exp).resolve(), Path(a.out).resolve(), Path(a.real).resolve()
    if dst == src: raise SystemExit('give the copy its own folder')
    if dst.exists(): shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True, ignore=not_runs)
    (dst/'config.yaml').write_text((dst/'config.yaml').read_text().replace(str(src), str(dst)))
    train = real_rows(dict(path=str(real), name=real.name, format='yolo', splits=['train']))
    pred = Predictor.from_exp(str(dst), settings=[f'eval.real_sets=[{{path: {real}}}]'])
    enrolled, products = {}, sorted({k for ks in train.k_codes for k in ks})
    held = {str(k) for k in np.random.default_rng(a.seed).choice(products, a.hold_out, replace=False)} if a.hold_out else set()
    for code in products:
        bare = code.split(':', 1)[-1]  # the set's drug as the models will know it (evaluate's `_as_known`)
        if not K_CODE.fullmatch(bare) or code in held: continue
        one = train[train.k_codes.map(lambda ks: list(ks) == [code])]
        one = one.assign(src=one.image.map(source_group)).sort_values('image').drop_duplicates('src').head(a.shots)
        if len(one): pred.enrol(bare, list(one.image), name=bare); enrolled[bare] = len(one)
    print(f'enrolled {len(enrolled)} products: {enrolled}' + (f'; held out: {sorted(held)}' if held else ''))
    m = pred.gallery.meta
    print(f"enrolled drugs are unknown below {m.get('enrolled_threshold')} (chosen on {m.get('enrolled_threshold_from')})")
    r = real_set_report(pred, real_sets(pred.cfg)[0], ('detector', 'pipeline'))
    p = r['pipeline']
    print(json.dumps(dict(combo=p['combo'], single=p['single'], detector_map50=r['detector']['map50']), indent=1))


if __name__ == '__main__':
    main()
