"""Fine-tune with transformers' Trainer, then calibrate, evaluate and write a version folder.

:func:`train` runs the phases in order: plan (splits, target, device), build the starting
model, score it, search (learning rate, head start, class weighting: :mod:`.search`), plan the
epochs that fit the time budget, initialise the head, fit, calibrate, evaluate, write the card
and the folder.
"""

from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, set_seed

import healthmon
from healthmon.config import Settings, resolve_base_model
from healthmon.errors import ConfigError
from healthmon.model.card import MULTI_LABEL, SINGLE_LABEL, ModelCard
from healthmon.model.classifier import Classifier, calibrated_probabilities
from healthmon.model.device import bf16_is_fast, pick_device
from healthmon.model.loading import build_model, initialise_from_version, load_tokenizer
from healthmon.model.pooling import base_model_pooling
from healthmon.model.versions import atomic_version_dir, check_target_free, new_version_name
from healthmon.training.args import DEFAULT_TIME_BUDGET_S, TrainArgs, auto_epochs
from healthmon.training.calibration import ece_interval, fit_temperature_checked, tune_thresholds_checked
from healthmon.training.data import DataReport, Splits, build_splits, targets_for
from healthmon.training.fitting import Fit, fit, is_main_process, train_in_bf16
from healthmon.training.metrics import classification_metrics
from healthmon.training.probe import CachedProbe, classification_layer, fit_probe_head, label_problem
from healthmon.training.regression_run import train_regression
from healthmon.training.saving import save_training_data, save_weights
from healthmon.training.search import SearchResult, defaults_of, run_search, search_plan
from healthmon.types import Note


@dataclass(frozen=True)
class TrainResult:
    """Where the new version lives and what it scored (``None`` on non-zero ranks)."""

    version_dir: Path | None
    card: ModelCard | None
    metrics: dict[str, Any]


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux: the honest peak of this process, model and activations included.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_one_gpu_per_process(device: torch.device) -> None:
    """Under torchrun on CUDA each process needs a GPU of its own: NCCL refuses two ranks on
    one device ("Duplicate GPU detected"), after the model and data are already loaded."""
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if device.type == "cuda" and processes > torch.cuda.device_count():
        raise ConfigError(
            "one GPU per training process under torchrun",
            f"{processes} processes on this machine and {torch.cuda.device_count()} GPU(s) visible",
            f"use --nproc_per_node={torch.cuda.device_count()}, or train on the CPU with gloo: hide the GPUs "
            "(CUDA_VISIBLE_DEVICES= torchrun ...) with HEALTHMON_DEVICE auto or cpu",
        )


@dataclass(frozen=True, eq=False)
class _Plan:
    """One run's inputs, resolved once: the knobs as used, the splits, where the version goes, the device."""

    args: TrainArgs  # pooling resolved: the card's train_args record what was used, not "unset"
    splits: Splits
    report: DataReport
    target: Path
    device: torch.device
    seed: int
    max_length: int
    test_texts: list[str]
    test_targets: np.ndarray

    @property
    def multi_label(self) -> bool:
        return self.args.multi_label


