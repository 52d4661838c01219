"""Both modes end to end on a real YOLO set with an experiment's models (nbs/90_benchmarks.ipynb, issue 35).

    python tools/real_end_to_end.py work/exp/demo work/exp/demo-e2e [--real ../shared/realdata/pushin-pill] [--shots 3]

The experiment is copied (its models, data and gallery; not its training runs), so it is never changed. In the
copy, every product of the set that has single-pill *training* photos is enrolled from up to `--shots` of them
(distinct source photos, in name order; Roboflow saves each photo several times), under the set's own class name
(a name that is not a valid code, e.g. one with a space, is left out). Then the set's val + test photos are read
as a real set (`evaluate`'s `real_set_report`): combo mode's pills found, found and named, the count; single
mode's pill found and named. `reports/real/<set>.json` in the copy holds the numbers.
"""
import argparse, json, shutil
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
    a = ap.parse_args()
    src, dst, real = Path(a.exp).resolve(), Path(a.out).resolve(), Path(a.real).resolve()
    if dst == src: raise SystemExit('give the copy its own folder')
    if dst.exists(): shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True, ignore=not_runs)
    (dst/'config.yaml').write_text((dst/'config.yaml').read_text().replace(str(src), str(dst)))
    train = real_rows(dict(path=str(real), name=real.name, format='yolo', splits=['train']))
    pred = Predictor.from_exp(str(dst), settings=[f'eval.real_sets=[{{path: {real}}}]'])
    enrolled = {}
    for code in sorted({k for ks in train.k_codes for k in ks}):
        bare = code.split(':', 1)[-1]  # the set's drug as the models will know it (evaluate's `_as_known`)
        if not K_CODE.fullmatch(bare): continue
        one = train[train.k_codes.map(lambda ks: list(ks) == [code])]
        one = one.assign(src=one.image.map(source_group)).sort_values('image').drop_duplicates('src').head(a.shots)
        if len(one): pred.enrol(bare, list(one.image), name=bare); enrolled[bare] = len(one)
    print(f'enrolled {len(enrolled)} products: {enrolled}')
    r = real_set_report(pred, real_sets(pred.cfg)[0], ('detector', 'pipeline'))
    p = r['pipeline']
    print(json.dumps(dict(combo=p['combo'], single=p['single'], detector_map50=r['detector']['map50']), indent=1))


if __name__ == '__main__':
    main()
