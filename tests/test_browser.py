"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright).

A real Streamlit server with its own background worker thread, a real SQLite database and
a real model: the bundled MiniLM, LoRA fine-tuned for a couple of minutes on healthmon's
synthetic notes (or the folder named by HEALTHMON_BROWSER_MODEL, e.g. the demo model).
Each test saves screenshots under HEALTHMON_SCREENSHOTS (default ``data/screenshots``).

Marked ``browser``: ``.ci/run`` installs Chromium with apt when it is missing; elsewhere
these tests skip with the reason.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("HEALTHMON_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
HOSTILE = "glucose 240 mg/dL, polyuria <script>alert(1)</script> <img src=x onerror=alert(1)> on metformin"
PASSWORDS = {"ada": "ada-password-1", "cli": "cli-password-1", "ann": "ann-password-1"}
SCREENSHOTS = Path(os.environ.get("HEALTHMON_SCREENSHOTS", ROOT / "data" / "screenshots"))
WAIT = 120_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser_model(data_dir: Path) -> dict[str, str]:
    """Environment naming the served model: HEALTHMON_BROWSER_MODEL, else a quick real fine-tune."""
    chosen = os.environ.get("HEALTHMON_BROWSER_MODEL")
    if chosen:
        return {"HEALTHMON_ACTIVE_MODEL": str(Path(chosen).resolve())}
    from healthmon.config import Settings
    from healthmon.demo import demo_notes
    from healthmon.training.args import TrainArgs
    from healthmon.demo import DEMO_LABELS
    from healthmon.training.trainer import train

    # Same recipe as the demo model, smaller (300 notes, 128 tokens, 4 epochs: ~2 min on
    # 2 cores), written where the dashboard looks for the demo, so it shows the demo banner.
    settings = Settings(data_dir=data_dir, max_length=128)
    train(demo_notes(300, settings.seed), TrainArgs(mode="lora", multi_label=True, epochs=4, early_stopping_patience=0,
                                                     label_order=DEMO_LABELS),
          out_dir=settings.demo_model_dir, settings=settings, progress=False, synthetic_data=True)
    return {"HEALTHMON_MAX_LENGTH": "128"}


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
    pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    from healthmon.services import accounts as auth
    from healthmon.config import Settings
    from healthmon.storage.db import make_engine, session_factory, upgrade

    data_dir = tmp_path_factory.mktemp("browser") / "data"
    env = {**os.environ, "HEALTHMON_DATA_DIR": str(data_dir), "HEALTHMON_WORKER": "thread",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **_browser_model(data_dir)}
    engine = make_engine(settings=Settings(data_dir=data_dir))
    upgrade(engine)
    factory = session_factory(engine)
    for name, role in (("ada", "admin"), ("cli", "clinician"), ("ann", "annotator")):
        auth.add_user(factory, None, name, role, PASSWORDS[name])
    engine.dispose()
    port = _free_port()
    proc = subprocess.Popen(
        # The one server `make run` starts: the dashboard and the API in one process.
        [sys.executable, "-m", "healthmon", "serve", "--port", str(port)],
        # A file, not a pipe: the server logs every request, and a full pipe would stall it.
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(log := open(data_dir.parent / "server.log", "w+")),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            log.seek(0)
            pytest.fail(f"the server did not start: {log.read()[-3000:]}")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        yield {"url": url, "data_dir": data_dir}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


@pytest.fixture()
def scored_note(dashboard, browser):
    """One more note scored through the server's own worker (so each test stands alone)."""
    # The dashboard's worker thread starts with its first page run: sign in to start one.
    warm = browser.new_page()
    warm.goto(dashboard["url"], timeout=WAIT)
    sign_in(warm, "cli")
    warm.get_by_text("Signed in as").wait_for(timeout=WAIT)
    from healthmon.services import accounts as auth
    from healthmon.config import Settings
    from healthmon.services.jobs import get_job
    from healthmon.services.notes import submit_for_scoring
    from healthmon.storage.db import make_engine, session_factory
    from healthmon.types import Note

    settings = Settings(data_dir=dashboard["data_dir"])
    engine = make_engine(settings=settings)
    factory = session_factory(engine)
    cli = auth.sign_in(factory, "cli", PASSWORDS["cli"], settings)
    folder = os.environ.get("HEALTHMON_BROWSER_MODEL") or str(settings.demo_model_dir)
    text = f"Fasting glucose 131 mg/dL, HbA1c 7.1%, on metformin (note {time.time_ns()})."
    job_id = submit_for_scoring(factory, cli, [Note(text=text, note_id="b-1")], folder)
    for _ in range(600):
        job = get_job(factory, job_id)
        if job.finished:
            break
        time.sleep(0.2)
    engine.dispose()
    warm.close()
    assert job.status == "succeeded", job.error
    return text


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def open_page(browser, dashboard):
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    page.goto(dashboard["url"], timeout=WAIT)
    return page


def sign_in(page, name: str, password: str | None = None) -> None:
    page.get_by_label("User name").fill(name, timeout=WAIT)
    page.get_by_role("textbox", name="Password").fill(password or PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()


def go(page, title: str) -> None:
    """Navigate with the sidebar, as a person does (the session, and so the sign-in, stays)."""
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=re.compile(rf"{title}$")).first.click()
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=WAIT)


def nav_titles(page) -> list[str]:
    return [a.inner_text().split("\n")[-1] for a in page.locator('[data-testid="stSidebarNav"] a').all()]


def vitals_uploaded(browser, dashboard, path: Path, lines: list[str]):
    """A clinician's Vitals page with ``lines`` uploaded as the CSV file ``path``."""
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    page = open_page(browser, dashboard)
    sign_in(page, "cli")
    go(page, "Vitals")
    page.locator('input[type="file"]').set_input_files(str(path))
    return page


def shot(page, name: str) -> None:
    page.wait_for_timeout(500)  # let charts finish drawing
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_a_wrong_password_is_refused_and_the_right_one_opens_home(browser, dashboard):
    page = open_page(browser, dashboard)
    sign_in(page, "cli", "not-her-password")
    page.get_by_text("Sign-in refused").wait_for(timeout=WAIT)
    shot(page, "sign-in-refused")
    assert page.get_by_text("Cases awaiting a first review").count() == 0
    sign_in(page, "cli")
    page.get_by_text("Cases awaiting a first review").wait_for(timeout=WAIT)
    assert page.get_by_text("Demo mode").count() >= 1  # synthetic-data banner
    assert "Admin" not in nav_titles(page)
    shot(page, "home")


def test_a_clinician_uploads_notes_sees_scores_and_a_hostile_note_stays_text(browser, dashboard, tmp_path):
    upload = tmp_path / "clinic-notes.csv"
    rows = [
        ("n-001", "p-01", "58 y/o on metformin, HbA1c 8.4%, polyuria and polydipsia."),
        ("n-002", "p-02", "BP 162/98 mmHg on two readings; started amlodipine 5 mg."),
        ("n-003", "p-03", "Core biopsy of the breast mass: invasive ductal carcinoma. Oncology referral."),
        ("n-004", "p-04", ""),  # empty: must be rejected and listed, not dropped silently
        ("n-005", "p-05", HOSTILE),
    ]
    with upload.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["note_id", "patient_id", "text"])
        writer.writerows(rows)

    page = open_page(browser, dashboard)
    sign_in(page, "cli")
    go(page, "Notes")
    page.locator('input[type="file"]').set_input_files(str(upload))
    page.get_by_role("button", name="Predict").click()
    page.get_by_text(re.compile(r"4 case\(s\) scored by")).wait_for(timeout=WAIT)
    page.locator('[data-testid="stDataFrame"]').nth(1).wait_for(timeout=WAIT)  # rejected rows, then the scores
    shot(page, "notes")
    assert page.get_by_text("1 row(s) were rejected and not scored").count() == 1

    go(page, "Case")  # opens the newest case: the hostile note
    page.locator(".hm-expl").wait_for(timeout=WAIT)
    page.wait_for_timeout(1500)  # time for any injected handler to fire
    shown = page.inner_text(".hm-expl .hm-text")
    assert "<script>alert(1)</script>" in shown and "<img src=x onerror=alert(1)>" in shown
    assert page.evaluate("document.querySelectorAll('.hm-expl script, .hm-expl img, img[src=\"x\"]').length") == 0
    assert page.get_by_text("add up to the score change").count() == 1
    assert page.locator(".hm-expl .hm-w").count() > 5  # one span per word
    assert page.dialogs == []
    shot(page, "case")


