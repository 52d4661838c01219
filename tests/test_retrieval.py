"""Retrieval through the command line and the HTTP API: an embedding trained with the margin loss and P×K batches, the gallery built
after training, enrolment of a drug held out of training and its removal, 'unknown', and the prescription check (`--expect`)."""
import io, json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from conftest import BIN, cli_main, run_tool
from test_serve import CHROMIUM, DRIVER, KEY, headless_chromium

SETTINGS = ['data.paste_photos=0', 'data.wild_photos=0', 'classifier.pretrained=none', 'train.augment.phone=0', 'classifier.model=test_efficientnet', 'classifier.img_size=64', 'train.batch_size=8', 'train.lr=0.01', 'train.epochs=2',
            'loader.num_workers=0', 'data.workers=1', 'classifier.embed_dim=16', 'loader.pk_per_class=4', 'split.holdout_drugs=2']


@pytest.fixture(scope='module')
def exp(tiny_root, tmp_path_factory):
    "A tiny experiment with two drugs held out of training, trained with an embedding layer (its gallery is built by train-cls)."
    e = tmp_path_factory.mktemp('retrieval')/'exp'
    cli('prepare', '--root', tiny_root, '--exp', e, *SETTINGS)
    cli('train-cls', '--exp', e, '--no-notebook')
    return e


@pytest.fixture(scope='module')
def held_out(exp):
    "{K-code: [photo paths]} of the drugs held out of training."
    from pillsnap.config import load_config
    from pillsnap.data import load_manifest
    cfg = load_config(path=exp/'config.yaml')
    m = load_manifest(exp/'data', 'holdout')
    return {k: [Path(cfg.data.root)/p for p in g.image] for k, g in m.groupby('code')}


def cli(*args, check=True):
    "(exit status, stdout, stderr) of the `pillsnap` command, run in this process."
    return cli_main(*args, check=check)


def predict_json(exp, *args):
    return json.loads(cli('predict', '--exp', exp, '--json', *args)[1])


def test_training_builds_a_gallery_of_the_trained_drugs_measured_on_held_out_drugs(exp, held_out):
    from pillsnap.model import load_checkpoint
    from pillsnap.retrieval import load_gallery
    ck = load_checkpoint(exp/'classifier'/'best.pt')
    assert ck['model']['embed.0.weight'].shape[0] == 16 and 'embed.1.running_mean' in ck['model'] and ck['model']['margin_weight'].shape == (10, 16)  # 12 drugs, 2 held out
    assert len(held_out) == 2 and not set(held_out) & set(ck['k_codes'])
    report = json.loads((exp/'reports'/'retrieval.json').read_text())
    assert report['drugs'] == 10 and report['embedding'] == 'embed layer' and report['dim'] == 16
    # its thresholds were chosen on photos asked as four turns, and the gallery says so to whoever loads it
    assert report['query_turns'] == 4 and load_gallery(exp/'retrieval').meta['query_turns'] == 4
    g = load_gallery(exp/'retrieval')  # retrieval.whiten, the default: all training photos' spread made even
    assert report['whitening'] == g.meta['whiten'] == 'total' and g.whiten.shape == (16, 16)
    assert 0 <= report['auroc'] <= 1 and 0 <= report['far'] <= 1 and report['unknown'] == sum(map(len, held_out.values()))
    assert abs(report['tar'] - 0.95) <= 0.1 and -1 <= report['threshold'] <= 1
    assert set(report['enrolment']) <= {'1_shot', '5_shot'} and report['enrolment']['1_shot']['drugs'] == 2
    # the scale and the two judges' weights were fitted on the validation photos as taken and from farther too
    far = report['farther_val']
    assert set(far) == {'val_top1_with_gallery', 'val_top1_classifier', 'val_top1_gallery_only'}, far
    assert all(0 <= v <= 1 for v in far.values()) and report['scale'] == g.meta['scale'] > 0
    listed = cli('gallery', '--exp', exp)[1]
    assert '10 drugs' in listed and '(no enrolled drugs)' in listed


def test_enrol_names_a_never_trained_drug_and_remove_takes_it_back(exp, held_out):
    code, photos = sorted(held_out.items())[0]
    before = predict_json(exp, photos[0])['pills'][0]
    assert code not in [c['k_code'] for c in before['candidates']]  # the classifier cannot name it
    out = cli('enrol', '--exp', exp, '--code', code, *photos[:2])[1]
    assert f'enrolled 2 photo(s) of {code}' in out and 'identified from the gallery' in out
    assert f'hint: {code} is enrolled from 2 photo(s): from fewer than 3' in out  # too few photos, and the fix
    assert len(list((exp/'retrieval'/'enrolled'/code).glob('*.png'))) == 2
    after = predict_json(exp, photos[0])['pills'][0]
    # named first and not refused (whether the tiny model's candidate set holds a second drug is its own affair)
    assert after['candidates'][0]['k_code'] == code and after['status'] in ('identified', 'not sure')
    assert after['candidates'][0].get('dl_name')  # the drug table's record of the held-out drug
    assert code in cli('gallery', '--exp', exp)[1]
    cli('gallery', '--exp', exp, '--rebuild')  # the enrolled crops are embedded again
    assert predict_json(exp, photos[0])['pills'][0]['candidates'][0]['k_code'] == code
    assert 'removed' in cli('gallery', '--exp', exp, '--remove', code)[1]
    gone = predict_json(exp, photos[0])['pills'][0]
    assert code not in [c['k_code'] for c in gone['candidates']] and not (exp/'retrieval'/'enrolled'/code).exists()
    code_, _, err = cli('gallery', '--exp', exp, '--remove', code, check=False)
    assert code_ == 2 and 'not an enrolled drug' in err
    cli('enrol', '--exp', exp, '--code', 'NEW-1', '--name', 'Brand new', photos[1])  # a drug the labels do not know: named by --name
    new = predict_json(exp, photos[1])['pills'][0]['candidates'][0]
    assert (new['k_code'], new['dl_name']) == ('NEW-1', 'Brand new')
    cli('gallery', '--exp', exp, '--remove', 'NEW-1')
    code_, _, err = cli('enrol', '--exp', exp, '--code', '../evil', photos[1], check=False)
    assert code_ == 2 and 'letters, digits' in err


