"""Every dashboard page through Streamlit's AppTest, signed in as each role.

The model is real but tiny (a 2-step head fine-tune of the fixture BERT); background jobs
run when the test calls the worker (HEALTHMON_WORKER=external), so each step is explicit.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re

import pytest
import streamlit as st
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from healthmon.services import accounts as auth
from healthmon.services import links
from healthmon.config import Settings
from healthmon.services.worker import Worker
from healthmon.model.classifier import Classifier
from healthmon.storage.db import make_engine, session_factory, transaction, upgrade
from healthmon.storage.models import AuditEntry, Job, NoteRow, Review
from healthmon.training.args import TrainArgs
from healthmon.training.trainer import train

from conftest import ROOT

PASSWORDS = {"ada": "ada-password-1", "cli": "cli-password-1", "ann": "ann-password-1", "bob": "bob-password-1"}
ROLES = {"ada": "admin", "cli": "clinician", "ann": "annotator", "bob": "annotator"}
HOSTILE = "glucose 240 mg/dL <script>alert(1)</script> <img src=x onerror=alert(1)> polyuria"


class Dashboard:
    """The served version, its database, and helpers to open pages as a user."""

    def __init__(self, version, settings: Settings) -> None:
        self.version, self.settings = version, settings
        self.engine = make_engine(settings=settings)
        upgrade(self.engine)
        self.factory = session_factory(self.engine)
        self._models: dict[str, Classifier] = {}

    def page(self, name: str, user: str | None = None, *, standalone: bool = False, **state) -> AppTest:
        """Open a page as ``user``: through app.py's navigation (as a browser does), or the
        page script alone (``standalone``), which is how a page must defend itself."""
        path = ROOT / "app.py" if name == "app" else next((ROOT / "pages").glob(f"*_{name}.py"))
        at = AppTest.from_file(str(ROOT / "app.py" if not standalone else path), default_timeout=180)
        if user is not None:
            at.session_state["auth_token"] = auth.sign_in(self.factory, user, PASSWORDS[user], self.settings).token
        for key, value in state.items():
            at.session_state[key] = value
        at.run()
        if name != "app" and not standalone:
            at.switch_page(str(path.relative_to(ROOT))).run()
        return at

    def run_jobs(self) -> int:
        def load(folder: str) -> Classifier:
            self._models.setdefault(folder, Classifier.from_pretrained(folder, settings=self.settings))
            return self._models[folder]

        worker, ran = Worker(self.factory, self.settings, load), 0
        while worker.run_once() is not None:
            ran += 1
        return ran

    def score(self, *texts: str) -> list[int]:
        at = self.page("Notes", "cli")
        for text in texts:
            at.text_area[0].input(text)
            at.button[0].click().run()
            assert not at.exception
            self.run_jobs()
        with transaction(self.factory) as s:
            jobs = s.scalars(select(Job).where(Job.kind == "predict").order_by(Job.id)).all()
            return [i for job in jobs for i in job.result["note_ids"]]


@pytest.fixture()
def dash(settings, notes, monkeypatch):
    version = train(notes, TrainArgs(mode="head", max_steps=2), out_dir=settings.data_dir / "served",
                    settings=settings, progress=False).version_dir
    yield from serve(version, settings, monkeypatch)


def serve(version, settings, monkeypatch):
    """A dashboard serving ``version`` with one user per role (the body of the dash fixtures)."""
    monkeypatch.setenv("HEALTHMON_ACTIVE_MODEL", str(version))
    monkeypatch.setenv("HEALTHMON_BASE_MODEL", settings.base_model)
    monkeypatch.setenv("HEALTHMON_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("HEALTHMON_MAX_LENGTH", str(settings.max_length))
    monkeypatch.setenv("HEALTHMON_WORKER", "external")
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    st.cache_data.clear()
    d = Dashboard(version, Settings())
    for name, role in ROLES.items():
        auth.add_user(d.factory, None, name, role, PASSWORDS[name])
    yield d
    d.engine.dispose()
    st.cache_resource.clear()
    st.cache_data.clear()


def _texts(at: AppTest, kind: str) -> str:
    """Every element of a kind as one string, with the markdown escaping of plain() undone."""
    return re.sub(r"\\(.)", r"\1", " ".join(str(e.value) for e in at.get(kind)))


def test_home_without_a_model_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHMON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEALTHMON_WORKER", "external")
    monkeypatch.delenv("HEALTHMON_ACTIVE_MODEL", raising=False)
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    factory = session_factory(make_engine(settings=Settings()))
    upgrade(factory.kw["bind"])
    auth.add_user(factory, None, "ada", "admin", PASSWORDS["ada"])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["auth_token"] = auth.sign_in(factory, "ada", PASSWORDS["ada"], Settings()).token
    at.run()
    assert not at.exception
    assert "python -m healthmon demo" in at.info[0].value


def _sign_in_link(at: AppTest) -> str | None:
    """Where a signed-out run sends the browser: the "Sign in" link's address (None if signed in)."""
    links = [e.proto for e in at.get("link_button") if e.proto.label == "Sign in"]
    return links[0].url if links else None


def test_a_signed_out_run_sends_the_browser_to_sign_in_and_signing_out_ends_the_session(dash):
    at = dash.page("app")
    assert _sign_in_link(at) == "/signin?next=%2F" and not at.metric and not at.exception
    signed_in = dash.page("app", "cli")
    assert _sign_in_link(signed_in) is None
    assert {m.label for m in signed_in.metric} >= {"Cases awaiting a first review", "Model version", "Test macro-F1"}
    token = signed_in.session_state["auth_token"]
    signed_in.button(key="sign_out").click().run()
    assert not signed_in.metric and "auth_token" not in signed_in.session_state
    with pytest.raises(auth.AuthError):  # the session row has ended: its cookie works nowhere
        auth.check_session(dash.factory, token, dash.settings)
    with transaction(dash.factory) as s:
        assert s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()[-1] == "auth.sign_out"