def test_an_annotator_corrects_a_label_sees_it_in_the_history_and_cannot_promote(browser, dashboard, scored_note):
    page = open_page(browser, dashboard)
    sign_in(page, "ann")
    page.get_by_text("Cases awaiting a first review").wait_for(timeout=WAIT)
    titles = nav_titles(page)
    assert "Admin" not in titles and "Notes" not in titles
    go(page, "Review")
    note = page.locator('[data-testid="stText"]').first.inner_text(timeout=WAIT)
    # Blind-first: the model's output is hidden until a label is committed.
    assert page.locator(".hm-expl").count() == 0 and page.locator('[data-testid="stPlotlyChart"]').count() == 0
    page.get_by_text("Your label(s), before seeing the model").wait_for(timeout=WAIT)
    shot(page, "review-blind")
    page.get_by_role("combobox", name="Your label(s), before seeing the model").click()
    page.keyboard.type("cancer")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Commit and reveal the model's output").click()
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=WAIT)
    page.get_by_label("Comment (optional)").fill("reviewed in the browser test")
    page.get_by_role("button", name="Submit review").click()
    page.get_by_text("Saved: cancer").wait_for(timeout=WAIT)
    history = page.locator('[data-testid="stTable"]').last
    history.wait_for(timeout=WAIT)
    assert "ann" in history.inner_text() and "cancer" in history.inner_text()
    assert "reviewed in the browser test" in history.inner_text()
    shot(page, "review")
    assert note  # the note was shown as text before labelling

    go(page, "Models")
    page.get_by_text("Calibration error (ECE)").first.wait_for(timeout=WAIT)
    buttons = " ".join(b.inner_text() for b in page.get_by_role("button").all())
    assert not re.search(r"Promote|Roll back|Start retraining|Start fine-tuning", buttons), buttons
    shot(page, "models-annotator")


