"""One case = one stored note with its latest scores, explanations and label history.

What the Notes, Case and Review pages show comes from here: stored values, so opening a
case runs no model unless an explanation for the chosen label was never computed (then
it is computed once, by the version that scored the note, and stored).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from healthmon.errors import NotFoundError
from healthmon.services.accounts import SignedIn, require
from healthmon.storage.db import transaction
from healthmon.storage.models import Case, ModelVersion, NoteRow, Patient, PredictionRow, Review, User
from healthmon.storage.repository import (
    Agreement,
    QueueItem,
    StorageError,
    adjudicate,
    agreement,
    label_history,
    review_queue,
    submit_review,
)
from healthmon.types import CaseView, as_utc


def case_detail(factory: sessionmaker[Session], note_id: int) -> CaseView:
    with transaction(factory) as s:
        row = s.execute(
            select(NoteRow, Case, Patient.external_id).outerjoin(Case, Case.note_id == NoteRow.id)
            .outerjoin(Patient, Patient.id == NoteRow.patient_id).where(NoteRow.id == note_id)
        ).first()
        if row is None:
            raise NotFoundError("a stored case", f"no note with id {note_id}",
                                "open a case from the Notes or Review list")
        note, case, patient = row
        prediction = s.get(PredictionRow, case.prediction_id) if case is not None and case.prediction_id else None
        version = s.get(ModelVersion, prediction.model_version_id) if prediction is not None else None
        card = version.card if version is not None else {}
        return CaseView(
            note_id=note.id, external_id=note.external_id, patient=patient, text=note.text, source=note.source,
            created_at=as_utc(note.created_at),
            probabilities=dict(prediction.probabilities) if prediction else {},
            predicted=tuple(prediction.labels) if prediction else (),
            labels=tuple(card.get("labels") or (prediction.probabilities if prediction else ())),
            multi_label=card.get("problem_type") == "multi_label_classification",
            thresholds=dict(card.get("thresholds") or {}),
            version=version.name if version else None, version_id=version.id if version else None,
            version_folder=version.folder if version else None,
            scored_at=as_utc(prediction.created_at) if prediction else None,
            final_labels=tuple(case.final_labels) if case is not None and case.final_labels is not None else None,
            review_version=case.review_version if case is not None else 0,
            history=label_history(s, note.id),
            problem_type=card.get("problem_type", ""),
        )


def recent_cases(factory: sessionmaker[Session], *, limit: int = 200, search: str = "") -> list[dict[str, Any]]:
    """The newest scored cases for a picker: id, note id, patient, predicted labels, excerpt."""
    with transaction(factory) as s:
        query = (
            select(NoteRow.id, NoteRow.external_id, NoteRow.text, PredictionRow.labels, Case.review_count)
            .join(Case, Case.note_id == NoteRow.id).outerjoin(PredictionRow, PredictionRow.id == Case.prediction_id)
            .order_by(NoteRow.id.desc()).limit(limit)
        )
        if search.strip():
            pattern = f"%{search.strip()}%"
            query = query.where(or_(NoteRow.text.ilike(pattern), NoteRow.external_id.ilike(pattern)))
        return [{"case": i, "note": ext, "predicted": ", ".join(labels or []) or "(none)", "reviews": n or 0,
                 "excerpt": " ".join(text.split())[:80]} for i, ext, text, labels, n in s.execute(query)]


def predictions_table_rows(factory: sessionmaker[Session], note_ids: list[int]) -> list[dict[str, Any]]:
    """One row per stored case (in the order given) with its latest calibrated probabilities; a case
    scored by a regression version has its predicted value under ``value`` (and ``predicted`` names
    the target) instead of ``P(label)`` columns."""
    with transaction(factory) as s:
        found: dict[int, dict[str, Any]] = {}
        regression: dict[int, bool] = {}  # version id -> whether it predicts a value
        for start in range(0, len(note_ids), 500):
            chunk = note_ids[start:start + 500]
            rows = s.execute(
                select(NoteRow.id, NoteRow.external_id, NoteRow.text, PredictionRow.probabilities, PredictionRow.labels,
                       PredictionRow.model_version_id)
                .join(Case, Case.note_id == NoteRow.id).join(PredictionRow, PredictionRow.id == Case.prediction_id)
                .where(NoteRow.id.in_(chunk))
            )
            for note_id, external, text, probabilities, labels, version_id in rows:
                if version_id not in regression:
                    card = s.scalar(select(ModelVersion.card).where(ModelVersion.id == version_id)) or {}
                    regression[version_id] = card.get("problem_type") == "regression"
                row: dict[str, Any] = {"case": note_id, "note": external,
                                       "predicted": ", ".join(labels) or "(none above threshold)",
                                       "excerpt": " ".join(text.split())[:120]}
                if regression[version_id]:
                    row["value"] = next(iter(probabilities.values()), None)
                else:
                    row.update({f"P({label})": p for label, p in probabilities.items()})
                found[note_id] = row
        return [found[i] for i in dict.fromkeys(note_ids) if i in found]


def open_review_count(factory: sessionmaker[Session]) -> dict[str, int]:
    """Cases waiting for a first review, and cases whose reviewers disagree."""
    with transaction(factory) as s:
        unreviewed = s.scalar(select(func.count()).select_from(Case).where(Case.review_count == 0)) or 0
        disagreements = s.scalar(select(func.count()).select_from(Case)
                                 .where(Case.disagreement.is_(True), Case.adjudicated.is_(False))) or 0
    return {"unreviewed": unreviewed, "disagreements": disagreements}


def review_case(factory: sessionmaker[Session], user: SignedIn, note_id: int, labels: list[str], *,
                seen_version: int, saw_model_output: bool, blind_labels: list[str] | None = None,
                comment: str = "") -> Review:
    """Store a signed-in reviewer's label (see :func:`healthmon.storage.repository.submit_review`).

    Raises:
        StorageError: a label no model version knows, or not exactly one for a single-label case
            (the Review page cannot send these; the API can).
    """
    require(factory, user, "cases.review")
    _check_review_labels(factory, case_detail(factory, note_id), labels)
    with transaction(factory) as s:
        return submit_review(s, note_id, s.get(User, user.user_id), labels, seen_version=seen_version,
                             saw_model_output=saw_model_output, blind_labels=blind_labels, comment=comment)


def _check_review_labels(factory: sessionmaker[Session], case: CaseView, labels: list[str]) -> None:
    if case.regression:
        return
    with transaction(factory) as s:
        cards = s.scalars(select(ModelVersion.card)).all()
    # Any registered version's labels: a reviewer may give a label a newer version added.
    known = set(case.labels).union(*(set((card or {}).get("labels") or ()) for card in cards))
    unknown = sorted({label.strip() for label in labels} - known)
    if unknown:
        raise StorageError(f"labels a model version knows ({', '.join(sorted(known))})",
                           ", ".join(map(repr, unknown)), "pick from those labels")
    if not case.multi_label and len({label.strip() for label in labels}) != 1:
        raise StorageError("exactly one label for a single-label case", f"{len(set(labels))} labels",
                           "send the one label that fits the note")


def adjudicate_case(factory: sessionmaker[Session], user: SignedIn, note_id: int, labels: list[str], *,
                    seen_version: int, comment: str = "") -> Review:
    """An admin's final label for a case reviewers disagree on."""
    require(factory, user, "cases.adjudicate")
    with transaction(factory) as s:
        return adjudicate(s, note_id, s.get(User, user.user_id), labels, seen_version=seen_version, comment=comment)