@dataclass(frozen=True, eq=False)
class _Start:
    """The model before fine-tuning, its tokenizer, and the card it is scored with until the end."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    card: ModelCard  # labels, pooling, parent; calibration and metrics are added by _final_card


@dataclass(frozen=True, eq=False)
class _Calibration:
    """Temperature and multi-label thresholds, fitted on the validation logits kept here."""

    val_logits: np.ndarray
    val_targets: np.ndarray
    temperature: float
    thresholds: dict[str, float]
    report: dict[str, Any]  # how the temperature was chosen: held-out ECE with and without it


def train(
    notes: Sequence[Note],
    args: TrainArgs | None = None,
    *,
    out_dir: str | Path | None = None,
    settings: Settings | None = None,
    progress: bool = True,
    synthetic_data: bool = False,
    on_progress: Callable[[float, str], None] | None = None,
) -> TrainResult:
    """Fine-tune a classifier on labelled notes and write a calibrated version folder.

    Args:
        notes: labelled notes (``Note.labels``); unlabelled and duplicate ones are counted
            in the card's data report, not used.
        args: training knobs (defaults: see :class:`TrainArgs`).
        out_dir: version folder to create (must not exist); default a new name under the
            models folder.
        settings: base model, device, max length and seed defaults.
        progress: show tqdm progress bars.
        synthetic_data: mark the version as trained on synthetic notes (shown in the UI).
        on_progress: called with (fraction done, message) after each optimiser step, e.g. to
            update a background job's progress bar; it may raise to stop training.

    Returns:
        The version folder, its card and the metrics (validation, test before/after
        calibration, before fine-tuning, training cost).
    """
    settings = settings or Settings()
    if args is not None and args.task == "regression":  # one value per note: healthmon.training.regression_run
        return TrainResult(*train_regression(notes, args, out_dir=out_dir, settings=settings, progress=progress,
                                             synthetic_data=synthetic_data, on_progress=on_progress))
    started = time.monotonic()
    plan = _plan(notes, args or TrainArgs(), settings, out_dir)
    deadline = started + plan.args.time_budget_s
    start = _build_start(plan, settings)
    before = _score_before_finetune(start, plan, settings)
    probe = _probe(start, plan)
    search = _search(start, plan, settings, probe, on_progress)
    plan = replace(plan, args=replace(plan.args, **search.chosen))
    head_init = _init_head(start, plan, settings, probe, on_progress)
    epochs = _planned_epochs(plan, search, deadline)
    fitted = fit(start.model, start.tokenizer, plan.splits, plan.args, seed=plan.seed, device=plan.device,
                 max_length=plan.max_length, scratch=_scratch_path(settings, plan.target), progress=progress,
                 on_progress=on_progress, epochs=epochs, deadline=deadline)
    if fitted is None:  # a torchrun rank other than the main one: the main one evaluates and writes
        return TrainResult(None, None, {})
    head_init = {**head_init, **fitted.start_check}
    classifier = Classifier(fitted.model, start.tokenizer, start.card, device=settings.device, precision="fp32")
    calibration = _calibrate(classifier, plan)
    evaluation = _evaluate(classifier, fitted.model, start, plan, settings, calibration, progress=progress)
    metrics = _metrics(plan, fitted, calibration, evaluation, before=before, head_init=head_init, search=search)
    card = _final_card(start.card, plan, calibration, metrics, fitted.log_history, synthetic_data)
    _write_version(plan.target, start.tokenizer, fitted.model, plan, card)
    return TrainResult(plan.target, card, metrics)


def _plan(notes: Sequence[Note], args: TrainArgs, settings: Settings, out_dir: str | Path | None) -> _Plan:
    """Splits, target folder, device and pooling, each checked before anything slow loads."""
    seed = args.seed if args.seed is not None else settings.seed
    splits, report = train_splits_only(notes, args, settings)
    target = (Path(out_dir) if out_dir
              else settings.resolved_models_dir / new_version_name(args.mode, splits.fingerprint))
    check_target_free(target)
    device = pick_device(settings.device)
    check_one_gpu_per_process(device)  # before the model loads
    return _Plan(
        # Resolved, so the card's train_args record what was used, not "unset".
        args=replace(args, pooling=_resolved_pooling(args, settings.base_model),
                     time_budget_s=args.time_budget_s or DEFAULT_TIME_BUDGET_S,
                     max_epochs=args.max_epochs or auto_epochs(len(splits.train))),
        splits=splits,
        report=report,
        target=target,
        device=device,
        seed=seed,
        max_length=args.max_length or settings.max_length,
        test_texts=[e.text for e in splits.test],
        test_targets=targets_for(splits.test, splits.labels, args.multi_label),
    )


def _build_start(plan: _Plan, settings: Settings) -> _Start:
    """The base model (or the parent version, when continuing) with a head for the splits' labels."""
    args = plan.args
    problem_type = MULTI_LABEL if args.multi_label else SINGLE_LABEL
    set_seed(plan.seed)
    model = build_model(settings.base_model, plan.splits.labels, problem_type, dropout=args.dropout,
                        pooling=args.pooling)
    parent = ""
    if args.init_from:
        parent = str(Path(args.init_from).resolve())
        initialise_from_version(model, Path(parent))
    tokenizer = load_tokenizer(settings.base_model)
    card = ModelCard(
        labels=plan.splits.labels,
        problem_type=problem_type,
        base_model=settings.base_model,
        weights_format=args.mode,
        max_length=plan.max_length,
        window_stride=settings.window_stride,
        parent_version=parent,
        pooling=args.pooling,
    )
    return _Start(model, tokenizer, card)


