"""Where the served answer names known pills wrong: inside the truth's look-alike group, or not (issue 79 §4).

Each validation pill of a trained experiment, studio and phone-like (`data.paste_val_photos`), is answered as the
predictor answers it (the classifier and the gallery fused, `Gallery.fused`); a wrong answer is a look-alike when its
drug's record has the truth's shape and both colours (`drug_shape`, `color_class1`, `color_class2`). Prints top-1,
the wrong answers that are look-alikes, and top-1 when a look-alike counts as right. Nothing is written.

    python tools/lookalike_errors.py work/exp/demo
"""
import argparse, json, sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pillsnap.config import exp_config, exp_paths          # noqa: E402
from pillsnap.gallery import embed_rows                     # noqa: E402
from pillsnap.model import load_classifier, softmax_t       # noqa: E402
from pillsnap.prepare import classifier_data, pasted_val    # noqa: E402
from pillsnap.retrieval import described, load_gallery, query_turns  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('exp', help='a trained experiment with its gallery (pillsnap gallery --exp E)')
    a = ap.parse_args(argv)
    cfg, paths = exp_config(a.exp), exp_paths(a.exp)
    d = classifier_data(cfg)
    model, ck = load_classifier(paths.classifier/'best.pt')
    described(model, None, cfg)  # the gallery's descriptor: the model alone embeds otherwise
    g, T = load_gallery(paths.retrieval), float(ck.get('temperature') or 1.0)
    if g is None: raise SystemExit(f'{a.exp} has no gallery — build it: pillsnap gallery --exp {a.exp} --rebuild')
    records = json.loads((paths.data/'drug_table.json').read_text(encoding='utf-8'))
    look = lambda k: tuple((records.get(k) or {}).get(f) for f in ('drug_shape', 'color_class1', 'color_class2'))
    groups = pd.Series([look(k) for k in ck['k_codes']]).value_counts()
    print(f"{a.exp}: {len(ck['k_codes'])} trained drugs in {len(groups)} look-alike groups "
          f"({(groups > 1).sum()} of two or more, the largest {groups.max()})")
    for name, rows in (('phone-like', pasted_val(paths.data)), ('studio', d.val)):
        if rows is None or not len(rows): print(f'{name}: no pills'); continue
        emb, logits, pos = embed_rows(model, rows, d.root, d.pre, None, None, 'cpu', None, turns=query_turns(g.meta))
        truth = rows.k_code.values[pos]
        codes, p = g.fused(torch.as_tensor(softmax_t(logits.numpy(), T)), ck['k_codes'], g.scores(emb))
        named = np.array(codes)[p.argmax(1).numpy()]
        right = named == truth
        alike = np.array([look(x) == look(y) for x, y in zip(named, truth)])
        print(f'{name}: {len(truth)} pills, top-1 {right.mean():.3f}; wrong answers that are look-alikes '
              f'{int((alike & ~right).sum())} of {int((~right).sum())}; right shape and colours {(right | alike).mean():.3f}')


if __name__ == '__main__':
    main()
