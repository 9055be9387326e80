"""A short, budgeted search for what the data needs: learning rate, head start, class weighting.

Optuna runs short fine-tunes (a few hundred training notes each) of fresh copies of the starting
model and scores each on the validation split; its median pruner stops a trial whose first
score is below the median of earlier trials at the same point. The first trials are a small
fixed design (the old defaults, then a probe-fitted head, balanced class weights where labels
are imbalanced, and the learning rate halved and doubled); TPE proposes the rest. The test
split is never handed to this module. The trials also time a training step and an evaluation,
which is what :mod:`healthmon.training.trainer` uses to fit the real run's epochs into the time
budget.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import optuna
import torch
from transformers import DataCollatorWithPadding, PreTrainedModel, Trainer, TrainerCallback, TrainingArguments

from healthmon.errors import ConfigError
from healthmon.training.args import TrainArgs
from healthmon.training.data import Splits, targets_for
from healthmon.training.fitting import (
    _compute_metrics_fn,
    _encode,
    _prepare_model,
    loss_function,
    training_arguments,
)

# "auto" searches when the data is large or has many classes: there the old fixed recipe
# (settled on Symptom2Disease) was furthest off (Medical Abstracts, a 23-class abstract set).
AUTO_MIN_LABELS = 10
AUTO_MIN_NOTES = 1000
# The search may use this share of the time budget; trials stop being started past it.
SEARCH_SHARE = 0.25
MAX_AUTO_TRIALS = 6
# Each trial trains on this many notes (32 optimiser steps at batch 16) and is scored twice
# on at most this many validation notes: long enough to rank learning rates and head starts,
# short enough for several trials on 2 CPU cores.
TRIAL_NOTES = 512
TRIAL_VAL_NOTES = 256
# Class weighting is tried only when the largest class has this many times the smallest's notes.
IMBALANCE_RATIO = 1.5
# Learning rates the search may pick, per mode: the default halved and doubled lie inside.
LEARNING_RATE_RANGE: dict[str, tuple[float, float]] = {"full": (3e-5, 3e-4), "lora": (3e-4, 3e-3),
                                                       "head": (5e-4, 1e-2)}


@dataclass(frozen=True)
class Trial:
    """One short fine-tune: what it tried, how validation went at each report, how long it took."""

    number: int
    params: dict[str, Any]
    state: str  # complete | pruned | failed
    value: float | None
    curve: list[dict[str, float]]
    wall_s: float


@dataclass(frozen=True)
class SearchResult:
    """What the search chose and why, as recorded in the card (``metrics["search"]``)."""

    mode: str
    ran: bool
    reason: str
    objective: str
    chosen: dict[str, Any]
    trials: list[Trial] = field(default_factory=list)
    wall_s: float = 0.0
    # Measured by the trials, for planning the real run; None when no trial ran.
    train_s_per_note: float | None = None
    eval_s_per_note: float | None = None

    def to_card(self) -> dict[str, Any]:
        data = asdict(self)
        data["wall_s"] = round(self.wall_s, 1)
        return data


def search_plan(args: TrainArgs, n_train: int, n_labels: int) -> tuple[int | None, str]:
    """How many trials to run (None: as many as the budget allows; 0: no search) and why."""
    if args.search == "off":
        return 0, "off (--search off)"
    if args.init_from:
        if args.search != "auto":
            raise ConfigError("no search when continuing a version (its recipe and head are kept)",
                              f"search={args.search!r} with init_from={args.init_from!r}",
                              "leave --search at auto (it is off for retraining) or give --lr")
        return 0, "off: continuing a version keeps its recipe"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return 0, "off: the search runs in one process, not under torchrun"
    if args.max_steps > 0:
        return 0, "off: max_steps is set (a smoke run)"
    if args.search != "auto":
        return int(args.search), f"{args.search} trials (--search {args.search})"
    if n_labels >= AUTO_MIN_LABELS or n_train >= AUTO_MIN_NOTES:
        return None, (f"auto: {n_train} training notes, {n_labels} labels "
                      f"(on from {AUTO_MIN_NOTES} notes or {AUTO_MIN_LABELS} labels)")
    return 0, (f"auto: off for {n_train} training notes and {n_labels} labels "
               f"(on from {AUTO_MIN_NOTES} notes or {AUTO_MIN_LABELS} labels)")


def defaults_of(args: TrainArgs) -> dict[str, Any]:
    return {"learning_rate": args.resolved_learning_rate, "head_init": args.head_init,
            "class_weight": args.class_weight}


def is_imbalanced(splits: Splits, multi_label: bool) -> bool:
    if multi_label:
        return False  # class weighting is for single-label softmax training
    counts = np.bincount(targets_for(splits.train, splits.labels, False), minlength=len(splits.labels))
    return bool(counts.min() > 0 and counts.max() / counts.min() >= IMBALANCE_RATIO)


def _space(args: TrainArgs, probe_allowed: bool, imbalanced: bool) -> dict[str, Any]:
    """What may vary: a knob the user set away from its default (--lr, --head-init probe,
    --class-weight balanced) stays as given."""
    low, high = LEARNING_RATE_RANGE[args.mode]
    if args.learning_rate is not None:
        low = high = args.learning_rate
    head_inits = ["random", "probe"] if probe_allowed and args.head_init == "random" else [args.head_init]
    weights = ["none", "balanced"] if imbalanced and args.class_weight == "none" else [args.class_weight]
    return {"learning_rate": (low, high), "head_init": head_inits, "class_weight": weights}


def _design(args: TrainArgs, space: dict[str, Any]) -> list[dict[str, Any]]:
    """The fixed first trials: the defaults, then one change at a time from the better start."""
    base = defaults_of(args)
    low, high = space["learning_rate"]
    probe_allowed, imbalanced = "probe" in space["head_init"], "balanced" in space["class_weight"]
    start = {**base, "head_init": "probe"} if probe_allowed else base
    design = [base]
    if probe_allowed and base["head_init"] != "probe":
        design.append(start)
    if imbalanced:
        design.append({**start, "class_weight": "balanced"})
    design.append({**start, "learning_rate": min(high, base["learning_rate"] * 2)})
    design.append({**start, "learning_rate": max(low, base["learning_rate"] / 2)})
    unique: list[dict[str, Any]] = []
    for params in design:
        if params not in unique:
            unique.append(params)
    return unique


class _Report(TrainerCallback):
    """Hands each validation score to Optuna and stops the trial when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial, self.metric = trial, metric
        self.curve: list[dict[str, float]] = []
        self.eval_s: list[float] = []
        self.pruned = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics or {}
        value = metrics.get(f"eval_{self.metric}")
        if value is None:
            return
        self.eval_s.append(float(metrics.get("eval_runtime", 0.0)))
        self.curve.append({"step": int(state.global_step), "value": round(float(value), 4)})
        self.trial.report(float(value), int(state.global_step))
        if self.trial.should_prune():
            self.pruned = control.should_training_stop = True


