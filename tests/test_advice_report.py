"""Advice drafts and decisions (SQLite and PostgreSQL), the case report (HTML, PDF rendered to PNG)
and the FHIR export, on one stored patient with notes and vitals.

The model is real but tiny (a 2-step head fine-tune of the fixture BERT), so the report's
highlighted excerpt is computed by the version that scored the note. The probabilities
themselves are set by hand at the storage seam, so the rules fire on known values.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from healthmon.services import accounts as auth
from healthmon.advice import AdviceError, evaluate, load_rules
from healthmon.services.patients import list_patients, patient_snapshot
from healthmon.services.advice import decide_advice, draft_advice, patient_advice, set_demographics
from healthmon.services.accounts import PermissionDenied
from healthmon.config import Settings
from healthmon.escaping import escape_markdown
from healthmon.model.classifier import Classifier
from healthmon.report import render_html, render_pdf
from healthmon.services.reports import build_report
from healthmon.report.fhir import fhir_bundle, fhir_json
from healthmon.storage.db import session_factory, transaction, upgrade
from healthmon.storage.models import AuditEntry
from healthmon.storage.repository import register_version, save_predictions
from healthmon.training.args import TrainArgs
from healthmon.training.trainer import train
from healthmon.types import Note, Prediction
from healthmon.ingest.vitals_csv import read_vitals_csv
from healthmon.services.vitals import store_vitals
from conftest import make_notes

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = "<script>alert(1)</script> <img src=x onerror=alert(2)>"
NOTES = [
    f"Seen today. Reports polyuria and thirst, HbA1c 8.9%, started metformin. {HOSTILE} Review in 4 weeks.",
    "Follow-up: headache, BP 162/98 mmHg on amlodipine; no chest pain.",
]
PROBABILITIES = [
    {"diabetes": 0.83, "hypertension": 0.12, "cancer": 0.05},
    {"diabetes": 0.21, "hypertension": 0.64, "cancer": 0.03},
]
# A week of home-style readings at stage 2 on average, one of them above 180, then a sick last evening.
VITALS = "timestamp,patient,pulse,BP,SpO2,resp,temp,AVPU\n" + "".join(
    f"2026-03-0{day} 08:00,P-7,78,{sbp}/{dbp},97,16,36.8,A\n"
    for day, (sbp, dbp) in enumerate([(150, 94), (148, 92), (186, 104), (152, 95), (149, 93)], start=1)
) + "2026-03-05 20:00,P-7,118,150/92,93,23,38.4,A\n"


@pytest.fixture(scope="module")
def tiny_version(tmp_path_factory, tiny_base_model):
    settings = Settings(data_dir=tmp_path_factory.mktemp("advice"), base_model=str(tiny_base_model), max_length=64, seed=7)
    result = train(make_notes(), TrainArgs(mode="head", max_steps=2), out_dir=settings.data_dir / "v",
                   settings=settings, progress=False)
    return result.version_dir, settings


@pytest.fixture()
def db(engine, tiny_version):
    version_dir, _ = tiny_version
    upgrade(engine)
    factory = session_factory(engine)
    card = json.loads((version_dir / "card.json").read_text())
    auth.add_user(factory, None, "dr-lee", "clinician", "dr-lee-password-1")
    auth.add_user(factory, None, "ann", "annotator", "ann-password-1")
    with transaction(factory) as s:
        version = register_version(s, version_dir.name, str(version_dir), card, status="active")
        notes = [Note(text=t, note_id=f"n{i}", patient_id="P-7", source="upload") for i, t in enumerate(NOTES)]
        predictions = [Prediction(p, tuple(k for k, v in p.items() if v >= 0.5), version_dir.name,
                                  "multi_label_classification") for p in PROBABILITIES]
        save_predictions(s, notes, predictions, version)
    readings = read_vitals_csv(VITALS.encode(), "home.csv")
    store_vitals(factory, "dr-lee", readings.frame, source="home.csv", fmt="csv", report={})
    return factory


def _signed_in(db, name):
    return auth.sign_in(db, name, f"{name}-password-1", Settings())


def _loader(tiny_version):
    _, settings = tiny_version
    return lambda folder: Classifier.from_pretrained(folder, settings=settings, precision="fp32")


def test_the_snapshot_gathers_scores_vitals_and_demographics_into_the_facts_the_rules_read(db):
    clinician = _signed_in(db, "dr-lee")
    assert list_patients(db) == ["P-7"]
    set_demographics(db, clinician, "P-7", birth_date=date(1961, 5, 2), sex="female")
    snapshot = patient_snapshot(db, "P-7", now=datetime(2026, 3, 6, tzinfo=timezone.utc))
    facts = snapshot.findings
    assert facts.risk == {"diabetes": 0.83, "hypertension": 0.64, "cancer": 0.05}  # the highest per label
    assert facts.risk_source["diabetes"].startswith(f"case #{snapshot.cases[-1].note_id}, model ")
    assert (facts.age, facts.sex) == (64.0, "female")  # 64 until 2 May 2026
    assert facts.bp_category == "stage 2 hypertension" and facts.bp_crisis is True
    assert (facts.bp_systolic, facts.bp_diastolic) == pytest.approx((155.8333, 95.0), abs=1e-3)
    # Last evening: HR 118 (2), SpO2 93 (2), RR 23 (2), temperature 38.4 (1), systolic 150 (0) on air, alert (0).
    assert (facts.news2_total, facts.news2_band) == (7, "high")
    fired = [a.rule.id for a in evaluate(load_rules(), facts).advice]
    assert fired == ["news2-high", "bp-crisis", "diabetes-risk-test", "diabetes-screen-age", "colorectal-screen-age",
                     "breast-screen-age"]
    with pytest.raises(AdviceError, match="no patient 'P-8'"):
        patient_snapshot(db, "P-8")


def test_drafts_are_stored_once_and_each_decision_is_kept_with_who_and_when_and_audited(db):
    clinician, annotator = _signed_in(db, "dr-lee"), _signed_in(db, "ann")
    snapshot = patient_snapshot(db, "P-7")
    result = evaluate(load_rules(), snapshot.findings)
    items = draft_advice(db, clinician, snapshot, result)
    assert len(items) == len(result.advice) == len(draft_advice(db, clinician, snapshot, result))  # once
    by_rule = {i.rule_id: i for i in items}
    diabetes = by_rule["diabetes-risk-test"]
    assert diabetes.status == "draft" and diabetes.note_id == snapshot.cases[-1].note_id
    assert diabetes.triggers[0]["text"].startswith("risk.diabetes = 0.83 (>= 0.5): case #")

    with pytest.raises(PermissionDenied):
        decide_advice(db, annotator, diabetes.id, "approved", seen_version=0)
    with pytest.raises(AdviceError, match="a reason for dismissing"):
        decide_advice(db, clinician, diabetes.id, "dismissed", seen_version=0)
    with pytest.raises(AdviceError, match="the edited advice text"):
        decide_advice(db, clinician, diabetes.id, "edited", seen_version=0, text="  ")
    approved = decide_advice(db, clinician, by_rule["news2-high"].id, "approved", seen_version=0)
    edited = decide_advice(db, clinician, diabetes.id, "edited", seen_version=0, text="HbA1c and fasting glucose this week.")
    decide_advice(db, clinician, by_rule["bp-crisis"].id, "dismissed", seen_version=0,
                  note="Single reading after exercise; repeat readings normal.")
    assert (approved.status, approved.decided_by, approved.version) == ("approved", "dr-lee", 1)
    assert edited.text == "HbA1c and fasting glucose this week." and edited.draft_text.startswith("The notes suggest diabetes")
    with pytest.raises(AdviceError, match="version 1: it was edited by dr-lee meanwhile"):
        decide_advice(db, clinician, diabetes.id, "approved", seen_version=0)  # a stale view never overwrites
    with pytest.raises(AdviceError, match="it is already edited by dr-lee"):
        decide_advice(db, clinician, diabetes.id, "dismissed", seen_version=1, note="changed my mind")  # nor a fresh one
    with pytest.raises(AdviceError, match="an active clinician or admin"):
        decide_advice(db, "ann", diabetes.id, "approved", seen_version=1)  # the CLI names a person with the right role
    assert {a.rule_id for a in patient_advice(db, "P-7", statuses=("approved", "edited"))} == {"news2-high",
                                                                                              "diabetes-risk-test"}
    with transaction(db) as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.entity == "advice").order_by(AuditEntry.id)).all()
        actions = [e.action for e in entries]
        edit = next(e for e in entries if e.action == "advice.edited")
        assert actions.count("advice.draft") == len(result.advice)
        assert {"advice.approved", "advice.edited", "advice.dismissed"} <= set(actions)
        assert edit.actor == "dr-lee" and edit.before["status"] == "draft"
        assert edit.after["text"] == "HbA1c and fasting glucose this week." and edit.after["patient"] == "P-7"


def _decided_report(db, tiny_version):
    clinician = _signed_in(db, "dr-lee")
    set_demographics(db, clinician, "P-7", birth_date=date(1961, 5, 2), sex="female")
    snapshot = patient_snapshot(db, "P-7")
    items = {i.rule_id: i for i in draft_advice(db, clinician, snapshot, evaluate(load_rules(), snapshot.findings))}
    decide_advice(db, clinician, items["news2-high"].id, "approved", seen_version=0)
    decide_advice(db, clinician, items["diabetes-risk-test"].id, "edited", seen_version=0,
                  text="HbA1c and fasting glucose this week <b>please</b>.")
    decide_advice(db, clinician, items["bp-crisis"].id, "dismissed", seen_version=0, note="cuff too small")
    return build_report(db, "P-7", generated_by="dr-lee", load_classifier=_loader(tiny_version),
                        now=datetime(2026, 3, 6, 9, 30, tzinfo=timezone.utc))


def test_the_html_report_holds_scores_excerpts_vitals_and_only_approved_advice_with_patient_text_escaped(db, tiny_version):
    from healthmon.storage.models import User
    from healthmon.storage.repository import submit_review

    hypertension_case = patient_snapshot(db, "P-7").cases[0]
    with transaction(db) as s:
        submit_review(s, hypertension_case.note_id, s.scalar(select(User).where(User.name == "ann")), ["hypertension"],
                      seen_version=0, saw_model_output=True, comment="<b>agree</b>")
    report = _decided_report(db, tiny_version)
    page = render_html(report)
    assert "Case report: patient P-7" in page and "64 (birth date)" in page
    assert "<script>" not in page and "<img src=x" not in page and "onerror=alert" not in page.replace(
        "onerror=alert(2)&gt;", "")
    shown = html.unescape(re.sub(r"<[^>]+>", "", page.split("<body>")[1]))
    assert HOSTILE in shown  # the hostile note is there, as text
    assert "&lt;b&gt;please&lt;/b&gt;" in page  # so is a clinician's edit
    assert page.count('class="hm-w') > 10  # the highlighted excerpt, one span per word
    assert "<svg" in page and "NEWS2" in page
    assert "NEWS2 7 or more: emergency assessment" in page and "news2.total = 7 (&gt;= 7)" in page
    assert "Edited by the clinician" in page and "Approved by dr-lee" in page
    assert "cuff too small" in page  # dismissed advice is listed with its reason
    assert "draft(s) await a clinician" in page  # the other drafts are counted, not shown as advice
    assert "Blood pressure above 180/120" not in page.split("Dismissed")[0].split("Advice approved")[1]
    assert report.snapshot.cases[0].version in page
    assert re.search(r"ann \(review\): hypertension, \d{4}-\d\d-\d\d \d\d:\d\d UTC: “&lt;b&gt;agree&lt;/b&gt;”", page)


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (Debian poppler-utils) not installed: make setup")
def test_the_pdf_report_renders_to_pages_that_read_as_the_html(db, tiny_version, tmp_path):
    report = _decided_report(db, tiny_version)
    pdf = render_pdf(report)
    assert pdf.startswith(b"%PDF")
    (tmp_path / "report.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(tmp_path / "report.pdf"), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert 1 <= len(pages) <= 6 and all(p.stat().st_size > 10_000 for p in pages)
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "report.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    # pdftotext puts a space between the excerpt's word boxes; the note's own characters are all there, as text.
    assert "Case report: patient P-7" in text and "<script>alert(1)</script>" in re.sub(r"\s", "", text)
    assert "NEWS2 7 or more: emergency assessment" in text and "Approved by dr-lee" in text
    shots = ROOT / "data" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    for page in pages:  # kept for a person to look at
        shutil.copy(page, shots / f"report-{page.name}")


def test_fhir_export_validates_round_trips_and_reads_back_through_the_ingest(db):
    from fhir.resources.R4B import get_fhir_model_class

    from healthmon.ingest.fhir import read_fhir_bytes

    snapshot = patient_snapshot(db, "P-7")
    bundle = fhir_bundle(snapshot)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == ["Patient", "RiskAssessment", "RiskAssessment", "Observation"]
    parsed = get_fhir_model_class("Bundle").model_validate_json(fhir_json(snapshot))
    assert json.loads(parsed.model_dump_json(exclude_none=True)) == bundle  # nothing lost or altered
    risk = {p["outcome"]["text"]: p["probabilityDecimal"] for p in bundle["entry"][2]["resource"]["prediction"]}
    assert risk == {label: 100 * p for label, p in PROBABILITIES[0].items()}  # R4: decimal probabilities are percentages
    assert bundle["entry"][2]["resource"]["status"] == "preliminary"
    news2 = bundle["entry"][3]["resource"]
    assert news2["valueInteger"] == 7 and news2["code"]["coding"][0]["code"] == "1104051000000101"
    assert sum(c["valueInteger"] for c in news2["component"]) == 7
    read = read_fhir_bytes({"export.json": fhir_json(snapshot).encode()})
    assert read.report.resources_rejected == 0
    assert read.report.resources_read == {"Patient": 1, "RiskAssessment": 2, "Observation": 1}
    assert fhir_bundle(snapshot) == bundle  # same ids on a second export


def test_on_spo2_scale_2_the_report_and_its_fhir_export_score_and_draw_the_prescribed_target(db, monkeypatch):
    from matplotlib.axes import Axes

    drawn = []
    shade = Axes.axhspan
    monkeypatch.setattr(Axes, "axhspan", lambda ax, low, high, **kw: drawn.append((low, high)) or shade(ax, low, high, **kw))
    when = datetime(2026, 3, 6, 9, 30, tzinfo=timezone.utc)
    usual = build_report(db, "P-7", generated_by="dr-lee", now=when)
    bands_scale_1, drawn[:] = list(drawn), []
    prescribed = build_report(db, "P-7", generated_by="dr-lee", spo2_scale=2, now=when)
    # The last evening's SpO2 of 93 % on air scores 2 on scale 1 and 0 on scale 2 (NEWS2 7 -> 5).
    assert usual.snapshot.findings.news2_total == 7 and prescribed.snapshot.findings.news2_total == 5
    assert prescribed.snapshot.vitals.latest_news2["points_spo2"] == 0
    assert (96, 100) in bands_scale_1 and (88, 92) not in bands_scale_1
    assert (88, 92) in drawn and (96, 100) not in drawn
    page = render_html(prescribed)
    # Nothing is on record for P-7: scale 2 here is a choice for this report, and it says so.
    chosen = ("SpO2 scored on scale 2 (a prescribed 88-92 % target); no prescribed target on record; "
              "chosen for this view.")
    assert chosen in page
    assert "except SpO2: the prescribed 88-92 % target of scale 2" in page
    assert "SpO2 scored on scale 1; no prescribed target on record." in render_html(usual)
    assert "except SpO2" not in render_html(usual)
    scale_2, scale_1 = fhir_bundle(prescribed.snapshot)["entry"][-1], fhir_bundle(usual.snapshot)["entry"][-1]
    news2 = scale_2["resource"]
    assert news2["valueInteger"] == 5 and {"text": escape_markdown(chosen)} in news2["note"]
    assert news2["method"]["text"] == "NEWS2 (RCP 2017), SpO2 scale 2"
    assert scale_2["fullUrl"] != scale_1["fullUrl"]  # two scores of one time point are two resources
    # Advice fired on a scale-2 score says so, so an approved "NEWS2 5" is never read as a scale-1 score.
    news2_triggers = [t.describe() for a in prescribed.advice.advice for t in a.triggers if t.fact.startswith("news2.")]
    assert news2_triggers and all(t.endswith(", SpO2 scale 2") for t in news2_triggers)
    assert not [t for a in usual.advice.advice for t in a.triggers if "scale" in t.describe()]
    with pytest.raises(AdviceError, match="SpO2 scale 1 or 2"):
        patient_snapshot(db, "P-7", spo2_scale=3)


def test_a_recorded_spo2_scale_is_used_everywhere_until_withdrawn_and_every_change_is_audited(db):
    from healthmon.services.patients import recorded_spo2_scale
    from healthmon.services.advice import set_spo2_scale

    when = datetime(2026, 3, 6, 9, 30, tzinfo=timezone.utc)
    clinician = _signed_in(db, "dr-lee")
    with pytest.raises(AdviceError, match="the reason for a prescribed 88-92 % target"):
        set_spo2_scale(db, clinician, "P-7", 2, reason="  ")
    with pytest.raises(AdviceError, match="SpO2 scale 1 or 2"):
        set_spo2_scale(db, clinician, "P-7", 3, reason="x")
    with pytest.raises(AdviceError, match="a stored patient"):
        set_spo2_scale(db, clinician, "nobody", 2, reason="x")
    annotator = _signed_in(db, "ann")
    with pytest.raises(PermissionDenied):
        set_spo2_scale(db, annotator, "P-7", 2, reason="hypercapnic respiratory failure")
    assert recorded_spo2_scale(db, "P-7") is None  # nothing refused was stored

    set_spo2_scale(db, clinician, "P-7", 2, reason="hypercapnic respiratory failure on blood gas <b>")
    recorded = recorded_spo2_scale(db, "P-7")
    assert (recorded.scale, recorded.set_by, recorded.set_at.tzinfo) == (2, "dr-lee", timezone.utc)
    # No scale given: the report, the advice and the FHIR export all use the one on record.
    report = build_report(db, "P-7", generated_by="dr-lee", now=when)
    assert report.snapshot.vitals.spo2_scale == 2 and report.snapshot.findings.news2_total == 5
    sentence = report.snapshot.spo2_scale_sentence
    assert sentence.startswith("SpO2 scored on scale 2 (a prescribed 88-92 % target); scale 2 recorded by dr-lee on ")
    assert sentence.endswith(": hypercapnic respiratory failure on blood gas <b>.")
    page = render_html(report)
    assert "blood gas &lt;b&gt;." in page and "blood gas <b>" not in page  # free text is escaped
    # FHIR's Annotation.text is markdown: the clinician's text arrives literal, not as markup.
    exported = fhir_bundle(report.snapshot)["entry"][-1]["resource"]["note"]
    assert {"text": escape_markdown(sentence)} in exported and r"blood gas \<b\>\." in exported[-1]["text"]
    # Looking at scale 1 for one view does not change the record, and says what is on record.
    override = patient_snapshot(db, "P-7", spo2_scale=1, now=when)
    assert override.findings.news2_total == 7
    assert "; chosen for this view; on record: scale 2 recorded by dr-lee" in override.spo2_scale_sentence
    assert recorded_spo2_scale(db, "P-7").scale == 2

    set_spo2_scale(db, "dr-lee", "P-7", 1)  # withdrawn (the CLI passes a name); no reason needed
    assert patient_snapshot(db, "P-7", now=when).findings.news2_total == 7
    with db() as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == "patient.spo2_scale")
                            .order_by(AuditEntry.id)).all()
        assert [(e.before["spo2_scale"], e.after["spo2_scale"]) for e in entries] == [(None, 2), (2, 1)]
        assert entries[0].after["reason"] == "hypercapnic respiratory failure on blood gas <b>"


def test_recording_another_spo2_scale_sets_aside_pending_drafts_scored_on_the_other_scale(db):
    from healthmon.services.advice import set_spo2_scale, trigger_spo2_scale

    # A trigger's text drops a detail its neighbour already showed; the stored detail always has it.
    assert trigger_spo2_scale({"fact": "news2.total", "detail": "scored 2026-03-05 20:00 UTC, SpO2 scale 2"}) == 2
    assert trigger_spo2_scale({"fact": "news2.total", "detail": "scored 2026-03-05 20:00 UTC, partial"}) == 1
    assert trigger_spo2_scale({"fact": "alert", "threshold": "news2_high", "detail": "NEWS2 7. SpO2 scale 2."}) == 2
    assert trigger_spo2_scale({"fact": "alert", "threshold": "weight_gain_3d", "detail": "SpO2 scale 2"}) is None
    assert trigger_spo2_scale({"fact": "bp.crisis", "detail": "SpO2 scale 2"}) is None

    clinician = _signed_in(db, "dr-lee")
    rules = load_rules()

    def draft(setting: str = "hospital", scale: int | None = None) -> dict:
        snapshot = patient_snapshot(db, "P-7", setting=setting, spo2_scale=scale)
        return {i.id: i for i in draft_advice(db, clinician, snapshot, evaluate(rules, snapshot.findings))}

    def pending_on(items: dict, scale: int) -> set:
        return {i for i, item in items.items() if item.status == "draft"
                and {trigger_spo2_scale(t) for t in item.triggers} - {None} == {scale}}

    on_scale_1 = draft()  # NEWS2 7 on scale 1
    news2_drafts = pending_on(on_scale_1, 1)
    others = {i for i, item in on_scale_1.items() if i not in news2_drafts}
    assert news2_drafts and others
    # A scale chosen for one view is not the record: no advice is drafted on it.
    with pytest.raises(AdviceError, match=r"advice resting on NEWS2 drafted on the SpO2 scale on record \(scale 1\)"):
        draft(scale=2)

    set_aside = set_spo2_scale(db, clinician, "P-7", 2, reason="hypercapnic respiratory failure")
    assert set(set_aside) == news2_drafts  # only the drafts resting on NEWS2
    after = {i.id: i for i in patient_advice(db, "P-7")}
    for i in news2_drafts:
        assert after[i].status == "superseded" and after[i].version == 1
        assert after[i].decision_note == "set aside: fired by a NEWS2 scored on SpO2 scale 1; scale 2 recorded by dr-lee"
    assert all(after[i].status == "draft" for i in others)  # not NEWS2: still pending
    with db() as s:
        audited = s.scalars(select(AuditEntry).where(AuditEntry.action == "advice.superseded")).all()
        assert {int(e.entity_id) for e in audited} == news2_drafts
        assert all(e.after["reason"].startswith("set aside: fired by a NEWS2") for e in audited)
    with pytest.raises(AdviceError, match="it is already superseded"):  # no one approves a set-aside draft
        decide_advice(db, clinician, min(news2_drafts), "approved", seen_version=1)
    with pytest.raises(AdviceError, match=r"on record \(scale 2\)"):
        draft(scale=1)

    hospital = pending_on(draft(), 2)  # NEWS2 5 on the recorded scale 2: news2-medium
    at_home = pending_on(draft("home"), 2) - hospital  # home readings: the NEWS2 alert rule, scored on scale 2
    assert hospital and at_home
    alert_triggers = [t for i in at_home for t in patient_advice_by_id(db, i).triggers if t["fact"] == "alert"]
    assert alert_triggers and all("SpO2 scale 2." in t["detail"] for t in alert_triggers)
    approved = min(hospital)
    decide_advice(db, clinician, approved, "approved", seen_version=0)
    assert set_spo2_scale(db, clinician, "P-7", 2, reason="still hypercapnic") == []  # same scale: nothing moves
    # Withdrawn: the pending scale-2 drafts go aside; the approved one is history and stays.
    assert set(set_spo2_scale(db, "dr-lee", "P-7", 1)) == (hospital | at_home) - {approved}
    assert patient_advice_by_id(db, approved).status == "approved"


def test_advice_that_does_not_rest_on_news2_is_drafted_whatever_scale_the_view_scores(db):
    from healthmon.services.advice import rests_on_news2

    clinician = _signed_in(db, "dr-lee")
    cuff = "timestamp,patient,BP\n2026-03-01 08:00,P-BP,186/104\n2026-03-02 08:00,P-BP,150/95\n"
    store_vitals(db, "dr-lee", read_vitals_csv(cuff.encode(), "cuff.csv").frame, source="cuff.csv", fmt="csv",
                 report={})
    snapshot = patient_snapshot(db, "P-BP", setting="home", spo2_scale=2)  # no scale on record: 1
    result = evaluate(load_rules(), snapshot.findings)
    assert result.advice and not any(rests_on_news2(a) for a in result.advice)
    drafted = draft_advice(db, clinician, snapshot, result)
    assert {i.rule_id for i in drafted} == {a.rule.id for a in result.advice} and "bp-crisis" in {i.rule_id for i in drafted}


def test_the_setting_is_preset_from_the_readings_and_cuffless_blood_pressure_is_never_staged(db):
    from healthmon.vitals.assess import mark_cuffless
    from healthmon.vitals.bp import CUFFLESS

    # A watch: heart rate, SpO2, breathing rate and cuffless blood pressure, two estimates above
    # 180/120 and one at 85/50, which a cuff's reading would score 3 NEWS2 points for.
    watch = "timestamp,patient,hr,SpO2,resp,BP\n" + "".join(
        f"2026-03-0{day} 08:00,P-W,{hr},96,15,{bp}\n"
        for day, (hr, bp) in enumerate([(72, "150/95"), (75, "192/124"), (74, "186/122"), (73, "85/50")], start=1))
    frame = mark_cuffless(read_vitals_csv(watch.encode(), "watch.csv").frame)
    store_vitals(db, "dr-lee", frame, source="watch.csv", fmt="csv", report={})
    snapshot = patient_snapshot(db, "P-W")
    # No consciousness or air/oxygen charted (a wearable's breathing rate is not a ward): home, so
    # NEWS2 says where it was applied.
    assert snapshot.setting == "home" and "applied to home readings" in snapshot.vitals.latest_news2["caveat"]
    assert patient_snapshot(db, "P-7").setting == "hospital"  # consciousness charted: a ward
    # Read back from the database, the estimates are still estimates: not scored, not staged.
    assert pd.isna(snapshot.vitals.latest_news2["points_systolic_bp"])
    bp = snapshot.vitals.bp
    assert bp.category == CUFFLESS and not bp.crisis and snapshot.vitals.bp_esc is None
    assert snapshot.vitals.bp_crisis == () and len(snapshot.vitals.crisis_estimates) == 2  # named apart, for a cuff reading
    facts = snapshot.findings
    assert (facts.bp_category, facts.bp_systolic, facts.bp_crisis) == (None, None, None)
    fired = {a.rule.id for a in evaluate(load_rules(), facts).advice}
    assert not fired & {"bp-crisis", "bp-stage2", "bp-stage1", "bp-elevated"}
    # The same values from a cuff are a crisis: it is each reading's mark that holds them back.
    cuff = watch.replace("P-W", "P-C")
    store_vitals(db, "dr-lee", read_vitals_csv(cuff.encode(), "cuff.csv").frame, source="cuff.csv", fmt="csv",
                 report={})
    assert "bp-crisis" in {a.rule.id for a in evaluate(load_rules(), patient_snapshot(db, "P-C").findings).advice}
    # A cuff reading beside the estimates is what gets staged.
    store_vitals(db, "dr-lee", read_vitals_csv(b"timestamp,patient,BP\n2026-03-04 09:00,P-W,128/78\n", "cuff.csv")
                 .frame, source="cuff.csv", fmt="csv", report={})
    staged = patient_snapshot(db, "P-W")
    assert (staged.vitals.bp.category, staged.vitals.bp.readings, staged.findings.bp_systolic) == ("elevated", 1, 128)


def patient_advice_by_id(db, advice_id: int):  # noqa: ANN001, ANN201
    return next(i for i in patient_advice(db, "P-7") if i.id == advice_id)


def test_new_values_supersede_a_pending_draft_and_a_repeat_crisis_is_drafted_again(db):
    clinician = _signed_in(db, "dr-lee")
    rules = load_rules()

    def draft():  # noqa: ANN202
        snapshot = patient_snapshot(db, "P-7")
        return {i.id: i for i in draft_advice(db, clinician, snapshot, evaluate(rules, snapshot.findings))}

    first = draft()
    crisis = next(i for i in first.values() if i.rule_id == "bp-crisis")
    assert "reading(s) 2026-03-03 08:00 186/104 mmHg" in crisis.triggers[0]["text"]
    decide_advice(db, clinician, crisis.id, "dismissed", seen_version=0, note="white-coat reading")
    # A week later: a new crisis reading, and new readings that change the week's mean.
    later = ("timestamp,patient,pulse,BP,SpO2,resp,temp\n2026-03-12 08:00,P-7,80,192/110,97,16,36.8\n"
             "2026-03-12 20:00,P-7,125,150/90,92,25,38.5\n")  # NEWS2 8 that evening
    store_vitals(db, "dr-lee", read_vitals_csv(later.encode(), "later.csv").frame, source="later.csv", fmt="csv",
                 report={})
    second = draft()
    crises = [i for i in second.values() if i.rule_id == "bp-crisis"]
    assert [i.status for i in crises] == ["draft", "dismissed"]  # the new crisis is a new finding
    assert "2026-03-12 08:00 192/110 mmHg" in crises[0].triggers[0]["text"]
    news2 = [i for i in second.values() if i.rule_id.startswith("news2")]
    # The NEWS2 of 7 on 5 March was never decided; the NEWS2 of 8 on 12 March replaces it, and it is kept.
    assert sorted(i.status for i in news2) == ["draft", "superseded"]
    assert len(draft()) == len(second)  # nothing new: nothing drafted
    superseded = {i.id for i in second.values() if i.status == "superseded"}
    with transaction(db) as s:
        audited = s.scalars(select(AuditEntry.entity_id).where(AuditEntry.action == "advice.superseded")).all()
        assert superseded and sorted(int(e) for e in audited) == sorted(superseded)  # each once, nothing else


def test_screening_advice_returns_when_due_and_demographics_change_field_by_field(db):
    from healthmon.storage.models import AdviceItem

    clinician = _signed_in(db, "dr-lee")
    set_demographics(db, clinician, "P-7", birth_date=date(1961, 5, 2), sex="female")
    set_demographics(db, clinician, "P-7", sex="female")  # one field: the birth date stays
    snapshot = patient_snapshot(db, "P-7")
    assert snapshot.birth_date == date(1961, 5, 2)
    result = evaluate(load_rules(), snapshot.findings)
    colorectal = next(i for i in draft_advice(db, clinician, snapshot, result) if i.rule_id == "colorectal-screen-age")
    decide_advice(db, clinician, colorectal.id, "approved", seen_version=0)
    assert not [i for i in draft_advice(db, clinician, snapshot, result)
                if i.rule_id == "colorectal-screen-age" and i.status == "draft"]  # within its year: not again
    with transaction(db) as s:  # a year and a day later
        s.get(AdviceItem, colorectal.id).decided_at = datetime.now(timezone.utc).replace(year=2020)
    again = [i for i in draft_advice(db, clinician, snapshot, result) if i.rule_id == "colorectal-screen-age"]
    assert [i.status for i in again] == ["draft", "approved"]


def test_two_sessions_drafting_the_same_findings_at_once_store_each_draft_once(db, monkeypatch):
    import threading

    from healthmon.services import advice as store

    clinician = _signed_in(db, "dr-lee")
    snapshot = patient_snapshot(db, "P-7")
    result = evaluate(load_rules(), snapshot.findings)
    both_read = threading.Barrier(2, timeout=30)
    original, first_call = store._should_draft, threading.local()

    def after_both_have_read(*args):  # noqa: ANN002, ANN202
        if not getattr(first_call, "done", False):
            first_call.done = True
            both_read.wait()  # each session has loaded the (empty) list of earlier advice
        return original(*args)

    monkeypatch.setattr(store, "_should_draft", after_both_have_read)
    outcomes: list[object] = []

    def session() -> None:
        try:
            outcomes.append(len(draft_advice(db, clinician, snapshot, result)))
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            outcomes.append(exc)

    threads = [threading.Thread(target=session) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert outcomes == [len(result.advice)] * 2  # no IntegrityError, and each finding drafted once


def test_a_reviewer_who_removes_a_label_takes_its_score_out_of_the_advice(db):
    from healthmon.storage.repository import submit_review
    from healthmon.storage.models import User

    snapshot = patient_snapshot(db, "P-7")
    diabetes_case = snapshot.cases[-1]
    with transaction(db) as s:
        submit_review(s, diabetes_case.note_id, s.scalar(select(User).where(User.name == "dr-lee")), ["hypertension"],
                      seen_version=0, saw_model_output=True)
    facts = patient_snapshot(db, "P-7").findings
    assert facts.risk["diabetes"] == 0.21  # the other note's score; the reviewed note no longer counts
    assert facts.risk["hypertension"] == 0.64


@pytest.mark.parametrize("text,escaped", [
    ("[x](http://e.vil) ![](http://e.vil/i.png)", r"\[x\]\(http\://e\.vil\) \!\[\]\(http\://e\.vil/i\.png\)"),
    ("Call the team\n===", "Call the team\n\\=\\=\\="),  # a setext heading under the text
    ("Call the team\n---", "Call the team\n\\-\\-\\-"),
])
def test_untrusted_text_is_escaped_so_markdown_shows_it_as_typed(text, escaped):
    assert escape_markdown(text) == escaped
