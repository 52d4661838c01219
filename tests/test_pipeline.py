"The two-stage predictor: the prediction schema in both modes, crop geometry, no mode switching, batches, the predict command."
import json
from pathlib import Path

import numpy as np
import pytest
from unittest import mock
import torch
from PIL import Image

from conftest import cli_main, cli, load_tool, run_tool


@pytest.fixture(scope='module')
def exp(trained_exp):
    return trained_exp


@pytest.fixture(scope='module')
def pred(exp):
    from pillsnap.pipeline import Predictor
    return Predictor.from_exp(exp[0])


@pytest.fixture(scope='module')
def photos(pred):
    from pillsnap.data import load_manifest
    m = load_manifest(Path(pred.cfg.paths.exp_dir)/'data', 'val')
    root = Path(pred.cfg.data.root)
    return root/m[m.kind == 'single'].image.iloc[0], root/m[m.kind == 'combo'].image.iloc[0]


REGISTRY = {'dl_name', 'dl_name_en', 'dl_company', 'edi_codes', 'print_front', 'print_back', 'drug_shape', 'color_class1', 'chart'}


def check_schema(r, mode, k):
    assert set(r) >= {'mode', 'pills', 'hints', 'timing_ms', 'models'} and r['mode'] == mode
    assert set(r['timing_ms']) >= {'detect', 'classify', 'total'} and all(v >= 0 for v in r['timing_ms'].values())
    assert set(r['models']) == {'classifier', 'detector', 'preprocess'} and r['models']['preprocess'].startswith('unified-1')
    assert isinstance(r['hints']['combo_recommended'], bool)
    assert (r['hints']['photo_warning'] is None) == (min(r['image_size']) >= 512)  # small photos are told so
    for p in r['pills']:
        assert len(p['box']) == 4 and len(p['candidates']) == k
        confs = [c['confidence'] for c in p['candidates']]
        assert confs == sorted(confs, reverse=True) and all(0 <= c <= 1 for c in confs)
        assert sum(confs) <= 1 + 1e-5  # the top k of one softmax
        for c in p['candidates']:
            assert c['k_code'].startswith('K-') and REGISTRY <= set(c) and isinstance(c['edi_codes'], list)
    json.dumps(r, ensure_ascii=False)  # the schema is JSON as it is


def _main(*args): return cli_main(*args, check=False)


def _label_box(pred, photo):
    from pillsnap.data import load_manifest
    for split in ('val', 'train'):
        m = load_manifest(Path(pred.cfg.paths.exp_dir)/'data', split)
        row = m[m.image == str(photo.relative_to(pred.cfg.data.root))]
        if len(row): x, y, w, h = row.bboxes.iloc[0][0]; return [x, y, x + w, y + h]


def test_single_mode_finds_the_pill_without_a_detector(exp, photos):
    "No detector: the localiser finds the pill; the answer's box is the pill's (not the photo's) and says how it was found."
    from pillsnap.pipeline import Predictor
    from pillsnap.metrics import box_iou
    p = Predictor.from_exp(exp[1])
    assert p.single_locator == 'localiser'
    r = p.predict(photos[0], 'single', top_k=3)
    check_schema(r, 'single', 3)
    pill = r['pills'][0]
    w, h = Image.open(photos[0]).size
    assert pill['found_by'] == 'localiser' and pill['det_score'] is None and pill['box'] != [0.0, 0.0, float(w), float(h)]
    assert box_iou([pill['box']], [_label_box(p, photos[0])])[0, 0] > 0.6, (pill['box'], _label_box(p, photos[0]))
    assert r['models']['detector'] is None
    r = p.predict(photos[1], 'single')  # several pills, single mode: still one answer; the localiser's count gives the hint
    assert len(r['pills']) == 1 and r['mode'] == 'single' and r['hints']['combo_recommended']
    whole = Predictor.from_exp(exp[1], settings=['pipeline.locate=photo']).predict(photos[0])['pills'][0]
    assert (whole['box'], whole['found_by']) == ([0.0, 0.0, float(w), float(h)], 'photo')


