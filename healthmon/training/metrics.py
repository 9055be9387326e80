"""Test-split metrics: accuracy, macro-F1, per-class P/R/F1, AUROC and ECE."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, roc_auc_score


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width bins: sum over bins of |accuracy - confidence| weighted by bin size."""
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    if confidence.size == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def reliability_table(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per-bin mean confidence and accuracy, for reliability plots."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            rows.append(
                {
                    "bin_low": float(edges[b]),
                    "bin_high": float(edges[b + 1]),
                    "confidence": float(confidence[mask].mean()),
                    "accuracy": float(correct[mask].mean()),
                    "count": int(mask.sum()),
                }
            )
    return rows


def macro_auroc(targets_onehot: np.ndarray, probs: np.ndarray) -> float | None:
    """Mean one-vs-rest AUROC over labels that have both positives and negatives."""
    scores = []
    for j in range(probs.shape[1]):
        y = targets_onehot[:, j]
        if 0 < y.sum() < len(y):
            scores.append(roc_auc_score(y, probs[:, j]))
    return float(np.mean(scores)) if scores else None


def classification_metrics(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    *,
    multi_label: bool,
    thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """All headline metrics for one set of probabilities.

    Args:
        probs: (n, n_labels) probabilities.
        targets: class indices (single-label) or 0/1 matrix (multi-label).
        thresholds: multi-label decision thresholds (default 0.5 each).

    Returns:
        accuracy (subset accuracy for multi-label), macro_f1, auroc_macro, ece, per_class
        precision/recall/f1/support, confusion matrix (single-label) and n.
    """
    labels = list(labels)
    n_labels = len(labels)
    if multi_label:
        cut = np.array([(thresholds or {}).get(label, 0.5) for label in labels])
        predicted = (probs >= cut).astype(int)
        truth = targets.astype(int)
        onehot = truth
        accuracy = float((predicted == truth).all(axis=1).mean())
        # Every (note, label) probability is a binary forecast; ECE over all of them.
        ece = expected_calibration_error(probs.ravel(), truth.ravel())
        reliability = reliability_table(probs.ravel(), truth.ravel())
        y_true, y_pred = truth, predicted
        confusion = None
    else:
        predicted_idx = probs.argmax(axis=1)
        onehot = np.eye(n_labels, dtype=int)[targets]
        accuracy = float(accuracy_score(targets, predicted_idx))
        confidence = probs.max(axis=1)
        ece = expected_calibration_error(confidence, predicted_idx == targets)
        reliability = reliability_table(confidence, (predicted_idx == targets).astype(float))
        y_true, y_pred = targets, predicted_idx
        confusion = np.zeros((n_labels, n_labels), dtype=int)
        np.add.at(confusion, (targets, predicted_idx), 1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=None if multi_label else list(range(n_labels)), zero_division=0
    )
    # Macro averages skip labels absent from both truth and prediction: scoring them 0
    # would punish a model for a class the evaluation data never contains.
    if multi_label:
        present = np.flatnonzero(y_true.sum(axis=0) + y_pred.sum(axis=0))
        macro_f1 = float(f1_score(y_true[:, present], y_pred[:, present], average="macro", zero_division=0)) if present.size else 0.0
    else:
        present = np.union1d(y_true, y_pred)
        macro_f1 = float(f1_score(y_true, y_pred, average="macro", zero_division=0, labels=present))
    return {
        "n": int(len(probs)),
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "labels_evaluated": [labels[int(j)] for j in present],
        "auroc_macro": macro_auroc(onehot, probs),
        "ece": ece,
        "per_class": {
            label: {
                "precision": float(precision[j]),
                "recall": float(recall[j]),
                "f1": float(f1[j]),
                "support": int(support[j]),
            }
            for j, label in enumerate(labels)
        },
        "confusion_matrix": confusion.tolist() if confusion is not None else None,
        # Multi-label: one yes/no confusion per label (the dashboard draws them side by side).
        "label_confusion": {
            label: {"tp": int(((y_true[:, j] == 1) & (y_pred[:, j] == 1)).sum()),
                    "fp": int(((y_true[:, j] == 0) & (y_pred[:, j] == 1)).sum()),
                    "fn": int(((y_true[:, j] == 1) & (y_pred[:, j] == 0)).sum()),
                    "tn": int(((y_true[:, j] == 0) & (y_pred[:, j] == 0)).sum())}
            for j, label in enumerate(labels)
        } if multi_label else None,
        "reliability": reliability,
    }