def test_enrolments_from_processes_that_loaded_the_same_gallery_are_all_kept_with_their_names(exp, held_out, tmp_path):
    "Two predictors (a terminal's enrol, a service) loaded the gallery, then each enrols: neither erases the other, names stay; two enrol commands at once too."
    import shutil, subprocess
    from pillsnap.pipeline import Predictor
    from pillsnap.retrieval import load_gallery
    e = tmp_path/'exp'; shutil.copytree(exp, e)
    (a, photos_a), (b, photos_b) = sorted(held_out.items())[:2]
    terminal, service = Predictor.from_exp(e), Predictor.from_exp(e)
    terminal.enrol('NEW-T', photos_a[:1], name='Named in the terminal')
    service.enrol(a, photos_a[1:2])
    terminal.enrol('NEW-T', photos_a[2:3])  # more photos, no name this time: the name given before stays
    g = load_gallery(e/'retrieval')
    assert set(g.enrolled()) == {'NEW-T', a} and g.drugs['NEW-T']['dl_name'] == 'Named in the terminal'
    assert service.gallery.enrolled() == ['NEW-T', a]  # the service's own gallery is the one it wrote
    run = lambda code, photo: subprocess.Popen([str(BIN/'pillsnap'), 'enrol', '--exp', str(e), '--code', code, '--name', f'Name {code}', str(photo)],
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs = [run('NEW-1', photos_b[0]), run('NEW-2', photos_b[1])]
    assert all(p.wait(timeout=300) == 0 for p in procs), [p.stderr.read() for p in procs]
    g = load_gallery(e/'retrieval')
    assert set(g.enrolled()) == {'NEW-T', a, 'NEW-1', 'NEW-2'} and g.drugs['NEW-2']['dl_name'] == 'Name NEW-2'


def test_a_damaged_gallery_is_rebuilt_from_the_enrolment_journal_names_included(exp, held_out, tmp_path):
    import shutil
    e = tmp_path/'exp'; shutil.copytree(exp, e)
    photo = sorted(held_out.items())[0][1][0]
    cli('enrol', '--exp', e, '--code', 'NEW-9', '--name', '새로운 약', photo)
    (e/'retrieval'/'gallery.json').write_text('{"format": "pillsnap-gal')  # cut short
    code_, _, err = cli('predict', '--exp', e, photo, check=False)
    assert code_ == 2 and 'gallery --exp' in err and '--rebuild' in err  # the advice …
    cli('gallery', '--exp', e, '--rebuild')  # … works
    assert '새로운 약' in cli('gallery', '--exp', e)[1]
    assert predict_json(e, photo)['pills'][0]['candidates'][0]['k_code'] == 'NEW-9'
    code_, _, err = cli('enrol', '--exp', e, '--code', 'NEW-8', '--name', 'Evil\x1b[2J\u202eeman', photo, check=False)
    assert code_ == 2 and 'printable' in err and '\x1b' not in err  # control characters never reach a terminal


def test_a_whitened_gallery_with_exemplars_rebuilds_enrols_and_removes(exp, held_out, tmp_path):
    "retrieval.whiten and retrieval.exemplars through `gallery --rebuild` on a copy: kept in the saved gallery, used by enrolment and removal."
    import shutil
    from pillsnap.retrieval import load_gallery
    e = tmp_path/'exp'; shutil.copytree(exp, e)
    cli('gallery', '--exp', e, '--rebuild', 'retrieval.whiten=within', 'retrieval.exemplars=3')
    report, g = json.loads((e/'reports'/'retrieval.json').read_text()), load_gallery(e/'retrieval')
    assert report['whitening'] == g.meta['whiten'] == 'within'  # each drug and face's own photos' spread
    assert report['whitened'] and report['exemplars'] == len(g.ex) and 10 <= len(g.ex) <= 3 * len(g.entries)
    assert g.whiten.shape == (16, 16) and g.exemplars == 3 and 0 <= report['auroc'] <= 1
    code, photos = sorted(held_out.items())[1]
    cli('enrol', '--exp', e, '--code', code, *photos[:2])
    g = load_gallery(e/'retrieval')
    assert g.whiten is not None and int((g.ex_column == g.codes.index(code)).sum()) == 3  # its two photos' 8 views (enrol_turns 4): at most 3 kept
    assert predict_json(e, photos[0])['pills'][0]['candidates'][0]['k_code'] == code
    cli('gallery', '--exp', e, '--remove', code)
    g = load_gallery(e/'retrieval')
    assert code not in g.codes and len(g.ex) == report['exemplars'] and int(g.ex_column.max()) < len(g.codes)


def test_few_shot_measures_enrolment_and_whitens_only_for_a_trained_classifier(exp):
    "`gallery --few-shot`: every drug enrolled from n training crops, validation crops named; an untrained start is never whitened."
    trained = json.loads(cli('gallery', '--exp', exp, '--few-shot', '--shots', '1,2', '--draws', '2')[1])
    assert trained['whitening'] == 'total' and trained['centre'] == 'the enrolment pool' and trained['drugs'] == 10 and trained['queries'] > 0
    assert len(trained['2_shot_draws']) == 2 and all(0 <= t <= 1 for t in trained['1_shot_draws'] + trained['2_shot_draws'])
    assert abs(trained['1_shot_top1'] - sum(trained['1_shot_draws']) / 2) < 1e-3
    untrained = json.loads(cli('gallery', '--exp', exp, '--few-shot', '--untrained', '--shots', '1')[1])
    assert not untrained['whitened'] and untrained['whitening'] is None and untrained['embedder'].startswith('untrained start')
    # enrolled as the product enrols: into the embedder's own gallery, centred and whitened as it is
    own = json.loads(cli('gallery', '--exp', exp, '--few-shot', '--embedder', str(exp), '--shots', '1')[1])
    assert own['centre'] == "the embedder's gallery" and own['whitening'] == 'total'
    # within: the pool whitened by each drug and face's own spread (its views together)
    within = json.loads(cli('gallery', '--exp', exp, '--few-shot', '--shots', '1', 'retrieval.whiten=within')[1])
    assert within['whitening'] == 'within' and 0 <= within['1_shot_top1'] <= 1


def test_real_photos_choose_the_unknown_threshold_when_a_real_set_is_named(exp, tmp_path):
    "eval.real_sets: the gallery's 'unknown' threshold is chosen on real photos (products enrolled, others held out), reported."
    import shutil
    from pillsnap.retrieval import load_gallery
    e = tmp_path/'exp'; shutil.copytree(exp, e)
    _phone_folders(tmp_path/'phone')
    cli('gallery', '--exp', e, '--rebuild', f"eval.real_sets=[{{path: {tmp_path/'phone'}}}]")
    r = json.loads((e/'reports'/'retrieval.json').read_text())
    real = r['real_open_set']
    # enrolled drugs, photographed like the pills asked of them, get the real photos' threshold; trained drugs keep theirs
    assert r['enrolled_threshold_from'] == 'real photos (phone)' and r['threshold_from'] == 'studio validation photos'
    assert (real['products'], real['held_out'], real['pills'], real['shots']) == (4, 1, 24, 3)
    g = load_gallery(e/'retrieval')
    assert r['enrolled_threshold'] == real['threshold'] == g.meta['enrolled_threshold']
    assert r['threshold'] == r['studio_threshold'] == g.meta['threshold'] == real['with_trained_threshold']['trained_threshold']
    assert g.thresholds().tolist() == pytest.approx([g.meta['enrolled_threshold'] if k in g.enrolled() else g.meta['threshold'] for k in g.codes])
    assert 0 <= real['auroc'] <= 1 and 0 <= real['unknown_answered'] <= 1 and real['enrolled_called_unknown'] <= 0.5
    assert 0 <= real['with_trained_threshold']['unknown_answered'] <= 1
    cli('gallery', '--exp', e, '--rebuild')  # no real set named: the studio threshold for every drug again
    r = json.loads((e/'reports'/'retrieval.json').read_text())
    assert r['threshold_from'] == r['enrolled_threshold_from'] == 'studio validation photos' and r['enrolled_threshold'] == r['threshold']


def _phone_folders(root, products=('advil', 'tylenol', 'midol', 'altoid'), photos=6):
    "Class folders of random photos (ROOT/{product}/{photo}): a real set as `eval.real_sets` reads one."
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for k in products:
        (root/k).mkdir(parents=True)
        for i in range(photos): Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(root/k/f'{i}.jpg')
    return root


def test_unknown_with_the_trained_classifier_against_its_start(exp, tmp_path):
    "tools/unknown_vs_start.py: the same real-photo trials with best.pt and with its start untrained; the experiment unchanged."
    report = Path(exp)/'reports'/'retrieval.json'
    before = report.read_bytes()
    r = run_tool('unknown_vs_start', exp, '--real', _phone_folders(tmp_path/'phone'))
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout[r.stdout.index('\n{') + 1:])
    assert list(out)[0] == 'trained' and list(out)[1].startswith('start (') and len(out) == 2
    for row in out.values():
        assert (row['products'], row['held_out'], row['pills'], row['trials']) == (4, 1, 24, 20)
        assert 0 <= row['auroc'] <= 1 and 0 <= row['unknown_answered'] <= 1 and 0 <= row['enrolled_top1'] <= 1
    assert out['trained'] != list(out.values())[1]  # two embedders, two readings
    assert report.read_bytes() == before  # nothing in the experiment written


