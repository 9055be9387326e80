"""The regression head's data and figures: numeric targets, quantile-stratified splits, MAE/RMSE/Spearman.

A regression version predicts one number per note (a 0-4 severity, a risk score, a lab value,
an age) instead of class probabilities (``train --task regression``). What differs from a
classifier, and where:

* **Targets.** The label column holds one number per row. A row whose cell is empty, holds
  several values or is not a (finite) number is counted by reason and listed with its line, like
  the rows ingest rejects (:func:`parse_target`, :func:`target_rejections`), never dropped silently.
* **Splits.** Exact duplicates go first (a note repeated with another value counts as a
  conflict), then the split is stratified by quantile bins of the target (:func:`quantile_bins`),
  so every split spans the same range.
* **Scale.** The head is trained on the target standardised with the training split's mean and
  standard deviation (:func:`target_scale`, stored in the card); prediction maps the output back
  (:meth:`~healthmon.model.classifier.Classifier.predict_values`). MSE or Huber loss (delta one
  standard deviation) on the standardised target: :func:`regression_loss`.
* **Figures.** MAE, RMSE, Spearman, R² and a calibration curve (observed against predicted
  means over quantile bins of the prediction): :func:`regression_metrics`.

The word ``regression`` elsewhere in healthmon also names the frozen *regression set* of
continual learning (``data/regression.jsonl``); that set is unrelated to this head.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from healthmon.errors import TrainingError
from healthmon.model.classifier import Classifier
from healthmon.training.data import DataReport, Example, Splits, deduplicate, fingerprint, stratified_split
from healthmon.types import Note, RejectedRow

# The target's name when the caller gives none (the CLI passes the label column's name).
DEFAULT_TARGET_NAME = "value"
# Rejected rows listed one by one in the card (all are counted).
MAX_LISTED_REJECTIONS = 100
# Huber's switch from squared to absolute error, in standard deviations of the training target.
HUBER_DELTA = 1.0
CALIBRATION_BINS = 10


@dataclass
class RegressionReport(DataReport):
    """The data report of a regression run: the classification counts plus why targets were refused.

    ``unlabelled`` counts rows with an empty target cell; ``several_values`` cells with more than
    one value; ``non_numeric_target`` values that are not finite numbers. ``rejected_rows`` lists
    the first rows refused (line, note id, reason); ``target`` summarises the values kept.
    """

    several_values: int = 0
    non_numeric_target: int = 0
    rejected_rows: list[dict[str, Any]] = field(default_factory=list)
    target: dict[str, float] = field(default_factory=dict)

    @property
    def rejected_targets(self) -> int:
        return self.unlabelled + self.several_values + self.non_numeric_target


def parse_target(labels: Sequence[str]) -> tuple[float | None, str, str]:
    """One note's target: ``(value, "", "")``, or ``(None, kind, reason)`` with kind ``missing``,
    ``several`` or ``not_numeric`` and the reason shown to the user."""
    cells = [cell.strip() for cell in labels if cell.strip()]
    if not cells:
        return None, "missing", "no target value"
    if len(cells) > 1:
        return None, "several", f"several target values ({', '.join(cells[:3])}); one number per row"
    try:
        value = float(cells[0])
    except ValueError:
        return None, "not_numeric", f"target {cells[0]!r} is not a number"
    if not math.isfinite(value):
        return None, "not_numeric", f"target {cells[0]!r} is not a finite number"
    return value, "", ""


def target_rejections(notes: Sequence[Note]) -> list[RejectedRow]:
    """Every note whose target cannot be used, with its line and the reason (as ingest reports rows)."""
    found = []
    for note in notes:
        value, _, reason = parse_target(note.labels)
        if value is None:
            found.append(RejectedRow(note.line, f"{reason} (note {note.note_id})"))
    return found


def numeric_examples(notes: Sequence[Note], report: RegressionReport) -> list[Example]:
    """Notes with a usable target as examples (the value kept as its ``repr`` in ``labels``);
    every other note counted in ``report`` by reason."""
    report.rows_in = len(notes)
    examples: list[Example] = []
    for note in notes:
        value, kind, reason = parse_target(note.labels)
        if value is None:
            if kind == "missing":
                report.unlabelled += 1
            elif kind == "several":
                report.several_values += 1
            else:
                report.non_numeric_target += 1
            if len(report.rejected_rows) < MAX_LISTED_REJECTIONS:
                report.rejected_rows.append({"line": note.line, "note_id": note.note_id, "reason": reason})
            continue
        examples.append(Example(note.text, (repr(value),)))
    return examples


def values_of(examples: Sequence[Example]) -> np.ndarray:
    """The examples' target values, float64."""
    return np.array([float(e.labels[0]) for e in examples], dtype=np.float64)