def test_admin_pages_models_admin_and_vitals(browser, dashboard, tmp_path):
    page = open_page(browser, dashboard)
    sign_in(page, "ada")
    page.get_by_text("Cases awaiting a first review").wait_for(timeout=WAIT)
    go(page, "Models")
    page.get_by_role("button", name="Start retraining").wait_for(timeout=WAIT)
    page.get_by_role("tab", name="Calibration").click()
    shot(page, "models")
    go(page, "Admin")
    page.get_by_role("button", name="Add user").wait_for(timeout=WAIT)
    shot(page, "admin")
    go(page, "Vitals")
    vitals = tmp_path / "bedside.csv"
    vitals.write_text("timestamp,patient,pulse,BP,SpO2,resp,temp_f,AVPU,O2\n"
                      "2026-03-01 08:00,p1,72,118/76,97,16,98.6,A,air\n"
                      "2026-03-01 09:00,p1,0,121/79,101,18,99.1,A,air\n"
                      "2026-03-01 10:00,p1,128,122/80,93,24,101.3,V,yes\n", encoding="utf-8")
    page.locator('input[type="file"]').set_input_files(str(vitals))
    page.get_by_text("Latest NEWS2").wait_for(timeout=WAIT)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=WAIT)
    assert page.get_by_text("flagged as artefacts").count() >= 1
    shot(page, "vitals")
    assert page.dialogs == []