def run_search(
    make_model: Callable[[], PreTrainedModel],
    apply_probe: Callable[[PreTrainedModel], dict[str, Any]] | None,
    tokenizer: Any,
    splits: Splits,
    args: TrainArgs,
    *,
    n_trials: int | None,
    reason: str,
    budget_s: float,
    seed: int,
    device: torch.device,
    max_length: int,
    on_progress: Callable[[float, str], None] | None = None,
) -> SearchResult:
    """Run the trials on the training and validation splits and return the choice.

    Args:
        make_model: a fresh starting model (random head) for each trial.
        apply_probe: writes the probe-fitted head into a fresh model (None: probe not allowed).
        n_trials: exact count, or None for as many as fit ``SEARCH_SHARE`` of ``budget_s``
            (at most ``MAX_AUTO_TRIALS``).
        budget_s: the whole run's time budget in seconds.
    """
    started = time.monotonic()
    metric = args.select_by
    objective = f"validation {'loss' if metric == 'loss' else 'macro-F1'} after {TRIAL_NOTES} training notes"
    rng = np.random.default_rng(seed)
    train_notes = [splits.train[i] for i in sorted(rng.permutation(len(splits.train))[:TRIAL_NOTES])]
    val_notes = [splits.validation[i] for i in sorted(rng.permutation(len(splits.validation))[:TRIAL_VAL_NOTES])]
    trial_splits = replace(splits, train=train_notes, validation=val_notes, test=[])
    train_set = _encode(tokenizer, train_notes, splits.labels, args.multi_label, max_length)
    val_set = _encode(tokenizer, val_notes, splits.labels, args.multi_label, max_length)
    space = _space(args, apply_probe is not None, is_imbalanced(splits, args.multi_label))
    low, high = space["learning_rate"]
    timings: list[tuple[float, float, int, float]] = []  # (train s, eval s, evaluated notes, trained notes)

    def objective_fn(trial: optuna.Trial) -> float:
        params = {
            "learning_rate": trial.suggest_float("learning_rate", low, high, log=True),
            "head_init": trial.suggest_categorical("head_init", space["head_init"]),
            "class_weight": trial.suggest_categorical("class_weight", space["class_weight"]),
        }
        trial_args = replace(args, **params)
        model = make_model()
        if params["head_init"] == "probe" and apply_probe is not None:
            apply_probe(model)
        report = _Report(trial, metric)
        trial_started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="healthmon-trial-") as scratch:
            # Even, so the second of the two evaluations falls on the last step.
            steps = 2 * max(1, math.ceil(len(train_notes) / (2 * args.batch_size)))
            trainer = Trainer(
                model=_prepare_model(model, trial_args),
                args=_trial_arguments(trial_args, scratch, steps, seed=seed, device=device),
                train_dataset=train_set,
                eval_dataset=val_set,
                data_collator=DataCollatorWithPadding(tokenizer),
                compute_metrics=_compute_metrics_fn(args.multi_label),
                compute_loss_func=loss_function(trial_args, trial_splits),
                callbacks=[report],
            )
            trainer.train()
            trained = len(train_notes) * trainer.state.global_step / steps  # a pruned trial stops half way
        wall = time.monotonic() - trial_started
        timings.append((wall - sum(report.eval_s), sum(report.eval_s), len(val_notes) * len(report.eval_s), trained))
        trial.set_user_attr("curve", report.curve)
        trial.set_user_attr("wall_s", round(wall, 1))
        if report.pruned:
            raise optuna.TrialPruned()
        return report.curve[-1]["value"]

    study = optuna.create_study(
        direction="minimize" if metric == "loss" else "maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    design = _design(args, space)
    for params in design:
        study.enqueue_trial(params)
    limit = n_trials if n_trials is not None else MAX_AUTO_TRIALS
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for number in range(limit):
        elapsed = time.monotonic() - started
        per_trial = elapsed / number if number else 0.0
        # Explicit counts run in full unless they would eat half the budget; auto stops at its share.
        share = SEARCH_SHARE if n_trials is None else 0.5
        if number and elapsed + per_trial > share * budget_s:
            reason += f"; stopped after {number} trials ({elapsed:.0f} s of the {share * budget_s:.0f} s allowed)"
            break
        if on_progress is not None:
            on_progress(0.0, f"search: trial {number + 1} of up to {limit}")
        study.optimize(objective_fn, n_trials=1, catch=(RuntimeError,))

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    trials = [_trial_record(t) for t in study.trials if t.state in finished]  # not the enqueued, never run
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    chosen = dict(study.best_trial.params) if complete else defaults_of(args)
    train_s, eval_s, evaluated, trained_notes = (sum(column) for column in zip(*timings)) if timings else (0, 0, 0, 0)
    return SearchResult(
        mode=str(args.search), ran=True, reason=reason, objective=objective, chosen=chosen, trials=trials,
        wall_s=time.monotonic() - started,
        train_s_per_note=train_s / trained_notes if trained_notes else None,
        eval_s_per_note=eval_s / evaluated if evaluated else None,
    )


def _trial_record(trial: optuna.trial.FrozenTrial) -> Trial:
    state = {optuna.trial.TrialState.COMPLETE: "complete", optuna.trial.TrialState.PRUNED: "pruned"}.get(
        trial.state, "failed")
    return Trial(number=trial.number, params=dict(trial.params), state=state,
                 value=None if trial.value is None else round(float(trial.value), 4),
                 curve=list(trial.user_attrs.get("curve", [])), wall_s=float(trial.user_attrs.get("wall_s", 0.0)))


def _trial_arguments(args: TrainArgs, scratch: str, steps: int, *, seed: int,
                     device: torch.device) -> TrainingArguments:
    # A constant rate after warm-up: a trial stands for the first stretch of the real run,
    # before the linear decay has moved the rate much.
    return training_arguments(
        args, scratch, seed=seed, device=device,
        max_steps=steps,
        lr_scheduler_type="constant_with_warmup",
        eval_strategy="steps",
        eval_steps=max(1, steps // 2),
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )


__all__ = ["SearchResult", "Trial", "run_search", "search_plan", "defaults_of"]
