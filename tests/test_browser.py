"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright).

Marked ``browser``: ``.ci/run`` installs Chromium with apt when it is missing; elsewhere
these tests skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from healthmon.training.args import TrainArgs
from healthmon.training.trainer import train

from conftest import ROOT

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("HEALTHMON_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
HOSTILE = "glucose 240 mg/dL <script>alert(1)</script> <img src=x onerror=alert(2)>"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def dashboard(settings, notes, tmp_path):
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
    pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    version = train(notes, TrainArgs(mode="head", max_steps=2), out_dir=settings.data_dir / "served",
                    settings=settings, progress=False).version_dir
    port = _free_port()
    env = {**os.environ, "HEALTHMON_ACTIVE_MODEL": str(version), "HEALTHMON_BASE_MODEL": settings.base_model,
           "HEALTHMON_DATA_DIR": str(settings.data_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"streamlit did not start: {proc.stderr.read(3000) if proc.stderr else ''}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_hostile_note_is_scored_explained_and_stays_inert_in_a_real_browser(dashboard, tmp_path):
    from playwright.sync_api import sync_playwright

    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1600})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(dashboard, timeout=120_000)
        page.wait_for_selector("textarea", timeout=120_000)
        page.fill("textarea", HOSTILE)
        page.keyboard.press("Control+Enter")
        page.get_by_role("button", name="Predict").click()
        page.wait_for_selector(".hm-expl", timeout=180_000)
        page.wait_for_timeout(1500)  # time for any injected handler to fire
        shown = page.inner_text(".hm-expl .hm-text")
        injected = page.evaluate("document.querySelectorAll('.hm-expl script, .hm-expl img').length")
        page.screenshot(path=str(tmp_path / "home.png"), full_page=True)
        browser.close()
    assert dialogs == []  # neither alert ran
    assert injected == 0
    assert "<script>alert(1)</script>" in shown and "<img src=x onerror=alert(2)>" in shown