def test_an_expired_session_returns_to_sign_in_with_a_reason(dash, monkeypatch):
    at = dash.page("app", "cli")
    assert "Cases awaiting a first review" in {m.label for m in at.metric}  # signed in: the home page
    monkeypatch.setenv("HEALTHMON_SESSION_IDLE_MINUTES", "0.0001")
    st.cache_resource.clear()
    import time

    time.sleep(0.05)
    at.run()
    assert _sign_in_link(at) is not None and not at.metric
    assert "expired" in at.info[0].value


def test_a_cancel_clicked_after_the_session_ended_cancels_nothing_and_asks_to_sign_in(dash):
    # Before, the progress fragment and its Cancel button acted as the user captured when the page
    # first ran: this click cancelled the job after its owner had signed out.
    at = dash.page("Notes", "cli")
    at.text_area[0].input("Fasting glucose 131 mg/dL, on metformin.")
    at.button[0].click().run()  # queued: the worker is external and not running
    cancel = [b for b in at.button if b.label == "Cancel"]
    assert cancel and not at.exception
    auth.sign_out(dash.factory, at.session_state["auth_token"])  # e.g. from another tab
    cancel[0].click().run()
    assert not at.exception and _sign_in_link(at) is not None
    with transaction(dash.factory) as s:
        assert s.scalars(select(Job.status).where(Job.kind == "predict")).all() == ["queued"]


def test_every_page_asks_for_sign_in_and_each_role_reaches_only_its_pages(dash):
    allowed = {
        "admin": {"Notes", "Review", "Case", "Vitals", "Patient", "Models", "Admin"},
        "clinician": {"Notes", "Review", "Case", "Vitals", "Patient", "Models"},
        "annotator": {"Review", "Case", "Models"},
    }
    for page in ("Notes", "Review", "Case", "Vitals", "Patient", "Models", "Admin"):
        anonymous = dash.page(page, standalone=True)
        assert not anonymous.exception and _sign_in_link(anonymous) is not None and not anonymous.dataframe
        for user in ("ada", "cli", "ann"):
            at = dash.page(page, user, standalone=True)
            assert not at.exception, (page, user)
            blocked = "cannot open this page" in _texts(at, "error")
            assert blocked == (page not in allowed[ROLES[user]]), (page, user)


def test_notes_page_scores_in_the_background_then_shows_and_filters_the_table(dash):
    at = dash.page("Notes", "cli")
    at.text_area[0].input(HOSTILE)
    at.button[0].click().run()
    assert not at.exception
    # Queued: a progress bar, no table yet; the page itself returned at once.
    assert at.get("progress") and not at.dataframe
    assert dash.run_jobs() == 1
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == 1 and {c for c in table.columns if c.startswith("P(")} == {f"P({l})" for l in ("cancer", "diabetes", "hypertension")}
    assert "<script>" in table["excerpt"][0]  # shown as cell text, never parsed as markup
    assert "scored by served and saved for review" in _texts(at, "caption")
    # Filters narrow the table.
    at.text_input(key="filter_text").input("no such words").run()
    assert len(at.dataframe[0].value) == 0
    # An empty paste is refused with a message saying what to do.
    at.text_area[0].input("   ")
    at.button[0].click().run()
    assert "Fix" in _texts(at, "error")


def test_case_page_shows_scores_highlighted_words_trust_and_history(dash):
    (note_id,) = dash.score(HOSTILE)
    at = dash.page("Case", "cli", case_id=note_id)
    assert not at.exception
    assert at.get("plotly_chart")
    # The address names the case by an opaque id (history, proxy logs), which opens the same case.
    ref = at.query_params["case"][0] if isinstance(at.query_params["case"], list) else at.query_params["case"]
    assert ref != str(note_id) and links.resolve_ref(dash.factory, "case", ref) == str(note_id)
    highlighted = "".join(h.proto.body for h in at.get("html"))
    tags = set(re.findall(r"<\s*([a-zA-Z]+)", highlighted))
    assert tags <= {"style", "div", "span", "b"}, tags  # no script, no img: the note's markup is text
    assert HOSTILE in html.unescape(re.sub(r"<[^>]+>", "", highlighted))
    markdown = _texts(at, "markdown")
    assert "add up to the score change" in markdown and "Trust:" in markdown
    assert {b.proto.label for b in at.get("download_button")} >= {"Download explanation (HTML)", "Download explanation (JSON)"}
    assert "Nobody has reviewed this case yet" in _texts(at, "caption")
    # Switching the explained label explains that label instead.
    target = at.selectbox(key=f"case-{note_id}-target")
    other = next(label for label in target.options if label != target.value)
    target.select(other).run()
    assert not at.exception and f"toward {html.escape(other)}" in "".join(h.proto.body for h in at.get("html"))
    assert at.query_params["case"] in ([ref], ref)  # the same opaque id after a rerun