def test_single_mode_with_a_detector_reads_its_best_box(exp, pred, photos):
    "With a detector: still one answer in single mode, and the crop is the top detection (the whole photo when none)."
    from pillsnap.config import ConfigError
    from pillsnap.pipeline import Predictor
    assert pred.single_locator == 'detector'
    combo = pred.predict(photos[1], 'combo', top_k=2)
    r = pred.predict(photos[1], 'single', top_k=2)
    check_schema(r, 'single', 2)
    best = max(combo['pills'], key=lambda q: q['det_score'])
    assert r['mode'] == 'single' and len(r['pills']) == 1 and r['pills'][0]['found_by'] == 'detector'
    assert r['pills'][0]['det_score'] >= best['det_score']  # also read from farther (a close-up): the surer reading stands
    once = Predictor.from_exp(exp[0], settings={'detector.farther': 0}).predict(photos[1], 'single', top_k=2)['pills'][0]
    assert once['box'] == best['box'] and once['det_score'] == best['det_score']  # read once: combo mode's best box
    assert [c['k_code'] for c in once['candidates']] == [c['k_code'] for c in best['candidates']]
    assert r['hints']['combo_recommended'] and r['models']['detector'] is not None  # the detector sees several pills
    p = Predictor.from_exp(exp[0])
    p.detect = lambda ims, conf=None, one=False: [(np.zeros((0, 4)), np.zeros(0)) for _ in ims]  # the detector misses: the localiser looks
    assert p.predict(photos[0], 'single')['pills'][0]['found_by'] == 'localiser'
    w, h = Image.open(photos[0]).size
    with mock.patch('pillsnap.pipeline.locate_pills', lambda im: (np.zeros((0, 4)), np.zeros(0))):  # nor the localiser: the whole photo
        pill = p.predict(photos[0], 'single')['pills'][0]
    assert (pill['box'], pill['found_by']) == ([0.0, 0.0, float(w), float(h)], 'photo')
    assert Predictor.from_exp(exp[0], settings={'pipeline.locate': 'localiser'}).predict(photos[0])['pills'][0]['found_by'] == 'localiser'
    with pytest.raises(ConfigError, match='pipeline.locate=detector needs a detector'): Predictor.from_exp(exp[1], settings=['pipeline.locate=detector'])
    with pytest.raises(ConfigError, match='pipeline.locate must be one of'): Predictor.from_exp(exp[0], settings=['pipeline.locate=crop'])


def test_combo_mode_schema(pred, photos):
    single, combo = photos
    for photo in (combo, single):  # combo mode on a single-pill photo stays combo mode
        r = pred.predict(photo, 'combo', top_k=2)
        check_schema(r, 'combo', 2)
        w, h = Image.open(photo).size
        assert 1 <= len(r['pills']) <= 12 and r['timing_ms']['detect'] > 0
        for p in r['pills']:
            x1, y1, x2, y2 = p['box']
            assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h and 0 <= p['det_score'] <= 1
        doubt = r['count_doubt']  # issue 81: None, or what makes the count doubtful, in the photo's pixels and pill numbers
        assert doubt is None or (set(doubt) == {'maybe_missed', 'odd_size'} and (doubt['maybe_missed'] or doubt['odd_size']))
        for x1, y1, x2, y2 in (doubt or {}).get('maybe_missed', []): assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
        assert all(1 <= n <= len(r['pills']) for n in (doubt or {}).get('odd_size', []))
        assert bool(r['hints']['missed']) == bool(doubt and doubt['maybe_missed'])
    assert 'count_doubt' not in pred.predict(single, 'single')  # one pill: no count to doubt
    # a detector whose weaker box lies apart from the one it counts, sized like it: the count is said to be in doubt
    weak = lambda ims, missed=False: [(np.array([[10.0, 10.0, 40.0, 40.0]]), np.array([0.9])) + ((np.array([[60.0, 10.0, 90.0, 40.0]]),) if missed else ())]
    with mock.patch.object(pred, 'detect', weak):
        r = pred.predict(combo, 'combo', expect=pred.predict(combo, 'combo')['pills'][0]['candidates'][0]['k_code'])
    assert r['count_doubt'] == {'maybe_missed': [[60.0, 10.0, 90.0, 40.0]], 'odd_size': []} and '1 more pill' in r['hints']['missed']
    assert r['check']['count_doubt'] and r['check']['verdict'].endswith('the count may be off: check the drawing')