def _score_before_finetune(start: _Start, plan: _Plan, settings: Settings) -> dict[str, Any]:
    """Test metrics of the same architecture with its fresh head: the "before fine-tuning" reference."""
    if not is_main_process():
        return {}
    untrained = Classifier(start.model, start.tokenizer, start.card, device=settings.device, precision="fp32")
    before_probs = calibrated_probabilities(untrained.logits(plan.test_texts), 1.0, plan.multi_label)
    return classification_metrics(before_probs, plan.test_targets, plan.splits.labels, multi_label=plan.multi_label)


def _probe(start: _Start, plan: _Plan) -> CachedProbe:
    """The probe head, fitted the first time a search trial or the final run asks for it."""
    device = plan.device
    # Under torchrun each rank fits the same probe (same notes, deterministic regression) on its own GPU.
    local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if device.type == "cuda" else device
    return CachedProbe(lambda model: fit_probe_head(
        model, start.tokenizer, plan.splits.train, plan.splits.validation, plan.splits.labels,
        multi_label=plan.multi_label, max_length=plan.max_length, device=local))


def _probe_can_fit(start: _Start, plan: _Plan) -> bool:
    """Whether the search may offer a probe head: a fresh model whose head ends in a linear
    layer, every label in the training notes (and, multi-label, absent from some of them)."""
    if plan.args.init_from:
        return False
    try:
        classification_layer(start.model)
    except ConfigError:
        return False
    targets = targets_for(plan.splits.train, plan.splits.labels, plan.multi_label)
    return label_problem(targets, plan.splits.labels, plan.multi_label) is None


def _search(start: _Start, plan: _Plan, settings: Settings, probe: CachedProbe,
            on_progress: Callable[[float, str], None] | None) -> SearchResult:
    """Run the search when the data calls for it (:func:`~.search.search_plan`); else keep the knobs."""
    args = plan.args
    n_trials, reason = search_plan(args, len(plan.splits.train), len(plan.splits.labels))
    if n_trials == 0:
        return SearchResult(mode=str(args.search), ran=False, reason=reason, objective="", chosen=defaults_of(args))

    def fresh_model() -> PreTrainedModel:
        set_seed(plan.seed)
        return build_model(settings.base_model, plan.splits.labels, start.card.problem_type,
                           dropout=args.dropout, pooling=args.pooling)

    return run_search(fresh_model, probe.apply if _probe_can_fit(start, plan) else None, start.tokenizer,
                      plan.splits, args, n_trials=n_trials, reason=reason, budget_s=args.time_budget_s,
                      seed=plan.seed, device=plan.device, max_length=plan.max_length, on_progress=on_progress)


# The trials' timing leaves out checkpoint saves and the final run's longer padding tail.
EPOCH_TIME_MARGIN = 0.9


def _planned_epochs(plan: _Plan, search: SearchResult, deadline: float) -> float:
    """``--epochs`` as given; else the epoch cap, lowered to what the time left affords when
    the search has timed a training step (so the learning rate decays to zero by the end)."""
    args = plan.args
    if args.epochs is not None:
        return float(args.epochs)
    cap = float(args.max_epochs)
    if search.train_s_per_note is None or search.eval_s_per_note is None:
        return cap
    per_epoch = (len(plan.splits.train) * search.train_s_per_note
                 + len(plan.splits.validation) * search.eval_s_per_note)
    affordable = EPOCH_TIME_MARGIN * (deadline - time.monotonic()) / per_epoch
    return max(1.0, min(cap, math.floor(affordable * 10) / 10))