def test_unknown_and_the_prescription_check_through_the_cli(exp, held_out):
    (a, photos_a), (b, photos_b) = sorted(held_out.items())
    # enrolled and asked as the same four turns: the photo is its own prototype (cosine 1), so even a strict threshold knows it
    cli('enrol', '--exp', exp, '--code', a, '--name', 'Enrolled A', photos_a[0])
    try:
        strict = predict_json(exp, photos_b[0], 'retrieval.threshold=0.999')['pills'][0]  # a drug it has never seen, far from every prototype
        assert strict['status'] == 'unknown'
        assert strict['unknown_below'] == 0.999 and strict['open_score'] < 0.999  # the score it was judged on, and its line
        own = predict_json(exp, photos_a[0], 'retrieval.threshold=0.999')['pills'][0]  # its own enrolled photo
        assert own['status'] != 'unknown' and own['open_score'] >= own['unknown_below'] == 0.999  # identified, or not sure
        # the three statuses as `pillsnap predict` prints them: the table's status column, and what to do when not sure
        _, unsure, _ = cli('predict', '--exp', exp, photos_a[0], 'pipeline.min_confidence=1.01')
        assert ' not sure ' in unsure and '  pill 1: not sure — ' in unsure  # below the least confidence: the best and the next
        _, never, _ = cli('predict', '--exp', exp, photos_b[0], 'retrieval.threshold=0.999')
        assert ' unknown\n' in never and 'not sure' not in never
        trained = json.loads((exp/'data'/'class_map.json').read_text())
        other = sorted(trained)[:2]
        on_list = predict_json(exp, photos_a[0], '--expect', ','.join([a, *other]))['pills'][0]
        assert [c['k_code'] for c in on_list['candidates']][0] == a and on_list['expected'] is True
        assert {c['k_code'] for c in on_list['candidates']} == {a, *other}
        _, out, err = cli('predict', '--exp', exp, '--json', '--expect', ','.join(other), photos_a[0])
        pill = json.loads(out)['pills'][0]
        assert pill['expected'] is False and pill['best_match']['k_code'] == a and {c['k_code'] for c in pill['candidates']} == set(other)
        assert 'NOT ON THE PRESCRIPTION' in err and a in err
        code_, _, err = cli('predict', '--exp', exp, '--expect', 'K-999999', photos_a[0], check=False)
        assert code_ == 2 and 'K-999999' in err and 'pillsnap enrol' in err
        # the pharmacist's words: a name (any case and spacing), an EDI code as printed, and one that names nothing
        table = json.loads((exp/'data'/'drug_table.json').read_text())
        name, edi = table[a]['dl_name'].replace(' ', ''), table[other[0]]['edi_codes'][0]  # e.g. 아펜텍정80mg for '아펜텍정 80mg'
        _, out, err = cli('predict', '--exp', exp, '--json', '--expect', f"{name}, {edi[:3]}-{edi[3:]}, no such pill", photos_a[0])
        said = json.loads(out)
        assert said['prescription'] == {'matched': {name: [a], f'{edi[:3]}-{edi[3:]}': [other[0]]}, 'unmatched': ['no such pill'],
                                        'quantities': {name: 1, f'{edi[:3]}-{edi[3:]}': 1, 'no such pill': 1}}
        assert said['pills'][0]['candidates'][0]['k_code'] == a and said['pills'][0]['expected'] is True
        assert 'not matched in the prescription: no such pill' in err
    finally: cli('gallery', '--exp', exp, '--remove', a)


