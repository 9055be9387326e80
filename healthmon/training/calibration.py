"""Temperature scaling and per-label thresholds, fitted on the validation split."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from sklearn.metrics import f1_score


def fit_temperature(logits: np.ndarray, targets: np.ndarray, multi_label: bool) -> float:
    """One scalar T minimising validation NLL of ``logits / T`` (Guo et al. 2017).

    A single parameter cannot change which class wins, so accuracy is untouched and only
    confidence moves; that is why it is safe to fit on the small validation split.

    Args:
        logits: (n, n_labels) note-level logits.
        targets: class indices (n,) for single-label, 0/1 matrix (n, n_labels) for multi-label.
    """
    if _perfectly_separated(logits, targets, multi_label):
        # Every validation note is already right, so NLL keeps falling as T -> 0 and any
        # fitted T would only reflect the clamp. No evidence either way: leave scores as they are.
        return 1.0
    x = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(targets, dtype=torch.float64 if multi_label else torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    loss_fn = torch.nn.BCEWithLogitsLoss() if multi_label else torch.nn.CrossEntropyLoss()
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_fn(x / log_t.exp(), y)
        loss.backward()
        return loss

    optimiser.step(closure)
    temperature = float(log_t.exp().item())
    # Guard against degenerate fits on tiny or perfectly separated validation sets.
    return float(np.clip(temperature, 0.05, 20.0)) if np.isfinite(temperature) else 1.0


def _perfectly_separated(logits: np.ndarray, targets: np.ndarray, multi_label: bool) -> bool:
    if multi_label:
        return bool(((logits > 0) == (targets > 0.5)).all())
    return bool((logits.argmax(axis=1) == targets).all())


def tune_thresholds(probs: np.ndarray, targets: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """Per-label threshold maximising validation F1 (multi-label only).

    Labels without a positive validation example keep 0.5: there is nothing to tune on.
    """
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    thresholds: dict[str, float] = {}
    for j, label in enumerate(labels):
        y = targets[:, j]
        if y.sum() == 0 or y.sum() == len(y):
            thresholds[label] = 0.5
            continue
        scores = np.array([f1_score(y, probs[:, j] >= t, zero_division=0) for t in grid])
        # Well-separated labels reach the best F1 over a whole range of cut-offs; take the
        # one nearest 0.5 instead of the range's edge, so unseen notes are not cut at 0.05.
        best = grid[np.isclose(scores, scores.max())]
        thresholds[label] = float(best[np.argmin(np.abs(best - 0.5))])
    return thresholds