def _init_head(start: _Start, plan: _Plan, settings: Settings, probe: CachedProbe,
               on_progress: Callable[[float, str], None] | None) -> dict[str, Any]:
    """Keep the random head, or (``head_init="probe"``) fit it on the frozen encoder's features."""
    if plan.args.head_init != "probe":
        return {"method": "random"}
    if on_progress is not None:
        on_progress(0.0, "fitting the head on the frozen encoder's features")
    head_init = probe.apply(start.model)
    if is_main_process():
        # The probe alone, on the same test notes: what the fine-tune starts from and must beat.
        probed = Classifier(start.model, start.tokenizer, start.card, device=settings.device, precision="fp32")
        head_init["test"] = classification_metrics(
            calibrated_probabilities(probed.logits(plan.test_texts), 1.0, plan.multi_label), plan.test_targets,
            plan.splits.labels, multi_label=plan.multi_label)
    return head_init


def _calibrate(classifier: Classifier, plan: _Plan) -> _Calibration:
    """Temperature (unless ``calibrate=False``) and, multi-label, per-label thresholds, on
    validation, each kept only where it helps held-out folds (:mod:`.calibration`)."""
    splits, multi_label = plan.splits, plan.multi_label
    val_targets = targets_for(splits.validation, splits.labels, multi_label)
    val_logits = classifier.logits([e.text for e in splits.validation])
    report: dict[str, Any] = {"method": "none (calibrate=False)", "temperature": 1.0, "kept_unscaled": True}
    if plan.args.calibrate:
        report = fit_temperature_checked(val_logits, val_targets, multi_label, seed=plan.seed)
    temperature = float(report["temperature"])
    thresholds: dict[str, float] = {}
    if multi_label:
        thresholds = tune_thresholds_checked(
            calibrated_probabilities(val_logits, temperature, True), val_targets, splits.labels, seed=plan.seed
        )
    return _Calibration(val_logits, val_targets, temperature, thresholds, report)


def _evaluate(classifier: Classifier, trained: torch.nn.Module, start: _Start, plan: _Plan, settings: Settings,
              calibration: _Calibration, *, progress: bool) -> dict[str, Any]:
    """Test metrics before and after calibration, validation metrics, and the bf16 drift check."""
    labels, multi_label, test_targets = plan.splits.labels, plan.multi_label, plan.test_targets
    temperature, thresholds = calibration.temperature, calibration.thresholds
    test_logits = classifier.logits(plan.test_texts, progress=progress)
    raw_probs = calibrated_probabilities(test_logits, 1.0, multi_label)
    cal_probs = calibrated_probabilities(test_logits, temperature, multi_label)
    test_raw = classification_metrics(raw_probs, test_targets, labels, multi_label=multi_label)
    test_cal = classification_metrics(
        cal_probs, test_targets, labels, multi_label=multi_label, thresholds=thresholds or None
    )
    validation = classification_metrics(
        calibrated_probabilities(calibration.val_logits, temperature, multi_label),
        calibration.val_targets,
        labels,
        multi_label=multi_label,
        thresholds=thresholds or None,
    )
    precision_check = {}
    if bf16_is_fast(classifier.device):
        # Recorded so precision="auto" can use bf16 only for versions where it is harmless.
        bf16 = Classifier(trained, start.tokenizer, start.card, device=settings.device, precision="bf16")
        bf16_probs = calibrated_probabilities(bf16.logits(plan.test_texts), temperature, multi_label)
        precision_check["bf16"] = {
            "max_drift": float(np.abs(bf16_probs - cal_probs).max()),
            "agreement": float((bf16_probs.argmax(1) == cal_probs.argmax(1)).mean()),
            "notes": len(plan.test_texts),
        }
    return {
        # "raw" = the model as trained: temperature 1 and, for multi-label, 0.5 thresholds.
        "test": {**test_cal, "ece_uncalibrated": test_raw["ece"], "macro_f1_raw": test_raw["macro_f1"],
                 "ece_interval": ece_interval(cal_probs, test_targets, multi_label, seed=plan.seed),
                 "ece_uncalibrated_interval": ece_interval(raw_probs, test_targets, multi_label, seed=plan.seed)},
        "validation": validation,
        "precision_check": precision_check,
    }


