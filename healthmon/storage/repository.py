"""Repository functions: the only place that reads or writes the database.

Pages and the CLI call these with a session (see ``healthmon.storage.db.transaction``);
nothing else issues SQL.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Sequence

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from healthmon.errors import NotFoundError, ReviewConflict, StorageError
from healthmon.storage.models import (
    ROLES,
    AdviceItem,
    AuditEntry,
    Case,
    ExplanationRow,
    ModelVersion,
    NoteRow,
    Patient,
    PredictionRow,
    Review,
    User,
    utcnow,
)
from healthmon.storage.password_policy import MIN_PASSWORD_LENGTH, check_password_strength  # noqa: F401  (re-exported)
from healthmon.storage.passwords import hash_password, verify_password  # noqa: F401  (re-exported)
from healthmon.types import Note, Prediction


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def uncertainty(probabilities: dict[str, float], multi_label: bool) -> float:
    """0 (certain) .. 1 (maximally unsure).

    Single-label: entropy of the calibrated distribution over its maximum, log(K).
    Multi-label: the largest binary entropy of any one label's decision, since one unsure
    label is enough to need a human.
    """
    values = [min(max(p, 1e-12), 1 - 1e-12) for p in probabilities.values()]
    if not values:
        return 0.0
    if multi_label:
        return max(-(p * math.log2(p) + (1 - p) * math.log2(1 - p)) for p in values)
    total = sum(values)
    dist = [p / total for p in values]
    return -sum(p * math.log(p) for p in dist) / math.log(len(dist)) if len(dist) > 1 else 0.0


def audit(session: Session, actor: str, action: str, entity: str, entity_id: Any,
          before: dict | None = None, after: dict | None = None) -> None:
    session.add(AuditEntry(actor=actor, action=action, entity=entity, entity_id=str(entity_id), before=before, after=after))


# ----------------------------------------------------------------------------- users
def create_user(session: Session, name: str, role: str, password: str = "", *, actor: str = "system") -> User:
    """A new account. Without a password it cannot sign in (a reviewer known by name only).

    A password must pass :func:`healthmon.storage.password_policy.check_password_strength`.
    """
    name = name.strip()
    if password:
        check_password_strength(password, [name])
    if not name:
        raise StorageError("a user name", "an empty name", "type the reviewer's name")
    if role not in ROLES:
        raise StorageError(f"a role among {', '.join(ROLES)}", repr(role), "pick one of those roles")
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise StorageError("a new user name", f"{name!r} exists already", "choose another name")
    user = User(name=name, role=role, password_hash=hash_password(password) if password else "")
    session.add(user)
    session.flush()
    audit(session, actor, "user.create", "user", user.id, after={"name": name, "role": role})
    return user


def list_users(session: Session) -> list[str]:
    """User names, alphabetically."""
    return list(session.scalars(select(User.name).order_by(User.name)))


def get_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise StorageError("a known user", repr(name), "an admin creates it on the Admin page or with `python -m healthmon users add NAME --role ROLE`")
    return user


# ----------------------------------------------------------------------------- versions
def register_version(session: Session, name: str, folder: str, card: dict[str, Any], *,
                     status: str = "candidate", parent: ModelVersion | None = None) -> ModelVersion:
    """The version row for a folder, created on first sight (idempotent by name)."""
    found = session.scalar(select(ModelVersion).where(ModelVersion.name == name))
    if found is not None:
        return found
    version = ModelVersion(name=name, folder=folder, card=card, metrics=card.get("metrics", {}), status=status,
                           parent_id=parent.id if parent else None)
    session.add(version)
    session.flush()
    return version


def list_versions(session: Session) -> list[ModelVersion]:
    """Every registered version, newest first."""
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))


def audit_entries(session: Session, *, action: str = "", actor: str = "", limit: int = 500) -> list[dict[str, Any]]:
    """The newest audit entries, optionally for one action prefix (``auth.``) or one actor."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEntry.action.startswith(action))
    if actor:
        query = query.where(AuditEntry.actor == actor)
    return [{"when": e.created_at, "actor": e.actor, "action": e.action, "entity": f"{e.entity} {e.entity_id}",
             "before": json.dumps(e.before, default=str) if e.before else "",
             "after": json.dumps(e.after, default=str) if e.after else ""} for e in session.scalars(query)]


