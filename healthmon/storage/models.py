"""ORM tables (SQLAlchemy 2.0). The schema itself is created only by Alembic migrations.

Reviews are append-only: a correction is a new row, never an update, so the label history
of a case is the rows themselves. The per-case summary that the review queue sorts on
(uncertainty, disagreement, last review) lives in ``cases`` and is updated in the same
transaction as each review, guarded by ``review_version`` (optimistic concurrency: two
reviewers who saw the same version cannot both win).
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


ROLES = ("clinician", "annotator", "admin")
VERSION_STATUSES = ("candidate", "active", "retired")
RUN_STATUSES = ("running", "succeeded", "failed")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Deactivated rather than deleted: reviews and audit entries keep pointing at the person.
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # How many times the account was locked since its last successful sign-in (or an admin's
    # unlock): each lock lasts longer, and the third holds until an admin unlocks it.
    lockout_level: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Single sign-on: "<issuer> <subject>" of the provider's account, the only thing that ties a
    # sign-in to this row (a provider user whose display name matches a local account's does not
    # become that account). None for local accounts.
    external_id: Mapped[str | None] = mapped_column(String(400))

    __table_args__ = (Index("uq_users_external_id", "external_id", unique=True),)


class SignInFailure(Base):
    """One refused sign-in from a client address, whatever account it named.

    Kept in the database, not in a process, so every server process behind a load balancer
    counts the same failures; rows older than the counting window are deleted as new ones come.
    """

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_address_at", "address", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class AuthSession(Base):
    """A signed-in browser session. Only a hash of the token is stored."""

    __tablename__ = "auth_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiToken(Base):
    """A bearer token for the REST API, held by an account. Only a hash of the token is stored.

    Revoked rather than deleted, so the audit log and the list keep naming it; the account's
    role and active flag are read at each use, never copied here.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str] = mapped_column(String(120), default="", server_default="")
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """Background work (batch prediction, batch explanation, training) and its progress.

    Kept in the database so progress survives page reruns, is visible to every user's
    session, and any worker process (the dashboard's own thread or `healthmon worker`) can run it.
    """

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(120))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Demographics, where a clinician or an import supplied them: the advice rules use age and sex.
    birth_date: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(10))
    # NEWS2's SpO2 scale as a clinician recorded it: 2 for a prescribed 88-92 % target (RCP 2017
    # asks for that decision to be made by a competent clinician and recorded). None: never
    # recorded, scored on scale 1. Kept with who, when and why, so every page, the CLI and the
    # report score this patient alike without anyone remembering to switch.
    spo2_scale: Mapped[int | None] = mapped_column(Integer)
    spo2_scale_reason: Mapped[str | None] = mapped_column(Text)
    spo2_scale_set_by: Mapped[str | None] = mapped_column(String(120))
    spo2_scale_set_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class NoteRow(Base):
    __tablename__ = "notes"
    __table_args__ = (UniqueConstraint("content_hash", "patient_id", "external_id", name="uq_notes_content"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    external_id: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(300), default="pasted")
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    deidentified: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    # At most one active version: the one the dashboard serves.
    __table_args__ = (
        Index("uq_model_versions_one_active", "status", unique=True,
              sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    folder: Mapped[str] = mapped_column(String(1000))
    card: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="candidate", index=True)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PredictionRow(Base):
    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(primary_key=True)
    note_id: Mapped[int] = mapped_column(ForeignKey("notes.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    probabilities: Mapped[dict[str, Any]] = mapped_column(JSON)
    labels: Mapped[list[str]] = mapped_column(JSON)
    uncertainty: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ExplanationRow(Base):
    __tablename__ = "explanations"
    __table_args__ = (UniqueConstraint("model_version_id", "text_hash", "target", "options_key", name="uq_explanation_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    note_id: Mapped[int | None] = mapped_column(ForeignKey("notes.id"), index=True)
    text_hash: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    options_key: Mapped[str] = mapped_column(String(500))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Case(Base):
    """One reviewable case per note: what the queue sorts on, kept current with each review."""

    __tablename__ = "cases"
    __table_args__ = (Index("ix_cases_queue", "adjudicated", "disagreement", "uncertainty", "last_reviewed_at"),)

    note_id: Mapped[int] = mapped_column(ForeignKey("notes.id"), primary_key=True)
    prediction_id: Mapped[int | None] = mapped_column(ForeignKey("predictions.id"))
    uncertainty: Mapped[float] = mapped_column(Float, default=0.0)
    review_version: Mapped[int] = mapped_column(Integer, default=0)
    review_count: Mapped[int] = mapped_column(Integer, default=0)
    last_reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disagreement: Mapped[bool] = mapped_column(Boolean, default=False)
    adjudicated: Mapped[bool] = mapped_column(Boolean, default=False)
    final_labels: Mapped[list[str] | None] = mapped_column(JSON)

    note: Mapped[NoteRow] = relationship()


class Review(Base):
    """Append-only: one row per label a reviewer (or an adjudicating admin) committed."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    note_id: Mapped[int] = mapped_column(ForeignKey("notes.id"), index=True)
    prediction_id: Mapped[int | None] = mapped_column(ForeignKey("predictions.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="review")  # review | adjudication
    labels: Mapped[list[str]] = mapped_column(JSON)
    # The same labels sorted and "|"-joined: read by the agreement summary without JSON decoding.
    label_key: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    previous_labels: Mapped[list[str] | None] = mapped_column(JSON)
    saw_model_output: Mapped[bool] = mapped_column(Boolean, default=True)
    blind_labels: Mapped[list[str] | None] = mapped_column(JSON)
    changed_after_reveal: Mapped[bool | None] = mapped_column(Boolean)
    comment: Mapped[str] = mapped_column(Text, default="")
    based_on_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class TrainingRun(Base):
    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), default="retrain")
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="running")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(60), index=True)
    entity: Mapped[str] = mapped_column(String(60))
    entity_id: Mapped[str] = mapped_column(String(60))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class VitalsUpload(Base):
    """One device file as read: who sent it and its ingest report (read, converted, flagged, rejected)."""

    __tablename__ = "vitals_uploads"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(300))
    format: Mapped[str] = mapped_column(String(40))
    uploaded_by: Mapped[str] = mapped_column(String(120))
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    readings_stored: Mapped[int] = mapped_column(Integer, default=0)
    readings_duplicate: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class VitalReading(Base):
    """One value in healthmon's canonical unit. Artefacts are stored too (flagged), so the
    record shows what the device sent; they are never scored. The same value for the same
    patient, parameter and time is one reading, so uploading a file twice stores nothing twice.
    """

    __tablename__ = "vital_readings"
    __table_args__ = (
        UniqueConstraint("patient_id", "parameter", "time", "value", name="uq_vital_readings_value"),
        Index("ix_vital_readings_patient_time", "patient_id", "time"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    upload_id: Mapped[int] = mapped_column(ForeignKey("vitals_uploads.id"), index=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    parameter: Mapped[str] = mapped_column(String(300))
    value: Mapped[float] = mapped_column(Float)
    artefact: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(300), default="")


# superseded: a draft replaced by a newer draft of the same rule (new values) before anyone decided on it,
# or set aside because its NEWS2 was scored on an SpO2 scale other than the one since recorded.
ADVICE_STATUSES = ("draft", "approved", "edited", "dismissed", "superseded")


class AdviceItem(Base):
    """One fired advice rule for one patient: a draft until a clinician approves, edits or dismisses it.

    The rule's wording and the values that fired it are copied in at drafting, so a later
    change to rules.toml never rewrites advice already on file. ``draft_text`` is kept
    after an edit (``final_text`` holds the clinician's wording); every decision is also an
    audit entry with the before and after. ``version`` guards against two clinicians
    deciding on the same draft at once.

    ``finding_key`` identifies the finding (rule and triggering values); ``fingerprint`` is
    unique per patient and also counts how many times that finding was drafted, so a
    screening due again after its interval gets a new row while two sessions drafting at
    once still collide on the constraint.
    """

    __tablename__ = "advice_items"
    __table_args__ = (
        UniqueConstraint("patient_id", "fingerprint", name="uq_advice_items_fingerprint"),
        Index("ix_advice_items_patient_status", "patient_id", "status"),
        Index("ix_advice_items_patient_rule", "patient_id", "rule_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    note_id: Mapped[int | None] = mapped_column(ForeignKey("notes.id"))  # the case whose score fired it
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    rule_id: Mapped[str] = mapped_column(String(80))
    finding_key: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(20))
    urgency: Mapped[str] = mapped_column(String(20))
    follow_up_days: Mapped[int] = mapped_column(Integer)
    triggers: Mapped[list[str]] = mapped_column(JSON)
    draft_text: Mapped[str] = mapped_column(Text)
    final_text: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_note: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LinkRef(Base):
    """An opaque id standing for a case or a patient in dashboard links.

    Links carry these instead of the note's row number or the patient's identifier, so a browser's
    history, a proxy log or a Referer header never holds an MRN. Random, not derived from the target.
    """

    __tablename__ = "link_refs"
    __table_args__ = (UniqueConstraint("kind", "target", name="uq_link_refs_kind_target"),)

    ref: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
