"""Reviewed labels out of the system, each case with its lineage (admins; the CLI's operator).

One row per reviewed case (a case with at least one review): the note and patient, the final
label(s) (the latest adjudication where an admin adjudicated, else the latest review, as
``cases.final_labels`` holds them), every review in order with who, what, when and which
model version's output it was given, the adjudication, and the version and scores of the
prediction behind the final label.

Two formats, chosen by the output file's suffix:

* ``.jsonl``: one JSON object per line, nested as :meth:`LabelledCase.to_dict` gives it; the
  note text exactly as stored.
* ``.csv`` (UTF-8, for spreadsheets): :data:`CSV_COLUMNS`, one row per case. Label lists are
  joined with ``|`` (a label can never contain one); the reviews and the scores, nested, are a
  JSON array / object in one cell. Every text cell goes through
  :func:`healthmon.escaping.spreadsheet_safe`: one starting with ``=``, ``+``, ``-``, ``@``, a
  tab, a carriage return or ``'`` gets a leading ``'``, so a hostile note cannot run as a
  formula (drop one leading ``'`` to get the stored text back).

Reading the rows writes one ``labels.export`` audit entry (who, how many cases, where to).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from healthmon.errors import ConfigError
from healthmon.escaping import spreadsheet_safe
from healthmon.services.accounts import SignedIn, require
from healthmon.storage.db import transaction
from healthmon.storage.models import Case, ModelVersion, NoteRow, Patient, PredictionRow, Review, User
from healthmon.storage.repository import audit
from healthmon.types import as_utc

FORMATS = {".csv": "csv", ".jsonl": "jsonl"}
MIME_TYPES = {"csv": "text/csv", "jsonl": "application/jsonl"}
CSV_COLUMNS = ("case_id", "note_id", "patient_id", "text", "labels", "label_source", "disagreement", "reviews",
               "adjudicated_by", "adjudicated_at", "adjudicated_labels", "model_version", "predicted", "scores")
_CHUNK = 500


@dataclass(frozen=True)
class LabelDecision:
    """One stored review or adjudication: who gave which labels, when, on what they were shown."""

    reviewer: str
    labels: tuple[str, ...]
    at: datetime
    model_version: str | None  # the version whose prediction the case showed then
    saw_model_output: bool  # False: labelled blind first (``blind_labels``), then shown the output
    blind_labels: tuple[str, ...] | None
    case_version: int  # the case's review version the reviewer decided on
    comment: str

    def to_dict(self) -> dict[str, Any]:
        return {"reviewer": self.reviewer, "labels": list(self.labels), "at": self.at.isoformat(),
                "model_version": self.model_version, "saw_model_output": self.saw_model_output,
                "blind_labels": list(self.blind_labels) if self.blind_labels is not None else None,
                "case_version": self.case_version, "comment": self.comment}


@dataclass(frozen=True)
class LabelledCase:
    """A reviewed case with its final label and where that label came from.

    ``model_version``, ``predicted`` and ``scores`` belong to the prediction shown to the
    decision that set the final label (the adjudication, else the latest review); each entry
    of ``reviews`` names the version it was shown, which differs only where the note was
    scored again between reviews.
    """

    case_id: int
    note_id: str
    patient_id: str | None
    text: str
    labels: tuple[str, ...]
    label_source: str  # "adjudication" or "review"
    disagreement: bool  # reviewers' latest labels differ (and no adjudication settled it since)
    reviews: tuple[LabelDecision, ...]  # every review, oldest first (a reviewer's correction is a new one)
    adjudication: LabelDecision | None  # the latest, where an admin adjudicated
    model_version: str | None
    predicted: tuple[str, ...]
    scores: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "note_id": self.note_id, "patient_id": self.patient_id, "text": self.text,
                "labels": list(self.labels), "label_source": self.label_source, "disagreement": self.disagreement,
                "reviews": [r.to_dict() for r in self.reviews],
                "adjudication": self.adjudication.to_dict() if self.adjudication else None,
                "model_version": self.model_version, "predicted": list(self.predicted), "scores": dict(self.scores)}

    def csv_row(self) -> list[Any]:
        """The cells of :data:`CSV_COLUMNS`, text cells guarded against spreadsheet formulas."""
        adj = self.adjudication
        cells = [self.case_id, self.note_id, self.patient_id or "", self.text, "|".join(self.labels),
                 self.label_source, str(self.disagreement).lower(),
                 json.dumps([r.to_dict() for r in self.reviews], ensure_ascii=False),
                 adj.reviewer if adj else "", adj.at.isoformat() if adj else "", "|".join(adj.labels) if adj else "",
                 self.model_version or "", "|".join(self.predicted), json.dumps(self.scores, ensure_ascii=False)]
        return [spreadsheet_safe(c) if isinstance(c, str) else c for c in cells]


@dataclass(frozen=True)
class LabelsExport:
    """An export held in memory, for a download button."""

    data: bytes
    rows: int
    fmt: str
    file_name: str
    mime: str


def export_format(path: str | Path) -> str:
    """``csv`` or ``jsonl`` from an output file's suffix; a ConfigError naming the file otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError("an output file ending in .csv or .jsonl", f"{Path(path).name!r}",
                          "name it e.g. labels.csv (one row per case, for spreadsheets) or labels.jsonl "
                          "(one nested JSON object per line)")
    return FORMATS[suffix]


def _actor_name(factory: sessionmaker[Session], actor: SignedIn | str) -> str:
    """A signed-in user must hold ``labels.export`` (admins); a plain name is the trusted command line."""
    return require(factory, actor, "labels.export").name if isinstance(actor, SignedIn) or actor is None else actor