def page_shows_the_enrolment_photo(url:str, code:str):
    "The page beside a 'not sure' between drugs without a record of their looks: the enrolled one's photo (the other has none)."
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    drv = headless_chromium()
    try:
        drv.get(url + '/')
        drv.find_element(By.ID, 'key').send_keys(KEY)
        c = lambda k: {'k_code': k, 'confidence': 0.5, 'dl_name': 'Drug ' + k, 'edi_codes': []}
        unsure = {'mode': 'single', 'sides': 1, 'image_size': [320, 244], 'hints': {}, 'timing_ms': {'total': 1},
                  'pills': [{'box': [10, 10, 60, 60], 'status': 'not sure', 'between': [code, 'K-000001'], 'advice': 'unrecorded',
                             'differ': {}, 'candidates': [c(code), c('K-000001')]}]}
        drv.execute_script('show(arguments[0]);', unsure)
        WebDriverWait(drv, 30).until(lambda d: d.execute_script(
            "const i = document.querySelector('#results .refs img'); return !!i && i.complete && i.naturalWidth > 0;"))
        assert [f.text for f in drv.find_elements(By.CSS_SELECTOR, '#results .refs figure')] == [code]
        assert 'compare the pill with the photos they were enrolled from' in drv.find_element(By.ID, 'results').text
    finally: drv.quit()


