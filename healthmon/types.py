"""Frozen value types shared by every layer (ingest, model, training, UI)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Note:
    """One clinical note as ingested.

    Attributes:
        text: the note text exactly as read (never rewritten).
        note_id: caller's id, or a generated one (``<source>:<line>``).
        patient_id: optional patient identifier.
        labels: gold labels if the source had a label column (empty tuple otherwise).
        source: file name or ``"pasted"``.
        line: 1-based line (CSV/TSV, counting the header as line 1) or 0 for whole files.
    """

    text: str
    note_id: str
    patient_id: str | None = None
    labels: tuple[str, ...] = ()
    source: str = "pasted"
    line: int = 0


@dataclass(frozen=True)
class RejectedRow:
    """A row that was read but not accepted, with the reason shown to the user."""

    line: int
    reason: str


@dataclass(frozen=True)
class IngestReport:
    """What an ingest call read, accepted and rejected."""

    source: str
    encoding: str
    rows_read: int
    rows_accepted: int
    rejected: tuple[RejectedRow, ...] = ()
    columns: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def rows_rejected(self) -> int:
        return len(self.rejected)


@dataclass(frozen=True)
class IngestResult:
    """Notes plus the report of how they were read."""

    notes: tuple[Note, ...]
    report: IngestReport


@dataclass(frozen=True)
class Prediction:
    """Calibrated scores for one note.

    Attributes:
        probabilities: label -> calibrated probability (softmax for single-label, per-label
            sigmoid for multi-label).
        labels: the predicted label(s): argmax for single-label, every label at or above its
            threshold for multi-label.
        model_version: the version folder's name.
        windows: how many 512-token-or-shorter windows the note was scored over.
    """

    probabilities: dict[str, float]
    labels: tuple[str, ...]
    model_version: str
    problem_type: str
    windows: int = 1

    @property
    def top_label(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)
