"""From ingested notes to de-duplicated, stratified train / validation / test splits."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from healthmon.errors import TrainingError
from healthmon.types import Note

_WHITESPACE = re.compile(r"\s+")


def normalise_for_dedup(text: str) -> str:
    """Key under which two texts count as the same note.

    Case and whitespace differences are ignored so that a copy-pasted note with an extra
    space cannot sit in both train and test; punctuation and words are kept.
    """
    return _WHITESPACE.sub(" ", text).strip().casefold()


@dataclass(frozen=True)
class Example:
    text: str
    labels: tuple[str, ...]


def targets_for(examples: Sequence[Example], labels: Sequence[str], multi_label: bool) -> np.ndarray:
    """Class indices (single-label) or a float 0/1 matrix (multi-label) in head order."""
    index = {label: i for i, label in enumerate(labels)}
    if multi_label:
        matrix = np.zeros((len(examples), len(labels)), dtype=np.float32)
        for row, example in enumerate(examples):
            for label in example.labels:
                matrix[row, index[label]] = 1.0
        return matrix
    return np.array([index[example.labels[0]] for example in examples], dtype=np.int64)


@dataclass
class DataReport:
    """What happened to the input rows on the way to the splits; stored in the model card."""

    rows_in: int = 0
    unlabelled: int = 0
    multi_label_rows_in_single_label: int = 0
    duplicates_removed: int = 0
    duplicate_label_conflicts: int = 0
    split_sizes: dict[str, int] = field(default_factory=dict)
    label_counts: dict[str, int] = field(default_factory=dict)
    rare_labels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    labels: tuple[str, ...]
    fingerprint: str


def examples_from_notes(
    notes: Sequence[Note], *, multi_label: bool, report: DataReport
) -> list[Example]:
    """Keep labelled notes; count (never silently drop) the ones that cannot be used."""
    report.rows_in = len(notes)
    examples: list[Example] = []
    for note in notes:
        labels = tuple(dict.fromkeys(label.strip() for label in note.labels if label.strip()))
        if not labels:
            report.unlabelled += 1
            continue
        if not multi_label and len(labels) > 1:
            report.multi_label_rows_in_single_label += 1
            continue
        examples.append(Example(note.text, tuple(sorted(labels)) if multi_label else labels))
    return examples


def deduplicate(examples: Sequence[Example], report: DataReport) -> list[Example]:
    """Drop exact (normalised) duplicates, keeping the first; count label conflicts."""
    first: dict[str, Example] = {}
    for example in examples:
        key = normalise_for_dedup(example.text)
        if key in first:
            report.duplicates_removed += 1
            if first[key].labels != example.labels:
                report.duplicate_label_conflicts += 1
            continue
        first[key] = example
    return list(first.values())


def stratified_split(
    examples: Sequence[Example], val_fraction: float, test_fraction: float, seed: int
) -> tuple[list[Example], list[Example], list[Example]]:
    """Split per stratum (label, or label combination for multi-label) with a fixed seed.

    Rare multi-label combinations are pooled under their rarest label.

    Each stratum is shuffled and cut by the fractions, so every class keeps its share in
    each split. Strata too small for three splits go to training first: a class with one
    example is better learned than only tested.
    """
    combos = Counter(example.labels for example in examples)
    label_counts = Counter(label for example in examples for label in example.labels)
    strata: dict[tuple[str, ...], list[Example]] = defaultdict(list)
    for example in examples:
        key = example.labels
        if combos[key] < 3:
            # A label combination too rare to split goes with its rarest label, so that
            # label still reaches validation (threshold tuning) and test.
            key = (min(example.labels, key=lambda label: (label_counts[label], label)),)
        strata[key].append(example)
    rng = random.Random(seed)
    train: list[Example] = []
    val: list[Example] = []
    test: list[Example] = []
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        n = len(members)
        n_test = int(round(n * test_fraction)) if n >= 3 else 0
        n_val = int(round(n * val_fraction)) if n >= 3 else 0
        if n >= 3:
            n_test, n_val = max(n_test, 1), max(n_val, 1)
        test += members[:n_test]
        val += members[n_test : n_test + n_val]
        train += members[n_test + n_val :]
    for part in (train, val, test):
        rng.shuffle(part)
    return train, val, test


def fingerprint(examples: Sequence[Example], seed: int, fractions: tuple[float, float]) -> str:
    digest = hashlib.sha256()
    for example in sorted(examples, key=lambda e: (normalise_for_dedup(e.text), e.labels)):
        digest.update(json.dumps([normalise_for_dedup(example.text), example.labels]).encode())
    digest.update(json.dumps([seed, fractions]).encode())
    return digest.hexdigest()


def build_splits(
    notes: Sequence[Note],
    *,
    multi_label: bool,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    label_order: Sequence[str] = (),
    keep_label_order: bool = False,
) -> tuple[Splits, DataReport]:
    """Labelled notes -> de-duplicated stratified splits plus a report of every dropped row.

    Raises:
        TrainingError: fewer than two labels, or too few notes to train and test on.
    """
    report = DataReport()
    examples = deduplicate(examples_from_notes(notes, multi_label=multi_label, report=report), report)
    counts = Counter(label for example in examples for label in example.labels)
    report.label_counts = dict(sorted(counts.items()))
    if len(counts) < 2:
        raise TrainingError(
            "labelled notes with at least two different labels",
            f"{len(examples)} usable notes with labels {sorted(counts) or 'none'} "
            f"({report.unlabelled} unlabelled, {report.duplicates_removed} duplicates, "
            f"{report.multi_label_rows_in_single_label} multi-label rows in a single-label run)",
            "check --label-column, or pass --multi-label if cells hold several labels",
        )
    if len(examples) < 10:
        raise TrainingError(
            "at least 10 distinct labelled notes", f"{len(examples)}", "add more labelled notes"
        )
    report.rare_labels = sorted(label for label, c in counts.items() if c < 3)
    # Labels only in label_order are ignored (a head cannot learn a class it never sees),
    # except when continuing from a version whose head already knows them.
    kept = list(label_order) if keep_label_order else [label for label in label_order if label in counts]
    ordered = kept + sorted(set(counts) - set(label_order))
    train, val, test = stratified_split(examples, val_fraction, test_fraction, seed)
    if not val or not test:
        raise TrainingError(
            "enough notes per label to hold some out for validation and test (3+ per label)",
            f"validation {len(val)}, test {len(test)} notes",
            "add labelled notes, or merge rare labels",
        )
    report.split_sizes = {"train": len(train), "validation": len(val), "test": len(test)}
    return (
        Splits(train, val, test, tuple(ordered), fingerprint(examples, seed, (val_fraction, test_fraction))),
        report,
    )