def test_the_api_enrols_answers_from_the_gallery_and_checks_a_prescription(exp, held_out):
    from pillsnap.server import serving
    (a, photos_a), (_, photos_b) = sorted(held_out.items())
    h = {'X-API-Key': KEY}
    try:
        with serving(exp, KEY, 'serve.allow_enrol=true') as (url, proc):
            r = httpx.post(url + '/enrol', headers=h, files=[('images', p.read_bytes()) for p in photos_a[:1]], data={'code': a}, timeout=60)
            assert r.status_code == 200 and r.json()['k_code'] == a and r.json()['added'] == 1 and r.json()['dl_name']
            # one enrolled drug: too few photos to choose on — the trained drugs' threshold, and the answer says where it came from
            assert r.json()['unknown_chosen_on'] == 'studio validation photos' and -1 <= r.json()['unknown_below'] <= 1
            assert r.json()['unknown_below_by_mode'] is None  # one per mode only where a real set chose them
            assert r.json()['identified_from'] is None  # no 'not sure' band from one drug's photos
            assert r.json()['hint'].startswith(f'{a} is enrolled from 1 photo(s)') and '등록 사진이 1장' in r.json()['hint_ko']
            assert httpx.post(url + '/enrol', files=[('images', b'x')], data={'code': a}).status_code == 401  # a key, always
            bad = httpx.post(url + '/enrol', headers=h, files=[('images', photos_a[0].read_bytes())], data={'code': '../x'}, timeout=60)
            assert bad.status_code == 400 and 'letters, digits' in bad.json()['detail']
            assert '1 enrolled' in httpx.get(url + '/health').json()['models']['gallery']
            # the photo it was enrolled from, to compare a 'not sure' pill with: behind the key, none for a trained drug
            got = httpx.get(f'{url}/drugs/{a}/photo', headers=h, timeout=30)
            assert got.status_code == 200 and got.headers['content-type'] == 'image/png', got.text
            assert Image.open(io.BytesIO(got.content)).size[0] >= 32
            assert httpx.get(f'{url}/drugs/{a}/photo', timeout=30).status_code == 401
            trained = sorted(json.loads((exp/'data'/'class_map.json').read_text()))[0]
            none = httpx.get(f'{url}/drugs/{trained}/photo', headers=h, timeout=30)
            assert none.status_code == 404 and 'no enrolment photo' in none.json()['detail'] and '등록 사진' in none.json()['detail_ko']
            assert httpx.get(f'{url}/drugs/..%2Fgallery.json/photo', headers=h, timeout=30).status_code == 404
            if CHROMIUM and DRIVER: page_shows_the_enrolment_photo(url, a)
            send = lambda **data: httpx.post(url + '/predict', headers=h, files={'image': photos_a[0].read_bytes()}, data=data, timeout=60)
            r = send()
            assert r.status_code == 200 and r.json()['pills'][0]['candidates'][0]['k_code'] == a and r.json()['pills'][0]['status'] != 'unknown'
            codes = sorted(json.loads((exp/'data'/'class_map.json').read_text()))[:2]
            r = send(expect=','.join(codes))
            assert r.status_code == 200 and r.json()['pills'][0]['expected'] is False and r.json()['pills'][0]['best_match']['k_code'] == a
            r = send(expect='K-999999')
            assert r.status_code == 400 and 'K-999999' in r.json()['detail']
        assert a in cli('gallery', '--exp', exp)[1]  # the service saved what it enrolled
        # enrolment is off unless asked for; stricter answers (pipeline.min_confidence): not sure, with the drugs and the advice
        with serving(exp, KEY, 'pipeline.min_confidence=1.01', 'retrieval.threshold=0.999') as (url, proc):
            r = httpx.post(url + '/enrol', headers=h, files=[('images', photos_a[0].read_bytes())], data={'code': a}, timeout=60)
            assert r.status_code == 403 and 'serve.allow_enrol' in r.json()['detail']
            pill = httpx.post(url + '/predict', headers=h, files={'image': photos_a[0].read_bytes()}, timeout=60).json()['pills'][0]
            assert pill['status'] == 'not sure' and pill['between'][0] == a and len(pill['between']) >= 2, pill
            assert pill['advice'] in ('unrecorded', 'other_side', 'closer', 'look', 'not_visible', 'none') and isinstance(pill['differ'], dict)
            never = httpx.post(url + '/predict', headers=h, files={'image': photos_b[0].read_bytes()}, timeout=60).json()['pills'][0]
            assert never['status'] == 'unknown' and 'between' not in never
    finally: cli('gallery', '--exp', exp, '--remove', a)


def test_an_onnx_export_carries_the_embedding_and_answers_like_pytorch(exp, held_out):
    (a, photos_a), _ = sorted(held_out.items())
    from pillsnap.model import load_classifier
    from pillsnap.runtime import export_classifier
    export_classifier(*load_classifier(exp/'classifier'/'best.pt'), exp/'export'/'classifier.onnx')  # what pillsnap export writes first
    cli('enrol', '--exp', exp, '--code', a, photos_a[0])
    try:
        pt, ox = (predict_json(exp, photos_a[1], '--backend', b)['pills'][0] for b in ('torch', 'onnx'))
        assert [c['k_code'] for c in pt['candidates']] == [c['k_code'] for c in ox['candidates']] and pt['status'] == ox['status']
        assert abs(pt['candidates'][0]['confidence'] - ox['candidates'][0]['confidence']) < 1e-3
    finally: cli('gallery', '--exp', exp, '--remove', a)