def test_crop_geometry_clips_boxes_and_pads_crops_at_edges(pred, photos):
    "A detection running past the photo is clipped, and the crop classified is the padded, edge-repeated training crop."
    from pillsnap.metrics import xyxy_to_xywh
    im = Image.open(photos[1]).convert('RGB')
    W, H = im.size
    seen = []
    orig = pred.identify
    pred.detect = lambda ims, missed=False: [(np.array([[-30.0, -20.0, 40.0, 50.0], [W - 20, H - 30, W + 15, H + 5]]), np.array([0.9, 0.8]))
                                             + ((np.zeros((0, 4)),) if missed else ())]  # (and no box maybe missed)
    pred.identify = lambda crops, k, *rest: (seen.extend(crops), orig(crops, k, *rest))[1]
    try: r = pred.predict(im, 'combo')
    finally: del pred.detect, pred.identify
    assert [p['box'] for p in r['pills']] == [[0.0, 0.0, 40.0, 50.0], [W - 20.0, H - 30.0, float(W), float(H)]]
    want = pred.pre.finish(pred.pre.crop(im, xyxy_to_xywh([0, 0, 40, 50])))
    assert torch.equal(seen[0], want) and seen[0].shape == (3, pred.pre.img_size, pred.pre.img_size)
    # the square crop around a corner box runs past the photo: its outside is the repeated edge, not black
    full = np.asarray(pred.pre.crop(im, [0, 0, 40, 50]))
    assert (full[0] == full[1]).all() and (full[:, 0] == full[:, 1]).all()


def test_batch_gives_the_per_photo_answers(pred, photos):
    for mode in ('single', 'combo'):
        batch = pred.predict_batch([photos[0], Image.open(photos[1]), photos[1].read_bytes()], mode)
        assert len(batch) == 3 and all(b['timing_ms']['batch'] == 3 for b in batch)
        for b, src in zip(batch, [photos[0], photos[1], photos[1]]):
            one = pred.predict(src, mode)
            assert [p['box'] for p in b['pills']] == [p['box'] for p in one['pills']]
            for p, q in zip(b['pills'], one['pills']):
                assert [c['k_code'] for c in p['candidates']] == [c['k_code'] for c in q['candidates']]
                assert np.allclose([c['confidence'] for c in p['candidates']], [c['confidence'] for c in q['candidates']], atol=1e-4)


def test_bad_inputs_and_missing_detector(exp, pred, photos, tmp_path):
    from pillsnap.config import ConfigError
    from pillsnap.pipeline import ImageError, Predictor
    for bad, why in ((b'', 'empty file'), (b'\x89PNG\r\n\x1a\n' + b'\0' * 20, 'truncated|corrupt|not an image'), (np.zeros((4, 4), np.float64), 'uint8')):
        with pytest.raises(ImageError, match=why): pred.predict(bad)
    with pytest.raises(ConfigError, match="mode must be 'single' or 'combo'"): pred.predict(photos[0], 'auto')
    p = Predictor.from_exp(exp[1])
    assert p.predict(photos[0], 'single')['hints'] is not None  # single mode works without a detector
    with pytest.raises(ConfigError, match='pillsnap train-det'): p.predict(photos[1], 'combo')