def agreement_summary(factory: sessionmaker[Session], user: SignedIn, labels: list[str]) -> Agreement:
    require(factory, user, "agreement.view")
    with transaction(factory) as s:
        return agreement(s, labels)


def queue_for(factory: sessionmaker[Session], user: SignedIn, *, limit: int = 20) -> list[QueueItem]:
    require(factory, user, "cases.review")
    with transaction(factory) as s:
        return review_queue(s, limit=limit, reviewer=s.get(User, user.user_id))


def view_case(factory: sessionmaker[Session], user: SignedIn, note_id: int) -> CaseView:
    """:func:`case_detail` for a caller allowed to view cases (the API's door; pages check first)."""
    require(factory, user, "cases.view")
    return case_detail(factory, note_id)


def list_cases(factory: sessionmaker[Session], user: SignedIn, *, view: str = "queue", limit: int = 20,
               search: str = "") -> list[dict[str, Any]]:
    """Cases for an integration: ``queue`` (what this reviewer should label next, as the Review
    page orders it) or ``recent`` (newest scored, optionally matching ``search``). Each row names
    its patient (``patient_id``, None when the note has none), so the call's audit entry can."""
    if view == "queue":
        items = queue_for(factory, user, limit=limit)
        rows = [{"case": i.note_id, "predicted": list(i.predicted), "probabilities": dict(i.probabilities),
                 "uncertainty": i.uncertainty, "disagreement": i.disagreement, "review_version": i.review_version,
                 "reviews": i.review_count, "excerpt": " ".join(i.text.split())[:80]} for i in items]
    else:
        require(factory, user, "cases.view")
        # The same keys as the queue's rows where they overlap: predicted as a list.
        rows = [{"case": row["case"], "note": row["note"], "predicted": [] if row["predicted"] == "(none)"
                 else row["predicted"].split(", "), "reviews": row["reviews"], "excerpt": row["excerpt"]}
                for row in recent_cases(factory, limit=limit, search=search)]
    with transaction(factory) as s:
        patients = dict(s.execute(select(NoteRow.id, Patient.external_id)
                                  .join(Patient, Patient.id == NoteRow.patient_id)
                                  .where(NoteRow.id.in_([row["case"] for row in rows]))).all())
    return [{**row, "patient_id": patients.get(row["case"])} for row in rows]
