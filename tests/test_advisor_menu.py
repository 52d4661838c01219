"The advisor's ipywidgets menu as users see it: a real JupyterLab server, a notebook run in headless Chromium, the widget read off the page."
import json, os, secrets, socket, subprocess, sys, time

import pytest

from conftest import CHROMIUM, DRIVER, cli, needs_chromium


def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    "JupyterLab on loopback with a fresh token and its own settings and workspaces (nothing from the user's Jupyter), its app exposed to scripts."
    import httpx
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, **{k: str(tmp_path/'jupyter'/k.lower()) for k in ('JUPYTER_CONFIG_DIR', 'JUPYTER_RUNTIME_DIR', 'JUPYTERLAB_SETTINGS_DIR',
                                                                           'JUPYTERLAB_WORKSPACES_DIR')}}
    (tmp_path/'work').mkdir()
    p = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
                          '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={tmp_path/"work"}',
                          '--LabApp.expose_app_in_browser=True', *(['--allow-root'] if os.geteuid() == 0 else [])], env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path/'lab.log', 'w'))
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(120):
            try:
                if httpx.get(f'{url}/api/status', params=dict(token=token), timeout=2).status_code == 200: break
            except httpx.HTTPError: pass
            assert p.poll() is None, (tmp_path/'lab.log').read_text()
            time.sleep(0.5)
        else: raise AssertionError(f'JupyterLab did not start:\n{(tmp_path/"lab.log").read_text()}')
        yield url, token, tmp_path/'work'
    finally:
        p.terminate()
        try: p.wait(20)
        except subprocess.TimeoutExpired: p.kill()


def notebook(*cells):
    return dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')),
                cells=[dict(cell_type='code', id=f'c{i}', metadata={}, source=s, outputs=[], execution_count=None) for i, s in enumerate(cells)])


@pytest.mark.slow  # a JupyterLab server, a kernel and Chromium
@needs_chromium
def test_advisor_menu_renders_in_jupyterlab(lab, tmp_path):
    "The menu of a judged experiment shows the gate's decision and every recommendation; choosing another one updates its settings diff from the kernel."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from pillsnap.advisor import advise
    from pillsnap.tiny import tiny_experiment
    url, token, work = lab
    exp = tiny_experiment(tmp_path/'exp')
    cli('evaluate', '--exp', exp, '--no-notebook')
    cli('gate', '--exp', exp, '--stage', '4', '--latency-photos', '2', 'device=cpu')
    advice = advise(exp)
    recs = advice['recommendations']
    assert advice['decision'] and len(recs) >= 2, advice  # stage 4's targets are above the tiny experiment's numbers
    (work/'advisor.ipynb').write_text(json.dumps(notebook('from pillsnap.advisor import AdvisorMenu', f'AdvisorMenu({str(exp)!r})')))

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--window-size=1400,1000'):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        drv.get(f'{url}/lab/tree/advisor.ipynb?token={token}')
        ready = """const app = window.jupyterapp, w = app && app.shell.currentWidget, k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                   return !!(k && k.status === 'idle' && w.content && w.content.widgets.length === 2);"""
        WebDriverWait(drv, 120, 0.5).until(lambda d: d.execute_script(ready))
        drv.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        radios = lambda d: d.find_elements(By.CSS_SELECTOR, '.jp-OutputArea-output .widget-radio-box label')
        try: WebDriverWait(drv, 180, 0.5).until(lambda d: len(radios(d)) == len(recs))
        except TimeoutException:
            raise AssertionError('no menu with the recommendations; the cells printed: ' +
                                 ' | '.join(e.text for e in drv.find_elements(By.CSS_SELECTOR, '.jp-OutputArea-output'))) from None
        text = drv.find_element(By.CSS_SELECTOR, '.jp-OutputArea-output .widget-vbox').text
        assert f'pillsnap advisor — {exp.name}' in text and advice['decision'] in text, text
        assert [l.text for l in radios(drv)] == [f"[{i}] {r['title']}" for i, r in enumerate(recs, 1)]
        preview = lambda d: d.find_elements(By.CSS_SELECTOR, '.jp-OutputArea-output .widget-vbox > .widget-html')[1].text  # after the header
        for k in recs[0]['settings']: assert k in preview(drv), preview(drv)  # the first choice is chosen, its diff shown
        assert drv.find_element(By.CSS_SELECTOR, '.jp-OutputArea-output .widget-text input').get_attribute('value') == str(exp.parent/f"{exp.name}-{recs[0]['rule']}")
        before = preview(drv)
        radios(drv)[1].find_element(By.TAG_NAME, 'input').click()  # the kernel's observer redraws the diff for the second choice
        WebDriverWait(drv, 30, 0.5).until(lambda d: preview(d) != before)
        for k in recs[1]['settings']: assert k in preview(drv), preview(drv)
        assert [b.text.strip() for b in drv.find_elements(By.CSS_SELECTOR, '.jp-OutputArea-output .widget-button')] == ['write experiment', 'run its jobs']
    finally: drv.quit()