@pytest.mark.slow  # four launches of pillsnap
def test_predict_command_json_table_and_drawing(exp, photos, tmp_path):
    e = exp[0]
    r = cli('predict', photos[1], '--exp', e, '--mode', 'combo', '--json', '--top-k', '2', '--draw', tmp_path/'combo.png')
    out = json.loads(r.stdout)
    check_schema(out, 'combo', 2)
    assert out['drawn'] == str(tmp_path/'combo.png') and Image.open(tmp_path/'combo.png').size[0] > 100
    r = cli('predict', photos[0], photos[1], '--exp', e, '--draw', tmp_path/'drawn')
    assert r.stdout.count('single mode, 1 pill(s)') == 2 and 'k_code' in r.stdout
    assert sorted(p.name for p in (tmp_path/'drawn').iterdir()) == sorted({f'{photos[0].stem}.png', f'{photos[1].stem}.png'})
    r = cli('predict', photos[1], '--exp', e, '--mode', 'combo', '--draw', tmp_path/'ko.png', '--lang', 'ko')  # Korean labels
    assert 'Glyph' not in r.stderr and Image.open(tmp_path/'ko.png').size == Image.open(tmp_path/'combo.png').size
    (tmp_path/'bad.png').write_bytes(b'not an image')
    r = cli('predict', tmp_path/'bad.png', '--exp', e, check=False)
    assert r.returncode == 2 and 'not an image' in r.stderr, r.stderr
    r = cli('predict', photos[0], '--exp', e, '--mode', 'both', check=False)
    assert r.returncode == 2 and '--mode must be single or combo' in r.stderr
    code, out, err = _main('predict', photos[0], 'pipeline.locate=photo', '--exp', e, '--json')  # settings mix with the photos, for this run only
    assert code == 0 and json.loads(out)['pills'][0]['found_by'] == 'photo'
    assert json.loads((e/'logs'/'settings.jsonl').read_text().splitlines()[-1])['changed'] == {'pipeline.locate': ['auto', 'photo']}
    code, out, err = _main('predict', photos[0], '--exp', e, '--top-k', '0')
    assert code == 2 and 'top_k must be between 1 and 100' in err
    # a tray against a prescription with quantities (issue 81): each pill counted once, to a line or left over
    a_, b_ = sorted(json.loads((e/'data'/'class_map.json').read_text()))[:2]
    code, out, err = _main('predict', photos[1], '--exp', e, '--json', '--mode', 'combo', '--expect', f'{a_} x2, {b_}')
    tray = json.loads(out); check = tray['check']
    assert [(l['line'], l['expected']) for l in check['lines']] == [(a_, 2), (b_, 1)] and tray['prescription']['quantities'] == {a_: 2, b_: 1}
    assert sum(l['found'] for l in check['lines']) + len(check['extra']) == len(tray['pills'])
    assert check['missing'] == 3 - sum(l['found'] for l in check['lines']) and '  check: ' in err
    assert [p['line'] for p in tray['pills']].count(a_) == check['lines'][0]['found']