def test_phone_like_validation_photos_choose_the_unknown_threshold(exp, tmp_path):
    "data.paste_val_photos: validation's pills pasted on scenes choose the threshold when no real set is named (issue 35 §4)."
    import shutil
    from pillsnap.retrieval import load_gallery
    e = tmp_path/'exp'; shutil.copytree(exp, e)
    cli('prepare', '--exp', e, '--force', *SETTINGS, 'data.paste_photos=3', 'data.paste_val_photos=4', 'data.paste_holdout_photos=4', 'data.paste_size=[120,160]',
        'retrieval.target_tar=0.5')  # the median: phone-like and studio photos choose thresholds far enough apart to tell them apart
    cli('gallery', '--exp', e, '--rebuild')
    r = json.loads((e/'reports'/'retrieval.json').read_text())
    phone = r['phone_val']
    assert r['threshold_from'] == 'phone-like validation photos (data.paste_val_photos)'
    assert r['threshold'] == phone['threshold'] == load_gallery(e/'retrieval').meta['threshold'] and -1 <= r['studio_threshold'] <= 1
    assert phone['pills'] >= 4 and all(0 <= phone[k] <= 1 for k in ('top1', 'classifier_top1', 'gallery_top1'))
    # the two held-out drugs' pills pasted on the same kind of scenes: "unknown" measured on phone-like photos
    held = json.loads((e/'data'/'pasted-holdout.json').read_text())
    assert held['photos'] == 4 and phone['unknown'] >= 4 and 0 <= phone['auroc'] <= 1 and 0 <= phone['far'] <= 1
    assert r['chosen_by'] == 'target_tar'  # fewer than 30 never-seen pills: not enough to choose for a risk ...
    assert phone['own_threshold'] == r['looks']['phone-like'] == r['threshold']  # ... so the phone-like photos' choice serves
    # every number of the report at the threshold that serves (issue 79 §1; before: the studio photos' tar and far were the
    # studio threshold's, printed beside the phone-like one that served)
    assert measured_at(e, load_gallery(e/'retrieval').meta['threshold']) == {k: r[k] for k in ('threshold', 'tar', 'known', 'unknown', 'auroc', 'far')}


def measured_at(e, threshold):
    "`at_threshold` of the experiment's studio validation photos against its held-out drugs' photos, asked as its gallery asks them."
    from pillsnap.config import exp_config
    from pillsnap.crops import CropCache, cache_fits
    from pillsnap.data import load_manifest, pill_rows
    from pillsnap.gallery import embed_rows
    from pillsnap.model import load_classifier
    from pillsnap.prepare import classifier_data
    from pillsnap.retrieval import at_threshold, described, load_gallery, query_turns
    d, g, (model, _) = classifier_data(exp_config(e)), load_gallery(e/'retrieval'), load_classifier(e/'classifier'/'best.pt')
    described(model, g)
    score = lambda rows, cache: g.open_scores(g.scores(embed_rows(model, rows, d.root, d.pre, cache, turns=query_turns(g.meta))[0])).numpy()
    held = pill_rows(load_manifest(e/'data', 'holdout'), ('single',), known_only=False)
    cache = CropCache(e/'data'/'cache'/'holdout') if cache_fits(e/'data'/'cache'/'holdout', held, d.pre) else None
    return at_threshold(score(d.val, d.val_cache), score(held, cache), threshold)


def test_the_gallery_describes_crops_as_set_and_whoever_reads_it_follows(trained_exp, tmp_path):
    "retrieval.pool and retrieval.scales: the gallery records its descriptor and the predictor describes queries as it does; a gallery from before them reads the pooled features."
    import shutil
    from pillsnap.model import POOLED
    from pillsnap.pipeline import Predictor
    from pillsnap.retrieval import load_gallery
    e = tmp_path/'exp'; shutil.copytree(trained_exp[0], e)
    cli('gallery', '--exp', e, '--rebuild', 'retrieval.pool=avg', 'retrieval.scales=[1]')
    g, report = load_gallery(e/'retrieval'), json.loads((e/'reports'/'retrieval.json').read_text())
    assert g.meta['descriptor'] == POOLED and report['embedding'] == 'pooled features'
    pooled = g.meta['embedder']
    cli('gallery', '--exp', e, '--rebuild')  # the default: GeM at the crop's size and at 1/√2 of it
    g, report = load_gallery(e/'retrieval'), json.loads((e/'reports'/'retrieval.json').read_text())
    assert g.meta['descriptor'] == {'pool': 'gem', 'scales': [1.0, 0.7071]} and report['embedding'].startswith('GeM')
    assert g.meta['embedder'] != pooled  # the same weights describing crops another way are another embedder
    pred = Predictor.from_exp(e)
    assert pred.gallery is not None and pred.model.descriptor == g.meta['descriptor']
    # combo mode's pill check reads the pooled features whatever the descriptor: one fitted on them stays valid
    import numpy as np
    from pillsnap.pipeline import PillCheck
    d = pred.model.backbone.num_features
    for embedder, kept in ((pooled, True), (g.meta['embedder'], False)):  # one fitted on the descriptor is stale
        PillCheck(np.zeros(d), np.ones(d), np.zeros(d), 0.0, 0.5, {'embedder': embedder}).save(e/'retrieval')
        assert (Predictor.from_exp(e).pill_check is not None) == kept, embedder
    from pillsnap.data import load_manifest
    m = load_manifest(e/'data', 'val')
    photo = Path(pred.cfg.data.root)/m[m.kind == 'single'].image.iloc[0]
    assert pred.predict(photo, 'single', top_k=1)['pills'][0]['candidates']  # answered with the gallery
    # a gallery written before the descriptor existed: no record, built from the pooled features
    cli('gallery', '--exp', e, '--rebuild', 'retrieval.pool=avg', 'retrieval.scales=[1]')
    rec = json.loads((e/'retrieval'/'gallery.json').read_text())
    del rec['meta']['descriptor']
    (e/'retrieval'/'gallery.json').write_text(json.dumps(rec))
    pred = Predictor.from_exp(e)
    assert pred.gallery is not None and pred.model.descriptor == POOLED and pred.gallery.meta['embedder'] == pooled
    code, err = cli('gallery', '--exp', e, '--rebuild', 'retrieval.scales=[0.5,1]', check=False)[::2]
    assert code != 0 and 'retrieval.scales must start with 1' in err


