"""Real-photo "unknown" with an experiment's trained classifier against its ImageNet start (nbs/90_benchmarks.ipynb, issue 35 §4).

    python tools/unknown_vs_start.py work/exp/demo [--real ../shared/realdata/pushin-pill] [settings ...]

The same trials `pillsnap gallery --rebuild` runs when a real set is named (`real_open_set`: products of the set
enrolled from a few pills each, a share held out as never seen) are run twice on the same pills: with the
experiment's trained classifier (best.pt) as the embedder, and with its configured start, untrained (the ImageNet
weights `classifier.pretrained` names). Each gets its own gallery of the trained drugs (centre and whitening from
its own embeddings of the training crops), built as `train-cls` builds it. Nothing in the experiment is written.
When the two read alike, training on the release's photos taught nothing that tells real products apart, and the
start's features are what "unknown" can reach. `settings` are `key=value` for both (e.g. `retrieval.cohort=3`).
"""
import argparse, json
from pathlib import Path

from pillsnap.model import build_classifier
from pillsnap.config import Experiment, exp_paths, pick_device
from pillsnap.gallery import _real_threshold, _trained_gallery
from pillsnap.model import find_checkpoint, load_classifier
from pillsnap.prepare import classifier_data
from pillsnap.retrieval import described

KEEP = ('auroc', 'unknown_answered', 'enrolled_called_unknown', 'enrolled_top1', 'threshold', 'trials', 'products', 'by_mode',
        'held_out', 'pills')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('exp', help='a trained experiment (prepared data and best.pt)')
    ap.add_argument('--real', default='../shared/realdata/pushin-pill', help='a real set (YOLO export or class folders)')
    ap.add_argument('settings', nargs='*', help='key=value settings for this run')
    a = ap.parse_args()
    real = Path(a.real).resolve()
    cfg = Experiment.of(a.exp, [f'eval.real_sets=[{{path: {real}}}]', *a.settings]).cfg
    d, device = classifier_data(cfg), pick_device(cfg.device)
    path = find_checkpoint('best', exp_paths(cfg.paths.exp_dir).classifier)
    trained, ck = load_classifier(path)
    start = build_classifier(cfg, len(d.class_map), d.pre)
    out = {}
    for name, model in (('trained', trained), (f'start ({cfg.classifier.pretrained}, untrained)', start)):
        described(model.eval(), None, cfg)  # the gallery's descriptor as the settings say (`retrieval.pool`, `scales`)
        g = _trained_gallery(cfg, model, ck, path, d, device, None)
        r = _real_threshold(cfg, g, model, d.pre, device, None)
        if r is None: raise SystemExit(f'{real}: fewer than 3 products with pills to spare')
        out[name] = {k: r[k] for k in KEEP}
        print(f"{name:40s} AUROC {r['auroc']:.4f}  never-seen answered unknown {r['unknown_answered']:.1%} "
              f"at {r['enrolled_called_unknown']:.1%} of enrolled ones  enrolled top-1 {r['enrolled_top1']:.3f}", flush=True)
        for mode, m in r['by_mode'].items():  # each mode's own threshold, on the pills of photos like the ones it asks
            caught = 'no never-seen pill of such photos' if m['unknown_answered'] is None else \
                     f"never-seen answered unknown {m['unknown_answered']:.1%}"
            print(f"{'':4s}{mode} mode's pills ({m['pills']} a trial): threshold {m['threshold']:.4f}, {caught} "
                  f"at {m['enrolled_called_unknown']:.1%} of enrolled ones", flush=True)
    print(json.dumps(out, indent=1))


if __name__ == '__main__':
    main()