def test_reading_imprints_reranks_and_says_what_was_read(exp, pred, photos):
    "pipeline.ocr=true: every pill says what was read and what reading cost; a read naming another candidate lifts it; weight 0 changes nothing."
    from pillsnap.pipeline import Predictor, load_image
    plain = pred.predict(photos[1], 'combo', top_k=3)
    r = Predictor.from_exp(exp[0], settings={'pipeline.ocr': True, 'pipeline.ocr_weight': 0.0}).predict(photos[1], 'combo', top_k=3)
    check_schema(r, 'combo', 3)
    assert r['timing_ms']['read'] > 0 and 'read' not in plain['timing_ms']
    assert all(isinstance(p['imprint_read'], str) for p in r['pills']) and not any('imprint_read' in p for p in plain['pills'])
    assert [[c['k_code'] for c in p['candidates']] for p in r['pills']] == [[c['k_code'] for c in p['candidates']] for p in plain['pills']]
    ocr = Predictor.from_exp(exp[0], settings={'pipeline.ocr': True, 'pipeline.ocr_weight': 50.0})
    crop = ocr.pre.finish(ocr.pre.crop(load_image(photos[0]), None))
    first, second = ocr.identify([crop], 2)[0]['candidates']
    lifted = ocr.identify([crop], 2, reads=[f"{second['print_front']} {second['print_back'] or ''}"])[0]
    assert lifted['candidates'][0]['k_code'] == second['k_code'] and lifted['imprint_read'].startswith(second['print_front'])
    assert ocr.identify([crop], 2, reads=[''])[0]['candidates'][0]['k_code'] == first['k_code']  # nothing read: the classifier's answer
    code, out, err = _main('predict', photos[0], 'pipeline.ocr=true', '--exp', exp[0])
    assert code == 0 and ' read' in out.splitlines()[1], out  # the table has the read column


@pytest.mark.slow  # the evaluation job
def test_evaluate_pipeline_command(exp):
    r = cli('evaluate', '--exp', exp[0], '--what', 'pipeline')
    out = json.loads((exp[0]/'reports'/'pipeline.json').read_text())
    assert out['combo']['photos'] > 0 and out['combo']['pills'] >= out['combo']['photos'] and out['single']['photos'] > 0
    for k in ('pill_recall', 'pill_top1', 'pill_top1_true_boxes', 'end_to_end', 'end_to_end_strict'): assert 0 <= out['combo'][k] <= 1
    combo = out['combo']
    assert combo['end_to_end_strict'] <= combo['end_to_end'] and combo['pill_top1'] <= combo['pill_recall']  # only a found pill is identified
    assert combo['extra_detections'] >= 0 and (combo['extra_detections'] > 0 or combo['end_to_end_strict'] == combo['end_to_end'])  # strict differs by extra boxes only
    assert 0 <= combo['count_exact'] <= 1 and combo['count_mae'] >= 1 - combo['count_exact'] - 1e-4  # a wrong count is off by one at least
    assert combo['end_to_end_strict'] <= combo['count_exact']  # every pill right and no extra box: the count is right
    single = out['single']
    assert single['found_by'] == 'detector' and single['default']['top1'] == single['detector']['top1']
    assert {'default', 'true_box', 'photo', 'localiser', 'detector'} <= set(single)
    assert 0 <= single['localiser']['iou50'] <= 1 and single['localiser']['box_iou'] > 0.5  # the localiser finds the synthetic pills
    for view in ('default', 'localiser', 'detector'):  # a mean IoU is at least half the share of boxes with IoU >= 0.5
        assert single[view]['box_iou'] >= 0.5 * single[view]['iou50'] - 1e-4, (view, single[view])
    assert 'single top-1 default (detector)' in r.stdout and 'single top-1 true_box' in r.stdout


def test_predict_answers_every_readable_photo_and_refuses_a_bad_drawing_at_once(exp, photos, tmp_path):
    (tmp_path/'bad.png').write_bytes(b'not an image')
    code, out, err = _main('predict', photos[0], tmp_path/'bad.png', '--exp', exp[0], '--json')
    answers = json.loads(out)
    assert code == 2 and '1 of 2 photos could not be read' in err and 'Traceback' not in err
    assert answers[0]['mode'] == 'single' and answers[1]['image'] == str(tmp_path/'bad.png') and 'not an image' in answers[1]['error']
    code, out, err = _main('predict', photos[0], '--exp', exp[0], '--draw', tmp_path/'out.xyz')
    assert code == 2 and "'.xyz' is not an image format" in err and not out


