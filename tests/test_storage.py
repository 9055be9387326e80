"""Storage on real databases: a SQLite file always, PostgreSQL when a server is given.

``.ci/run`` starts a throwaway PostgreSQL cluster on 127.0.0.1 and sets
HEALTHMON_TEST_POSTGRES_URL; without it the PostgreSQL half skips with that reason.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import inspect, select, text, update

from healthmon.storage.agreement import cohen_kappa, krippendorff_alpha
from healthmon.storage.db import (
    current_revision,
    head_revision,
    session_factory,
    table_names,
    transaction,
    unit_of_work,
    upgrade,
)
from healthmon.storage.models import AuditEntry, Case, Review, User
from healthmon.storage.repository import (
    ReviewConflict,
    StorageError,
    adjudicate,
    agreement,
    create_user,
    export_reviewed,
    get_user,
    label_history,
    register_version,
    review_queue,
    save_predictions,
    submit_review,
    uncertainty,
    verify_password,
)
from healthmon.types import Note, Prediction

TABLES = {"alembic_version", "api_tokens", "audit_log", "auth_sessions", "cases", "explanations", "jobs", "model_versions", "notes", "patients",
          "predictions", "reviews", "training_runs", "users", "vital_readings", "vitals_uploads", "advice_items",
          "sign_in_failures", "link_refs"}
LABELS = ("diabetes", "hypertension", "cancer")


@pytest.fixture()
def db(engine):
    upgrade(engine)
    return session_factory(engine)


def _prediction(probs: dict[str, float]) -> Prediction:
    return Prediction(probabilities=probs, labels=(max(probs, key=probs.get),), model_version="v1",
                      problem_type="single_label_classification")


def _seed(db, probabilities: list[dict[str, float]]) -> list[int]:
    with transaction(db) as s:
        version = register_version(s, "v1", "/models/v1", {"labels": list(LABELS)}, status="active")
        notes = [Note(text=f"note {i}", note_id=f"n{i}", patient_id=f"p{i % 3}") for i in range(len(probabilities))]
        ids = save_predictions(s, notes, [_prediction(p) for p in probabilities], version)
        for name, role in (("ann", "annotator"), ("bob", "annotator"), ("cat", "annotator"), ("root", "admin")):
            create_user(s, name, role, password=name + "-lantern-orchard-9")
    return ids


def test_migrations_build_every_table_from_empty_and_are_idempotent(engine):
    assert table_names(engine) == [] or "alembic_version" not in table_names(engine)
    upgrade(engine)
    assert set(table_names(engine)) == TABLES
    assert current_revision(engine) == head_revision() == "0010"
    upgrade(engine)  # again: nothing to do, nothing lost
    assert current_revision(engine) == head_revision()
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_upgrading_an_existing_database_keeps_and_backfills_its_reviews(engine):
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (name, role, password_hash, created_at) VALUES ('ann', 'annotator', '', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO notes (external_id, text, source, content_hash, deidentified, gold_labels, created_at) "
                          "VALUES ('n1', 'old note', 'x', 'h', false, '[]', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO reviews (note_id, reviewer_id, kind, labels, saw_model_output, comment, "
                          "based_on_version, created_at) VALUES (1, 1, 'review', '[\"diabetes\", \"cancer\"]', true, '', 0, "
                          "CURRENT_TIMESTAMP)"))
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT label_key, text FROM reviews JOIN notes ON notes.id = reviews.note_id")).one() == (
            "cancer|diabetes", "old note")


def test_downgrading_past_the_patient_columns_keeps_the_patients_and_what_points_at_them(engine):
    from alembic import command
    from alembic.config import Config

    from healthmon.storage.db import MIGRATIONS

    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO patients (external_id, created_at, sex, spo2_scale, spo2_scale_reason) "
                          "VALUES ('p1', CURRENT_TIMESTAMP, 'female', 2, 'hypercapnic failure')"))
        conn.execute(text("INSERT INTO notes (patient_id, external_id, text, source, content_hash, deidentified, "
                          "gold_labels, created_at) VALUES (1, 'n1', 'kept note', 'x', 'h', false, '[]', CURRENT_TIMESTAMP)"))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        # Through 0010 (SSO), 0009 (sign-in abuse), 0008 (API tokens), 0007 (SpO2 scale) and 0006 (demographics).
        command.downgrade(config, "0005")
    assert current_revision(engine) == "0005"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT patients.external_id, notes.text FROM patients JOIN notes ON notes.patient_id = patients.id")
                            ).one() == ("p1", "kept note")
        columns = {c["name"] for c in inspect(engine).get_columns("patients")}
        assert not columns & {"sex", "spo2_scale", "spo2_scale_reason", "spo2_scale_set_by", "spo2_scale_set_at"}
    upgrade(engine)  # and back up: the columns return empty
    with engine.connect() as conn:
        assert conn.execute(text("SELECT spo2_scale FROM patients")).one() == (None,)


def test_at_most_one_version_is_active(db):
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        with transaction(db) as s:
            register_version(s, "a", "/a", {}, status="active")
            register_version(s, "b", "/b", {}, status="active")
    with transaction(db) as s:
        register_version(s, "a", "/a", {}, status="active")
        register_version(s, "b", "/b", {}, status="candidate")


def test_uncertainty_is_normalised_entropy_or_worst_label():
    assert uncertainty({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, False) == pytest.approx(1.0)
    assert uncertainty({"a": 1.0, "b": 0.0}, False) == pytest.approx(0.0, abs=1e-6)
    assert uncertainty({"a": 0.99, "b": 0.5}, True) == pytest.approx(1.0)
    # Between the ends, by hand: ln 2 / ln 3 for two equal labels of three; the binary entropy
    # H(0.2) = -(0.2 log2 0.2 + 0.8 log2 0.8) of the less certain label for multi-label.
    assert uncertainty({"a": 0.5, "b": 0.5, "c": 0.0}, False) == pytest.approx(0.63093, abs=1e-5)
    assert uncertainty({"a": 0.9, "b": 0.2}, True) == pytest.approx(0.72193, abs=1e-5)


def test_queue_puts_disagreements_first_then_uncertainty_then_least_recently_reviewed(db):
    certain, unsure, middling, also_unsure = (
        {"diabetes": 0.98, "hypertension": 0.01, "cancer": 0.01},
        {"diabetes": 0.34, "hypertension": 0.33, "cancer": 0.33},
        {"diabetes": 0.70, "hypertension": 0.20, "cancer": 0.10},
        {"diabetes": 0.34, "hypertension": 0.33, "cancer": 0.33},
    )
    ids = _seed(db, [certain, unsure, middling, also_unsure])
    with transaction(db) as s:
        assert [item.note_id for item in review_queue(s)] == [ids[1], ids[3], ids[2], ids[0]]
        ann, bob = get_user(s, "ann"), get_user(s, "bob")
        # The certain case gets two conflicting labels: it jumps to the front.
        submit_review(s, ids[0], ann, ["diabetes"], seen_version=0)
        submit_review(s, ids[0], bob, ["cancer"], seen_version=1)
        # One of the two equally unsure cases was just reviewed: the other comes first.
        submit_review(s, ids[1], ann, ["hypertension"], seen_version=0)
    with transaction(db) as s:
        order = [item.note_id for item in review_queue(s)]
        assert order == [ids[0], ids[3], ids[1], ids[2]]
        # ann does not see cases she already labelled, except the disagreement.
        assert [i.note_id for i in review_queue(s, reviewer=get_user(s, "ann"))] == [ids[0], ids[3], ids[2]]


def test_two_reviewers_at_once_get_one_conflict_and_no_lost_update(db):
    ids = _seed(db, [{"diabetes": 0.5, "hypertension": 0.3, "cancer": 0.2}])
    with transaction(db) as s:
        seen = review_queue(s)[0].review_version
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def review(name: str, label: str) -> None:
        try:
            with transaction(db) as s:
                user = get_user(s, name)
                barrier.wait()
                outcomes[name] = submit_review(s, ids[0], user, [label], seen_version=seen).id
        except ReviewConflict as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=review, args=args) for args in (("ann", "diabetes"), ("bob", "cancer"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    conflicts = [v for v in outcomes.values() if isinstance(v, ReviewConflict)]
    assert len(outcomes) == 2 and len(conflicts) == 1
    loser = next(name for name, v in outcomes.items() if isinstance(v, ReviewConflict))
    with transaction(db) as s:
        stored = s.scalars(select(Review).where(Review.note_id == ids[0])).all()
        assert len(stored) == 1  # the winner's review, untouched
        assert conflicts[0].current_labels == stored[0].labels and conflicts[0].current_version == 1
        # The loser sees the newer label and resubmits on the current version: both kept.
        submit_review(s, ids[0], get_user(s, loser), ["hypertension"], seen_version=1)
    with transaction(db) as s:
        history = label_history(s, ids[0])
        assert [h["labels"] for h in history][1] == ["hypertension"]
        assert history[1]["previous_labels"] == history[0]["labels"]
        assert s.get(Case, ids[0]).review_version == 2 and s.get(Case, ids[0]).disagreement


def test_kappa_and_alpha_match_hand_computed_values():
    # Kappa: p_o = 8/10, p_e = 0.5, so (0.8 - 0.5) / (1 - 0.5) = 0.6.
    a = [True] * 5 + [False] * 5
    b = [True] * 4 + [False] * 5 + [True]
    assert cohen_kappa(a, b) == pytest.approx(0.6)
    # Alpha (nominal), 3 raters, 4 cases, one missing rating. Coincidences: o11=4, o00=5,
    # o01=o10=1, n=11, so D_o = 2/11, D_e = 2*5*6/(11*10) = 6/11, alpha = 1 - 1/3.
    matrix = [[True, False, True, False], [True, False, True, False], [True, False, False, None]]
    assert krippendorff_alpha(matrix) == pytest.approx(2 / 3)
    assert cohen_kappa([True, True], [True, True]) is None  # undefined, not a fake 1.0


def test_agreement_per_label_and_the_disagreements_to_adjudicate(db):
    ids = _seed(db, [{"diabetes": 0.4, "hypertension": 0.3, "cancer": 0.3}] * 4)
    given = {  # the alpha example above, as "diabetes" yes/no
        "ann": [["diabetes"], ["cancer"], ["diabetes"], ["cancer"]],
        "bob": [["diabetes"], ["cancer"], ["diabetes"], ["cancer"]],
        "cat": [["diabetes"], ["cancer"], ["cancer"], None],
    }
    with transaction(db) as s:
        for name, rows in given.items():
            for note_id, labels in zip(ids, rows):
                if labels is not None:
                    version = s.get(Case, note_id).review_version
                    submit_review(s, note_id, get_user(s, name), labels, seen_version=version)
    with transaction(db) as s:
        report = agreement(s, LABELS)
        assert report.metric == "krippendorff_alpha" and report.reviewers == 3
        assert report.per_label["diabetes"] == pytest.approx(2 / 3)
        assert [d["note_id"] for d in report.disagreements] == [ids[2]]
        # Adjudication settles it: out of the disagreement list and the queue, audited.
        root = get_user(s, "root")
        with pytest.raises(StorageError, match="admin"):
            adjudicate(s, ids[2], get_user(s, "ann"), ["cancer"], seen_version=s.get(Case, ids[2]).review_version)
        adjudicate(s, ids[2], root, ["diabetes"], seen_version=s.get(Case, ids[2]).review_version)
    with transaction(db) as s:
        assert agreement(s, LABELS).disagreements == []
        assert ids[2] not in [i.note_id for i in review_queue(s)]
        actions = [a for a, in s.execute(select(AuditEntry.action))]
        assert actions.count("review.submit") == 11 and actions.count("adjudication.submit") == 1
        exported = export_reviewed(s, "csv").splitlines()
        assert exported[0] == "note_id,external_id,text,labels,adjudicated,reviews"
        row = next(line for line in exported if line.startswith(f"{ids[2]},"))
        assert row.endswith(",diabetes,True,4")
        jsonl = export_reviewed(s, "jsonl").splitlines()
        assert len(jsonl) == 4


def test_blind_first_review_records_whether_the_reveal_changed_the_label(db):
    ids = _seed(db, [{"diabetes": 0.6, "hypertension": 0.3, "cancer": 0.1}] * 2)
    with transaction(db) as s:
        ann = get_user(s, "ann")
        changed = submit_review(s, ids[0], ann, ["diabetes"], seen_version=0, saw_model_output=False,
                                blind_labels=["hypertension"])
        kept = submit_review(s, ids[1], ann, ["cancer"], seen_version=0, saw_model_output=False, blind_labels=["cancer"])
        assert changed.changed_after_reveal is True and kept.changed_after_reveal is False
        assert verify_password("ann-lantern-orchard-9", ann.password_hash) and not verify_password("nope", ann.password_hash)


def test_unknown_cases_users_and_roles_explain_themselves(db):
    _seed(db, [{"diabetes": 0.6, "hypertension": 0.3, "cancer": 0.1}])
    with transaction(db) as s:
        with pytest.raises(StorageError, match="a stored case"):
            submit_review(s, 999, get_user(s, "ann"), ["diabetes"], seen_version=0)
        with pytest.raises(StorageError, match="a known user"):
            get_user(s, "nobody")
        with pytest.raises(StorageError, match="a role among"):
            create_user(s, "eve", "superuser")
        with pytest.raises(StorageError, match="contain no '\|'"):
            submit_review(s, 1, get_user(s, "ann"), ["a|b"], seen_version=0)


def test_cli_db_upgrade_and_current(tmp_path, monkeypatch, capsys):
    import json

    from healthmon.cli import main

    monkeypatch.setenv("HEALTHMON_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    assert main(["db", "current"]) == 0
    assert json.loads(capsys.readouterr().out)["revision"] is None
    assert main(["db", "upgrade"]) == 0
    assert json.loads(capsys.readouterr().out)["revision"] == head_revision()
    monkeypatch.setenv("HEALTHMON_DATABASE_URL", "not a url")
    assert main(["db", "upgrade"]) == 2
    assert "HEALTHMON_DATABASE_URL" in capsys.readouterr().err


def test_saving_the_same_notes_again_adds_predictions_not_notes(db):
    from healthmon.storage.models import NoteRow, PredictionRow
    from healthmon.storage.repository import count

    probs = [{"diabetes": 0.6, "hypertension": 0.3, "cancer": 0.1}, {"diabetes": 0.2, "hypertension": 0.7, "cancer": 0.1}]
    first = _seed(db, probs)
    with transaction(db) as s:
        version = register_version(s, "v1", "/models/v1", {})
        notes = [Note(text=f"note {i}", note_id=f"n{i}", patient_id=f"p{i % 3}") for i in range(2)]
        again = save_predictions(s, notes, [_prediction(p) for p in probs[::-1]], version)
        assert again == first and count(s, NoteRow) == 2 and count(s, PredictionRow) == 4
        # The case now points at the newest prediction, whose uncertainty the queue uses: the
        # normalised entropy of (0.2, 0.7, 0.1), by hand 0.7298, not the first one's 0.8173.
        assert s.get(Case, first[0]).uncertainty == pytest.approx(0.72985, abs=1e-5)


def test_explanations_are_stored_once_per_version_text_target_and_options(db):
    from healthmon.storage.repository import load_explanation, save_explanation

    payload = {"text": "glucose 240 <script>", "target": "diabetes", "words": [{"word": "glucose", "score": 0.4}],
               "delta": 0.01}
    with transaction(db) as s:
        version = register_version(s, "v1", "/v1", {})
        first = save_explanation(s, version, payload, options_key="tol=0.05;pad")
        again = save_explanation(s, version, {**payload, "delta": 0.02}, options_key="tol=0.05;pad")
        other = save_explanation(s, version, payload, options_key="tol=0.05;mask")
        assert again.id == first.id and other.id != first.id
    with transaction(db) as s:
        version = register_version(s, "v1", "/v1", {})
        row = load_explanation(s, version, "glucose 240 <script>", "diabetes", options_key="tol=0.05;pad")
        assert row.payload == payload  # stored exactly, text included, for later rendering (escaped there)
        assert load_explanation(s, version, "glucose 240", "diabetes", options_key="tol=0.05;pad") is None


def test_a_user_needs_a_name(db):
    with transaction(db) as s:
        with pytest.raises(StorageError, match="a user name"):
            create_user(s, "  ", "annotator")


def test_a_unit_of_work_commits_or_rolls_back_every_transaction_inside_it(db):
    with transaction(db) as s:
        create_user(s, "ann", "annotator", password="ann-lantern-orchard-9")
    # The store's functions each open transaction(db); inside a unit of work they are one.
    with pytest.raises(RuntimeError, match="refused"), unit_of_work(db):
        with transaction(db) as s:
            create_user(s, "bob", "annotator", password="bob-lantern-orchard-9")
            ann = get_user(s, "ann")  # loaded, and kept alive, in the unit's session
            assert ann.role == "annotator"
        with transaction(db) as s:
            # An UPDATE without the ORM (as a compare-and-swap is): the next block must not see
            # the object it loaded before.
            s.execute(update(User).where(User.name == "ann").values(role="clinician")
                      .execution_options(synchronize_session=False))
        with transaction(db) as s:
            assert get_user(s, "ann") is ann and ann.role == "clinician" and get_user(s, "bob").role == "annotator"
        raise RuntimeError("refused")
    with transaction(db) as s:
        assert get_user(s, "ann").role == "annotator"
        with pytest.raises(StorageError):
            get_user(s, "bob")
    with unit_of_work(db):
        with transaction(db) as s:
            create_user(s, "bob", "annotator", password="bob-lantern-orchard-9")
    with transaction(db) as s:
        assert get_user(s, "bob").role == "annotator"