def test_without_a_real_set_the_enrolled_photos_choose_the_enrolled_drugs_threshold(exp, held_out, tmp_path):
    "Enough enrolled photos (3 drugs, 10 photos): their threshold is chosen on them, each left out in turn — on enrolment, removal and rebuild."
    import shutil
    from pillsnap.retrieval import load_gallery
    e = tmp_path/'exp'; shutil.copytree(exp, e)
    (a, photos_a), (b, photos_b) = sorted(held_out.items())[:2]
    trained = load_gallery(e/'retrieval').meta
    cli('enrol', '--exp', e, '--code', a, *photos_a[:3])
    cli('enrol', '--exp', e, '--code', b, *photos_b[:3])
    g = load_gallery(e/'retrieval')  # two drugs: too few to choose on — the trained drugs' threshold meanwhile
    assert g.meta['enrolled_threshold'] == trained['threshold'] and g.meta['enrolled_threshold_from'] == trained['threshold_from']
    assert g.photo_vecs.shape == (6, 16) and 'enrolment_open_set' not in g.meta
    assert g.photo_asks.shape == (6, 16) and (g.photo_asks - g.photo_vecs).abs().max() > 1e-3  # each photo asked farther
    out = cli('enrol', '--exp', e, '--code', 'NEW-3', photos_a[-1], photos_b[-1], photos_a[0], photos_b[0])[1]
    assert 'chosen on the enrolled photos (10 photos of 3 drugs, each left out in turn)' in out and 'hint:' not in out  # 4 photos
    g = load_gallery(e/'retrieval')
    own = g.meta['enrolment_open_set']
    assert (own['known'], own['drugs'], own['threshold']) == (10, 3, g.meta['enrolled_threshold']) and 0 <= own['auroc'] <= 1
    ident = own.get('identified_from', own['threshold'])  # where 'identified' starts: a band above it where its photos ask one
    assert g.thresholds().tolist() == pytest.approx([ident if k in g.enrolled() else trained['threshold'] for k in g.codes])
    assert ('identified_from' in own) == ("'not sure' below" in out) == (g.meta.get('enrolled_identified_from') is not None)
    if 'identified_from' in own: assert g.refusals()[g.codes.index('NEW-3')] == pytest.approx(own['threshold'])
    assert 'note: one threshold for both modes, chosen on close-ups' in out  # and what would choose one per mode
    listing = cli('gallery', '--exp', e)[1]
    assert 'chosen on the enrolled photos' in listing and 'eval.real_sets' in listing
    cli('gallery', '--exp', e, '--rebuild')  # the enrolled crops embedded again choose it again
    report = json.loads((e/'reports'/'retrieval.json').read_text())
    assert report['enrolled_threshold_from'].startswith('the enrolled photos') and report['enrolment_open_set']['known'] == 10
    cli('gallery', '--exp', e, '--remove', 'NEW-3')  # too few again: back to the trained drugs' threshold
    g = load_gallery(e/'retrieval')
    assert g.meta['enrolled_threshold'] == g.meta['threshold'] and 'enrolment_open_set' not in g.meta and len(g.photo_vecs) == 6


def test_real_set_enrols_from_one_pill_photos_and_chooses_a_threshold_per_mode():
    ("`real_open_set`: each product enrolled from its one-pill photos, as `enrol` takes them; each mode's threshold"
     " on the pills of its own photos; `Gallery.thresholds(mode)` hands an enrolled drug its mode's.")
    import torch
    from pillsnap.gallery import real_open_set
    from pillsnap.retrieval import Gallery
    torch.manual_seed(0)
    dim, products, singles, combos = 32, 4, 7, 12
    axes = torch.nn.functional.normalize(torch.randn(products, dim), dim=1)
    emb, codes, groups, kinds = [], [], [], []
    for p in range(products):
        for i in range(singles):  # one pill per photo, close up: near its product
            emb.append(axes[p] + 0.1 * torch.randn(dim)); codes.append(f'P{p}'); groups.append(f's{p}-{i}'); kinds.append('single')
        for i in range(combos):  # one of several in a photo: farther from it
            emb.append(axes[p] + 0.5 * torch.randn(dim)); codes.append(f'P{p}'); groups.append(f'c{i}'); kinds.append('combo')
    r = real_open_set(Gallery(dim, meta={'threshold': 0.5}), torch.stack(emb), codes, groups, shots=3, held=0.25, kinds=kinds)
    by, enrolled = r['by_mode'], products - r['held_out']
    # every trial asks all the enrolled products' combination pills and their one-pill photos but the three enrolled
    assert (by['single']['pills'], by['combo']['pills']) == (enrolled * (singles - 3), enrolled * combos)
    assert by['combo']['threshold'] < r['threshold'] < by['single']['threshold']  # the one for all pills sits between
    for m in by.values(): assert 0 < m['enrolled_called_unknown'] <= 0.25 and 0 <= m['unknown_answered'] <= 1
    g = Gallery(dim, meta={'threshold': 0.1, 'enrolled_threshold': 0.3, 'enrolled_threshold_by_mode': {'single': 0.4, 'combo': 0.2}})
    g.add('K-900001', axes[:1], source='trained').add('K-900002', axes[1:2], record={'k_code': 'K-900002'})
    assert sum((g.thresholds(m).tolist() for m in ('single', 'combo', None)), []) == pytest.approx([0.1, 0.4, 0.1, 0.2, 0.1, 0.3])
    assert g.threshold_advice is None  # a real set chose each mode's: nothing to advise
    del g.meta['enrolled_threshold_by_mode']
    g.meta.update(enrolment_open_set={'threshold': 0.3}, enrolled_threshold_from='the enrolled photos (10 photos of 3 drugs, each left out in turn)')
    assert 'eval.real_sets' in g.threshold_advice  # chosen on close-ups, one for both modes