def labelled_cases(factory: sessionmaker[Session], actor: SignedIn | str, *,
                   destination: str = "read through the library") -> Iterator[LabelledCase]:
    """Every reviewed case, in case id order, with its lineage (see :class:`LabelledCase`).

    The permission check and the audit entry happen on the call, before the first row is
    read, and the cases are the ones reviewed at that moment: the entry records how many
    and ``destination``. Rows are read 500 cases per transaction, so no session stays open
    while the caller writes them.
    """
    who = _actor_name(factory, actor)
    with transaction(factory) as s:
        ids = list(s.scalars(select(Case.note_id).where(Case.review_count > 0).order_by(Case.note_id)))
        audit(s, who, "labels.export", "cases", "reviewed", after={"cases": len(ids), "destination": destination})
    return _rows(factory, ids)


def _rows(factory: sessionmaker[Session], ids: list[int]) -> Iterator[LabelledCase]:
    for start in range(0, len(ids), _CHUNK):
        with transaction(factory) as s:
            chunk = _read(s, ids[start:start + _CHUNK])
        yield from chunk


def _read(s: Session, ids: list[int]) -> list[LabelledCase]:
    reviews: dict[int, list[tuple[Review, str]]] = {}
    for review, name in s.execute(select(Review, User.name).join(User, User.id == Review.reviewer_id)
                                  .where(Review.note_id.in_(ids)).order_by(Review.id)):
        reviews.setdefault(review.note_id, []).append((review, name))
    shown = {r.prediction_id for given in reviews.values() for r, _ in given if r.prediction_id is not None}
    shown_rows = s.execute(
        select(PredictionRow.id, ModelVersion.name, PredictionRow.probabilities, PredictionRow.labels)
        .outerjoin(ModelVersion, ModelVersion.id == PredictionRow.model_version_id)
        .where(PredictionRow.id.in_(sorted(shown)))
    )
    predictions = {pid: (version, dict(probabilities or {}), tuple(labels or ()))
                   for pid, version, probabilities, labels in shown_rows}

    def decision(review: Review, name: str) -> LabelDecision:
        version = predictions.get(review.prediction_id, (None,))[0]
        blind = tuple(review.blind_labels) if review.blind_labels is not None else None
        return LabelDecision(name, tuple(review.labels), as_utc(review.created_at), version,
                             bool(review.saw_model_output), blind, review.based_on_version, review.comment or "")

    out = []
    for case, external, text, patient in s.execute(
        select(Case, NoteRow.external_id, NoteRow.text, Patient.external_id)
        .join(NoteRow, NoteRow.id == Case.note_id).outerjoin(Patient, Patient.id == NoteRow.patient_id)
        .where(Case.note_id.in_(ids)).order_by(Case.note_id)
    ):
        given = reviews.get(case.note_id, [])
        plain = [(r, n) for r, n in given if r.kind != "adjudication"]
        adjudications = [(r, n) for r, n in given if r.kind == "adjudication"]
        adjudicated = bool(case.adjudicated and adjudications)
        deciding = adjudications[-1] if adjudicated else plain[-1] if plain else None
        version, scores, predicted = predictions.get(deciding[0].prediction_id if deciding else None, (None, {}, ()))
        final = case.final_labels if case.final_labels is not None else deciding[0].labels if deciding else ()
        out.append(LabelledCase(
            case_id=case.note_id, note_id=external or "", patient_id=patient, text=text, labels=tuple(final),
            label_source="adjudication" if adjudicated else "review", disagreement=bool(case.disagreement),
            reviews=tuple(decision(r, n) for r, n in plain),
            adjudication=decision(*adjudications[-1]) if adjudicated else None,
            model_version=version, predicted=predicted, scores=scores,
        ))
    return out


def write_labels(rows: Iterator[LabelledCase], fmt: str, out: IO[str]) -> int:
    """Write rows as ``csv`` or ``jsonl`` (see the module docstring) to a text stream opened
    with ``newline=""``; returns how many were written."""
    if fmt not in MIME_TYPES:
        raise ConfigError("the format csv or jsonl", repr(fmt), "pass fmt='csv' or fmt='jsonl'")
    written = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        if writer is not None:
            writer.writerow(row.csv_row())
        else:
            out.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")
        written += 1
    return written


def export_labels(factory: sessionmaker[Session], actor: SignedIn | str, out: str | Path) -> int:
    """Write every reviewed case to ``out`` (``.csv`` or ``.jsonl``); returns the number of rows.

    The file appears whole or not at all: rows go to a temporary file beside it, renamed
    over ``out`` at the end. ``actor``: a signed-in admin, or the command line's name.
    """
    out = Path(out)
    fmt = export_format(out)
    if not out.parent.is_dir():
        raise ConfigError("an output file in an existing folder", f"no folder {str(out.parent)!r}",
                          "create the folder first or pick another path")
    rows = labelled_cases(factory, actor, destination=f"{fmt} file {out.resolve()}")
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            written = write_labels(rows, fmt, stream)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return written


def labels_download(factory: sessionmaker[Session], actor: SignedIn | str, fmt: str) -> LabelsExport:
    """Every reviewed case as ``csv`` or ``jsonl`` bytes (UTF-8), for the Review page's download."""
    if fmt not in MIME_TYPES:
        raise ConfigError("the format csv or jsonl", repr(fmt), "pick CSV or JSON Lines")
    buffer = io.StringIO(newline="")
    written = write_labels(labelled_cases(factory, actor, destination=f"{fmt} download"), fmt, buffer)
    return LabelsExport(buffer.getvalue().encode("utf-8"), written, fmt, f"healthmon-labels.{fmt}", MIME_TYPES[fmt])