def active_version(session: Session) -> ModelVersion | None:
    """The version the dashboard serves (at most one: a partial unique index)."""
    return session.scalar(select(ModelVersion).where(ModelVersion.status == "active"))


# ----------------------------------------------------------------------------- notes + predictions
def patient_ids_for(session: Session, external_ids: Iterable[str]) -> dict[str, int]:
    """Row ids of these patients (by the caller's identifier), creating the ones not yet stored."""
    wanted = set(external_ids)
    found: dict[str, int] = {}
    if wanted:
        for external, row_id in session.execute(select(Patient.external_id, Patient.id)
                                                .where(Patient.external_id.in_(wanted))):
            found[external] = row_id
        for external in sorted(wanted - set(found)):
            patient = Patient(external_id=external)
            session.add(patient)
            session.flush()
            found[external] = patient.id
    return found


def save_predictions(session: Session, notes: Sequence[Note], predictions: Sequence[Prediction],
                     version: ModelVersion) -> list[int]:
    """Store notes (see :func:`store_notes`) and their predictions (see :func:`save_scores`) in bulk.

    Returns the note ids, in input order.
    """
    if len(notes) != len(predictions):
        raise StorageError("one prediction per note", f"{len(predictions)} for {len(notes)} notes", "pass matching lists")
    note_ids = store_notes(session, notes)
    save_scores(session, note_ids, predictions, version)
    return note_ids


def store_notes(session: Session, notes: Sequence[Note]) -> list[int]:
    """Store notes once per text, patient and source id; returns their ids in input order."""
    patient_ids = patient_ids_for(session, {n.patient_id for n in notes if n.patient_id})
    # One query per chunk finds the notes already stored; new ones are inserted together.
    keys = [(content_hash(n.text), patient_ids.get(n.patient_id) if n.patient_id else None, n.note_id) for n in notes]
    known: dict[tuple[str, int | None, str], int] = {}
    hashes = sorted({k[0] for k in keys})
    for start in range(0, len(hashes), 500):
        rows = session.execute(
            select(NoteRow.content_hash, NoteRow.patient_id, NoteRow.external_id, NoteRow.id)
            .where(NoteRow.content_hash.in_(hashes[start : start + 500]))
        )
        known.update({(h, p, e): i for h, p, e, i in rows})
    fresh: dict[tuple[str, int | None, str], NoteRow] = {}
    for note, key in zip(notes, keys):
        if key not in known and key not in fresh:
            fresh[key] = NoteRow(text=note.text, source=note.source, content_hash=key[0], patient_id=key[1],
                                 external_id=note.note_id, gold_labels=list(note.labels))
    session.add_all(fresh.values())
    session.flush()
    known.update({key: row.id for key, row in fresh.items()})
    return [known[key] for key in keys]


def save_scores(session: Session, note_ids: Sequence[int], predictions: Sequence[Prediction],
                version: ModelVersion) -> None:
    """Store one prediction per stored note; each note's case now points at it, and its
    uncertainty drives the review queue."""
    if len(note_ids) != len(predictions):
        raise StorageError("one prediction per note", f"{len(predictions)} for {len(note_ids)} notes",
                           "pass matching lists")
    multi = bool(predictions) and predictions[0].problem_type == "multi_label_classification"
    rows = [
        PredictionRow(note_id=nid, model_version_id=version.id, probabilities=dict(p.probabilities),
                      labels=list(p.labels), uncertainty=uncertainty(p.probabilities, multi))
        for nid, p in zip(note_ids, predictions)
    ]
    session.add_all(rows)
    session.flush()
    cases: dict[int, Case] = {}
    unique_ids = sorted(set(note_ids))
    for start in range(0, len(unique_ids), 500):
        cases.update({c.note_id: c for c in session.scalars(select(Case).where(Case.note_id.in_(unique_ids[start : start + 500])))})
    for row in rows:
        case = cases.get(row.note_id)
        if case is None:
            case = Case(note_id=row.note_id, review_version=0, review_count=0, disagreement=False, adjudicated=False)
            session.add(case)
            cases[row.note_id] = case
        case.prediction_id = row.id
        case.uncertainty = row.uncertainty