def test_review_is_blind_first_and_the_correction_lands_in_the_history(dash):
    (note_id,) = dash.score("Patient reports polyuria, glucose 240 mg/dL <b>bold</b>")
    review = dash.page("Review", "ann")
    assert not review.exception
    # Blind-first: no model output until a label is committed.
    assert not review.get("plotly_chart") and not review.get("html")
    # A single-label model: one choice per case, as radio buttons (arrow keys move between them).
    review.radio(key=f"first-{note_id}").set_value("hypertension")
    review.button[0].click().run()  # commit and reveal
    assert not review.exception and review.get("plotly_chart")
    final = review.radio(key=f"final-{note_id}")
    assert final.value == "hypertension"  # starts from the committed label
    final.set_value("diabetes")
    review.text_input(key=f"comment-{note_id}").input("polyuria and glucose point to diabetes")
    [b for b in review.button if b.label == "Submit review"][0].click().run()
    assert not review.exception
    assert "changed after the reveal" in _texts(review, "success")
    history = review.table[-1].value
    assert list(history["reviewer"]) == ["ann"] and list(history["labels"]) == ["diabetes"]
    assert list(history["comment"]) == ["polyuria and glucose point to diabetes"]
    with transaction(dash.factory) as s:
        row = s.scalar(select(Review))
        assert row.labels == ["diabetes"] and row.blind_labels == ["hypertension"]
        assert row.saw_model_output is False and row.changed_after_reveal is True
    case = dash.page("Case", "cli", case_id=note_id)
    assert "ann" in list(case.table[-1].value["reviewer"])


def test_review_warns_when_someone_else_changed_the_case_meanwhile(dash):
    (note_id,) = dash.score("BP 162/98 mmHg, amlodipine")
    review = dash.page("Review", "ann")
    review.toggle(key="blind").set_value(False).run()
    review.radio(key=f"final-{note_id}").set_value("hypertension")
    # Bob submits first, on the same version Ann is looking at.
    from healthmon.services.cases import case_detail, review_case

    bob = auth.sign_in(dash.factory, "bob", PASSWORDS["bob"], dash.settings)
    review_case(dash.factory, bob, note_id, ["cancer"], seen_version=case_detail(dash.factory, note_id).review_version,
                saw_model_output=True)
    [b for b in review.button if b.label == "Submit review"][0].click().run()
    assert not review.exception
    warning = _texts(review, "warning")
    assert "Someone else reviewed this case" in warning and "cancer" in warning


def test_admin_sees_agreement_and_adjudicates_a_disagreement(dash):
    (note_id,) = dash.score("biopsy shows adenocarcinoma; BP 150/95")
    from healthmon.services.cases import case_detail, review_case

    for name, labels in (("ann", ["cancer"]), ("bob", ["hypertension"])):
        who = auth.sign_in(dash.factory, name, PASSWORDS[name], dash.settings)
        review_case(dash.factory, who, note_id, labels, seen_version=case_detail(dash.factory, note_id).review_version,
                    saw_model_output=True)
    at = dash.page("Review", "ada")
    assert not at.exception and [t.label for t in at.tabs] == ["Queue", "Agreement", "Adjudicate", "Export"]
    assert any(m.label == "Cases waiting for adjudication" and m.value == "1" for m in at.metric)
    at.radio(key=f"adj-final-{note_id}").set_value("cancer")
    at.text_input(key=f"adj-comment-{note_id}").input("both present on imaging and cuff")
    [b for b in at.button if b.label == "Adjudicate"][0].click().run()
    assert not at.exception and "Adjudicated" in _texts(at, "success")
    assert case_detail(dash.factory, note_id).final_labels == ("cancer",)
    # An annotator has no adjudication view.
    ann = dash.page("Review", "ann")
    assert not ann.tabs


def test_an_admin_downloads_the_reviewed_labels_and_an_annotator_sees_no_export(dash):
    (note_id,) = dash.score("=HYPERLINK(\"http://evil.example\") polyuria, glucose 240 mg/dL")
    from healthmon.services.cases import case_detail, review_case

    ann = auth.sign_in(dash.factory, "ann", PASSWORDS["ann"], dash.settings)
    review_case(dash.factory, ann, note_id, ["diabetes"],
                seen_version=case_detail(dash.factory, note_id).review_version, saw_model_output=True)
    at = dash.page("Review", "ada")
    assert not at.exception and not at.get("download_button")  # prepared on request only: every export is audited
    next(b for b in at.button if b.label == "Prepare the labels export").click().run()
    assert not at.exception
    assert [b.proto.label for b in at.get("download_button")] == ["Download labels (CSV)"]
    prepared = at.session_state["labels_export"]
    assert prepared.rows == 1 and prepared.file_name == "healthmon-labels.csv"
    (row,) = csv.DictReader(io.StringIO(prepared.data.decode()))
    assert row["text"].startswith("'=HYPERLINK") and json.loads(row["reviews"])[0]["reviewer"] == "ann"
    at.radio(key="labels_format").set_value("jsonl").run()
    assert not at.get("download_button")  # the CSV prepared before is not offered as JSON Lines
    next(b for b in at.button if b.label == "Prepare the labels export").click().run()
    line = json.loads(at.session_state["labels_export"].data)
    assert line["text"].startswith("=HYPERLINK") and line["labels"] == ["diabetes"]
    assert line["reviews"][0]["reviewer"] == "ann"
    assert line["model_version"] and line["scores"]
    assert [b.proto.label for b in at.get("download_button")] == ["Download labels (JSONL)"]
    with transaction(dash.factory) as s:
        assert s.scalars(select(AuditEntry.actor).where(AuditEntry.action == "labels.export")).all() == ["ada", "ada"]
    annotator = dash.page("Review", "ann")
    assert not annotator.exception and not annotator.tabs and not annotator.get("download_button")
    assert not [b for b in annotator.button if b.label == "Prepare the labels export"]