def target_scale(train: Sequence[Example]) -> tuple[float, float]:
    """Mean and standard deviation of the training targets (a constant target gets 1)."""
    values = values_of(train)
    std = float(values.std())
    return float(values.mean()), std if std > 1e-12 else 1.0


def standardised_targets(examples: Sequence[Example], train: Sequence[Example]) -> list[float]:
    """The examples' targets standardised with the training split's mean and standard deviation."""
    mean, std = target_scale(train)
    return ((values_of(examples) - mean) / std).tolist()


def quantile_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index per value over ``n_bins`` quantile bins; tied quantiles merge (a 0-4 score has at most 5 bins)."""
    values = np.asarray(values, dtype=np.float64)
    # Edges are values that occur ("lower"), each closing its bin, so a discrete score's ties never split.
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1)[1:-1], method="lower"))
    return np.searchsorted(edges, values, side="left")


def build_regression_splits(notes: Sequence[Note], *, val_fraction: float, test_fraction: float, seed: int,
                            target_name: str = DEFAULT_TARGET_NAME) -> tuple[Splits, RegressionReport]:
    """Notes with numeric targets -> de-duplicated splits stratified by quantile bins of the target.

    Raises:
        TrainingError: fewer than 10 usable notes, a target that never varies, or too few notes
            to hold some out for validation and test.
    """
    report = RegressionReport()
    examples = deduplicate(numeric_examples(notes, report), report)
    if len(examples) < 10:
        raise TrainingError(
            "at least 10 distinct notes with a numeric target",
            f"{len(examples)} usable ({report.unlabelled} without a value, {report.non_numeric_target} not numbers, "
            f"{report.several_values} with several values, {report.duplicates_removed} duplicates)",
            "check --label-column names the column of numbers, and that the cells hold one number each",
        )
    values = values_of(examples)
    if float(np.ptp(values)) == 0.0:
        raise TrainingError("target values that vary", f"every usable note has {values[0]:g}",
                            "check --label-column, or train a classifier instead")
    # About 20 notes per bin, 2 to 10 bins: each bin keeps its share in every split.
    bins = quantile_bins(values, int(np.clip(len(values) // 20, 2, CALIBRATION_BINS)))
    by_text = {e.text: e for e in examples}
    proxies = [Example(e.text, (f"bin-{b:02d}",)) for e, b in zip(examples, bins)]
    train, val, test = (
        [by_text[p.text] for p in part] for part in stratified_split(proxies, val_fraction, test_fraction, seed)
    )
    if not val or not test:
        raise TrainingError("enough notes to hold some out for validation and test",
                            f"validation {len(val)}, test {len(test)} notes", "add notes with a target value")
    report.split_sizes = {"train": len(train), "validation": len(val), "test": len(test)}
    report.target = {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
                     "std": float(values.std()), "median": float(np.median(values)),
                     "distinct_values": len(np.unique(values))}
    name = target_name.strip() or DEFAULT_TARGET_NAME
    return Splits(train, val, test, (name,), fingerprint(examples, seed, (val_fraction, test_fraction))), report


# ----------------------------------------------------------------------------- figures


def calibration_curve(predicted: np.ndarray, observed: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict[str, Any]]:
    """Mean observed against mean predicted value over quantile bins of the prediction (a perfect
    model lies on the diagonal); tied predictions share a bin."""
    predicted, observed = np.asarray(predicted, dtype=np.float64), np.asarray(observed, dtype=np.float64)
    if predicted.size == 0:
        return []
    which = quantile_bins(predicted, bins)
    return [{"predicted_mean": float(predicted[which == b].mean()), "observed_mean": float(observed[which == b].mean()),
             "count": int((which == b).sum())} for b in np.unique(which)]


def regression_metrics(predicted: np.ndarray, observed: np.ndarray) -> dict[str, Any]:
    """n, MAE, RMSE, Spearman, R² and the calibration curve; Spearman and R² are None where undefined
    (constant predictions or targets)."""
    predicted, observed = np.asarray(predicted, dtype=np.float64), np.asarray(observed, dtype=np.float64)
    error = predicted - observed
    spread = float(((observed - observed.mean()) ** 2).sum()) if observed.size else 0.0
    varies = observed.size > 1 and np.ptp(predicted) > 0 and np.ptp(observed) > 0
    return {
        "n": int(observed.size),
        "mae": float(np.abs(error).mean()) if observed.size else float("nan"),
        "rmse": float(np.sqrt((error ** 2).mean())) if observed.size else float("nan"),
        "spearman": float(spearmanr(predicted, observed).statistic) if varies else None,
        "r2": 1.0 - float((error ** 2).sum()) / spread if spread > 0 else None,
        "mean_predicted": float(predicted.mean()) if observed.size else None,
        "mean_observed": float(observed.mean()) if observed.size else None,
        "calibration_curve": calibration_curve(predicted, observed),
    }


def evaluate_regression(classifier: Classifier, notes: Sequence[Note], *, progress: bool = False) -> dict[str, Any]:
    """A regression version's figures on notes with numeric targets (``healthmon evaluate``); notes
    without a usable target are counted under ``skipped`` and listed under ``rejected_rows``."""
    report = RegressionReport()
    examples = numeric_examples(notes, report)
    if not examples:
        raise TrainingError(f"notes with a numeric {classifier.labels[0]} in the label column",
                            f"none usable of {len(notes)} ({report.unlabelled} empty, {report.non_numeric_target} "
                            f"not numbers, {report.several_values} with several values)",
                            "check --label-column names the column of numbers")
    predicted = classifier.predict_values([e.text for e in examples], progress=progress)
    return {
        "test": regression_metrics(predicted, values_of(examples)),
        "skipped": {"unlabelled": report.unlabelled, "not_numeric": report.non_numeric_target,
                    "several_values": report.several_values},
        "rejected_rows": report.rejected_rows,
        "model": classifier.name,
    }


# ----------------------------------------------------------------------------- what the Trainer calls


def regression_loss(kind: str) -> Callable[..., torch.Tensor]:
    """MSE or Huber (delta :data:`HUBER_DELTA`) on the standardised target, as Trainer's ``compute_loss_func``."""

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        predicted = logits.float().view(-1)
        target = labels.to(predicted.device, torch.float32).view(-1)
        if kind == "mse":
            return torch.nn.functional.mse_loss(predicted, target)
        return torch.nn.functional.huber_loss(predicted, target, delta=HUBER_DELTA)

    return loss


def regression_metrics_fn(train: Sequence[Example]) -> Callable[[Any], dict[str, float]]:
    """Validation MAE, RMSE and Spearman in the target's units, as Trainer's ``compute_metrics``."""
    mean, std = target_scale(train)

    def compute(pred: Any) -> dict[str, float]:  # pred: transformers' EvalPrediction
        outputs = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        figures = regression_metrics(np.asarray(outputs).reshape(-1) * std + mean,
                                     np.asarray(pred.label_ids).reshape(-1) * std + mean)
        out = {"mae": figures["mae"], "rmse": figures["rmse"]}
        if figures["spearman"] is not None:
            out["spearman"] = figures["spearman"]
        return out

    return compute


__all__ = [
    "DEFAULT_TARGET_NAME",
    "RegressionReport",
    "build_regression_splits",
    "calibration_curve",
    "evaluate_regression",
    "numeric_examples",
    "parse_target",
    "quantile_bins",
    "regression_loss",
    "regression_metrics",
    "regression_metrics_fn",
    "standardised_targets",
    "target_rejections",
    "target_scale",
    "values_of",
]
