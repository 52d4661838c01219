"""The web page's screenshots for the docs (nbs/91_operations.ipynb: The web page), taken in headless Chromium.

Serves an experiment (`serving`, a real uvicorn in a child process), opens the page at a phone's viewport
(412×915, emulated: a Chromium window is at least 500 px wide) and at a desktop's (1280×800), identifies one
photo in combo mode and saves what the screen shows, results included (the whole page, scaled to 1×):

    python tools/page_screenshots.py --exp work/exp/demo [--photo PHOTO] [--expect PRESCRIPTION] [--lang ko] [--out nbs]

With --expect the photo is asked with that prescription: the page shows the tray's checklist beside its numbered pills.

Needs Debian's chromium and chromium-driver (`make test` installs them) and selenium (a test dependency).
"""
import argparse, base64, io, os, secrets, shutil, tempfile
from pathlib import Path

from PIL import Image


def sample_photo(exp:Path)->Path:
    "A combination photo of the experiment's validation split."
    from pillsnap.config import exp_config
    from pillsnap.data import load_manifest
    m = load_manifest(exp/'data', 'val')
    return Path(exp_config(exp).data.root)/m[m.kind == 'combo'].image.iloc[0]


def hangul_fonts():
    "Let Chromium find NanumGothic (shipped in koreanize-matplotlib's wheel) where the machine has no Korean font."
    import koreanize_matplotlib
    conf = Path(tempfile.mkdtemp())/'fonts.conf'
    conf.write_text('<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>'
                    '<include ignore_missing="yes">/etc/fonts/fonts.conf</include>'
                    f'<dir>{Path(koreanize_matplotlib.__file__).parent/"fonts"}</dir></fontconfig>')
    os.environ['FONTCONFIG_FILE'] = str(conf)


def browser(width:int, height:int):
    "Headless Chromium at `width`×`height` CSS pixels (a phone's viewport emulated below 600 px)."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which('chromium')
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
              '--disable-background-networking', f'--window-size={width},{height}'): opts.add_argument(a)
    if width < 600:
        opts.add_experimental_option('mobileEmulation', {'deviceMetrics': {'width': width, 'height': height,
                                                                            'pixelRatio': 1, 'touch': True}})
    return webdriver.Chrome(service=Service(shutil.which('chromedriver')), options=opts)


def shoot(url:str, key:str, photo:Path, width:int, height:int, lang:str, out:Path, expect:str|None=None)->Path:
    "Identify `photo` in combo mode on the page and save the whole page as a PNG."
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    drv = browser(width, height)
    try:
        drv.get(url + '/')
        if lang == 'ko': drv.find_element(By.ID, 'lang').click()
        if drv.find_element(By.ID, 'keyrow').is_displayed(): drv.find_element(By.ID, 'key').send_keys(key)
        drv.find_element(By.ID, 'file').send_keys(str(photo))
        if expect: drv.find_element(By.ID, 'expect').send_keys(expect)
        drv.find_element(By.CSS_SELECTOR, 'input[name=mode][value=combo]').click()
        drv.find_element(By.ID, 'go').click()
        WebDriverWait(drv, 120).until(lambda d: d.find_element(By.ID, 'status').text.startswith(('done', '완료')))
        w, h = drv.execute_script('return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]')
        shot = drv.execute_cdp_cmd('Page.captureScreenshot', {'format': 'png', 'captureBeyondViewport': True,
                                                              'clip': {'x': 0, 'y': 0, 'width': w, 'height': min(h, 4000),
                                                                       'scale': 1}})
    finally: drv.quit()
    im = Image.open(io.BytesIO(base64.b64decode(shot['data']))).convert('RGB')
    im.save(out, optimize=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--exp', required=True)
    ap.add_argument('--photo', default=None, help='the photo to identify (default: a validation combination photo)')
    ap.add_argument('--expect', default=None, help="a prescription, e.g. 'K-001900 x2, 넥시움정 20mg' (the tray's checklist)")
    ap.add_argument('--lang', default='en', choices=['en', 'ko'])
    ap.add_argument('--out', default='nbs', help='folder for page-phone.png and page-desktop.png')
    a = ap.parse_args()
    exp, out = Path(a.exp).resolve(), Path(a.out)
    photo = (Path(a.photo) if a.photo else sample_photo(exp)).resolve()  # Chromium takes absolute paths only
    from pillsnap.server import serving
    hangul_fonts()
    key = secrets.token_urlsafe(24)
    with serving(exp, key, log_file=exp/'logs'/'screenshots-serve.log') as (url, _):
        for name, (w, h) in {'phone': (412, 915), 'desktop': (1280, 800)}.items():
            p = shoot(url, key, photo, w, h, a.lang, out/f"page-{name}{'-ko' if a.lang == 'ko' else ''}.png", a.expect)
            print(p, Image.open(p).size, f'{p.stat().st_size / 1024:.0f} kB')


if __name__ == '__main__': main()