def test_models_page_shows_evaluation_and_only_admins_promote_or_train(dash):
    at = dash.page("Models", "ada")
    assert not at.exception
    versions = at.dataframe[0].value
    assert list(versions["version"]) == ["served"] and list(versions["status"]) == ["active"]
    assert len(at.get("plotly_chart")) >= 2  # confusion, calibration (and curves when logged)
    assert {b.label for b in at.button} >= {"Start retraining", "Start fine-tuning"}
    [b for b in at.button if b.label == "Start retraining"][0].click().run()
    assert "Retraining queued" in _texts(at, "success")
    with transaction(dash.factory) as s:
        assert s.scalar(select(Job.kind).order_by(Job.id.desc())) == "retrain"
    for user in ("ann", "cli"):
        other = dash.page("Models", user)
        assert not other.exception and list(other.dataframe[0].value["version"]) == ["served"]
        labels = {b.label for b in other.button}
        assert not any(l.startswith(("Promote", "Roll back", "Start")) for l in labels), (user, labels)


def test_admin_can_promote_a_candidate_and_roll_back(dash, settings, notes):
    from healthmon.storage.repository import register_version
    from healthmon.model.card import ModelCard
    import json

    second = train(notes, TrainArgs(mode="head", max_steps=2), out_dir=settings.data_dir / "second",
                   settings=settings, progress=False).version_dir
    dash.page("Models", "ada")  # registers the served version as active
    with transaction(dash.factory) as s:
        register_version(s, "second", str(second), json.loads(ModelCard.load(second).to_json()))
    at = dash.page("Models", "ada")
    at.selectbox(key="model_version").select("second").run()
    at.checkbox[0].check()
    [b for b in at.button if b.label == "Promote second"][0].click().run()
    assert not at.exception
    statuses = dict(zip(at.dataframe[0].value["version"], at.dataframe[0].value["status"]))
    assert statuses == {"second": "active", "served": "retired"}
    at.selectbox(key="model_version").select("served").run()
    at.checkbox[0].check()
    [b for b in at.button if b.label == "Roll back to served"][0].click().run()
    statuses = dict(zip(at.dataframe[0].value["version"], at.dataframe[0].value["status"]))
    assert statuses == {"second": "retired", "served": "active"}


def test_admin_page_adds_users_changes_roles_and_shows_the_audit_log(dash):
    at = dash.page("Admin", "ada")
    assert not at.exception and set(at.dataframe[0].value["name"]) == set(ROLES)
    assert "password_hash" not in at.dataframe[0].value.columns
    add = [w for w in at.text_input if w.label == "Name"][0]
    add.input("dr-new")
    at.selectbox[0].select("clinician")
    [b for b in at.button if b.label == "Add user"][0].click().run()
    assert not at.exception and "Added dr-new (clinician)" in _texts(at, "success")
    assert "dr-new" in set(at.dataframe[0].value["name"])
    assert "Generated password for dr-new" in _texts(at, "info")
    by_label = {w.label: w for w in at.selectbox}
    by_label["User"].select("ann")
    by_label["New role"].select("clinician")
    [b for b in at.button if b.label == "Apply"][0].click().run()
    assert "ann is now clinician" in _texts(at, "success")
    log = at.dataframe[-1].value
    assert {"user.create", "user.role", "auth.sign_in"} <= set(log["action"])
    # A weak password is refused with a message, nothing stored.
    [w for w in at.text_input if w.label == "Name"][0].input("weak")
    [w for w in at.text_input if w.label.startswith("Password")][0].input("short")
    [b for b in at.button if b.label == "Add user"][0].click().run()
    assert "at least 10 characters" in _texts(at, "error")


HOSTILE_PATIENT = "<img src=x onerror=alert(1)>"
BEDSIDE = ("timestamp,patient,pulse,BP,SpO2,resp,temp_f,AVPU,O2\n"
           + "".join(f"2026-03-01 {8 + i:02d}:00,{HOSTILE_PATIENT},{hr},120/80,97,16,98.6,A,air\n"
                     for i, hr in enumerate([70, 72, 71, 70, 73, 72, 140]))
           + f"2026-03-01 15:00,{HOSTILE_PATIENT},0,118/76,101,18,99.1,A,air\n")


def _upload_bedside(at):
    at.file_uploader[0].upload("bedside.csv", BEDSIDE.encode(), "text/csv").run()
    assert not at.exception


def test_vitals_page_reads_stores_scores_and_sends_the_summary_to_the_classifier(dash):
    at = dash.page("Vitals", "cli")
    _upload_bedside(at)
    captions = _texts(at, "caption")
    assert "Read 8 row(s) of bedside.csv" in captions and "2 flagged as artefacts" in captions
    [b for b in at.button if b.label.startswith("Store these")][0].click().run()
    # 8 rows x 8 values (pulse, BP as two, SpO2, resp, temp, AVPU, O2), the 2 artefacts included
    assert "Stored 64 new reading(s) for 1 patient(s); 0 were already stored" in _texts(at, "success")
    at.run()  # the next interaction: the stored readings are now offered
    [r for r in at.radio if r.label == "Readings"][0].set_value("Stored readings").run()
    assert not at.exception and at.selectbox[0].value == HOSTILE_PATIENT
    assert [r for r in at.radio if r.label == "Where were the readings taken?"][0].value == "hospital"  # AVPU, O2
    assert {m.label for m in at.metric} >= {"Latest NEWS2", "Clinical risk", "Blood pressure (mean)"}

    def bands():
        shapes = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["shapes"]
        return {(s["y0"], s["y1"]) for s in shapes if s["type"] == "rect"}
    assert (96, 100) in bands() and (88, 92) not in bands()  # SpO2's band on scale 1
    [r for r in at.radio if r.label == "SpO2 scale"][0].set_value(2).run()
    assert (88, 92) in bands() and (96, 100) not in bands() and "SpO2 on scale 2: the prescribed 88-92 % target" in _texts(at, "caption")
    [r for r in at.radio if r.label == "SpO2 scale"][0].set_value(1).run()
    # Alert sentences are escaped markdown: compare them unescaped.
    alerts = [re.sub(r"\\(.)", r"\1", m.value) for m in at.markdown if "**] · " in m.value]
    assert any("Heart rate 140 /min" in m for m in alerts)  # the jump, naming its reading
    assert any("NEWS2 3 (low-medium band)" in m for m in alerts)
    summary = at.code[0].value
    assert summary.startswith("NEWS2 max") and "heart rate median" in summary and " 0 /min" not in summary
    # The served model learned from notes only: its score for a summary is flagged as untested.
    assert "was trained on no vitals summaries" in _texts(at, "warning")
    [b for b in at.button if b.label == "Score and explain this summary"][0].click().run()
    assert dash.run_jobs() == 1
    at.run()
    [b for b in at.button if b.label == "Open the scored summary as a case"][0].click().run()
    assert not at.exception
    with transaction(dash.factory) as s:
        note = s.scalars(select(NoteRow).where(NoteRow.source == "vitals summary")).one()
        assert note.text == summary and at.session_state["case_id"] == note.id