def test_predict_flags_that_cannot_work_are_one_line(exp, photos, tmp_path):
    (tmp_path/'a-file').write_text('')
    for args, says in ((['--top-k', '1000'], 'top_k must be between 1 and 100'), (['--draw', tmp_path/'a-file'/'out.png'], 'cannot create')):
        code, out, err = _main('predict', photos[0], '--exp', exp[0], *args)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


def _both_faces(pred):
    "A front and a back photo of one drug the tiny experiment trained on."
    from pillsnap.data import load_manifest
    m = load_manifest(Path(pred.cfg.paths.exp_dir)/'data', 'train')
    m = m[m.kind == 'single'].assign(k_code=lambda d: d.k_codes.str[0])
    k = next(k for k, g in m.groupby('k_code') if {'앞면', '뒷면'} <= set(g.drug_dir))  # 앞면: front, 뒷면: back
    return [Path(pred.cfg.data.root)/m[(m.k_code == k) & (m.drug_dir == face)].image.iloc[0] for face in ('앞면', '뒷면')]


def test_both_sides_answer_as_one_pill(pred):
    "Two photos of one pill: one single-mode answer whose confidences are the product of the sides'; the same photo twice sharpens, never reorders."
    from pillsnap.config import ConfigError
    from pillsnap.pipeline import ImageError, fuse_sides
    front, back = _both_faces(pred)
    n = len(pred.k_codes)
    r = pred.predict_sides(front, back.read_bytes(), top_k=n, expect=pred.k_codes[:3])
    check_schema(r, 'single', 3)  # the prescription's three drugs
    assert r['sides'] == 2 and len(r['pills']) == 1 and r['timing_ms']['batch'] == 2 and set(r['prescription']['matched']) == set(pred.k_codes[:3])
    r = pred.predict_sides(front, back, top_k=n)
    check_schema(r, 'single', n)
    sides = [pred.predict(x, top_k=n) for x in (front, back)]
    pill = r['pills'][0]
    assert (pill['box'], pill['found_by'], r['image_size']) == (sides[0]['pills'][0]['box'], sides[0]['pills'][0]['found_by'], sides[0]['image_size'])
    assert (pill['back']['box'], pill['back']['image_size']) == (sides[1]['pills'][0]['box'], sides[1]['image_size'])
    conf = lambda a: torch.tensor([{c['k_code']: c['confidence'] for c in a['pills'][0]['candidates']}[k] for k in pred.k_codes])
    assert torch.allclose(conf(r), fuse_sides(torch.stack([conf(a) for a in sides])), atol=1e-4)
    swapped = pred.predict_sides(back, front, top_k=n)['pills'][0]
    assert torch.allclose(conf({'pills': [swapped]}), conf(r), atol=1e-5) and swapped['box'] == pill['back']['box']
    once, twice = sides[0]['pills'][0]['candidates'], pred.predict_sides(front, front, top_k=n)['pills'][0]['candidates']
    sure = [c['k_code'] for c in once if c['confidence'] > 1e-3]  # below, squares may tie at float precision
    assert [c['k_code'] for c in twice[:len(sure)]] == sure and twice[0]['confidence'] >= once[0]['confidence']
    with pytest.raises(ConfigError, match='top_k must be between 1 and 100'): pred.predict_sides(front, back, top_k=0)
    with pytest.raises(ImageError, match='empty file'): pred.predict_sides(front, b'')