def test_a_clinician_stores_home_vitals_sees_alerts_and_opens_the_scored_summary(browser, dashboard, tmp_path):
    lines = ["timestamp,patient,pulse,BP,SpO2,glucose"]
    for day in range(1, 8):
        pulse = 128 if day == 7 else 70 + day % 3  # a sudden jump on the last morning
        lines.append(f"2026-03-0{day} 08:00,<b>h-01</b>,{pulse},{150 + day}/{95 + day % 2},97,{160 + day}")
    page = vitals_uploaded(browser, dashboard, tmp_path / "home-week.csv", lines)
    page.get_by_role("button", name=re.compile(r"Store these \d+ readings")).click()
    page.get_by_text(re.compile(r"Stored \d+ new reading\(s\) for 1 patient")).wait_for(timeout=WAIT)
    page.locator('[data-testid="stRadio"]').filter(has_text="Where were").get_by_text("home", exact=True).click()
    page.get_by_text("Alerts (").wait_for(timeout=WAIT)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=WAIT)
    assert page.get_by_text("stage 2 hypertension").count() >= 1
    assert page.locator("b", has_text="h-01").count() == 0  # the patient id is shown as text, not markup
    # The browser tests' model learned from notes only (the demo has also read summaries since 2026-11-29):
    # the page must say so.
    assert page.get_by_text("was trained on no vitals summaries").count() == 1
    shot(page, "vitals-home-week")
    page.get_by_role("button", name="Score and explain this summary").click()
    page.get_by_role("button", name="Open the scored summary as a case").click(timeout=WAIT)
    page.locator(".hm-expl").wait_for(timeout=WAIT)
    shown = page.inner_text(".hm-expl .hm-text")
    assert "systolic BP median" in shown and "glucose median" in shown
    assert page.dialogs == []
    shot(page, "vitals-summary-case")


def test_a_watchs_cuffless_blood_pressure_is_a_trend_never_a_category_and_a_crisis_estimate_asks_for_a_cuff(
        browser, dashboard, tmp_path):
    lines = ["timestamp,patient,hr,BP,resp"]  # a watch: breathing rate too, which does not make it a ward
    for day, bp in enumerate(["150/95", "160/100", "172/110", "192/124"], start=1):
        lines.append(f"2026-03-0{day} 08:00,w-01,{70 + day},{bp},15")
    page = vitals_uploaded(browser, dashboard, tmp_path / "watch.csv", lines)
    page.get_by_text("Blood pressure in these files is from a cuffless wearable").click()
    page.get_by_text("not staged (cuffless estimate: trend only)").wait_for(timeout=WAIT)
    page.get_by_role("button", name=re.compile(r"Store these \d+ readings")).click()
    page.get_by_text(re.compile(r"Stored \d+ new reading\(s\) for 1 patient")).wait_for(timeout=WAIT)
    where = page.locator('[data-testid="stRadio"]').filter(has_text="Where were")
    assert where.locator("input[type=radio]").nth(1).is_checked()  # home: no consciousness or oxygen charted
    assert page.get_by_text("measure with a validated cuff now").count() == 1
    assert page.get_by_text("Blood pressure category").count() == 0 and page.get_by_text("stage 2 hyp").count() == 0
    assert page.get_by_text("Hypertensive crisis range").count() == 0  # the cuff's red error, not for estimates
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=WAIT)
    assert page.get_by_text("(cuffless estimates: trend only)").count() >= 1  # the chart's panel titles
    shot(page, "vitals-cuffless")