def test_the_vitals_page_scores_the_readings_once_per_choice_not_on_every_click(dash, monkeypatch):
    """Every click reruns the page, and a month of minute readings takes seconds to score and draw."""
    import healthmon.vitals.assess as assess

    real, calls = assess.assess_patient, []

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(assess, "assess_patient", counted)
    at = dash.page("Vitals", "cli")
    _upload_bedside(at)
    assert len(calls) == 1
    at.run()  # a rerun with nothing changed
    scale = [r for r in at.radio if r.label == "SpO2 scale"][0]
    scale.set_value(2).run()  # another scale: scored again
    [r for r in at.radio if r.label == "SpO2 scale"][0].set_value(1).run()  # back: kept from the first time
    assert not at.exception and [k["spo2_scale"] for k in calls] == [1, 2]
    # Every other choice that changes the result is part of the key: each is scored once.
    [s for s in at.selectbox if s.label.startswith("Look-back")][0].set_value("1h").run()
    [r for r in at.radio if r.label == "Where were the readings taken?"][0].set_value("home").run()
    [s for s in at.selectbox if s.label.startswith("Summary for the classifier")][0].set_value("everything").run()
    [c for c in at.checkbox if c.label.startswith("Blood pressure in these files")][0].check().run()
    assert not at.exception and len(calls) == 6
    assert (calls[2]["lookback"], calls[3]["setting"], calls[4]["summary_window"]) == ("1h", "home", None)
    assert "cuffless estimate" in _texts(at, "caption")  # the last one scored the marked readings


def test_each_upload_asks_for_its_own_patient_id_and_cuffless_blood_pressure_is_stored_as_trend_only(dash):
    from healthmon.vitals.assess import cuffless_rows
    from healthmon.services.vitals import load_vitals

    at = dash.page("Vitals", "cli")
    watch = b"timestamp,hr,bp\n2026-03-01 08:00,72,192/124\n2026-03-02 08:00,74,150/95\n"
    at.file_uploader[0].upload("watch.csv", watch, "text/csv").run()
    assert not [b for b in at.button if b.label.startswith("Store these")]  # no patient column: an id first
    [t for t in at.text_input if t.label.startswith("Patient id")][0].input("P-A").run()
    [c for c in at.checkbox if c.label.startswith("Blood pressure in these files")][0].check().run()
    assert not at.exception
    shown = re.sub(r"\\(.)", r"\1", _texts(at, "markdown"))
    assert "**Blood pressure:** not staged (cuffless estimate: trend only)" in shown
    assert "Blood pressure category" not in shown
    assert "measure with a validated cuff now" in _texts(at, "warning") and not _texts(at, "error")
    [b for b in at.button if b.label.startswith("Store these")][0].click().run()
    assert cuffless_rows(load_vitals(dash.factory, "P-A")).sum() == 4  # two readings' systolic and diastolic
    # Another person's export without a patient column is asked for its own id, and is not cuffless.
    at.file_uploader[0].upload("other.csv", b"timestamp,hr,bp\n2026-03-01 08:00,60,120/80\n", "text/csv").run()
    assert [t for t in at.text_input if t.label.startswith("Patient id")][0].value == ""
    assert not [b for b in at.button if b.label.startswith("Store these")]
    assert not [c for c in at.checkbox if c.label.startswith("Blood pressure in these files")][0].value
    # Stored, the readings stay trend-only when opened again.
    stored = dash.page("Vitals", "cli")
    [r for r in stored.radio if r.label == "Readings"][0].set_value("Stored readings").run()
    stored.selectbox[0].set_value("P-A").run()
    assert "Blood pressure: 2 cuffless estimate(s), trend only: never scored or staged" in _texts(stored, "caption")
    assert "**Blood pressure:** not staged" in re.sub(r"\\(.)", r"\1", _texts(stored, "markdown"))


def test_an_id_column_counting_the_rows_is_refused_until_the_clinician_says_whose_readings_they_are(dash):
    at = dash.page("Vitals", "cli")
    rows = "".join(f"{n},2026-03-01 {7 + n:02d}:00,{70 + n}\n" for n in range(1, 6))
    at.file_uploader[0].upload("export.csv", ("id,timestamp,hr\n" + rows).encode(), "text/csv").run()
    assert "whose values count the rows" in _texts(at, "error") and not at.metric
    [t for t in at.text_input if t.label.startswith("Patient id")][0].input("P-9").run()
    assert not at.exception and not _texts(at, "error") and at.selectbox[0].value == "P-9"
    assert "not read as the patient" in _texts(at, "caption")


