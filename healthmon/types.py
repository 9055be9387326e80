"""Frozen value types shared by every layer (ingest, model, training, UI)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from healthmon.errors import ConfigError


def as_utc(moment: datetime | None) -> datetime | None:
    """A stored time as aware UTC: SQLite returns naive UTC values, PostgreSQL the connection's zone."""
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def checked_fields(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``data`` as keyword arguments for the dataclass ``cls``, refusing keys it does not have.

    Values that cross a boundary (job rows, cards, API bodies) come back through here rather
    than ``cls(**data)``, so a misspelt or stale key is named instead of raising a TypeError.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} as a mapping of field names to values", type(data).__name__,
                          "pass a JSON object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{what} fields among {', '.join(sorted(known))}", f"unknown field(s) {', '.join(unknown)}",
                          "remove or rename them")
    return dict(data)


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
        value: a regression version's predicted value (``problem_type == "regression"``); then
            ``labels`` is the target's name and ``probabilities`` maps that name to the value
            (not a probability: it is what the database stores as the score).
    """

    probabilities: dict[str, float]
    labels: tuple[str, ...]
    model_version: str
    problem_type: str
    windows: int = 1
    value: float | None = None

    @property
    def top_label(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)


@dataclass(frozen=True)
class WordAttribution:
    """One word of a note and how much it moved the explained score.

    Attributes:
        word: ``text[start:end]`` of the original note, exactly.
        start / end: character span in the original note.
        score: summed integrated-gradients attribution of the word's tokens, in probability
            units: positive pushed the score toward the class, negative away from it.
    """

    word: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class TokenAttribution:
    """One model token (per window, before merging into words).

    ``start``/``end`` are its character span in the original note (0, 0 for [CLS]/[SEP]);
    ``word_index`` points into :attr:`Explanation.words` (-1 for special tokens).
    """

    token: str
    start: int
    end: int
    score: float
    window: int
    word_index: int


@dataclass(frozen=True)
class Faithfulness:
    """How far the attributions agree with what the model does when words are removed.

    ERASER-style AOPC over the fractions in ``fractions`` (of the note's words, most
    positive first): ``comprehensiveness`` is the mean drop in the score when those words
    are deleted (higher = the highlighted words matter), ``sufficiency`` the mean drop when
    only they are kept (lower = they alone carry the score). ``random_comprehensiveness``
    deletes the same number of randomly chosen words, the reference a useful explanation
    must beat.
    """

    comprehensiveness: float
    sufficiency: float
    random_comprehensiveness: float
    fractions: tuple[float, ...]
    # The unit the drops are read in: 1 for probabilities; a regression version's training-target
    # standard deviation for predicted values, so the same margins mean the same share of the spread.
    scale: float = 1.0

    @property
    def trust(self) -> str:
        """``high`` / ``moderate`` / ``low``: a plain-words reading for the dashboard."""
        margin = (self.comprehensiveness - self.random_comprehensiveness) / (self.scale or 1.0)
        if margin >= 0.2 and self.comprehensiveness > self.sufficiency:
            return "high"
        if margin >= 0.05:
            return "moderate"
        return "low"


@dataclass(frozen=True)
class Explanation:
    """Integrated-gradients explanation of one score of one note.

    Attributes:
        text: the note exactly as explained.
        target: the label whose calibrated probability was explained (a regression version: the
            target's name, and the predicted value is what was explained).
        probability: that probability (or predicted value) for the note, f(x).
        baseline_probability: the same for the baseline, f(baseline).
        words: per-word attributions (every word of the note exactly once, in order).
        tokens: the raw per-token attributions, window by window.
        delta: sum of attributions − (f(x) − f(baseline)); the integration error.
        tolerance: the |delta| the adaptive step search aimed for (absolute, in the units of the
            score: probability, or for a regression version the target's own units).
        converged: whether |delta| ≤ tolerance was reached within the step budget.
        steps: gradient evaluations spent (Gauss-Legendre nodes over all path segments);
            ``steps_tried`` the running total after each refinement round.
        baseline: ``pad`` or ``mask`` ([CLS]/[SEP] kept, every other token replaced).
        precision: numeric path of the integration (``fp32`` or ``bf16``).
        model_version: the version that produced the score.
        windows: how many windows the note was explained over (stitched into ``words``).
        seconds: wall time of the explanation (cache hits report the original time).
        segments: pieces the path was cut into where the probability moved fastest.
        faithfulness: ERASER-style AOPC scores, when computed.
        baseline_agreement: Spearman correlation of word scores under the PAD and MASK
            baselines, when requested (1 = the choice of baseline does not matter).
        kind: ``probability``, or ``value`` for a regression version (``probability`` and
            ``baseline_probability`` then hold predicted values, in the target's units).
    """

    text: str
    target: str
    probability: float
    baseline_probability: float
    words: tuple[WordAttribution, ...]
    tokens: tuple[TokenAttribution, ...]
    delta: float
    tolerance: float
    converged: bool
    steps: int
    steps_tried: tuple[int, ...]
    baseline: str
    precision: str
    model_version: str
    windows: int
    seconds: float
    segments: int = 1
    faithfulness: Faithfulness | None = None
    baseline_agreement: float | None = None
    # "probability" (a calibrated probability) or "value" (a regression version's predicted value).
    kind: str = "probability"

    @property
    def relative_delta(self) -> float:
        """|delta| / |f(x) − f(baseline)|: the error as a share of what was explained."""
        span = abs(self.probability - self.baseline_probability)
        return abs(self.delta) / span if span > 0 else float("inf") if self.delta else 0.0

    def top_words(self, k: int = 10, *, sign: int = 1) -> list[WordAttribution]:
        """The ``k`` words pushing hardest toward (``sign=1``) or against (``-1``) the class."""
        ranked = sorted((w for w in self.words if w.score * sign > 0), key=lambda w: -w.score * sign)
        return ranked[:k]


@dataclass(frozen=True)
class CaseView:
    """One stored note with its latest scores and label history, as the pages and the report show it."""

    note_id: int
    external_id: str
    patient: str | None
    text: str
    source: str
    created_at: datetime
    probabilities: dict[str, float]
    predicted: tuple[str, ...]
    labels: tuple[str, ...]
    multi_label: bool
    thresholds: dict[str, float]
    version: str | None
    version_id: int | None
    version_folder: str | None
    scored_at: datetime | None
    final_labels: tuple[str, ...] | None
    review_version: int
    history: list[dict[str, Any]]
    # The scoring version's problem type; "regression": ``probabilities`` maps the target's name
    # to the predicted value (not a probability).
    problem_type: str = ""

    @property
    def regression(self) -> bool:
        return self.problem_type == "regression"


@dataclass(frozen=True)
class AdviceView:
    """A stored advice item as the page and the report show it."""

    id: int
    patient_id: str
    rule_id: str
    title: str
    source: str
    kind: str
    urgency: str
    follow_up_days: int
    triggers: tuple[dict, ...]
    draft_text: str
    final_text: str | None
    status: str
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str
    version: int
    note_id: int | None
    created_by: str
    created_at: datetime

    @property
    def text(self) -> str:
        """What the clinician signed off: their wording when edited, else the rule's."""
        return self.final_text if self.final_text else self.draft_text
