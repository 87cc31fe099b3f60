"""What a reader sees: every committed notebook opened in JupyterLab in a real (headless) browser.

JupyterLab starts on a free local port with the project's kernel environment; Debian's Chromium,
driven through selenium, opens each notebook and checks that its title cell shows, that every
figure the notebook holds renders as an image, and that no output is an error. Screenshots land
in ``.scratch/browser/`` for a person to look at. ``make test-browser`` runs this file alone;
``make test`` runs it too. Without Chromium, chromedriver or selenium it is skipped with the reason
(``make setup`` installs the browser when run as root).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
SHOTS = ROOT / ".scratch" / "browser"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = pytest.mark.browser


def _missing() -> str | None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "needs Debian's chromium and chromium-driver (make setup installs them when run as root)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (pip install -e '.[test]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    port, token = _free_port(), secrets.token_hex(16)
    settings = tmp_path_factory.mktemp("lab-settings")
    # render every cell (no virtual scrolling), so that every figure is in the page
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTER_RUNTIME_DIR": str(tmp_path_factory.mktemp("lab-runtime"))}
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
                             f"--port={port}", "--ServerApp.ip=127.0.0.1",
                             f"--IdentityProvider.token={token}",
                             f"--ServerApp.root_dir={ROOT / 'notebooks'}", "--ServerApp.open_browser=False"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("JupyterLab did not start within 90 s")
                time.sleep(0.5)
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser(lab):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic", "--window-size=1400,1800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def _expected_images(path: Path) -> int:
    nb = json.loads(path.read_text())
    return sum("image/png" in o.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code"
               for o in c.get("outputs", []))


PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in front (earlier tabs stay open, hidden)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_renders_in_jupyterlab(lab, browser, path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, token = lab
    # a workspace of its own per notebook, reset: only this notebook is open
    browser.get(f"{url}/lab/workspaces/{path.stem}/tree/{path.name}?reset&token={token}")
    wait = WebDriverWait(browser, 120)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{PANEL} .jp-MarkdownOutput h1"))
    title = browser.find_element(By.CSS_SELECTOR, f"{PANEL} .jp-MarkdownOutput h1").text
    assert title.startswith(path.stem[:2]), f"{path.name}: the title cell shows {title!r}"
    want = _expected_images(path)
    script = (f"return Array.from(document.querySelectorAll('{PANEL} .jp-RenderedImage img'))"
              ".map(i => i.complete && i.naturalWidth > 0)")
    wait.until(lambda d: len(d.execute_script(script)) >= want and all(d.execute_script(script)))
    assert len(browser.execute_script(script)) == want, f"{path.name}: not every figure rendered"
    error_mime = '[data-mime-type="application/vnd.jupyter.error"]'
    errors = browser.find_elements(By.CSS_SELECTOR, f'{PANEL} {error_mime}')
    text = "\n".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, f"{PANEL} .jp-OutputArea-output"))
    assert not errors and "Traceback (most recent call last)" not in text, \
        f"{path.name} shows an error output"
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{path.stem}.png"))
