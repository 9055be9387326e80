"""Splits, de-duplication, calibration maths and metrics, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from healthmon.errors import ConfigError, TrainingError
from healthmon.model.classifier import aggregate_windows, calibrated_probabilities
from healthmon.training.args import TrainArgs
from healthmon.training.calibration import fit_temperature, tune_thresholds
from healthmon.training.data import build_splits, normalise_for_dedup
from healthmon.training.metrics import classification_metrics, expected_calibration_error
from healthmon.types import Note

from conftest import make_notes


def test_duplicates_never_cross_splits_and_are_counted():
    notes = make_notes(20)
    dupes = [Note(text="  " + n.text.upper() + " ", note_id=n.note_id + "-copy", labels=n.labels) for n in notes[:15]]
    conflict = Note(text=notes[0].text, note_id="conflict", labels=("cancer",))
    splits, report = build_splits(notes + dupes + [conflict], multi_label=False, val_fraction=0.1, test_fraction=0.2, seed=1)
    assert report.duplicates_removed == 16
    assert notes[0].labels != ("cancer",)
    assert report.duplicate_label_conflicts == 1
    keys = [{normalise_for_dedup(e.text) for e in part} for part in (splits.train, splits.validation, splits.test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert sum(len(k) for k in keys) == 60


def test_split_is_stratified_and_reproducible():
    notes = make_notes(30)
    a, _ = build_splits(notes, multi_label=False, val_fraction=0.1, test_fraction=0.2, seed=5)
    b, _ = build_splits(notes, multi_label=False, val_fraction=0.1, test_fraction=0.2, seed=5)
    c, _ = build_splits(notes, multi_label=False, val_fraction=0.1, test_fraction=0.2, seed=6)
    assert [e.text for e in a.test] == [e.text for e in b.test]
    assert [e.text for e in a.test] != [e.text for e in c.test]
    for label in ("diabetes", "hypertension", "cancer"):
        assert sum(e.labels == (label,) for e in a.test) == 6  # 20% of 30
        assert sum(e.labels == (label,) for e in a.validation) == 3


def test_unusable_rows_are_counted_not_silently_dropped():
    notes = make_notes(10) + [Note(text="no label here", note_id="u1"), Note(text="two", note_id="m", labels=("a", "b"))]
    _, report = build_splits(notes, multi_label=False, val_fraction=0.1, test_fraction=0.2, seed=1)
    assert report.unlabelled == 1
    assert report.multi_label_rows_in_single_label == 1
    assert report.rows_in == 32


def test_too_few_notes_is_an_error_that_says_how_many():
    notes = [Note(text=f"t{i}", note_id=str(i), labels=("a" if i % 2 else "b",)) for i in range(6)]
    with pytest.raises(TrainingError, match="at least 10 distinct labelled notes; found 6"):
        build_splits(notes, multi_label=False, val_fraction=0.1, test_fraction=0.2, seed=1)


@pytest.mark.parametrize(
    "kwargs, quoted",
    [
        ({"mode": "bert"}, "mode='bert'"),
        ({"learning_rate": 2.0}, "learning_rate=2.0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"epochs": 0}, "epochs=0"),
        ({"val_fraction": 0.6}, "val_fraction=0.6"),
        ({"max_length": 4096}, "max_length=4096"),
        ({"mode": "lora", "lora_target_modules": ()}, "lora_target_modules=()"),
    ],
)
def test_train_args_reject_bad_values_quoting_them(kwargs, quoted):
    with pytest.raises(ConfigError) as info:
        TrainArgs(**kwargs)
    assert quoted in str(info.value)
    assert "Fix:" in str(info.value)


def test_epoch_budget_follows_the_data_size():
    from healthmon.training.args import auto_epochs

    # The cap when no --max-epochs is given; early stopping and the time budget may end sooner.
    assert auto_epochs(805) == 25  # Symptom2Disease's training split
    assert auto_epochs(1939) == 11  # Medical Abstracts' training split
    assert auto_epochs(50) == 30 and auto_epochs(100_000) == 3


def test_mode_picks_its_learning_rate_unless_given():
    assert TrainArgs(mode="lora").resolved_learning_rate == 1e-3
    assert TrainArgs(mode="head").resolved_learning_rate == 2e-3
    assert TrainArgs(mode="full", learning_rate=3e-5).resolved_learning_rate == 3e-5


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 4)) * 2.0
    probs = calibrated_probabilities(true_logits, 1.0, False)
    targets = np.array([rng.choice(4, p=p) for p in probs])
    overconfident = true_logits * 3.0  # a model 3x too sure of itself
    assert fit_temperature(overconfident, targets, False) == pytest.approx(3.0, rel=0.08)


def test_temperature_keeps_the_argmax_and_lowers_ece():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(size=(3000, 3)) * 1.5
    targets = np.array([rng.choice(3, p=p) for p in calibrated_probabilities(true_logits, 1.0, False)])
    raw = true_logits * 4.0
    t = fit_temperature(raw, targets, False)
    before = calibrated_probabilities(raw, 1.0, False)
    after = calibrated_probabilities(raw, t, False)
    assert (before.argmax(1) == after.argmax(1)).all()
    ece_before = expected_calibration_error(before.max(1), before.argmax(1) == targets)
    ece_after = expected_calibration_error(after.max(1), after.argmax(1) == targets)
    assert ece_after < ece_before / 3


def test_ece_by_hand():
    # Two bins used: 0.9 confidence with 50% right (gap 0.4), 0.6 with 100% right (gap 0.4).
    conf = np.array([0.9, 0.9, 0.6, 0.6])
    correct = np.array([1, 0, 1, 1])
    assert expected_calibration_error(conf, correct, bins=10) == pytest.approx(0.4)


def test_thresholds_maximise_f1_per_label():
    probs = np.array([[0.30, 0.9], [0.35, 0.8], [0.10, 0.2], [0.05, 0.1]])
    targets = np.array([[1, 1], [1, 1], [0, 0], [0, 0]])
    thresholds = tune_thresholds(probs, targets, ["a", "b"])
    assert 0.10 < thresholds["a"] <= 0.30
    # Any cut in (0.2, 0.8] is perfect for b: the one nearest 0.5 is kept.
    assert thresholds["b"] == 0.5


def test_metrics_single_label_by_hand():
    probs = np.array([[0.8, 0.2], [0.4, 0.6], [0.7, 0.3], [0.1, 0.9]])
    targets = np.array([0, 1, 1, 1])
    m = classification_metrics(probs, targets, ["a", "b"], multi_label=False)
    assert m["accuracy"] == 0.75
    assert m["confusion_matrix"] == [[1, 0], [1, 2]]
    assert m["per_class"]["b"]["recall"] == pytest.approx(2 / 3)
    assert m["per_class"]["a"]["precision"] == pytest.approx(0.5)
    assert m["auroc_macro"] == pytest.approx(1.0)


def test_window_aggregation_rules():
    window_logits = np.array([[2.0, 0.0], [0.0, 4.0], [1.0, 1.0]])
    note_index = np.array([0, 0, 1])
    weights = np.array([30.0, 10.0, 5.0])
    single = aggregate_windows(window_logits, note_index, weights, 2, multi_label=False)
    assert single[0] == pytest.approx([1.5, 1.0])  # token-weighted mean
    multi = aggregate_windows(window_logits, note_index, weights, 2, multi_label=True)
    assert multi[0] == pytest.approx([2.0, 4.0])  # max: one mention anywhere counts
    assert multi[1] == pytest.approx([1.0, 1.0])


def test_metrics_multi_label_by_hand_and_absent_labels_do_not_count():
    probs = np.array([[0.9, 0.2, 0.1], [0.6, 0.7, 0.1], [0.1, 0.4, 0.2]])
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]])
    m = classification_metrics(probs, targets, ["a", "b", "c"], multi_label=True, thresholds={"a": 0.5, "b": 0.5, "c": 0.5})
    # Predicted sets: {a}, {a, b}, {} -> subset accuracy 2/3; label b: P=1, R=0.5, F1=2/3.
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["recall"] == pytest.approx(0.5)
    # Label c never occurs and is never predicted: macro-F1 averages a (1.0) and b (2/3) only.
    assert m["macro_f1"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert m["labels_evaluated"] == ["a", "b"]
    lowered = classification_metrics(probs, targets, ["a", "b", "c"], multi_label=True, thresholds={"a": 0.5, "b": 0.35, "c": 0.5})
    assert lowered["accuracy"] == pytest.approx(1.0)


def test_perfectly_separated_validation_keeps_temperature_one():
    logits = np.array([[5.0, -5.0], [-4.0, 4.0], [6.0, 0.0]])
    assert fit_temperature(logits, np.array([0, 1, 0]), False) == 1.0
    assert fit_temperature(logits, np.array([[1, 0], [0, 1], [1, 0]]), True) == 1.0


def test_rare_multi_label_combinations_still_reach_validation_and_test():
    notes = make_notes(20, multi=False)
    rare = [Note(text=f"rare pair note {i} with polyuria and biopsy", note_id=f"r{i}", labels=("cancer", "diabetes")) for i in range(2)]
    splits, _ = build_splits(notes + rare, multi_label=True, val_fraction=0.1, test_fraction=0.2, seed=3)
    assert sum(e.labels == ("cancer", "diabetes") for e in splits.train + splits.validation + splits.test) == 2
    for part in (splits.validation, splits.test):
        assert {label for e in part for label in e.labels} == {"cancer", "diabetes", "hypertension"}
