"""Evaluate an existing version on a labelled file."""

from __future__ import annotations

from typing import Any, Sequence

from healthmon.errors import TrainingError
from healthmon.model.classifier import Classifier, calibrated_probabilities
from healthmon.training.data import Example, targets_for
from healthmon.training.metrics import classification_metrics
from healthmon.training.regression import evaluate_regression
from healthmon.types import Note


def evaluate(classifier: Classifier, notes: Sequence[Note], *, progress: bool = False) -> dict[str, Any]:
    """Metrics of ``classifier`` on labelled ``notes``, calibrated and uncalibrated.

    Notes without labels, or with a label the model does not know, are counted under
    ``skipped`` rather than failing the whole run. A regression version is scored on the
    notes' numeric targets instead (:func:`~healthmon.training.regression.evaluate_regression`).
    """
    if classifier.regression:
        return evaluate_regression(classifier, notes, progress=progress)
    known = set(classifier.labels)
    usable: list[Example] = []
    skipped = {"unlabelled": 0, "unknown_label": 0, "multi_label_row": 0}
    unknown: set[str] = set()
    for note in notes:
        labels = tuple(label for label in note.labels if label.strip())
        if not labels:
            skipped["unlabelled"] += 1
        elif not classifier.multi_label and len(labels) > 1:
            skipped["multi_label_row"] += 1
        elif set(labels) - known:
            skipped["unknown_label"] += 1
            unknown |= set(labels) - known
        else:
            usable.append(Example(note.text, labels))
    if not usable:
        raise TrainingError(
            f"notes labelled with the model's labels {sorted(known)}",
            f"no usable notes ({skipped}; unknown labels {sorted(unknown)[:10]})",
            "check --label-column and that the file uses the same label names as training",
        )
    logits = classifier.logits([e.text for e in usable], progress=progress)
    targets = targets_for(usable, classifier.labels, classifier.multi_label)
    calibrated = classification_metrics(
        calibrated_probabilities(logits, classifier.card.temperature, classifier.multi_label),
        targets,
        classifier.labels,
        multi_label=classifier.multi_label,
        thresholds=classifier.card.thresholds or None,
    )
    raw = classification_metrics(
        calibrated_probabilities(logits, 1.0, classifier.multi_label),
        targets,
        classifier.labels,
        multi_label=classifier.multi_label,
    )
    return {
        "test": {**calibrated, "ece_uncalibrated": raw["ece"]},
        "skipped": skipped,
        "unknown_labels": sorted(unknown),
        "model": classifier.name,
    }
