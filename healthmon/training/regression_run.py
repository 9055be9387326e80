"""A regression training run (``train --task regression``): plan, fit, evaluate, write the version.

:func:`healthmon.training.trainer.train` hands a ``task="regression"`` run to
:func:`train_regression`, which follows the same phases as a classifier's run with what differs
for one value per note (:mod:`healthmon.training.regression`): numeric targets and
quantile-stratified splits, one output trained on the standardised target (MSE or Huber) through
the same :func:`~healthmon.training.fitting.fit`, and test figures in the target's units: MAE,
RMSE, Spearman, R², a calibration curve, the same for the model before fine-tuning and for
always predicting the training mean. Temperature scaling and thresholds calibrate class
probabilities and are not fitted (the card says so). The best epoch is chosen on validation loss.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, set_seed

import healthmon
from healthmon.config import Settings, resolve_base_model
from healthmon.model.card import REGRESSION, ModelCard
from healthmon.model.classifier import Classifier
from healthmon.model.device import BF16_MAX_DRIFT, bf16_is_fast, pick_device
from healthmon.model.loading import build_model, load_tokenizer
from healthmon.model.pooling import base_model_pooling
from healthmon.model.versions import atomic_version_dir, check_target_free, new_version_name
from healthmon.training.args import DEFAULT_TIME_BUDGET_S, TrainArgs, auto_epochs
from healthmon.training.data import Splits
from healthmon.training.fitting import Fit, fit, is_main_process
from healthmon.training.regression import (
    DEFAULT_TARGET_NAME,
    RegressionReport,
    build_regression_splits,
    regression_metrics,
    target_scale,
    values_of,
)
from healthmon.training.saving import save_training_data, save_weights
from healthmon.types import Note

NOT_CALIBRATED = ("none: temperature scaling and thresholds calibrate class probabilities; a predicted value's "
                  "calibration is the test calibration_curve (observed against predicted means)")


def regression_splits(notes: Sequence[Note], args: TrainArgs, settings: Settings) -> tuple[Splits, RegressionReport]:
    """The splits a regression :func:`train_regression` call with these arguments would use."""
    return build_regression_splits(
        notes, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
        seed=args.seed if args.seed is not None else settings.seed,
        target_name=args.target_name or DEFAULT_TARGET_NAME,
    )


def resolved_args(args: TrainArgs, settings: Settings, n_train: int) -> TrainArgs:
    """The knobs as a regression run uses them (and its card records): pooling from the base when
    unset; the best epoch by validation loss (macro-F1, the classifier's default, means nothing
    here); no hyper-parameter search (it tunes class weighting and the probe); the classifier's
    time budget and epoch cap."""
    return replace(
        args,
        pooling=args.pooling or base_model_pooling(resolve_base_model(settings.base_model)),
        select_by="loss",
        search="off",
        target_name=args.target_name or DEFAULT_TARGET_NAME,
        time_budget_s=args.time_budget_s or DEFAULT_TIME_BUDGET_S,
        max_epochs=args.max_epochs or auto_epochs(n_train),
    )


def train_regression(
    notes: Sequence[Note],
    args: TrainArgs,
    *,
    out_dir: str | Path | None,
    settings: Settings,
    progress: bool,
    synthetic_data: bool,
    on_progress: Callable[[float, str], None] | None,
) -> tuple[Path | None, ModelCard | None, dict[str, Any]]:
    """Fine-tune a one-output head on notes whose label is a number, and write the version folder.

    Returns:
        The version folder, its card and its metrics; ``(None, None, {})`` on torchrun ranks
        other than the main one.
    """
    started = time.monotonic()
    seed = args.seed if args.seed is not None else settings.seed
    splits, report = regression_splits(notes, args, settings)
    args = resolved_args(args, settings, len(splits.train))
    target = Path(out_dir) if out_dir else settings.resolved_models_dir / new_version_name(args.mode, splits.fingerprint)
    check_target_free(target)
    device = pick_device(settings.device)
    max_length = args.max_length or settings.max_length
    mean, std = target_scale(splits.train)
    set_seed(seed)
    model = build_model(settings.base_model, splits.labels, REGRESSION, dropout=args.dropout, pooling=args.pooling)
    tokenizer = load_tokenizer(settings.base_model)
    card = ModelCard(labels=splits.labels, problem_type=REGRESSION, base_model=settings.base_model,
                     weights_format=args.mode, max_length=max_length, window_stride=settings.window_stride,
                     pooling=args.pooling, target_mean=mean, target_std=std)
    test_texts, test_values = [e.text for e in splits.test], values_of(splits.test)
    before: dict[str, Any] = {}
    if is_main_process():
        untrained = Classifier(model, tokenizer, card, device=settings.device, precision="fp32")
        before = regression_metrics(untrained.predict_values(test_texts), test_values)
    fitted = fit(model, tokenizer, splits, args, seed=seed, device=device, max_length=max_length,
                 scratch=settings.resolved_models_dir / ".runs" / target.name, progress=progress,
                 on_progress=on_progress, epochs=float(args.epochs or args.max_epochs),
                 deadline=started + args.time_budget_s)
    if fitted is None:
        return None, None, {}
    classifier = Classifier(fitted.model, tokenizer, card, device=settings.device, precision="fp32")
    test_predicted = classifier.predict_values(test_texts, progress=progress)
    metrics = {
        "test": regression_metrics(test_predicted, test_values),
        "validation": regression_metrics(classifier.predict_values([e.text for e in splits.validation]),
                                         values_of(splits.validation)),
        "before_finetune": before,
        # Always predicting the training mean: the figure a useful model must beat.
        "train_mean_baseline": regression_metrics(np.full(len(test_values), mean), test_values),
        "head_init": {"method": "random"},
        "search": {"mode": "off", "ran": False, "objective": "", "chosen": {}, "trials": [], "wall_s": 0.0,
                   "reason": "off: the search tunes class weighting and the probe head, which a regression head lacks"},
        "temperature": 1.0,
        "thresholds": {},
        "calibration": {"method": NOT_CALIBRATED},
        "target": {"name": splits.labels[0], "train_mean": mean, "train_std": std, "loss": args.loss,
                   "rejected_rows": report.rejected_targets},
        "precision_check": _bf16_check(fitted.model, tokenizer, card, settings, test_texts, test_predicted, std),
        "train": _train_cost(args, fitted, len(splits.train), device),
    }
    card = replace(card, data_fingerprint=splits.fingerprint, train_args=args.to_dict(), metrics=metrics,
                   data_report=asdict(report), training_log=fitted.log_history,
                   created_at=datetime.now(UTC).isoformat(), synthetic_data=synthetic_data,
                   healthmon_version=healthmon.__version__)
    _write_version(target, tokenizer, fitted.model, args.mode, splits, card)
    return target, card, metrics


def _bf16_check(trained: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, card: ModelCard, settings: Settings,
                texts: list[str], fp32_values: np.ndarray, std: float) -> dict[str, Any]:
    """bf16 against fp32 on the test notes, in training-target standard deviations, so
    ``precision="auto"`` serves bf16 only where values move by at most 1 % of the target's spread."""
    if not bf16_is_fast(pick_device(settings.device)):
        return {}
    bf16 = Classifier(trained, tokenizer, card, device=settings.device, precision="bf16").predict_values(texts)
    drift = np.abs(bf16 - fp32_values) / std
    return {"bf16": {"max_drift": float(drift.max()), "agreement": float((drift <= BF16_MAX_DRIFT).mean()),
                     "notes": len(texts), "units": "training-target standard deviations"}}