def test_both_sides_meet_each_drug_s_faces_in_the_gallery(exp, pred):
    "With a gallery each side meets a drug's best face; the pill is unknown when the two sides' mean best match misses the threshold."
    from pillsnap.pipeline import Predictor
    from pillsnap.retrieval import Gallery, embed_crops
    front, back = _both_faces(pred)
    p = Predictor.from_exp(exp[0])
    sizes, ims = p._photos([front, back])
    emb = embed_crops(p.model, torch.stack(p._crops(ims, p._find(ims, 'single')[0])[0]), p.device)
    two_faced = Gallery(emb.shape[1], meta={'scale': 10.0})
    two_faced.add('K-900001', emb[:1], face=0, record={'k_code': 'K-900001', 'dl_name': 'Two-faced tablet'}).add('K-900001', emb[1:], face=1)
    front_only = Gallery(emb.shape[1], meta={'scale': 10.0}).add('K-900001', emb[:1], face=0, record={'k_code': 'K-900001'})
    cos = float(front_only.scores(emb[1:])[0, 0])  # the back photo against the front face
    assert cos < 1 - 1e-4
    p.unknown_below = (1 + cos) / 2 + (1 - cos) / 4  # between the mean of front-only matches (1 and cos) and a perfect match
    p.gallery = two_faced
    r = p.predict_sides(front, back)
    assert (r['pills'][0]['status'], r['pills'][0]['candidates'][0]['k_code']) == ('identified', 'K-900001')
    p.gallery = front_only
    fused = p.predict_sides(front, back)['pills'][0]
    assert fused['status'] == 'unknown'  # the back matches no face well enough
    assert fused['open_score'] <= fused['unknown_below'] == round(p.unknown_below, 4)  # judged on the fused best cosine
    assert p.predict(front)['pills'][0]['status'] == 'identified'  # the front alone does


def test_count_rules_tool_reads_every_rule_off_in_turn(exp, tmp_path):
    "tools/count_rules.py: each counting rule off in turn, then none, scored per set, with a photo's milliseconds."
    tree = exp[0]/'data'/'yolo'
    out = tmp_path/'rules.json'
    r = run_tool('count_rules', '--exp', exp[0], '--set', f'a={tree}:val', '--set', f'b={tree}:test', '--most', 2,
                 '--repeats', 1, '--json', out)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())['results']
    assert list(res) == ['every rule', *load_tool('count_rules').RULES, 'none']
    for label, row in res.items():
        assert row['ms'] > 0 and {'a', 'b'} <= set(row), label
        for s in ('a', 'b'):
            assert row[s]['photos'] == 2 and 0 <= row[s]['exact'] <= 1 and 0 <= row[s]['found'] <= 1 and row[s]['extra'] >= 0
    assert '| without pill check (pipeline.pill_check) |' in r.stdout and '| no rule |' in r.stdout


@pytest.fixture(scope='module')
def galleried(exp, tmp_path_factory):
    "A copy of the tiny experiment with its gallery built, for the tools behind the README's rows (they write nothing in it)."
    import shutil
    mine = tmp_path_factory.mktemp('galleried')/'exp'
    shutil.copytree(exp[0], mine, symlinks=True)
    cli('gallery', '--exp', mine, '--rebuild')
    return mine


def test_lookalike_errors_tool_splits_the_wrong_answers(exp, galleried, tmp_path):
    "tools/lookalike_errors.py: top-1 as served, and how many wrong answers share the truth's shape and colours."
    import re, shutil
    bare = tmp_path/'exp'
    shutil.copytree(exp[0], bare, symlinks=True)
    r = run_tool('lookalike_errors', bare)
    assert r.returncode != 0 and 'pillsnap gallery --exp' in r.stderr  # no gallery yet: says how to build one
    r = run_tool('lookalike_errors', galleried)
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r'studio: (\d+) pills, top-1 ([\d.]+); wrong answers that are look-alikes (\d+) of (\d+); '
                  r'right shape and colours ([\d.]+)', r.stdout)
    assert m, r.stdout
    n, top1, alike, wrong, loose = int(m[1]), float(m[2]), int(m[3]), int(m[4]), float(m[5])
    assert n > 0 and alike <= wrong and abs(wrong - round(n * (1 - top1))) <= 1 and loose >= top1