def _phone_yolo(root, products=('advil', 'tylenol', 'midol', 'altoid'), singles=8, combos=6):
    ("A YOLO export of random photos, as `eval.real_sets` reads one: per product `singles` photos of one pill, and"
     " `combos` photos of one pill of each product, in train; two of one pill and one of all in val and test.")
    import numpy as np
    from PIL import Image
    rng, w, h = np.random.default_rng(0), 160, 120
    def photo(split, name, pills):
        (root/'images'/split).mkdir(parents=True, exist_ok=True); (root/'labels'/split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root/'images'/split/f'{name}.jpg')
        (root/'labels'/split/f'{name}.txt').write_text(
            ''.join(f'{c} {0.15 + 0.23 * i:.3f} 0.5 0.2 0.25\n' for i, c in enumerate(pills)))
    for split, n_single, n_combo in (('train', singles, combos), ('val', 2, 1), ('test', 2, 1)):
        for c, k in enumerate(products):
            for i in range(n_single): photo(split, f'{k}-{split}-{i}', [c])
        for i in range(n_combo): photo(split, f'all-{split}-{i}', range(len(products)))
    (root/'data.yaml').write_text(f'names: {list(products)}\ntrain: images/train\nval: images/val\ntest: images/test\n')
    return root


def test_real_end_to_end_chooses_the_threshold_on_the_sets_training_photos(exp, tmp_path):
    ("tools/real_end_to_end.py --threshold-on train: the copy's threshold chosen per mode on the set's training photos,"
     " none of a held-out product's pills among them; the experiment unchanged.")
    real, out = _phone_yolo(tmp_path/'phone'), tmp_path/'e2e'
    before = (Path(exp)/'retrieval'/'gallery.json').read_bytes()
    r = run_tool('real_end_to_end', exp, out, '--real', real, '--hold-out', 1, '--seed', 0, '--threshold-on', 'train')
    assert r.returncode == 0, r.stderr[-3000:]
    held = r.stdout.split('held out: ')[1].split("'")[1].split(':')[1]
    meta = json.loads((out/'retrieval'/'gallery.json').read_text())['meta']
    assert meta['enrolled_threshold_from'] == 'real photos (phone)' and set(meta['enrolled_threshold_by_mode']) == {'single', 'combo'}
    assert f"single mode {meta['enrolled_threshold_by_mode']['single']:.3f}, combo mode" in r.stdout  # the tool says both
    tree = out/'real-threshold'
    names = json.loads((tree/'data.yaml').read_text())['names']
    lines = [l.split() for f in (tree/'labels'/'train').glob('*.txt') for l in f.read_text().splitlines()]
    assert held not in names and len(lines) == 4 * 8 + 6 * 4  # every pill kept, the held-out product's under a trained drug
    assert sum(names[int(l[0])] == names[-1] for l in lines) == 8 + 6 and names[-1] not in ('advil', 'tylenol', 'midol', 'altoid')
    single = json.loads(r.stdout[r.stdout.index('\n{') + 1:])['single']
    assert single['photos'] == 2 * 4 * 2 and 0 <= single['known_called_unknown'] <= 1
    assert (Path(exp)/'retrieval'/'gallery.json').read_bytes() == before


def test_a_source_that_teaches_is_learnt_but_never_answered(tiny_root, tmp_path):
    ("data.sources with answers: false: its drugs train the classifier on every photo, and neither the served model nor"
     " the gallery ever names them, however many candidates are asked for.")
    from pillsnap.model import load_checkpoint
    from pillsnap.retrieval import load_gallery
    ref, e = _phone_folders(tmp_path/'ref', photos=3), tmp_path/'exp'
    cli('prepare', '--root', tiny_root, '--exp', e, *SETTINGS, f'data.sources=[{{path: {ref}, format: folders, name: ref, answers: false}}]')
    cli('train-cls', '--exp', e, '--no-notebook')
    ck, taught = load_checkpoint(e/'classifier'/'best.pt'), {f'ref:{p}' for p in ('advil', 'tylenol', 'midol', 'altoid')}
    assert set(ck['teach_only']) == taught and taught <= set(ck['k_codes']) and len(ck['k_codes']) == 10 + 4
    assert not taught & set(load_gallery(e/'retrieval').codes)  # no prototype: the gallery cannot name them either
    pill = predict_json(e, str(sorted((ref/'advil').iterdir())[0]), '--top-k', '100')['pills'][0]  # a taught drug's photo
    assert len(pill['candidates']) == 10 and not taught & {c['k_code'] for c in pill['candidates']}
    from pillsnap.gates import measurements  # the gate's class coverage counts the drugs it answers
    validated = json.loads((e/'classifier'/'metrics.json').read_text())['classes']
    assert measurements(e)[0]['class_coverage'] == round(validated / 10, 4) > 0.5