def _metrics(plan: _Plan, fitted: Fit, calibration: _Calibration, evaluation: dict[str, Any], *,
             before: dict[str, Any], head_init: dict[str, Any], search: SearchResult) -> dict[str, Any]:
    """Everything the card records about the run, the training cost included."""
    args = plan.args
    epochs_run = max((row.get("epoch", 0.0) for row in fitted.log_history), default=0.0)
    return {
        "test": evaluation["test"],
        "validation": evaluation["validation"],
        "before_finetune": before,
        "head_init": head_init,
        "temperature": calibration.temperature,
        "thresholds": calibration.thresholds,
        "calibration": calibration.report,
        "search": search.to_card(),
        "precision_check": evaluation["precision_check"],
        "train": {
            "mode": args.mode,
            "wall_s": round(fitted.wall_s, 2),
            "samples_per_s": round(fitted.samples_per_s, 2),
            "train_notes": len(plan.splits.train),
            "epochs_budget": fitted.epochs_budget,
            "epochs_run": float(epochs_run),
            "max_epochs": args.max_epochs,
            "time_budget_s": args.time_budget_s,
            "stopped_by": fitted.stopped_by,
            f"best_val_{args.select_by}": fitted.best_metric,
            "trainable_params": fitted.trainable,
            "peak_rss_mb": round(_peak_rss_mb(), 1),
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
            "world_size": fitted.world_size,
            "device": plan.device.type,
            "autocast": "bf16" if train_in_bf16(plan.device) else "fp32",
        },
    }


def _final_card(stub: ModelCard, plan: _Plan, calibration: _Calibration, metrics: dict[str, Any],
                log_history: list[dict[str, Any]], synthetic_data: bool) -> ModelCard:
    return replace(
        stub,
        temperature=calibration.temperature,
        thresholds=calibration.thresholds,
        data_fingerprint=plan.splits.fingerprint,
        train_args=plan.args.to_dict(),
        metrics=metrics,
        data_report=asdict(plan.report),
        training_log=log_history,
        created_at=datetime.now(timezone.utc).isoformat(),
        synthetic_data=synthetic_data,
        healthmon_version=healthmon.__version__,
    )


def _write_version(target: Path, tokenizer: PreTrainedTokenizerBase, trained: torch.nn.Module, plan: _Plan,
                   card: ModelCard) -> None:
    """Tokenizer, weights, the notes seen and the card, all at once or not at all."""
    with atomic_version_dir(target) as tmp:
        tokenizer.save_pretrained(str(tmp))
        save_weights(trained, plan.args.mode, tmp)
        save_training_data(tmp, plan.splits, card.parent_version)
        card.save(tmp)


def _scratch_path(settings: Settings, target: Path) -> Path:
    """Checkpoint folder for one run, named after the version so every torchrun rank
    finds the same best checkpoint; beside the models so 90 MB checkpoints spare /tmp."""
    return settings.resolved_models_dir / ".runs" / target.name


def _parent_labels(args: TrainArgs) -> tuple[str, ...]:
    return ModelCard.load(args.init_from).labels if args.init_from else ()


def _resolved_pooling(args: TrainArgs, base_model: str) -> str:
    """The head's pooling: as asked, else the parent's when continuing, else the base model's
    own (:func:`~healthmon.model.pooling.base_model_pooling`: mean for the bundled base)."""
    if not args.init_from:
        return args.pooling or base_model_pooling(resolve_base_model(base_model))
    inherited = ModelCard.load(args.init_from).pooling
    if args.pooling and args.pooling != inherited:
        raise ConfigError(
            f"the pooling of the version being continued ({inherited})",
            f"pooling={args.pooling!r}",
            "leave --pooling unset when continuing a version; a new pooling needs a fresh model",
        )
    return inherited


def train_splits_only(notes: Sequence[Note], args: TrainArgs, settings: Settings) -> tuple[Splits, DataReport]:
    """The splits a :func:`train` call with these arguments would use (for benchmarks and tests)."""
    seed = args.seed if args.seed is not None else settings.seed
    inherited = _parent_labels(args)
    return build_splits(
        notes,
        multi_label=args.multi_label,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=seed,
        label_order=inherited + tuple(label for label in args.label_order if label not in inherited),
        keep_label_order=bool(args.init_from),
    )


__all__ = ["TrainResult", "train", "train_splits_only"]
