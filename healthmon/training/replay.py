"""What a continual fine-tune trains on and how two versions are compared.

Pure functions over examples and classifiers: :mod:`healthmon.services.retrain` reads the
reviewed cases from the database and calls these.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from healthmon.config import Settings
from healthmon.model.classifier import Classifier


def label_accuracy(classifier: Classifier, examples: Sequence[tuple[str, tuple[str, ...]]]) -> float:
    """Share of notes whose predicted label set equals the true one.

    Unlike ``evaluate`` this counts labels the model does not know as errors, so a version
    without a new label and one with it are compared on the same notes.
    """
    if not examples:
        return float("nan")
    predictions = classifier.predict([text for text, _ in examples])
    return sum(set(p.labels) == set(labels) for p, (_, labels) in zip(predictions, examples)) / len(examples)


def compare_versions(active_dir: Path, candidate_dir: Path, regression: Sequence[tuple[str, tuple[str, ...]]],
                     held_out: Sequence[tuple[str, tuple[str, ...]]], settings: Settings) -> dict[str, float]:
    """Accuracy of both versions on the regression set and the held-out reviewed cases."""
    old = Classifier.from_pretrained(active_dir, settings=settings, precision="fp32")
    new = Classifier.from_pretrained(candidate_dir, settings=settings, precision="fp32")
    return {
        "regression_active": label_accuracy(old, regression),
        "regression_candidate": label_accuracy(new, regression),
        "reviewed_active": label_accuracy(old, held_out),
        "reviewed_candidate": label_accuracy(new, held_out),
    }


def is_held_out(note_id: int, fraction: float) -> bool:
    digest = hashlib.sha256(f"holdout:{note_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def replay_sample(rows: Sequence[tuple[str, tuple[str, ...]]], size: int, seed: int,
                  exclude: set[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``size`` earlier training notes, taken round-robin across label combinations (as
    evenly as the pools allow; fewer when the pools run out)."""
    by_label: dict[tuple[str, ...], list[tuple[str, tuple[str, ...]]]] = defaultdict(list)
    for text, labels in rows:
        if text not in exclude:
            by_label[labels].append((text, labels))
    rng = random.Random(seed)
    pools = [rng.sample(v, len(v)) for _, v in sorted(by_label.items())]
    picked: list[tuple[str, tuple[str, ...]]] = []
    while len(picked) < size and any(pools):
        for pool in pools:
            if pool and len(picked) < size:
                picked.append(pool.pop())
    return picked