@pytest.mark.slow  # launches the tool twice
def test_open_set_statuses_tool_shares_each_kind_of_pill(galleried):
    "tools/open_set_statuses.py (the README's open-set rows): each kind of pill's statuses sum to one, over every pill of it."
    from pillsnap.data import load_manifest, pill_rows
    r = run_tool('open_set_statuses', galleried)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert set(out) == {'studio, known'}  # the tiny experiment holds no drug out and pastes no phone-like photos
    known = out['studio, known']
    assert known['pills'] == len(pill_rows(load_manifest(galleried/'data', 'val'), ('single',)))
    assert abs(known['identified'] + known['not sure'] + known['unknown'] - 1) < 1e-3 and 0 <= known['top1'] <= 1
    assert known['identified_right'] is None or 0 <= known['identified_right'] <= 1
    strict = json.loads(run_tool('open_set_statuses', galleried, 'retrieval.threshold=1.5').stdout)['studio, known']
    assert strict['unknown'] == 1 and strict['pills'] == known['pills']  # its settings reach the predictor: none passes


@pytest.mark.slow  # launches the tool
def test_two_sided_tool_reads_four_ways_of_answering(galleried, tmp_path):
    "tools/bench_two_sided.py (the README's both-sides row): front, back, the surer side and both fused, over the same pairs."
    r = run_tool('bench_two_sided', '--exp', galleried, '--pairs', 20, '--out', tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path/'two_sided.json').read_text())
    ways = res['all']
    assert list(ways) == ['front', 'back', 'surer side', 'both sides'] and 0 < res['pairs'] <= 20
    assert all(w['pairs'] == res['pairs'] and 0 <= w['top1'] <= w['top5'] <= 1 and 0 <= w['ece'] <= 1 for w in ways.values())
    f, b = ways['front']['top1'], ways['back']['top1']  # the surer side is one side's answer, pair by pair
    assert max(0, f + b - 1) - 1e-9 <= ways['surer side']['top1'] <= min(1, f + b) + 1e-9
    assert '| all |' in r.stdout and '| both sides |' in r.stdout


@pytest.mark.slow  # launches the tool
def test_tray_tool_judges_each_tray_against_its_prescription(galleried, tmp_path):
    "tools/bench_trays.py (the README's tray rows): every tray asked with its prescription, the summary from its rows."
    r = run_tool('bench_trays', '--exp', galleried, '--trays', 4, '--size', 244, 320, '--out', tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path/'bench_trays.json').read_text())
    rows = res['rows']
    cases = load_tool('bench_trays').CASES  # of every ten trays: trays 0-2 exact, tray 3 one pill more than prescribed
    assert res['trays'] == len(rows) == 4 and [x['case'] for x in rows] == [cases.get(i, 'exact') for i in range(4)] == ['exact'] * 3 + ['extra']
    assert res['verdict_right'] == round(float(np.mean([x['verdict_right'] for x in rows])), 4)
    assert sum(c['trays'] for c in res['by_case'].values()) == 4 and all(4 <= x['pills'] <= 16 for x in rows)
    assert all(x['found_once'] <= (x['found'] == x['pills']) for x in rows)  # found once: as many boxes as pills


@pytest.mark.slow  # launches the tool, which times every rule
def test_cpu_serving_tool_times_each_rule_turned_off(galleried, tmp_path):
    "tools/bench_cpu_serving.py --rules (the README's CPU-profile latency row): both modes timed with each rule off, its cost beside."
    r = run_tool('bench_cpu_serving', '--out', tmp_path, '--rules', galleried, '--photos', 2)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path/'rule_costs.json').read_text())
    rules, base = res['rules'], res['rules']["today's defaults"]
    assert res['photos'] == 2 and base['off'] is None and len(rules) > 1 and all(v['off'] for v in rules.values() if v is not base)
    for v in rules.values():
        for mode in ('single', 'combo'):
            assert 0 < v[mode]['p50'] <= v[mode]['p95']
            assert abs(v['cost_ms'][mode]['p50'] - round(base[mode]['p50'] - v[mode]['p50'], 1)) <= 0.11  # the cost: defaults less rule off