def delete_unscored_notes(session: Session, note_ids: Sequence[int]) -> list[int]:
    """Delete the notes among ``note_ids`` that were never scored (nothing points at them);
    returns the ids deleted. Scored notes, and anything reviewed or explained, stay."""
    ids = sorted(set(note_ids))
    if not ids:
        return []
    referenced = set()
    for table in (Case, PredictionRow, ExplanationRow, Review, AdviceItem):
        referenced |= set(session.scalars(select(table.note_id).where(table.note_id.in_(ids))))
    doomed = [i for i in ids if i not in referenced]
    if doomed:
        session.execute(delete(NoteRow).where(NoteRow.id.in_(doomed)))
    return doomed


def stored_notes(session: Session, note_ids: Sequence[int]) -> list[Note]:
    """The stored notes with these ids, in the order asked; an unknown id raises StorageError."""
    rows = {}
    unique = sorted(set(note_ids))
    for start in range(0, len(unique), 500):
        query = (select(NoteRow, Patient.external_id).outerjoin(Patient, Patient.id == NoteRow.patient_id)
                 .where(NoteRow.id.in_(unique[start : start + 500])))
        rows.update({row.id: (row, patient) for row, patient in session.execute(query)})
    missing = [i for i in note_ids if i not in rows]
    if missing:
        raise StorageError("stored notes", f"no note with id {', '.join(map(str, missing[:5]))}",
                           "store the notes before scoring them")
    return [Note(text=rows[i][0].text, note_id=rows[i][0].external_id, patient_id=rows[i][1],
                 source=rows[i][0].source, labels=tuple(rows[i][0].gold_labels or ())) for i in note_ids]


# ----------------------------------------------------------------------------- review queue
@dataclass(frozen=True)
class QueueItem:
    note_id: int
    text: str
    prediction_id: int | None
    probabilities: dict[str, float]
    predicted: list[str]
    uncertainty: float
    disagreement: bool
    review_version: int
    review_count: int
    last_reviewed_at: datetime | None


def review_queue(session: Session, *, limit: int = 50, reviewer: User | None = None) -> list[QueueItem]:
    """Cases to review next: disagreements first, then most uncertain, then least recently reviewed.

    Adjudicated cases are done and never listed; with ``reviewer``, cases that reviewer
    already labelled are left out unless reviewers disagree on them.
    """
    query = (
        select(Case, NoteRow.text, PredictionRow.probabilities, PredictionRow.labels)
        .join(NoteRow, NoteRow.id == Case.note_id)
        .outerjoin(PredictionRow, PredictionRow.id == Case.prediction_id)
        .where(Case.adjudicated.is_(False))
        .order_by(Case.disagreement.desc(), Case.uncertainty.desc(), Case.last_reviewed_at.asc().nulls_first(),
                  Case.note_id)
        .limit(limit)
    )
    if reviewer is not None:
        mine = select(Review.note_id).where(Review.reviewer_id == reviewer.id)
        query = query.where((Case.disagreement.is_(True)) | (Case.note_id.not_in(mine)))
    return [
        QueueItem(case.note_id, text, case.prediction_id, probs or {}, labels or [], case.uncertainty,
                  case.disagreement, case.review_version, case.review_count, case.last_reviewed_at)
        for case, text, probs, labels in session.execute(query)
    ]


# ----------------------------------------------------------------------------- reviews
def _latest_per_reviewer(session: Session, note_id: int) -> dict[int, list[str]]:
    latest: dict[int, list[str]] = {}
    for review in session.scalars(
        select(Review).where(Review.note_id == note_id, Review.kind == "review").order_by(Review.id)
    ):
        latest[review.reviewer_id] = list(review.labels)
    return latest


