"""Both modes end to end on a real YOLO set with an experiment's models (nbs/90_benchmarks.ipynb, issue 35).

    python tools/real_end_to_end.py work/exp/demo work/exp/demo-e2e [--real ../shared/realdata/pushin-pill] [--shots 3]
                                    [--hold-out 5 --seed 0] [--threshold-on train]

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

`--threshold-on train` is the user who names photos of their own in `eval.real_sets`: before enrolling, the copy's
gallery is rebuilt with a real set made of the set's *training* photos (a YOLO tree in the copy, `real-threshold/`:
links to the photos, labels written again), so the enrolled drugs' threshold is chosen on real photos, one threshold
per mode (`real_open_set`), that are never asked. No pill of a held-out product is used: each is labelled as a drug
the classifier was trained on, which the trials leave out, so its photo keeps its count of pills (one pill: single
mode's; several: combo mode's).
"""
import argparse, json, os, shutil

import numpy as np
from pathlib import Path

from pillsnap.aihub import coco_to_yolo
from pillsnap.config import Experiment
from pillsnap.evaluate import real_set_report
from pillsnap.gallery import build_gallery
from pillsnap.pipeline import K_CODE, Predictor
from pillsnap.retrieval import load_gallery, retrieval_dir
from pillsnap.sources import real_rows, real_sets, source_group


def not_runs(folder, names):
    "What `copytree` leaves out: training runs (`runs`, `tb`, ultralytics' `detector/train`), never the photos of `data/yolo/images/train`."
    return [n for n in names if n in ('runs', 'tb') or (n == 'train' and Path(folder).name == 'detector')]


def threshold_tree(rows, held:set, out:Path, trained:str)->Path:
    ("A YOLO tree of the photos in `rows` (links; labels written again) in which every pill of a `held` product is"
     " labelled as `trained`, a drug the classifier was trained on: the real-set trials leave those out.")
    names = sorted({k.split(':', 1)[-1] for ks in rows.k_codes for k in ks if k not in held}) + [trained]
    (out/'images'/'train').mkdir(parents=True); (out/'labels'/'train').mkdir(parents=True)
    for r in rows.itertuples():  # the photos' own names: Roboflow's copies of one photo stay one source
        src = Path(r.image)
        os.symlink(src, out/'images'/'train'/f'{src.stem}{src.suffix.lower()}')
        lines = [f"{names.index(trained if k in held else k.split(':', 1)[-1])} "
                 + ' '.join(f'{v:.6f}' for v in coco_to_yolo(b, r.width, r.height)) for k, b in zip(r.k_codes, r.bboxes)]
        (out/'labels'/'train'/f'{src.stem}.txt').write_text('\n'.join(lines) + '\n')
    (out/'data.yaml').write_text(json.dumps(dict(path=str(out), train='images/train', val='images/train', names=names)))
    n = sum(k in held for ks in rows.k_codes for k in ks)
    print(f'the threshold is chosen on {len(rows)} training photos; {n} pills of held-out products left out of it')
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('exp', help='a trained experiment with a gallery')
    ap.add_argument('out', help='where the copy goes (replaced)')
    ap.add_argument('--real', default='../shared/realdata/pushin-pill', help='a YOLO export with train, val and test')
    ap.add_argument('--shots', type=int, default=3, help='most training photos enrolled per product')
    ap.add_argument('--hold-out', type=int, default=0, help='products left out of the enrolment (never seen)')
    ap.add_argument('--seed', type=int, default=0, help='which products are held out')
    ap.add_argument('--threshold-on', choices=('enrolment', 'train'), default='enrolment',
                    help="where the enrolled drugs' 'unknown' threshold is chosen: their enrolment photos (no real set "
                         "named), or the set's training photos, no pill of a held-out product used (a real set named)")
    a = ap.parse_args()
    src, dst, real = Path(a.exp).resolve(), Path(a.out).resolve(), Path(a.real).resolve()
    if dst == src: raise SystemExit('give the copy its own folder')
    if dst.exists(): shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True, ignore=not_runs)
    (dst/'config.yaml').write_text((dst/'config.yaml').read_text().replace(str(src), str(dst)))
    train = real_rows(dict(path=str(real), name=real.name, format='yolo', splits=['train']))
    enrolled, products = {}, sorted({k for ks in train.k_codes for k in ks})
    held = {str(k) for k in np.random.default_rng(a.seed).choice(products, a.hold_out, replace=False)} if a.hold_out else set()
    if a.threshold_on == 'train':
        g = load_gallery(retrieval_dir(dst))
        trained = next(k for k in g.codes if k not in g.enrolled())
        tree = threshold_tree(train, held, dst/'real-threshold', trained)
        build_gallery(Experiment.of(str(dst), [f'eval.real_sets=[{{path: {tree}, name: {real.name}, splits: [train]}}]']))
    pred = Predictor.from_exp(str(dst), settings=[f'eval.real_sets=[{{path: {real}}}]'])
    for code in products:
        bare = code.split(':', 1)[-1]  # the set's drug as the models will know it (evaluate's `_as_known`)
        if not K_CODE.fullmatch(bare) or code in held: continue
        one = train[train.k_codes.map(lambda ks: list(ks) == [code])]
        one = one.assign(src=one.image.map(source_group)).sort_values('image').drop_duplicates('src').head(a.shots)
        if len(one): pred.enrol(bare, list(one.image), name=bare); enrolled[bare] = len(one)
    print(f'enrolled {len(enrolled)} products: {enrolled}' + (f'; held out: {sorted(held)}' if held else ''))
    m = pred.gallery.meta
    print(f"enrolled drugs are unknown below {pred.gallery.enrolled_words} (chosen on {m.get('enrolled_threshold_from')})")
    r = real_set_report(pred, real_sets(pred.cfg)[0], ('detector', 'pipeline'))
    p = r['pipeline']
    print(json.dumps(dict(combo=p['combo'], single=p['single'], detector_map50=(r.get('detector') or {}).get('map50')), indent=1))


if __name__ == '__main__':
    main()
