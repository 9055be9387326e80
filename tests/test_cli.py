"""The CLI end to end on the tiny model: exit codes, one JSON line, one-line errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, make_notes


def run_cli(args: list[str], settings, capsys=None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HEALTHMON_DATA_DIR": str(settings.data_dir),
        "HEALTHMON_BASE_MODEL": settings.base_model,
        "HEALTHMON_MAX_LENGTH": "64",
    }
    return subprocess.run([sys.executable, "-m", "healthmon", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture()
def notes_csv(tmp_path: Path) -> Path:
    path = tmp_path / "notes.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["note_id", "description", "diagnosis"])
        for note in make_notes(12):
            writer.writerow([note.note_id, note.text, note.labels[0]])
        writer.writerow(["bad-1", "   ", "diabetes"])  # rejected: empty text
    return path


def test_train_predict_evaluate_round_trip(tmp_path, settings, notes_csv):
    out = tmp_path / "version"
    train = run_cli(["train", "--data", str(notes_csv), "--mode", "head", "--head-init", "probe", "--max-steps", "2",
                     "--out", str(out), "--no-progress"], settings)
    assert train.returncode == 0, train.stderr
    lines = train.stdout.strip().splitlines()
    assert len(lines) == 1, "stdout must hold exactly one JSON line"
    metrics = json.loads(lines[0])
    assert {"accuracy", "macro_f1", "ece", "ece_uncalibrated", "auroc_macro"} <= set(metrics["test"])
    assert "before_finetune" in metrics and metrics["version"] == str(out)
    assert metrics["head_init"]["method"] == "probe" and "reliability" not in metrics["head_init"]["test"]
    assert "1 rejected" in train.stderr and "rejected line 38" in train.stderr

    evaluate = run_cli(["evaluate", "--model", str(out), "--data", str(notes_csv)], settings)
    assert evaluate.returncode == 0, evaluate.stderr
    assert json.loads(evaluate.stdout.strip().splitlines()[-1])["test"]["n"] == 36

    pred_csv = tmp_path / "pred.csv"
    predict = run_cli(["predict", "--model", str(out), "--data", str(notes_csv), "--out", str(pred_csv), "--precision", "fp32"], settings)
    assert predict.returncode == 0, predict.stderr
    rows = list(csv.DictReader(pred_csv.open()))
    assert len(rows) == 36
    assert {"p_diabetes", "p_hypertension", "p_cancer", "predicted", "note_id"} <= set(rows[0])
    assert abs(sum(float(rows[0][f"p_{l}"]) for l in ("diabetes", "hypertension", "cancer")) - 1) < 1e-4


@pytest.mark.parametrize(
    "content, extra, needle",
    [
        (b"", [], "empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), [], "binary"),
        (b"a,b\n1,2\n", [], "text column"),
        (b"text,label\nsome note,x\n", ["--text-column", "body"], "body"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, settings, content, extra, needle):
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    proc = run_cli(["train", "--data", str(path), "--max-steps", "1", *extra], settings)
    assert proc.returncode == 2
    assert proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("healthmon train:") and needle.lower() in last.lower()
    assert "Traceback" not in proc.stderr


def test_missing_model_and_bad_setting_exit_2(tmp_path, settings, notes_csv):
    proc = run_cli(["predict", "--model", str(tmp_path / "nope"), "--data", str(notes_csv), "--out", str(tmp_path / "p.csv")], settings)
    assert proc.returncode == 2 and "card.json" in proc.stderr
    env_bad = {**os.environ, "HEALTHMON_MAX_LENGTH": "5"}
    proc = subprocess.run([sys.executable, "-m", "healthmon", "demo"], cwd=ROOT, env=env_bad, capture_output=True, text=True)
    assert proc.returncode == 2 and "HEALTHMON_MAX_LENGTH='5'" in proc.stderr and "greater than or equal to 16" in proc.stderr


def test_usage_errors_exit_2():
    proc = subprocess.run([sys.executable, "-m", "healthmon", "train"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "--data" in proc.stderr


def test_vitals_prints_one_assessment_per_patient_and_stores_each_reading_once(tmp_path, settings):
    readings = tmp_path / "bedside.csv"
    readings.write_text("timestamp,patient,pulse,BP,SpO2,resp,temp,AVPU,O2\n"
                        "2026-03-01 08:00,p1,112,182/124,91,25,38.6,A,yes\n"
                        "2026-03-01 09:00,p2,70,118/76,98,14,36.8,A,air\n"
                        "2026-03-01 10:00,p1,abc,181/122,92,24,38.4,V,yes\n", encoding="utf-8")
    # Scoring a file needs no database, and creates none; nothing can be on record yet.
    scored = run_cli(["vitals", str(readings), "--patient", "p2"], settings)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["spo2_scale"] == {"scale": 1, "basis": "no prescribed target on record"}
    assert not (settings.data_dir / "healthmon.db").exists()
    first = run_cli(["vitals", str(readings), "--store"], settings)
    assert first.returncode == 0, first.stderr
    lines = {row["patient_id"]: row for row in map(json.loads, first.stdout.strip().splitlines())}
    assert set(lines) == {"p1", "p2"} and lines["p1"]["news2"]["band"] == "high"
    assert lines["p1"]["bp"]["crisis"] is True and lines["p1"]["bp"]["readings"] == 2
    assert any(alert["rule_id"] == "news2_high" for alert in lines["p1"]["alerts"])
    assert lines["p2"]["alerts"] == [] and lines["p2"]["summary"].startswith("NEWS2 max 0 (low)")
    # 3 rows x 8 values; the unreadable heart rate is reported with its line and kept in the report.
    assert "stored 23 new reading(s); 0 already stored; 1 unreadable value(s)" in first.stderr
    assert "artefact bedside.csv line 4 heart_rate: heart rate 'abc' is not a number" in first.stderr
    again = run_cli(["vitals", str(readings), "--store", "--patient", "p2"], settings)
    assert "stored 0 new reading(s); 23 already stored" in again.stderr and len(again.stdout.splitlines()) == 1
    unknown = run_cli(["vitals", str(readings), "--patient", "p9"], settings)
    assert unknown.returncode == 2 and "no readings for p9" in unknown.stderr
    # 03/04/2026 fits either order: scored as day/month and said, but stored only with the order given.
    ambiguous = tmp_path / "cuff.csv"
    ambiguous.write_text("date,patient,sbp,dbp\n03/04/2026,p3,150,95\n", encoding="utf-8")
    refused = run_cli(["vitals", str(ambiguous), "--store"], settings)
    assert refused.returncode == 2 and "--date-order day/month or --date-order month/day" in refused.stderr
    stored = run_cli(["vitals", str(ambiguous), "--store", "--date-order", "month/day"], settings)
    assert stored.returncode == 0 and "read as month/day; confirm the order" in stored.stderr
    assert "stored 2 new reading(s)" in stored.stderr


def test_a_patient_from_scored_notes_and_vitals_to_approved_advice_a_pdf_report_and_fhir(tmp_path, settings, notes_csv):
    version = tmp_path / "version"
    assert run_cli(["train", "--data", str(notes_csv), "--mode", "head", "--max-steps", "2", "--out",
                    str(version), "--no-progress"], settings).returncode == 0
    patient_notes = tmp_path / "patient.csv"
    patient_notes.write_text("note_id,patient_id,text\nv1,P-9,Polyuria and thirst; HbA1c 8.9%; metformin started.\n")
    stored = run_cli(["predict", "--model", str(version), "--data", str(patient_notes), "--store"], settings)
    assert stored.returncode == 0 and "stored 1 scored notes as cases" in stored.stderr, stored.stderr
    vitals = tmp_path / "ward.csv"
    vitals.write_text("timestamp,patient,pulse,BP,SpO2,resp,temp,AVPU\n2026-03-01 08:00,P-9,118,150/92,93,23,38.4,A\n")
    assert run_cli(["vitals", str(vitals), "--store"], settings).returncode == 0
    add = subprocess.run([sys.executable, "-m", "healthmon", "users", "add", "dr-kay", "--role", "clinician",
                          "--password-stdin"], cwd=ROOT, input="kay-password-123\n", capture_output=True, text=True,
                         env={**os.environ, "HEALTHMON_DATA_DIR": str(settings.data_dir)})
    assert add.returncode == 0, add.stderr

    refused = run_cli(["advice", "--patient", "P-9", "--draft"], settings)
    assert refused.returncode == 2 and "--as NAME" in refused.stderr
    drafted = run_cli(["advice", "--patient", "P-9", "--birth-date", "1958-02-11", "--sex", "male", "--draft",
                       "--as", "dr-kay"], settings)
    assert drafted.returncode == 0, drafted.stderr
    listing = json.loads(drafted.stdout)
    fired = {f["rule"]: f for f in listing["fired"]}
    assert fired["news2-high"]["fired_by"][1].startswith("news2.total = 7 (>= 7): scored 2026-03-01 08:00 UTC")
    assert {"colorectal-screen-age", "diabetes-screen-age"} <= set(fired)  # age 68 from the birth date
    assert all(item["status"] == "draft" for item in listing["stored"]) and len(listing["stored"]) == len(fired)
    news2_id = next(i["id"] for i in listing["stored"] if i["rule"] == "news2-high")
    approved = run_cli(["advice", "--patient", "P-9", "--approve", str(news2_id), "--as", "dr-kay"], settings)
    assert approved.returncode == 0, approved.stderr
    assert next(i for i in json.loads(approved.stdout)["stored"] if i["id"] == news2_id)["decided_by"] == "dr-kay"

    pdf, bundle = tmp_path / "p9.pdf", tmp_path / "p9.json"
    made = run_cli(["report", "--patient", "P-9", "--out", str(pdf), "--by", "dr-kay"], settings)
    assert made.returncode == 0, made.stderr
    assert pdf.read_bytes().startswith(b"%PDF") and json.loads(made.stdout)["bytes"] == pdf.stat().st_size
    assert run_cli(["report", "--patient", "P-9", "--out", str(bundle)], settings).returncode == 0
    assert [e["resource"]["resourceType"] for e in json.loads(bundle.read_text())["entry"]] == [
        "Patient", "RiskAssessment", "Observation"]
    # SpO2 93 % on air: 2 points on scale 1, none on scale 2 (a prescribed 88-92 % target).
    assert run_cli(["report", "--patient", "P-9", "--out", str(bundle), "--spo2-scale", "2"], settings).returncode == 0
    assert json.loads(bundle.read_text())["entry"][-1]["resource"]["valueInteger"] == 5
    on_scale_2 = json.loads(run_cli(["advice", "--patient", "P-9", "--spo2-scale", "2"], settings).stdout)
    assert "news2-high" not in {f["rule"] for f in on_scale_2["fired"]}
    viewed = run_cli(["advice", "--patient", "P-9", "--spo2-scale", "2", "--draft", "--as", "dr-kay"], settings)
    assert viewed.returncode == 2 and "advice resting on NEWS2 drafted on the SpO2 scale on record (scale 1)" in viewed.stderr
    assert "record scale 2 for the patient first" in viewed.stderr
    # A refused part refuses the whole command: nothing else it asked for is stored.
    mixed = run_cli(["advice", "--patient", "P-9", "--spo2-scale", "2", "--draft", "--sex", "female", "--as", "dr-kay"],
                    settings)
    assert mixed.returncode == 2 and "drafted on the SpO2 scale on record (scale 1)" in mixed.stderr
    contradictory = run_cli(["advice", "--patient", "P-9", "--spo2-scale", "2", "--draft", "--record-spo2-scale", "1",
                             "--as", "dr-kay"], settings)
    assert contradictory.returncode == 2 and "--spo2-scale equal to --record-spo2-scale" in contradictory.stderr
    no_reason = run_cli(["advice", "--patient", "P-9", "--sex", "female", "--record-spo2-scale", "2", "--as", "dr-kay"],
                        settings)
    assert no_reason.returncode == 2 and "the reason for a prescribed 88-92 % target" in no_reason.stderr
    unknown_id = run_cli(["advice", "--patient", "P-9", "--sex", "female", "--record-spo2-scale", "1", "--approve",
                          "99999", "--as", "dr-kay"], settings)
    assert unknown_id.returncode == 2 and "an advice id of patient P-9" in unknown_id.stderr
    unchanged = json.loads(run_cli(["advice", "--patient", "P-9"], settings).stdout)
    assert unchanged["spo2_scale_on_record"] is None and unchanged["facts"]["sex"] == "male"
    # Recorded once, the prescribed target is what every later command scores on by default.
    unexplained = run_cli(["advice", "--patient", "P-9", "--record-spo2-scale", "2", "--as", "dr-kay"], settings)
    assert unexplained.returncode == 2 and "the reason for a prescribed 88-92 % target" in unexplained.stderr
    recorded = run_cli(["advice", "--patient", "P-9", "--record-spo2-scale", "2", "--reason", "hypercapnic failure",
                        "--draft", "--as", "dr-kay"], settings)
    assert recorded.returncode == 0, recorded.stderr
    after_recording = json.loads(recorded.stdout)
    # Recorded and drafted in one transaction: the draft is scored on the scale just recorded.
    assert any(i["rule"] == "news2-medium" and i["status"] == "draft" for i in after_recording["stored"])
    assert any("SpO2 scale 2" in text for f in after_recording["fired"] if f["rule"] == "news2-medium"
               for text in f["fired_by"])
    assert "scale 2 recorded by dr-kay on " in after_recording["spo2_scale"]
    assert after_recording["spo2_scale_on_record"].endswith(": hypercapnic failure")
    scale_2_draft = next(i["id"] for i in after_recording["stored"]
                         if i["rule"] == "news2-medium" and i["status"] == "draft")
    # Withdrawing scale 2 sets that draft aside, so approving it in the same command is refused
    # with the cause named, and the withdrawal is rolled back with it.
    withdrawn_and_approved = run_cli(["advice", "--patient", "P-9", "--record-spo2-scale", "1", "--approve",
                                      str(scale_2_draft), "--as", "dr-kay"], settings)
    assert withdrawn_and_approved.returncode == 2
    assert f"advice {scale_2_draft}, set aside by --record-spo2-scale 1 in this same command" in withdrawn_and_approved.stderr
    still = json.loads(run_cli(["advice", "--patient", "P-9"], settings).stdout)
    assert still["spo2_scale_on_record"].endswith(": hypercapnic failure")
    assert next(i for i in still["stored"] if i["id"] == scale_2_draft)["status"] == "draft"
    alone = run_cli(["advice", "--patient", "P-9", "--reason", "x", "--as", "dr-kay"], settings)
    assert alone.returncode == 2 and "--reason together with --record-spo2-scale" in alone.stderr
    assert run_cli(["report", "--patient", "P-9", "--out", str(bundle)], settings).returncode == 0
    assert json.loads(bundle.read_text())["entry"][-1]["resource"]["valueInteger"] == 5
    scored = json.loads(run_cli(["vitals", str(vitals)], settings).stdout)
    assert scored["news2"]["total"] == 5 and scored["spo2_scale"]["scale"] == 2
    assert scored["spo2_scale"]["basis"].endswith(": hypercapnic failure")
    assert "SpO2 target 88-92 %" in scored["summary"]
    looked = json.loads(run_cli(["vitals", str(vitals), "--spo2-scale", "1"], settings).stdout)
    assert looked["news2"]["total"] == 7 and looked["spo2_scale"]["basis"].startswith("chosen for this view; on record")
    swapped = run_cli(["advice", "--patient", "P-9", "--edit", "new wording", str(news2_id), "--as", "dr-kay"], settings)
    assert swapped.returncode == 2 and "an advice id (a whole number)" in swapped.stderr
    twice = run_cli(["advice", "--patient", "P-9", "--approve", str(news2_id), "--dismiss", str(news2_id), "no",
                     "--as", "dr-kay"], settings)
    assert twice.returncode == 2 and f"id {news2_id} more than once" in twice.stderr
    again = run_cli(["advice", "--patient", "P-9", "--dismiss", str(news2_id), "changed my mind", "--as", "dr-kay"], settings)
    assert again.returncode == 2 and "it is already approved by dr-kay" in again.stderr  # never flips a decision
    wrong = run_cli(["report", "--patient", "P-9", "--out", str(tmp_path / "p9.docx")], settings)
    assert wrong.returncode == 2 and "--out ending in .html, .pdf or .json" in wrong.stderr
    unknown = run_cli(["report", "--patient", "P-404", "--out", str(pdf)], settings)
    assert unknown.returncode == 2 and "no patient 'P-404'" in unknown.stderr

