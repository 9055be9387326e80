"""The training defaults' machinery: the search, the time budget, smoothed stopping and
calibration that falls back when it does not help, on a tiny random BERT."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from transformers import TrainerControl

import healthmon.training.search as search_module
from healthmon.errors import ConfigError
from healthmon.model.card import ModelCard
from healthmon.training import calibration
from healthmon.training.args import TrainArgs
from healthmon.training.calibration import ece_interval, fit_temperature_checked, tune_thresholds_checked
from healthmon.training.data import Example
from healthmon.training.fitting import Deadline, SmoothedStopping, class_weights, weighted_loss
from healthmon.training.search import _design, _space, search_plan
from healthmon.training.trainer import train, train_splits_only

from conftest import make_notes


def test_the_search_sees_training_and_validation_notes_and_never_the_test_split(settings, monkeypatch):
    notes = make_notes(14)
    args = TrainArgs(mode="lora", search="3", batch_size=8, lora_target_modules=("query", "value"), epochs=1)
    splits, _ = train_splits_only(notes, args, settings)
    seen: list[str] = []
    encode = search_module._encode

    def recording_encode(tokenizer, examples, *rest):
        seen.extend(e.text for e in examples)
        return encode(tokenizer, examples, *rest)

    monkeypatch.setattr(search_module, "_encode", recording_encode)
    result = train(notes, args, out_dir=settings.data_dir / "searched", settings=settings, progress=False)

    test_texts = {e.text for e in splits.test}
    assert test_texts and seen and not test_texts & set(seen)
    assert set(seen) <= {e.text for e in splits.train + splits.validation}
    record = ModelCard.load(result.version_dir).metrics["search"]
    assert record["ran"] and len(record["trials"]) == 3
    assert all(t["state"] in ("complete", "pruned") and t["curve"] for t in record["trials"])
    # The first trial is the old default; the choice is what the card's train_args record.
    assert record["trials"][0]["params"] == {"learning_rate": 1e-3, "head_init": "random", "class_weight": "none"}
    card_args = ModelCard.load(result.version_dir).train_args
    assert {k: card_args[k] for k in record["chosen"]} == record["chosen"]


def test_a_time_budget_ends_the_run_and_says_so(settings):
    notes = make_notes(14)
    budget = 6.0
    args = TrainArgs(mode="head", search="off", max_epochs=500, early_stopping_patience=0, batch_size=8,
                     time_budget_s=budget)
    started = time.monotonic()
    result = train(notes, args, out_dir=settings.data_dir / "budget", settings=settings, progress=False)
    run = result.metrics["train"]
    assert "time budget" in run["stopped_by"], run["stopped_by"]
    assert 0 < run["epochs_run"] < 500 and run["time_budget_s"] == budget
    # 500 epochs would take minutes. Training stops at the deadline less the longest
    # evaluation seen; the first evaluation and reloading the best epoch can run past it,
    # and test scoring and saving come after the budget, hence the margins.
    assert run["wall_s"] < budget + 20
    assert time.monotonic() - started < budget + 60


def test_the_deadline_reserves_the_longest_evaluation_seen(monkeypatch):
    clock = Deadline(deadline=100.0)
    control, state = TrainerControl(), SimpleNamespace(global_step=5)
    monkeypatch.setattr(time, "monotonic", lambda: 90.0)
    clock.on_step_end(None, state, control)
    assert not control.should_training_stop
    clock.on_evaluate(None, state, control, metrics={"eval_runtime": 12.0})
    clock.on_step_end(None, state, control)
    assert control.should_training_stop and clock.hit


def _feed(stopping: SmoothedStopping, values: list[float], start_step: int = 1) -> int | None:
    """Evaluations fed until the callback stops training (1-based), or None."""
    control = TrainerControl()
    for i, value in enumerate(values):
        stopping.on_evaluate(None, SimpleNamespace(global_step=start_step + i), control,
                             metrics={f"eval_{stopping.metric}": value})
        if control.should_training_stop:
            return i + 1
    return None


def test_smoothed_stopping_rides_out_one_bad_epoch_and_stops_on_a_plateau():
    # Raw patience 2 would stop at the 4th evaluation (0.60 then two lower); the two-epoch
    # mean dips once, rises again, and the run stops two evaluations into the plateau.
    values = [0.40, 0.60, 0.55, 0.58, 0.66, 0.66, 0.66, 0.66, 0.66, 0.66]
    assert _feed(SmoothedStopping("macro_f1", patience=2), values) == 8
    # Loss: lower is better.
    assert _feed(SmoothedStopping("loss", patience=2), [1.0, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]) == 5
    # The probe head's score before training (step 0) does not count towards patience.
    stopping = SmoothedStopping("macro_f1", patience=1)
    stopping.on_evaluate(None, SimpleNamespace(global_step=0), TrainerControl(), metrics={"eval_macro_f1": 0.99})
    assert stopping.best is None


def test_balanced_class_weights_match_scikit_learn_and_weigh_the_loss():
    labels = ("a", "b", "c")
    examples = [Example("x", ("a",))] * 6 + [Example("y", ("b",))] * 3 + [Example("z", ("c",))]
    weights = class_weights(examples, labels)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.array([0] * 6 + [1] * 3 + [2]))
    assert np.allclose(weights.numpy(), expected)
    logits, targets = torch.randn(5, 3), torch.tensor([0, 1, 2, 2, 0])
    loss = weighted_loss(weights)({"logits": logits}, targets)
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(logits, targets, weight=weights))


def test_search_plan_follows_the_data_and_the_flag():
    assert search_plan(TrainArgs(search="off"), 5000, 40)[0] == 0
    assert search_plan(TrainArgs(), 300, 3)[0] == 0  # small and few labels: the defaults
    assert search_plan(TrainArgs(), 1200, 3)[0] is None  # large: as many trials as the budget allows
    assert search_plan(TrainArgs(), 300, 12)[0] is None  # many labels
    assert search_plan(TrainArgs(search="4"), 50, 2)[0] == 4
    assert search_plan(TrainArgs(max_steps=3), 5000, 40)[0] == 0
    assert search_plan(TrainArgs(init_from="/models/v1"), 5000, 40)[0] == 0
    with pytest.raises(ConfigError, match="continuing a version"):
        search_plan(TrainArgs(search="3", init_from="/models/v1"), 5000, 40)
    with pytest.raises(ConfigError, match="search"):
        TrainArgs(search="many")
    with pytest.raises(ConfigError, match="time_budget_s"):
        TrainArgs(time_budget_s=0)
    with pytest.raises(ConfigError, match="class_weight"):
        TrainArgs(class_weight="inverse")


def test_the_design_varies_only_what_the_user_left_at_its_default():
    design = _design(TrainArgs(), _space(TrainArgs(), probe_allowed=True, imbalanced=True))
    assert design[0] == {"learning_rate": 1e-3, "head_init": "random", "class_weight": "none"}
    assert {"learning_rate": 1e-3, "head_init": "probe", "class_weight": "balanced"} in design
    assert {d["learning_rate"] for d in design} == {1e-3, 2e-3, 5e-4}
    fixed = TrainArgs(learning_rate=3e-4, class_weight="balanced")
    design = _design(fixed, _space(fixed, probe_allowed=False, imbalanced=True))
    assert design == [{"learning_rate": 3e-4, "head_init": "random", "class_weight": "balanced"}]


def test_temperature_is_kept_where_it_lowers_held_out_ece_and_dropped_where_it_does_not(monkeypatch):
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3))
    logits[np.arange(300), targets] += 1.0
    overconfident = logits * 4  # sharpened: a temperature near 4 undoes it
    report = fit_temperature_checked(overconfident, targets, False)
    assert not report["kept_unscaled"] and report["temperature"] > 2
    assert report["cv_ece_fitted"] < report["cv_ece_unscaled"]

    # A fit that hurts held-out notes (stood in for by a wild temperature) is not kept.
    monkeypatch.setattr(calibration, "fit_temperature", lambda *a, **k: 0.05)
    report = fit_temperature_checked(logits, targets, False)
    assert report["kept_unscaled"] and report["temperature"] == 1.0
    # Too few notes to check a fit on: scores stay as trained.
    assert fit_temperature_checked(logits[:10], targets[:10], False)["temperature"] == 1.0


def test_thresholds_are_tuned_only_where_they_beat_one_half_on_held_out_notes():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, (400, 2))
    # Label a: scores shifted low, so a cut-off near 0.3 separates them; label b: pure noise.
    probs = np.column_stack([np.clip(0.3 + 0.2 * (truth[:, 0] - 0.5) + rng.normal(0, 0.05, 400), 0, 1),
                             rng.uniform(0, 1, 400)])
    thresholds = tune_thresholds_checked(probs, truth, ["a", "b"])
    assert thresholds["a"] < 0.5
    assert tune_thresholds_checked(probs[:10], truth[:10], ["a", "b"]) == {"a": 0.5, "b": 0.5}


def test_the_ece_interval_brackets_the_estimate():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet([1, 1, 1], 200)
    targets = rng.integers(0, 3, 200)
    low, high = ece_interval(probs, targets, False)
    point = calibration._note_ece(probs, targets, False)
    assert low <= point <= high and low < high


def test_the_cli_reads_a_time_budget_with_its_unit():
    import argparse

    from healthmon.cli.common import duration

    assert duration("45m") == "45m"
    with pytest.raises(argparse.ArgumentTypeError, match="unit"):
        duration("45")