def submit_review(
    session: Session,
    note_id: int,
    reviewer: User,
    labels: Iterable[str],
    *,
    seen_version: int,
    saw_model_output: bool = True,
    blind_labels: Iterable[str] | None = None,
    comment: str = "",
    kind: str = "review",
) -> Review:
    """Append a review, if nobody reviewed the case since ``seen_version``.

    The case's version moves forward with a single conditional UPDATE, which is atomic on
    SQLite and PostgreSQL alike: of two reviewers who saw the same version, exactly one
    succeeds and the other gets :class:`ReviewConflict`. Nothing is ever overwritten.

    Args:
        blind_labels: in blind-first review, the label committed before the prediction
            was revealed; ``labels`` is the final one, and the row records whether it changed.
    """
    labels = sorted({label.strip() for label in labels})
    bad = [label for label in labels if not label or "|" in label]
    if bad:
        raise StorageError("label names that are not empty and contain no '|'", repr(bad),
                           "rename the label ('|' separates labels in exports)")
    case = session.get(Case, note_id)
    if case is None:
        raise NotFoundError("a stored case", f"no note {note_id}", "save the note and its prediction first")
    if kind == "adjudication" and reviewer.role != "admin":
        raise StorageError("an admin to adjudicate", f"{reviewer.name} is {reviewer.role}", "ask an admin")
    moved = session.execute(
        update(Case)
        .where(Case.note_id == note_id, Case.review_version == seen_version)
        .values(review_version=Case.review_version + 1)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        session.refresh(case)
        newest = session.scalar(select(Review).where(Review.note_id == note_id).order_by(Review.id.desc()).limit(1))
        raise ReviewConflict(note_id, seen_version, case.review_version, list(newest.labels) if newest else [])
    session.refresh(case)
    before = session.scalar(select(Review).where(Review.note_id == note_id).order_by(Review.id.desc()).limit(1))
    blind = sorted(set(blind_labels)) if blind_labels is not None else None
    review = Review(
        note_id=note_id,
        prediction_id=case.prediction_id,
        reviewer_id=reviewer.id,
        kind=kind,
        labels=labels,
        label_key="|".join(labels),
        previous_labels=list(before.labels) if before else None,
        saw_model_output=saw_model_output,
        blind_labels=blind,
        changed_after_reveal=(blind != labels) if blind is not None else None,
        comment=comment,
        based_on_version=seen_version,
    )
    session.add(review)
    session.flush()
    latest = _latest_per_reviewer(session, note_id)
    case.review_count = case.review_count + 1
    case.last_reviewed_at = utcnow()
    if kind == "adjudication":
        case.adjudicated, case.disagreement, case.final_labels = True, False, labels
    else:
        case.disagreement = len({tuple(v) for v in latest.values()}) > 1
        if not case.adjudicated:
            case.final_labels = labels
    audit(session, reviewer.name, f"{kind}.submit", "case", note_id,
          before={"labels": review.previous_labels, "version": seen_version},
          after={"labels": labels, "version": case.review_version, "review_id": review.id,
                 "saw_model_output": saw_model_output, "changed_after_reveal": review.changed_after_reveal})
    return review


def adjudicate(session: Session, note_id: int, admin: User, labels: Iterable[str], *, seen_version: int,
               comment: str = "") -> Review:
    """An admin's final label for a case (ends its disagreement; the case leaves the queue)."""
    return submit_review(session, note_id, admin, labels, seen_version=seen_version, comment=comment,
                         kind="adjudication")


def label_history(session: Session, note_id: int) -> list[dict[str, Any]]:
    """Every review of a case, oldest first, with who, what, when and what was shown."""
    rows = session.execute(
        select(Review, User.name).join(User, User.id == Review.reviewer_id).where(Review.note_id == note_id)
        .order_by(Review.id)
    )
    return [
        {"review_id": r.id, "reviewer": name, "kind": r.kind, "labels": r.labels, "previous_labels": r.previous_labels,
         "saw_model_output": r.saw_model_output, "blind_labels": r.blind_labels,
         "changed_after_reveal": r.changed_after_reveal, "comment": r.comment, "created_at": r.created_at.isoformat()}
        for r, name in rows
    ]


# ----------------------------------------------------------------------------- agreement
@dataclass(frozen=True)
class Agreement:
    """Per-label agreement between reviewers, and the cases to adjudicate.

    ``per_label[label]`` is Cohen's kappa when exactly two reviewers labelled cases, else
    Krippendorff's alpha (nominal, any number of reviewers, missing ratings allowed);
    ``metric`` says which. Each label is scored as a yes/no decision per case.
    """

    metric: str
    per_label: dict[str, float | None]
    reviewers: int
    cases: int
    disagreements: list[dict[str, Any]]


def agreement(session: Session, labels: Sequence[str]) -> Agreement:
    from healthmon.storage.agreement import cohen_kappa, krippendorff_alpha

    # Each reviewer's latest label set per case (reviews come in id order).
    latest: dict[tuple[int, int], str] = {}
    for note_id, reviewer_id, key in session.execute(
        select(Review.note_id, Review.reviewer_id, Review.label_key).where(Review.kind == "review").order_by(Review.id)
    ):
        latest[(note_id, reviewer_id)] = key
    per_case: dict[int, dict[int, str]] = {}
    for (note_id, reviewer_id), key in latest.items():
        per_case.setdefault(note_id, {})[reviewer_id] = key
    reviewers = sorted({r for _, r in latest})
    shared = sorted(n for n, given in per_case.items() if len(given) >= 2)
    metric = "cohen_kappa" if len(reviewers) == 2 else "krippendorff_alpha"
    # A reviewers x cases matrix of label-set codes (-1: not rated), built once.
    keys = sorted({key for n in shared for key in per_case[n].values()})
    code = {key: i for i, key in enumerate(keys)}
    row = {r: i for i, r in enumerate(reviewers)}
    codes = np.full((len(reviewers), len(shared)), -1, dtype=np.int64)
    for j, n in enumerate(shared):
        for r, key in per_case[n].items():
            codes[row[r], j] = code[key]
    per_label: dict[str, float | None] = {}
    for label in labels:
        has = np.array([label in key.split("|") for key in keys] + [False], dtype=bool)
        matrix = [[None if c < 0 else bool(has[c]) for c in reviewer_codes] for reviewer_codes in codes]
        if not shared:
            per_label[label] = None
        elif metric == "cohen_kappa":
            per_label[label] = cohen_kappa(matrix[0], matrix[1])
        else:
            per_label[label] = krippendorff_alpha(matrix)
    adjudicated = set(session.scalars(select(Case.note_id).where(Case.adjudicated.is_(True))))
    names = dict(session.execute(select(User.id, User.name)).all())
    disagreements = [
        {"note_id": n, "labels": {names[r]: key.split("|") if key else [] for r, key in per_case[n].items()}}
        for n in shared
        if len(set(per_case[n].values())) > 1 and n not in adjudicated
    ]
    return Agreement(metric, per_label, len(reviewers), len(shared), disagreements)


# ----------------------------------------------------------------------------- export
def reviewed_labels(session: Session) -> list[dict[str, Any]]:
    """The label each reviewed case ends with: the adjudicated one, else the latest review."""
    rows = session.execute(
        select(Case.note_id, NoteRow.external_id, NoteRow.text, Case.final_labels, Case.adjudicated, Case.review_count)
        .join(NoteRow, NoteRow.id == Case.note_id)
        .where(Case.review_count > 0)
        .order_by(Case.note_id)
    )
    return [
        {"note_id": n, "external_id": ext, "text": text, "labels": list(labels or []), "adjudicated": adj, "reviews": count}
        for n, ext, text, labels, adj, count in rows
    ]


def export_reviewed(session: Session, fmt: str = "csv") -> str:
    """Reviewed labels as CSV (labels joined by ``|``) or JSON Lines."""
    rows = reviewed_labels(session)
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if fmt != "csv":
        raise StorageError("export format csv or jsonl", repr(fmt), "pass fmt='csv' or 'jsonl'")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["note_id", "external_id", "text", "labels", "adjudicated", "reviews"])
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "labels": "|".join(r["labels"])})
    return buffer.getvalue()


def count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


# ----------------------------------------------------------------------------- explanations
def save_explanation(session: Session, version: ModelVersion, payload: dict[str, Any], *, options_key: str,
                     note_id: int | None = None) -> ExplanationRow:
    """Store an explanation (``healthmon.explain.to_dict``) under the explain cache's key:
    (model version, text hash, target, options). Saving the same key again keeps the first."""
    key = (version.id, content_hash(payload["text"]), payload["target"], options_key)
    found = load_explanation(session, version, payload["text"], payload["target"], options_key=options_key)
    if found is not None:
        return found
    row = ExplanationRow(model_version_id=key[0], note_id=note_id, text_hash=key[1], target=key[2],
                         options_key=options_key, payload=payload)
    session.add(row)
    session.flush()
    return row


def load_explanation(session: Session, version: ModelVersion, text: str, target: str, *,
                     options_key: str) -> ExplanationRow | None:
    return session.scalar(
        select(ExplanationRow).where(
            ExplanationRow.model_version_id == version.id,
            ExplanationRow.text_hash == content_hash(text),
            ExplanationRow.target == target,
            ExplanationRow.options_key == options_key,
        )
    )
