"""Training knobs as one validated dataclass (setfit's TrainingArguments style)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from healthmon.errors import ConfigError
from healthmon.types import checked_fields

Mode = Literal["full", "lora", "head"]

# MiniLM-sized encoders want far higher rates than BERT-base recipes: at 5e-5 a full
# fine-tune of Symptom2Disease was still under-trained after 8 epochs (PERF-NOTES.md).
DEFAULT_LEARNING_RATE: dict[str, float] = {"full": 1e-4, "lora": 1e-3, "head": 2e-3}

# Training examples to show the model when epochs are not given: LoRA needs a number of
# optimiser steps more than a number of epochs, so small sets get more passes and large ones
# fewer (Symptom2Disease, 805 training notes: 25 epochs; Medical Abstracts, 1,939: 11).
# The cap is generous because the run now ends when validation stops improving or the time
# budget is spent; at 10,000 examples a 23-class abstract set was still improving at its
# last epoch.
AUTO_EPOCH_EXAMPLES = 20_000
AUTO_EPOCH_RANGE = (3, 30)

# Search plus fine-tune, from the start of a run, when no --time-budget is given: a long
# lunch on a laptop CPU. Scoring the test split and writing the version come after it.
DEFAULT_TIME_BUDGET_S = 40 * 60


def auto_epochs(n_train: int) -> int:
    """Most epochs for ``n_train`` training notes (early stopping or the time budget may end sooner)."""
    low, high = AUTO_EPOCH_RANGE
    return int(min(high, max(low, -(-AUTO_EPOCH_EXAMPLES // max(n_train, 1)))))


def _bad(name: str, value: object, expected: str, fix: str) -> ConfigError:
    return ConfigError(f"{name} {expected}", f"{name}={value!r}", fix)


def _check_task(args: TrainArgs) -> None:
    """The regression head's knobs, and the classifier's it cannot take."""
    if args.task not in ("classification", "regression"):
        raise _bad("task", args.task, "classification or regression", "--task regression for a column of numbers")
    if args.loss not in ("mse", "huber"):
        raise _bad("loss", args.loss, "mse or huber", "--loss huber (the default) or --loss mse")
    if args.task == "classification":
        if args.loss != "huber":
            raise ConfigError("--loss only with --task regression", f"loss={args.loss!r} for a classifier",
                              "add --task regression, or leave --loss out")
        return
    refused = {
        "multi_label": (args.multi_label, "one value per note", "drop --multi-label"),
        "head_init": (args.head_init == "probe", "a random head (the probe fits class labels)",
                      "leave --head-init at random"),
        "class_weight": (args.class_weight != "none", "no class weighting (there are no classes)",
                         "leave --class-weight at none"),
        "init_from": (bool(args.init_from), "a fresh model (regression versions are not continued yet)",
                      "train a new version with --task regression"),
        "search": (args.search not in ("off", "auto"), "no search (it tunes class weighting and the probe head)",
                   "leave --search at auto (off for regression) and give --lr to change the learning rate"),
    }
    for name, (bad, expected, fix) in refused.items():
        if bad:
            raise ConfigError(f"{expected} for task='regression'", f"{name}={getattr(args, name)!r}", fix)


@dataclass(frozen=True)
class TrainArgs:
    """How to fine-tune.

    Defaults are chosen for a first run on a few thousand notes on a laptop CPU: LoRA
    (r=16 on query/key/value/dense; 1.4x the samples/s of a full fine-tune here at equal
    Symptom2Disease accuracy), lr 1e-3,
    batch 16, max length 256 tokens. The run stops when the smoothed validation macro-F1 has
    not improved for 3 epochs, when the time budget (40 min) is spent, or at the epoch cap
    from the data size (:func:`auto_epochs`). On large or many-class data a short search
    (:mod:`healthmon.training.search`) picks the learning rate, the head start and class
    weighting on validation first.

    Attributes:
        mode: ``full`` (all weights), ``lora`` (peft adapters + head) or ``head`` (encoder frozen).
        multi_label: sigmoid + BCE with per-label thresholds instead of softmax + cross-entropy.
        learning_rate: None picks the mode's default (full 1e-4, lora 1e-3, head 2e-3).
        epochs: an exact epoch count for the learning-rate schedule (early stopping and the
            time budget still apply); None plans them from ``max_epochs`` and the budget.
        max_epochs: the most epochs when ``epochs`` is None; None: :func:`auto_epochs`.
        time_budget_s: seconds for search plus fine-tune; None: ``DEFAULT_TIME_BUDGET_S``.
        search: ``off``, ``auto`` or a trial count (:mod:`healthmon.training.search`); its
            choice replaces learning_rate, head_init and class_weight.
        class_weight: ``balanced`` weighs each class's loss by n / (k * count) (single-label).
        max_steps: stop after this many optimiser steps (-1 = run the epochs); for smoke tests.
        early_stopping_patience: evaluations (epochs) without improvement of the smoothed
            validation metric before stopping (0 = never stop early).
        select_by: the validation figure that picks the best epoch: ``macro_f1`` or ``loss``.
        head_init: ``random`` (the base model's fresh head) or ``probe`` (fit the head as a
            logistic regression on the frozen encoder's features first, then fine-tune:
            :mod:`healthmon.training.probe`); not with ``init_from``, which keeps its parent's head.
        task: ``classification`` (labels) or ``regression`` (one number per note, from a label
            column of numbers: :mod:`healthmon.training.regression`); regression is single-output,
            never multi-label, probe-initialised, class-weighted or continued, picks the best epoch
            by validation loss and runs no search.
        loss: the regression loss on the standardised target: ``huber`` (delta one standard
            deviation) or ``mse``.
        target_name: what a regression version predicts (shown with its values); default ``value``.
        pooling: what the head reads: ``cls`` (BERT's pooled [CLS] vector) or ``mean`` (the
            masked mean of the last layer, :mod:`healthmon.model.pooling`). None: the base
            model's own for a new model (``mean`` for the bundled all-MiniLM-L6-v2, see
            :func:`~healthmon.model.pooling.base_model_pooling`), the parent's when continuing one.
    """

    mode: Mode = "lora"
    multi_label: bool = False
    learning_rate: float | None = None
    batch_size: int = 16
    epochs: float | None = None
    weight_decay: float = 0.01
    dropout: float | None = None
    warmup_ratio: float = 0.06
    early_stopping_patience: int = 3
    # What picks the best epoch (and early stopping): validation macro-F1 at the argmax, or the
    # validation loss. Use "loss" for rare outcomes: while the model still predicts the
    # majority class for every note, macro-F1 stays flat although the ranking improves, so the
    # first epoch would be kept.
    select_by: Literal["macro_f1", "loss"] = "macro_f1"
    head_init: Literal["random", "probe"] = "random"
    pooling: Literal["cls", "mean"] | None = None
    max_length: int | None = None
    max_steps: int = -1
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_target_modules: tuple[str, ...] = ("query", "key", "value", "dense")
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int | None = None
    calibrate: bool = True
    label_order: tuple[str, ...] = field(default_factory=tuple)
    # When to stop: the smoothed validation metric has not improved for early_stopping_patience
    # evaluations, or the time budget (search + fit, seconds) is spent, or max_epochs are run.
    # None: the default budget / auto_epochs(n_train). Either limit may end the run first.
    time_budget_s: float | None = None
    max_epochs: float | None = None
    # The short search over learning rate, head initialisation and class weighting
    # (healthmon.training.search): "off", "auto" (on for large or many-class data) or a trial count.
    search: str = "auto"
    class_weight: Literal["none", "balanced"] = "none"
    # Continual fine-tuning: start from this version's weights; its labels stay in the
    # head (in their order) even if no training note carries them, new labels are added.
    init_from: str = ""
    # "regression": one value per note from a label column of numbers (healthmon.training.regression),
    # trained with `loss` on the standardised target; target_name names it (the CLI: the label column).
    task: Literal["classification", "regression"] = "classification"
    loss: Literal["mse", "huber"] = "huber"
    target_name: str = ""

    def __post_init__(self) -> None:
        _check_task(self)
        if self.mode not in DEFAULT_LEARNING_RATE:
            raise _bad("mode", self.mode, "one of full, lora, head", "pass --mode full|lora|head")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            raise _bad("learning_rate", self.learning_rate, "in (0, 1)", "typical values are 1e-5 .. 5e-3")
        if not 1 <= self.batch_size <= 4096:
            raise _bad("batch_size", self.batch_size, "between 1 and 4096", "try 16")
        if self.epochs is not None and not self.epochs > 0:
            raise _bad("epochs", self.epochs, "greater than 0", "try 3-15")
        if not 0 <= self.weight_decay < 1:
            raise _bad("weight_decay", self.weight_decay, "in [0, 1)", "try 0.01")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise _bad("dropout", self.dropout, "in [0, 1)", "try 0.1")
        if not 0 <= self.warmup_ratio < 1:
            raise _bad("warmup_ratio", self.warmup_ratio, "in [0, 1)", "try 0.06")
        if self.early_stopping_patience < 0:
            raise _bad("early_stopping_patience", self.early_stopping_patience, ">= 0", "0 disables it")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise _bad("time_budget_s", self.time_budget_s, "greater than 0 seconds", "e.g. --time-budget 45m")
        if self.max_epochs is not None and not self.max_epochs > 0:
            raise _bad("max_epochs", self.max_epochs, "greater than 0", "try 10-30")
        if self.search not in ("off", "auto") and not (str(self.search).isdigit() and 1 <= int(self.search) <= 100):
            raise _bad("search", self.search, "off, auto or a number of trials from 1 to 100", "--search auto")
        if self.class_weight not in ("none", "balanced"):
            raise _bad("class_weight", self.class_weight, "none or balanced", "--class-weight balanced")
        if self.head_init not in ("random", "probe"):
            raise _bad("head_init", self.head_init, "random or probe", "use head_init='probe' (--head-init probe) or leave the default")
        if self.pooling not in (None, "cls", "mean"):
            raise _bad("pooling", self.pooling, "cls or mean", "use pooling='mean' (--pooling mean) or leave it unset")
        if self.head_init == "probe" and self.init_from:
            raise ConfigError(
                "head_init='random' when continuing from a version (its trained head is kept)",
                f"head_init='probe' with init_from={self.init_from!r}",
                "leave head_init at its default for retrain; the probe is for a fresh model (healthmon train)",
            )
        if self.max_length is not None and not 16 <= self.max_length <= 512:
            raise _bad("max_length", self.max_length, "between 16 and 512 tokens", "try 256")
        if self.max_steps == 0 or self.max_steps < -1:
            raise _bad("max_steps", self.max_steps, "-1 (off) or a positive number", "omit it")
        if self.lora_r < 1 or self.lora_alpha < 1:
            raise _bad("lora_r/lora_alpha", (self.lora_r, self.lora_alpha), ">= 1", "try r=16, alpha=32")
        if not 0 <= self.lora_dropout < 1:
            raise _bad("lora_dropout", self.lora_dropout, "in [0, 1)", "try 0.1")
        if self.mode == "lora" and not self.lora_target_modules:
            raise _bad("lora_target_modules", self.lora_target_modules, "at least one module name", "e.g. query,value")
        if self.select_by not in ("macro_f1", "loss"):
            raise _bad("select_by", self.select_by, "macro_f1 or loss", "use loss for a rare outcome")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 < value < 0.5:
                raise _bad(name, value, "in (0, 0.5)", "try 0.1 for validation, 0.2 for test")
        if self.val_fraction + self.test_fraction >= 0.8:
            raise _bad(
                "val_fraction + test_fraction",
                self.val_fraction + self.test_fraction,
                "below 0.8 so most data is left for training",
                "lower one of them",
            )

    @property
    def resolved_learning_rate(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATE[self.mode]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["learning_rate"] = self.resolved_learning_rate
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainArgs:
        """The arguments ``to_dict`` wrote (or a subset); an unknown key raises ConfigError."""
        return cls(**checked_fields(cls, data, "training arguments"))