def test_ambiguous_dates_on_the_vitals_page_are_read_in_the_order_the_clinician_picks(dash):
    at = dash.page("Vitals", "cli")
    assert not [r for r in at.radio if r.label.startswith("Dates such as")]
    at.file_uploader[0].upload("home.csv", b"date,patient,pulse\n03/04/2026,p1,70\n05/04/2026,p1,72\n",
                               "text/csv").run()
    assert not at.exception
    # A pulse alone is not ward charting: NEWS2 is preset to home, with its out-of-setting caveat.
    assert [r for r in at.radio if r.label == "Where were the readings taken?"][0].value == "home"
    assert "outside the setting it was validated in" in _texts(at, "warning")
    order = [r for r in at.radio if r.label.startswith("Dates such as")][0]
    assert order.value is None and "read as day/month (the default); confirm the order" in _texts(at, "caption")
    assert "everything below reads them as day/month until you choose above" in _texts(at, "warning")
    scored_at = [m for m in at.metric if m.label == "Scored at (UTC)"]
    assert scored_at[0].value == "05 Apr 00:00"  # 5 April, the later of 3 and 5 April
    # A stored date is part of the reading: nothing is stored until someone says the order.
    store = [b for b in at.button if b.label.startswith("Store these")][0]
    assert store.disabled
    order.set_value("month/day").run()
    assert not at.exception and "read as month/day; confirm the order" in _texts(at, "caption")
    assert "until you choose above" not in _texts(at, "warning")
    assert [m for m in at.metric if m.label == "Scored at (UTC)"][0].value == "04 May 00:00"  # 4 March and 4 May
    assert not [b for b in at.button if b.label.startswith("Store these")][0].disabled
    # Another file does not inherit this one's order.
    at.file_uploader[0].upload("other.csv", b"date,patient,pulse\n03/04/2026,p2,70\n", "text/csv").run()
    assert [r for r in at.radio if r.label.startswith("Dates such as")][0].value is None


def test_the_vitals_page_says_how_many_summaries_the_served_model_learned_from(dash, notes, monkeypatch):
    import json

    from healthmon.demo import synthetic_vitals_notes

    summaries = synthetic_vitals_notes(40, seed=5)
    version = train(list(notes) + summaries, TrainArgs(mode="head", max_steps=2),
                    out_dir=dash.settings.data_dir / "with-summaries", settings=dash.settings,
                    progress=False).version_dir
    monkeypatch.setenv("HEALTHMON_ACTIVE_MODEL", str(version))
    st.cache_resource.clear()
    st.cache_data.clear()
    # Counted here from the stored training split (the stratified split keeps about 70 %), not
    # through the page's own helper.
    summary_texts = {note.text for note in summaries}
    lines = (version / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    learned = sum(json.loads(line)["text"] in summary_texts for line in lines)
    assert 0 < learned < len(summaries)

    at = dash.page("Vitals", "cli")
    _upload_bedside(at)
    assert not at.exception
    assert f"The served model ({version.name}) was trained on {learned} vitals summaries." in _texts(at, "caption")
    assert "was trained on no vitals summaries" not in _texts(at, "warning")


def test_a_fhir_bundle_on_the_vitals_page_sends_its_notes_to_scoring(dash):
    import base64
    import json

    note = "Polyuria and thirst; glucose 240 mg/dL."
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p9"},
                      "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                      "effectiveDateTime": "2026-03-01T08:00:00Z",
                      "valueQuantity": {"value": 88, "unit": "/min", "system": "http://unitsofmeasure.org",
                                        "code": "/min"}}},
        {"resource": {"resourceType": "DocumentReference", "id": "d1", "status": "current",
                      "subject": {"reference": "Patient/p9"}, "content": [{"attachment": {
                          "contentType": "text/plain", "data": base64.b64encode(note.encode()).decode()}}]}}]}
    at = dash.page("Vitals", "cli")
    at.file_uploader[0].upload("p9.json", json.dumps(bundle).encode(), "application/json").run()
    assert not at.exception and "1 note(s) came with this file" in _texts(at, "info")
    assert "heart rate median 88 /min, normal" in at.code[0].value
    [b for b in at.button if b.label == "Score these notes on the Notes page"][0].click().run()
    assert not at.exception and dash.run_jobs() == 1
    with transaction(dash.factory) as s:
        assert s.scalars(select(NoteRow.text).where(NoteRow.external_id == "d1")).one() == note


def test_blind_label_survives_a_concurrent_review_and_the_submit_is_refused_with_a_message(dash):
    (note_id,) = dash.score("polyuria, glucose 240 mg/dL")
    review = dash.page("Review", "ann")
    review.radio(key=f"first-{note_id}").set_value("diabetes")
    review.button[0].click().run()  # committed blind, output revealed
    from healthmon.services.cases import case_detail, review_case

    bob = auth.sign_in(dash.factory, "bob", PASSWORDS["bob"], dash.settings)
    review_case(dash.factory, bob, note_id, ["cancer"], seen_version=case_detail(dash.factory, note_id).review_version,
                saw_model_output=True)
    review.run()  # any rerun: the committed blind label must still be there, not the blind form again
    assert review.radio(key=f"final-{note_id}").value == "diabetes"
    [b for b in review.button if b.label == "Submit review"][0].click().run()
    assert "Someone else reviewed this case" in _texts(review, "warning")
    with transaction(dash.factory) as s:
        assert [r.labels for r in s.scalars(select(Review).order_by(Review.id))] == [["cancer"]]


