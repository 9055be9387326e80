"""Continual fine-tuning: lineage, growing label sets, promotion, refusal, rollback, failed runs.

The model is the tiny random BERT (real training, real version folders, real SQLite). The
promotion rule is tested through its one seam, ``label_accuracy``, so each path is forced
deterministically; the real accuracy trade-off is measured in benchmarks/forgetting_bench.py.
"""

from __future__ import annotations


import pytest
import torch
from sqlalchemy import select

from healthmon.errors import TrainingError
from healthmon.model.card import ModelCard
from healthmon.model.classifier import Classifier
from healthmon.model.lineage import load_examples
from healthmon.model.loading import build_model
from healthmon.storage.db import session_factory, transaction, upgrade
from healthmon.storage.models import AuditEntry, ModelVersion, TrainingRun
from healthmon.storage.repository import create_user, register_version, save_predictions, submit_review
from healthmon.services import retrain as continual
from healthmon.services import versions
from healthmon.training.args import TrainArgs
from healthmon.services.retrain import retrain
from healthmon.services.versions import rollback
from healthmon.training.trainer import train

from conftest import make_notes


@pytest.fixture()
def parent(settings):
    # v1 knows diabetes and hypertension only; reviewers will add cancer.
    notes = [n for n in make_notes(12) if n.labels[0] != "cancer"]
    return train(notes, TrainArgs(mode="lora", max_steps=2), out_dir=settings.data_dir / "models" / "v1",
                 settings=settings, progress=False).version_dir


@pytest.fixture()
def db(engine):
    upgrade(engine)
    return session_factory(engine)


def _review_everything(db, parent, settings) -> None:
    """Store every demo note (cancer included) with the parent's prediction and a true label."""
    clf = Classifier.from_pretrained(parent, settings=settings, precision="fp32")
    notes = make_notes(12, seed=3)
    with transaction(db) as s:
        version = register_version(s, "v1", str(parent), {}, status="active")
        ids = save_predictions(s, notes, clf.predict([n.text for n in notes]), version)
        ann = create_user(s, "ann", "annotator")
        for note_id, note in zip(ids, notes):
            submit_review(s, note_id, ann, list(note.labels), seen_version=0)


def test_every_version_keeps_its_data_and_the_frozen_regression_set(parent):
    train_rows, test_rows = load_examples(parent, "train"), load_examples(parent, "test")
    assert train_rows and test_rows and load_examples(parent, "regression") == test_rows
    assert {labels for _, labels in train_rows} == {("diabetes",), ("hypertension",)}


def test_a_child_starts_from_its_parent_and_grows_the_head(parent, settings):
    card = ModelCard.load(parent)
    child = build_model(settings.base_model, card.labels + ("cancer",), card.problem_type)
    from healthmon.model.loading import initialise_from_version
    from healthmon.model.loading import load_version_model

    initialise_from_version(child, parent)
    reference = load_version_model(parent, card)
    weight, old_weight = child.classifier.weight, reference.classifier.weight
    assert torch.equal(weight[:2], old_weight)  # old labels keep their rows
    assert weight.shape[0] == 3
    layer = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(child.state_dict()[layer], reference.state_dict()[layer])


def _force(monkeypatch, regression: tuple[float, float], reviewed: tuple[float, float]) -> None:
    """(active, candidate) accuracies, through the evaluation seam the promotion rule reads."""
    seen = {}

    def fake(active_dir, candidate_dir, regression_set, held_out, settings):
        seen.update(regression=regression_set, held_out=held_out)
        return {"regression_active": regression[0], "regression_candidate": regression[1],
                "reviewed_active": reviewed[0], "reviewed_candidate": reviewed[1]}

    monkeypatch.setattr(continual, "compare_versions", fake)
    return seen


def test_retrain_promotes_when_old_cases_hold_and_reviewed_cases_improve(parent, settings, db, monkeypatch):
    _review_everything(db, parent, settings)
    seen = _force(monkeypatch, (0.90, 0.895), (0.60, 0.80))
    result = retrain(db, settings=settings, args=TrainArgs(mode="lora", max_steps=2), replay=10,
                     out_dir=settings.data_dir / "models" / "v2")
    assert result.promoted, result.reason
    card = ModelCard.load(result.version_dir)
    assert card.labels == ("diabetes", "hypertension", "cancer") and card.parent_version == str(parent.resolve())
    assert result.metrics["replayed"] == 10 and result.metrics["new_labels"] == ["cancer"]
    # Every reviewed case is either trained on or held out: none is lost between the two.
    assert result.metrics["reviewed_train"] + result.metrics["reviewed_held_out"] == len(make_notes(12, seed=3))
    # (a) is the parent's frozen test split; (b) reviewed cases kept out of training, new label included.
    assert seen["regression"] == load_examples(parent, "regression")
    assert any(labels == ("cancer",) for _, labels in seen["held_out"])
    trained_on = {text for text, _ in load_examples(result.version_dir, "train")}
    assert not trained_on & {text for text, _ in seen["held_out"]}
    assert load_examples(result.version_dir, "regression") == load_examples(parent, "regression")  # inherited, frozen
    # The reloaded child rebuilds its parent underneath: same scores as its own card's test run
    # (a child reloaded on the base model alone would score its test split differently).
    import numpy as np

    from healthmon.training.metrics import classification_metrics

    child = Classifier.from_pretrained(result.version_dir, settings=settings, precision="fp32")
    test_rows = load_examples(result.version_dir, "test")
    assert len(test_rows) >= 3
    probs = child.predict_proba([text for text, _ in test_rows])
    assert probs.shape == (len(test_rows), 3)
    targets = np.array([card.labels.index(labels[0]) for _, labels in test_rows])
    again = classification_metrics(probs, targets, card.labels, multi_label=False)
    assert again["ece"] == pytest.approx(card.metrics["test"]["ece"], abs=1e-6)
    assert again["auroc_macro"] == pytest.approx(card.metrics["test"]["auroc_macro"], abs=1e-9)
    with transaction(db) as s:
        statuses = dict(s.execute(select(ModelVersion.name, ModelVersion.status)).all())
        assert statuses == {"v1": "retired", "v2": "active"}
        run = s.scalar(select(TrainingRun))
        assert run.status == "succeeded" and run.model_version_id is not None and run.finished_at is not None
        assert "version.promote" in s.scalars(select(AuditEntry.action)).all()
    # Rollback to v1: audited, v2 retired.
    rollback(db, "v1", actor="root")
    with transaction(db) as s:
        assert dict(s.execute(select(ModelVersion.name, ModelVersion.status)).all()) == {"v1": "active", "v2": "retired"}
        assert "version.rollback" in s.scalars(select(AuditEntry.action)).all()


