"""Start a fine-tune from a fitted head instead of a random one ("linear probe, then fine-tune").

A random classification head sends large, meaningless gradients into the encoder for the
first steps of a fine-tune and distorts the features it came with; on a few thousand
examples the fine-tuned model can then rank worse than a logistic regression on the frozen
encoder's features. PhysioNet 2012 ICU summaries, two splits, AUROC: 0.763 / 0.785 fine-tuned
from a random head; 0.777 / 0.793 for this probe alone; 0.799 / 0.782 probe then fine-tune
(benchmarks/RESULTS.md). Fitting the head first as an L2-regularised logistic regression on
the frozen features, then fine-tuning everything, is LP-FT (Kumar et al.,
"Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution", ICLR 2022).

The features are whatever the classification layer reads (BERT: the pooled [CLS]); the
regularisation strength is picked by validation log-loss, and the fitted weights, with the
feature scaling folded in, are written into that layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from healthmon.errors import ConfigError
from healthmon.training.data import Example, targets_for

# Inverse L2 strengths tried, strongest first; 384-768 features from ~1,000 notes need a
# strong penalty (PhysioNet, 2,100 stays: C 0.01-0.03 on standardised pooled features).
PROBE_C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def classification_layer(model: torch.nn.Module) -> torch.nn.Linear:
    """The last linear layer of a sequence-classification head (BERT, DistilBERT, ...)."""
    head = getattr(model, "classifier", None)
    # RoBERTa-style heads end in out_proj (dense -> tanh -> out_proj); their features pass
    # through the freshly initialised dense layer, so they are random projections of the encoder's.
    layer = head if isinstance(head, torch.nn.Linear) else getattr(head, "out_proj", None)
    if isinstance(layer, torch.nn.Linear) and layer.bias is not None:
        return layer
    raise ConfigError(
        "a base model whose classification head ends in a linear layer with a bias "
        "(model.classifier or classifier.out_proj)",
        f"{type(head).__name__ if head is not None else 'no classifier'} on {type(model).__name__}",
        "train with head_init='random' (--head-init random) for this base model",
    )


@torch.no_grad()
def head_features(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], max_length: int,
                  device: torch.device, batch_size: int = 32) -> np.ndarray:
    """What the classification layer reads for each text (first window, as training sees it)."""
    layer = classification_layer(model)
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _module, inputs, _output: captured.append(inputs[0].float().cpu()))
    was_training = model.training
    model.eval().to(device)
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), truncation=True, max_length=max_length,
                              padding=True, return_tensors="pt").to(device)
            model(**batch)
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured).numpy()


def _fit_one(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
             y_val: np.ndarray) -> tuple[LogisticRegression, float, float]:
    """The logistic regression of the grid with the lowest validation log-loss."""
    best: tuple[LogisticRegression, float, float] | None = None
    for c in PROBE_C_GRID:
        fitted = LogisticRegression(C=c, max_iter=2000).fit(x_train, y_train)
        loss = log_loss(y_val, fitted.predict_proba(x_val), labels=fitted.classes_)
        if best is None or loss < best[2]:
            best = (fitted, c, loss)
    assert best is not None
    return best


def fit_probe_head(model: torch.nn.Module, tokenizer: Any, train: Sequence[Example], validation: Sequence[Example],
                   labels: Sequence[str], *, multi_label: bool, max_length: int,
                   device: torch.device) -> dict[str, Any]:
    """Fit the classification layer of ``model`` as a logistic regression on frozen features.

    Single-label: one multinomial regression (a two-class one is split evenly between the two
    logits, which leaves their softmax unchanged). Multi-label: one binary regression per label.
    Every label must occur in the training notes and must not occur in all of them (a
    regression needs both outcomes); otherwise a ConfigError says which label is short.

    Returns:
        What was fitted: the chosen C (per label for multi-label), validation log-loss,
        features and seconds, for the model card.
    """
    started = time.perf_counter()
    # Labels are checked before the feature pass, which takes minutes on a few thousand notes.
    y_train, y_val = targets_for(train, labels, multi_label), targets_for(validation, labels, multi_label)
    n_labels = len(labels)
    problem = label_problem(y_train, labels, multi_label)
    if problem is not None:
        raise problem
    x_train = head_features(model, tokenizer, [e.text for e in train], max_length, device)
    x_val = head_features(model, tokenizer, [e.text for e in validation], max_length, device)
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    z_train, z_val = (x_train - mean) / scale, (x_val - mean) / scale

    n_features = x_train.shape[1]
    weight, bias = np.zeros((n_labels, n_features)), np.zeros(n_labels)
    if multi_label:
        chosen: dict[str, float] = {}
        losses = []
        for j, label in enumerate(labels):
            fitted, chosen[label], loss = _fit_one(z_train, y_train[:, j], z_val, y_val[:, j])
            weight[j], bias[j] = fitted.coef_[0], fitted.intercept_[0]
            losses.append(loss)
        c_report: Any = chosen
        val_loss = float(np.mean(losses))
    else:
        fitted, c_report, val_loss = _fit_one(z_train, y_train, z_val, y_val)
        if n_labels == 2:  # sklearn fits one logit difference: half to each class keeps the softmax
            weight[0], weight[1] = -fitted.coef_[0] / 2, fitted.coef_[0] / 2
            bias[0], bias[1] = -fitted.intercept_[0] / 2, fitted.intercept_[0] / 2
        else:
            weight[fitted.classes_], bias[fitted.classes_] = fitted.coef_, fitted.intercept_
    # The regression saw standardised features; the layer sees raw ones: w·(x-m)/s + b = (w/s)·x + (b - w·m/s).
    # Pooled features can vary little (BERT's pooled [CLS] over similar ICU sentences: std ~0.01),
    # so these weights can be ~100x a random head's: fine-tune at a low learning rate (docs/training.md).
    layer = classification_layer(model)
    stored_weight = torch.as_tensor(weight / scale, dtype=layer.weight.dtype)
    # The bias from the weights as stored, so a half-precision head still cancels the mean exactly.
    raw_bias = bias - stored_weight.double().numpy() @ mean
    with torch.no_grad():
        layer.weight.copy_(stored_weight)
        layer.bias.copy_(torch.as_tensor(raw_bias, dtype=layer.bias.dtype))
    return {"method": "probe", "C": c_report, "val_log_loss": round(float(val_loss), 4),
            "features": int(n_features), "train_notes": len(train), "seconds": round(time.perf_counter() - started, 1)}


def label_problem(y_train: np.ndarray, labels: Sequence[str], multi_label: bool) -> ConfigError | None:
    """Why a probe cannot be fitted on these training targets, or None: single-label needs every
    label among the notes, multi-label needs each label on some notes and not on others."""
    if multi_label:
        for j, label in enumerate(labels):
            column = y_train[:, j]
            if not 0 < column.sum() < len(column):
                found = "no training note" if column.sum() == 0 else "every training note"
                return ConfigError(f"training notes with and without the label {label!r} (a probe needs both)",
                                   f"{found} carries it", "add notes on both sides, or train with head_init='random'")
        return None
    present = set(y_train.tolist())
    missing = [label for i, label in enumerate(labels) if i not in present]
    if missing:
        return ConfigError("every label among the training notes (a probe fits all of them)",
                           f"no training note labelled {', '.join(map(repr, missing))}",
                           "add notes with those labels, or train with head_init='random'")
    return None


class CachedProbe:
    """Fits the probe head once and writes it into any fresh model of the same architecture.

    The feature pass over the training and validation notes is the expensive part (minutes on
    a few thousand long notes); search trials and the final run all start from the same head.
    """

    def __init__(self, fit_into: Callable[[torch.nn.Module], dict[str, Any]]) -> None:
        self._fit_into = fit_into
        self._weights: tuple[torch.Tensor, torch.Tensor] | None = None
        self.info: dict[str, Any] = {}

    def apply(self, model: torch.nn.Module) -> dict[str, Any]:
        layer = classification_layer(model)
        if self._weights is None:
            self.info = self._fit_into(model)
            self._weights = (layer.weight.detach().cpu().clone(), layer.bias.detach().cpu().clone())
        else:
            with torch.no_grad():
                layer.weight.copy_(self._weights[0])
                layer.bias.copy_(self._weights[1])
        return dict(self.info)