def test_adjudication_is_refused_when_a_review_lands_meanwhile(dash):
    (note_id,) = dash.score("biopsy; BP 150/95")
    from healthmon.services.cases import case_detail, review_case

    def review_as(name, labels):
        who = auth.sign_in(dash.factory, name, PASSWORDS[name], dash.settings)
        review_case(dash.factory, who, note_id, labels, seen_version=case_detail(dash.factory, note_id).review_version,
                    saw_model_output=True)

    review_as("ann", ["cancer"])
    review_as("bob", ["hypertension"])
    at = dash.page("Review", "ada")
    at.radio(key=f"adj-final-{note_id}").set_value("cancer")
    review_as("cli", ["hypertension"])  # lands while the admin decides
    [b for b in at.button if b.label == "Adjudicate"][0].click().run()
    assert "Someone else reviewed this case" in _texts(at, "warning")
    assert case_detail(dash.factory, note_id).final_labels == ("hypertension",)


def test_hostile_comments_and_names_in_the_history_are_shown_as_text(dash):
    from healthmon.services.cases import case_detail, review_case
    from healthmon.ui.components import plain

    (note_id,) = dash.score("amlodipine started")
    comment = "![x](http://attacker.example/x.png) **urgent** <b>x</b> [click](http://attacker.example)"
    ann = auth.sign_in(dash.factory, "ann", PASSWORDS["ann"], dash.settings)
    review_case(dash.factory, ann, note_id, ["hypertension"], seen_version=0, saw_model_output=True, comment=comment)
    at = dash.page("Case", "cli", case_id=note_id)
    cell = at.table[-1].value["comment"].iloc[0]
    assert cell == plain(comment)  # every markdown character escaped: no image loads, no link renders
    assert case_detail(dash.factory, note_id).history[0]["comment"] == comment  # stored as typed


def test_patient_page_drafts_advice_takes_each_decision_and_prepares_the_report(dash):
    from healthmon.storage.repository import save_predictions
    from healthmon.services.versions import ensure_registered
    from healthmon.types import Note, Prediction
    from healthmon.ingest.vitals_csv import read_vitals_csv
    from healthmon.services.vitals import store_vitals

    patient = "P-<b>1</b>"
    with transaction(dash.factory) as s:
        version = ensure_registered(s, dash.version)
        save_predictions(s, [Note(text=HOSTILE, note_id="n1", patient_id=patient)],
                         [Prediction({"diabetes": 0.91, "hypertension": 0.05, "cancer": 0.04}, ("diabetes",),
                                     version.name, "single_label_classification")], version)
    ward = f"timestamp,patient,pulse,BP,SpO2,resp,temp,AVPU\n2026-03-01 08:00,{patient},118,150/92,93,23,38.4,A\n"
    store_vitals(dash.factory, "cli", read_vitals_csv(ward.encode(), "ward.csv").frame, source="ward.csv", fmt="csv",
                 report={})
    at = dash.page("Patient", "cli")
    assert not at.exception and at.selectbox[0].value == patient
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["NEWS2"] == "7" and metrics["Highest risk"] == "91%" and metrics["Blood pressure"] == "150/92 mmHg"
    assert [r for r in at.radio if r.label == "Setting"][0].value == "hospital"  # consciousness charted: a ward
    assert not [m for m in at.markdown if m.value.startswith(":red[")]  # looking drafts nothing
    [b for b in at.button if b.label.startswith("Draft advice for")][0].click().run()
    titles = [re.sub(r"\\(.)", r"\1", m.value) for m in at.markdown if m.value.startswith(":")]
    assert titles[0].startswith(":red[**emergency**] **NEWS2 7 or more") and any("Diabetes suggested" in t for t in titles)
    assert "Draft: awaiting your decision" in titles[0]
    approve = [b for b in at.button if b.label == "Approve"]
    approve[0].click().run()
    assert not at.exception
    first = [m.value for m in at.markdown if m.value.startswith(":red[")][0]
    assert "Approved" in first and "Draft" not in first
    # Dismissing without a reason is refused with a message, and the draft stays a draft.
    [b for b in at.button if b.label == "Dismiss"][0].click().run()
    assert "a reason for dismissing the advice" in _texts(at, "error")
    # An edit: the text differs from the rule's, so only "Approve edited" is enabled.
    at.text_area[0].input("Repeat the HbA1c in 2 weeks.").run()
    [b for b in at.button if b.label == "Approve edited" and not b.disabled][0].click().run()
    assert "Repeat the HbA1c in 2 weeks" in _texts(at, "markdown")
    [b for b in at.button if b.label == "Prepare the report"][0].click().run()
    assert not at.exception
    prepared = at.session_state["patient_report"]
    assert prepared[0] == patient and prepared[2].startswith(b"%PDF")
    page = prepared[1].decode()
    assert "P-&lt;b&gt;1&lt;/b&gt;" in page and "<b>1</b>" not in page  # a hostile patient id, escaped
    assert "Repeat the HbA1c in 2 weeks." in page and "NEWS2 7 or more" in page
    assert {b.proto.label for b in at.get("download_button")} >= {"Download PDF", "Download HTML"}
    # SpO2 93 % on air scores 2 on scale 1 and 0 on scale 2; the report prepared on scale 1 is
    # then out of date, and is no longer offered.
    [r for r in at.radio if r.label == "SpO2 scale"][0].set_value(2).run()
    assert not at.exception and {m.label: m.value for m in at.metric}["NEWS2"] == "5"
    assert "medium band, partial score, SpO2 scale 2" in _texts(at, "caption")  # air or oxygen not charted
    assert "rule(s) fire on these findings (hospital setting, SpO2 scale 2)" in _texts(at, "markdown")
    # A scale chosen for this view only: its findings are shown, not drafted.
    assert "Advice resting on NEWS2 is drafted on the SpO2 scale on record (scale 1); this view scores scale 2." in _texts(at, "info")
    assert not [b for b in at.button if b.label.startswith("Draft advice for")]
    assert not [b for b in at.get("download_button") if b.proto.label.startswith("Download")]
    assert "no prescribed target on record; chosen for this view" in _texts(at, "caption")
    with transaction(dash.factory) as s:
        actions = s.scalars(select(AuditEntry.action).where(AuditEntry.entity == "advice")).all()
        assert actions.count("advice.approved") == 1 and actions.count("advice.edited") == 1

    # Recording the target: scale 2 needs a reason; once recorded, every page opens on it.
    [r for r in at.radio if r.label == "Record scale"][0].set_value(2)
    [b for b in at.button if b.label == "Record SpO2 scale"][0].click().run()
    assert "the reason for a prescribed 88-92 % target" in _texts(at, "error")
    [r for r in at.radio if r.label == "Record scale"][0].set_value(2)
    [t for t in at.text_input if t.label.startswith("Reason")][0].input("hypercapnic failure <i>x</i>")
    [b for b in at.button if b.label == "Record SpO2 scale"][0].click().run()
    assert not at.exception and not _texts(at, "error")
    fresh = dash.page("Patient", "cli")
    assert [r for r in fresh.radio if r.label == "SpO2 scale"][0].value == 2
    assert {m.label: m.value for m in fresh.metric}["NEWS2"] == "5"
    assert ": hypercapnic failure <i>x</i>." in _texts(fresh, "caption")
    assert any(r"hypercapnic failure \<i\>x\</i\>" in c.value for c in fresh.caption)  # escaped, not markup
    vitals = dash.page("Vitals", "cli")
    [r for r in vitals.radio if r.label == "Readings"][0].set_value("Stored readings").run()
    vitals.selectbox[0].set_value(patient).run()
    assert [r for r in vitals.radio if r.label == "SpO2 scale"][0].value == 2
    assert "SpO2 scale 2: scale 2 recorded by cli on " in _texts(vitals, "caption")
    assert [m for m in vitals.metric if m.label == "Latest NEWS2"][0].value == "5"
    # Withdrawn on the page: scale 1 again, and the scale-2 reason is not carried into the new record.
    [r for r in fresh.radio if r.label == "Record scale"][0].set_value(1)
    [b for b in fresh.button if b.label == "Record SpO2 scale"][0].click().run()
    assert not fresh.exception and {m.label: m.value for m in fresh.metric}["NEWS2"] == "7"
    assert [r for r in fresh.radio if r.label == "SpO2 scale"][0].value == 1
    assert "scale 1 recorded by cli on " in _texts(fresh, "caption") and "<i>x" not in _texts(fresh, "caption")
    # The Vitals page open in another session follows the new record on its next rerun, and says so.
    vitals.run()
    assert [r for r in vitals.radio if r.label == "SpO2 scale"][0].value == 1
    assert [m for m in vitals.metric if m.label == "Latest NEWS2"][0].value == "7"
    assert "The SpO2 scale on record changed since this view was opened: now scale 1 recorded by cli" in _texts(vitals, "info")
    # A scale chosen for this view stands while the record does not change.
    [r for r in vitals.radio if r.label == "SpO2 scale"][0].set_value(2).run()
    vitals.run()
    assert [r for r in vitals.radio if r.label == "SpO2 scale"][0].value == 2 and not _texts(vitals, "info")

    # A watch's readings: the setting is preset per patient, and home here does not carry over.
    watch = "timestamp,patient,hr,SpO2\n2026-03-01 08:00,P-watch,96,95\n2026-03-01 09:00,P-watch,98,95\n"
    store_vitals(dash.factory, "cli", read_vitals_csv(watch.encode(), "watch.csv").frame, source="watch.csv",
                 fmt="csv", report={})
    both = dash.page("Patient", "cli")
    both.selectbox[0].set_value("P-watch").run()
    assert not both.exception and [r for r in both.radio if r.label == "Setting"][0].value == "home"
    assert "NEWS2 is an adult acute-care score; here it is applied to home readings" in _texts(both, "warning")
    assert "partial score" in _texts(both, "caption")  # no consciousness, oxygen, respiration, temperature, BP
    both.selectbox[0].set_value(patient).run()
    assert [r for r in both.radio if r.label == "Setting"][0].value == "hospital"