def test_retrain_refuses_a_candidate_that_forgets_and_says_why(parent, settings, db, monkeypatch):
    _review_everything(db, parent, settings)
    _force(monkeypatch, (0.90, 0.85), (0.60, 0.95))
    result = retrain(db, settings=settings, args=TrainArgs(mode="lora", max_steps=2), replay=0,
                     out_dir=settings.data_dir / "models" / "v2")
    assert not result.promoted and "regression-set accuracy fell 0.050" in result.reason
    with transaction(db) as s:
        rows = {r.name: r for r in s.scalars(select(ModelVersion))}
        assert rows["v1"].status == "active" and rows["v2"].status == "candidate"
        assert "more than the 0.010 allowed" in rows["v2"].status_reason
        assert "version.refuse" in s.scalars(select(AuditEntry.action)).all()


def test_a_drop_of_exactly_the_margin_is_allowed(parent, settings, db, monkeypatch):
    _review_everything(db, parent, settings)
    _force(monkeypatch, (0.87, 0.86), (0.60, 0.80))
    result = retrain(db, settings=settings, args=TrainArgs(mode="lora", max_steps=2), replay=5,
                     out_dir=settings.data_dir / "models" / "v2")
    assert result.promoted, result.reason


def test_a_candidate_is_never_promoted_over_a_version_it_was_not_compared_with(parent, settings, db, monkeypatch):
    _review_everything(db, parent, settings)

    def meanwhile(*args):
        # While the candidate trains, someone activates another version.
        with transaction(db) as s:
            other = register_version(s, "hotfix", "/elsewhere", {}, status="candidate")
            versions.switch_active(s, other, "root", "manual")
        return {"regression_active": 0.9, "regression_candidate": 0.9, "reviewed_active": 0.5,
                "reviewed_candidate": 0.9}

    monkeypatch.setattr(continual, "compare_versions", meanwhile)
    result = retrain(db, settings=settings, args=TrainArgs(mode="lora", max_steps=2), replay=5,
                     out_dir=settings.data_dir / "models" / "v2")
    assert not result.promoted and "the active version changed during the run" in result.reason
    with transaction(db) as s:
        assert dict(s.execute(select(ModelVersion.name, ModelVersion.status)).all()) == {
            "v1": "retired", "hotfix": "active", "v2": "candidate"}


def test_retrain_refuses_when_reviewed_cases_do_not_improve(parent, settings, db, monkeypatch):
    _review_everything(db, parent, settings)
    _force(monkeypatch, (0.90, 0.90), (0.70, 0.70))
    result = retrain(db, settings=settings, args=TrainArgs(mode="lora", max_steps=2),
                     out_dir=settings.data_dir / "models" / "v2")
    assert not result.promoted and "did not improve" in result.reason


def test_a_failed_run_is_recorded_and_leaves_the_active_version_alone(parent, settings, db, monkeypatch):
    _review_everything(db, parent, settings)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. the process is stopped mid-training

    monkeypatch.setattr("healthmon.training.trainer.train", killed)
    with pytest.raises(KeyboardInterrupt):
        retrain(db, settings=settings, out_dir=settings.data_dir / "models" / "v2")
    with transaction(db) as s:
        run = s.scalar(select(TrainingRun))
        assert run.status == "failed" and "KeyboardInterrupt" in run.error
        assert dict(s.execute(select(ModelVersion.name, ModelVersion.status)).all()) == {"v1": "active"}
    assert not (settings.data_dir / "models" / "v2").exists()


def test_retrain_needs_reviewed_cases(parent, settings, db):
    with transaction(db) as s:
        register_version(s, "v1", str(parent), {}, status="active")
    with pytest.raises(TrainingError, match="at least 10 reviewed cases"):
        retrain(db, settings=settings)


def test_cli_retrain_and_rollback_explain_what_is_missing(tmp_path, monkeypatch, capsys):
    from healthmon.cli import main

    monkeypatch.setenv("HEALTHMON_DATA_DIR", str(tmp_path))
    assert main(["retrain"]) == 2
    assert "an active model version to continue from" in capsys.readouterr().err
    assert main(["rollback", "v9"]) == 2
    assert "a registered model version" in capsys.readouterr().err