def test_a_week_of_a_watchs_minute_readings_is_drawn_as_lines_and_its_walks_are_not_alerts(
        browser, dashboard, tmp_path):
    lines = ["timestamp,pulse,spo2,steps"]  # 10,080 rows: past figures.DENSE, so lines and NEWS2 over its bands
    start = time.mktime((2026, 5, 1, 0, 0, 0, 0, 0, 0))
    for minute in range(7 * 1440):
        walking = minute % 1440 in range(9 * 60, 9 * 60 + 20)  # a 20-minute walk at 09:00 every day
        moment = time.strftime("%Y-%m-%d %H:%M", time.localtime(start + 60 * minute))
        lines.append(f"{moment},{(98 if walking else 68) + minute % 3},{97 + minute % 2},{105 if walking else 0}")
    page = vitals_uploaded(browser, dashboard, tmp_path / "watch-week.csv", lines)
    page.get_by_label("Patient id for the readings without a patient column", exact=True).fill("w-07")
    page.keyboard.press("Enter")
    page.get_by_text("NEWS2 (aggregate; a ward score applied at home)").wait_for(timeout=WAIT)
    # Every walk's rise and its recovery are named as not alerted, not raised as alerts.
    not_alerted = re.compile(r"\d+ reading\(s\) not alerted \(heart-rate rises and recoveries with walks\)")
    page.get_by_text(not_alerted).wait_for(timeout=WAIT)
    assert page.get_by_text(re.compile(r"^Alerts \(")).count() == 0
    shot(page, "vitals-watch-week")


def test_a_clinician_approves_advice_on_the_patient_page_and_downloads_the_pdf_report(browser, dashboard, tmp_path):
    from healthmon.config import Settings
    from healthmon.storage.db import make_engine, session_factory
    from healthmon.ingest.vitals_csv import read_vitals_csv
    from healthmon.services.vitals import store_vitals

    lines = ["timestamp,patient,pulse,BP,SpO2,weight"]
    for day in range(1, 8):  # stage 2 at home, and 2.5 kg gained on the last morning
        lines.append(f"2026-04-0{day} 08:00,<i>p-100</i>,74,{146 + day % 3}/{91 + day % 2},97,{84.0 + 2.5 * (day == 7):.1f}")
    engine = make_engine(settings=Settings(data_dir=dashboard["data_dir"]))
    store_vitals(session_factory(engine), "cli", read_vitals_csv("\n".join(lines).encode(), "diary.csv").frame,
                 source="diary.csv", fmt="csv", report={})
    engine.dispose()
    page = open_page(browser, dashboard)
    sign_in(page, "cli")
    go(page, "Patient")
    # Type to filter, as a person would: with other tests' patients the list is long and
    # only its visible options exist in the page.
    page.get_by_text("Highest risk").wait_for(timeout=WAIT)  # the page's first run has finished
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Patient").first.click()
    page.keyboard.type("p-100")
    page.get_by_role("option", name="<i>p-100</i>").click(timeout=WAIT)
    # The setting radio is keyed per patient: while the rerun runs, the previous patient's radio
    # is still drawn beside the new one. Click once only one is left, inside the radio group
    # itself (a transient copy of the option's text can sit outside it, in the same widget).
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stRadio\"]')]"
        ".filter(r => r.innerText.includes('Setting')).length === 1", timeout=WAIT)
    page.get_by_role("radiogroup", name="Setting").get_by_text("home", exact=True).click()
    page.get_by_role("button", name=re.compile(r"Draft advice for \d+ new finding")).click()
    page.get_by_text("Weight up 2 kg within 3 days").first.wait_for(timeout=WAIT)
    assert page.locator("i", has_text="p-100").count() == 0  # the id is text, not markup
    shot(page, "patient-drafts")
    page.get_by_role("button", name="Approve", exact=True).first.click()
    page.get_by_text(re.compile(r"Approved by cli at")).first.wait_for(timeout=WAIT)
    page.get_by_role("button", name="Prepare the report").click()
    download_button = page.get_by_role("button", name="Download PDF")
    download_button.wait_for(timeout=WAIT)
    with page.expect_download(timeout=WAIT) as download:
        download_button.click()
    saved = tmp_path / "report.pdf"
    download.value.save_as(saved)
    assert saved.read_bytes().startswith(b"%PDF")
    subprocess.run(["pdftoppm", "-png", "-r", "70", "-f", "1", "-l", "1", str(saved), str(SCREENSHOTS / "patient-report")],
                   check=True)
    shot(page, "patient-approved")
    assert page.dialogs == []