def test_a_patient_link_is_an_opaque_id_and_an_unknown_one_never_opens_another_patient(dash):
    from healthmon.ingest.vitals_csv import read_vitals_csv
    from healthmon.services.vitals import store_vitals

    for patient in ("MRN-0001", "MRN-0002"):
        rows = f"timestamp,patient,pulse,BP,SpO2,resp,temp,AVPU\n2026-03-01 08:00,{patient},80,120/80,97,14,36.8,A\n"
        store_vitals(dash.factory, "cli", read_vitals_csv(rows.encode(), "w.csv").frame, source="w.csv", fmt="csv",
                     report={})
    second = links.link_ref(dash.factory, "patient", "MRN-0002")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["auth_token"] = auth.sign_in(dash.factory, "cli", PASSWORDS["cli"], dash.settings).token
    at.query_params["patient"] = second
    at.run()
    at.switch_page("pages/7_Patient.py").run()
    assert not at.exception and at.selectbox[0].value == "MRN-0002"  # the link opens that patient
    assert "MRN" not in str(at.query_params["patient"])
    # An old-style link (the identifier itself) or a foreign one: a warning and no patient chosen.
    stale = AppTest.from_file(str(ROOT / "pages" / "7_Patient.py"), default_timeout=120)
    stale.session_state["auth_token"] = auth.sign_in(dash.factory, "cli", PASSWORDS["cli"], dash.settings).token
    stale.query_params["patient"] = "MRN-0001"
    stale.run()
    assert not stale.exception and "not known here" in _texts(stale, "warning")
    assert stale.selectbox[0].value is None and not stale.metric