def _train_cost(args: TrainArgs, fitted: Fit, train_notes: int, device: torch.device) -> dict[str, Any]:
    epochs_run = max((row.get("epoch", 0.0) for row in fitted.log_history), default=0.0)
    return {
        "mode": args.mode,
        "wall_s": round(fitted.wall_s, 2),
        "samples_per_s": round(fitted.samples_per_s, 2),
        "train_notes": train_notes,
        "epochs_budget": fitted.epochs_budget,
        "epochs_run": float(epochs_run),
        "max_epochs": args.max_epochs,
        "time_budget_s": args.time_budget_s,
        "best_val_loss": fitted.best_metric,
        "stopped_by": getattr(fitted, "stopped_by", ""),
        "trainable_params": fitted.trainable,
        # ru_maxrss is KiB on Linux: the process's own peak, model and activations included.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
        "world_size": fitted.world_size,
        "device": device.type,
    }


def _write_version(target: Path, tokenizer: PreTrainedTokenizerBase, trained: torch.nn.Module, mode: str,
                   splits: Splits, card: ModelCard) -> None:
    """Tokenizer, weights, the notes seen and the card, all at once or not at all."""
    with atomic_version_dir(target) as tmp:
        tokenizer.save_pretrained(str(tmp))
        save_weights(trained, mode, tmp)
        save_training_data(tmp, splits, card.parent_version)
        card.save(tmp)


__all__ = ["regression_splits", "resolved_args", "train_regression"]