def test_the_spo2_switch_follows_a_scale_recorded_elsewhere_and_the_record_form_starts_afresh(browser, dashboard):
    """What the browser shows, not only what the script returns: a keyed radio keeps the
    browser's choice unless the page writes its value through session state."""
    from healthmon.services.advice import set_spo2_scale
    from healthmon.config import Settings
    from healthmon.storage.db import make_engine, session_factory
    from healthmon.ingest.vitals_csv import read_vitals_csv
    from healthmon.services.vitals import store_vitals

    ward = "timestamp,patient,pulse,BP,SpO2,resp,temp,AVPU\n2026-03-01 08:00,p-200,118,150/92,93,23,38.4,A\n"
    engine = make_engine(settings=Settings(data_dir=dashboard["data_dir"]))
    factory = session_factory(engine)
    store_vitals(factory, "cli", read_vitals_csv(ward.encode(), "ward.csv").frame, source="ward.csv", fmt="csv",
                 report={})
    page = open_page(browser, dashboard)
    sign_in(page, "cli")
    go(page, "Patient")
    page.get_by_text("Highest risk").wait_for(timeout=WAIT)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Patient").first.click()
    page.keyboard.type("p-200")
    page.get_by_role("option", name="p-200").click(timeout=WAIT)
    switch = page.locator('[data-testid="stRadio"]').filter(has_text="SpO2 scale").first
    news2 = page.locator('[data-testid="stMetric"]').filter(has_text="NEWS2").first

    def shows(scale: int, total: str) -> None:
        switch.locator("input").nth(scale - 1).wait_for(state="attached", timeout=WAIT)
        page.wait_for_function(
            "([s, t]) => { const r = [...document.querySelectorAll('[data-testid=\"stRadio\"]')]"
            ".find(e => e.innerText.startsWith('SpO2 scale'));"
            " const m = [...document.querySelectorAll('[data-testid=\"stMetric\"]')]"
            ".find(e => e.innerText.startsWith('NEWS2'));"
            " return r && m && r.querySelectorAll('input')[s - 1].checked && m.innerText.includes(t); }",
            arg=[scale, total], timeout=WAIT)

    shows(1, "7")
    set_spo2_scale(factory, "cli", "p-200", 2, reason="hypercapnic failure")  # another session records it
    page.get_by_role("radiogroup", name="Setting").get_by_text("home", exact=True).click()
    shows(2, "5")  # the browser's switch moved with the record, and the score with it
    page.get_by_text("The SpO2 scale on record changed since this view was opened").wait_for(timeout=WAIT)
    switch.get_by_text("1", exact=True).click()  # a look at scale 1 for this view only
    shows(1, "7")
    page.get_by_role("radiogroup", name="Setting").get_by_text("hospital", exact=True).click()
    shows(1, "7")  # the view's own choice stands while the record does not change
    shot(page, "patient-spo2-view")
    # Withdrawn on this page: the switch and the form follow the new record, the reason is cleared.
    form = page.locator('[data-testid="stForm"]').filter(has_text="Record scale")
    form.locator('[data-testid="stRadio"]').get_by_text("1", exact=True).click()
    form.get_by_role("textbox").fill("target withdrawn after review")
    form.get_by_role("button", name="Record SpO2 scale").click()
    page.get_by_text("SpO2 scale: scale 1 recorded by cli").first.wait_for(timeout=WAIT)
    shows(1, "7")
    page.get_by_text("SpO2 scale: scale 1 recorded by cli").first.click()  # view and record agree: folded
    form.get_by_role("textbox").wait_for(timeout=WAIT)
    shot(page, "patient-spo2-recorded")
    assert form.get_by_role("textbox").input_value() == ""
    assert form.locator("input[type=radio]").nth(0).is_checked()
    engine.dispose()
    assert page.dialogs == []
