"""The job queue: typed job payloads, and enqueueing, listing and cancelling jobs.

A job is a database row (``jobs``): a page, the CLI or the API enqueues one of the payloads
below and polls its progress; a worker (:mod:`healthmon.services.worker`) claims it, runs its
handler and stores the result. Payloads carry ids and knobs, never note text: notes are
stored once (:mod:`healthmon.services.notes`) and jobs point at them.

Each kind names the permission needed to start it, checked here whoever enqueues.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer, sessionmaker

from healthmon.errors import ConfigError, StorageError
from healthmon.services.accounts import SignedIn, require, require_in
from healthmon.storage.db import transaction
from healthmon.storage.models import Job, utcnow
from healthmon.storage.repository import audit, delete_unscored_notes
from healthmon.training.args import TrainArgs
from healthmon.types import as_utc, checked_fields

FINISHED = ("succeeded", "failed", "cancelled")


# ----------------------------------------------------------------------------- payloads
@dataclass(frozen=True)
class JobPayload:
    """What a job needs to run, as stored in its row: ``to_dict`` writes it, ``from_dict`` reads
    it back and names any key it does not know (a stale or misspelt row fails loudly)."""

    kind: ClassVar[str] = ""
    permission: ClassVar[str] = ""
    title: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobPayload:
        values = checked_fields(cls, data, f"a {cls.kind} job's arguments")
        try:
            return cls(**values)
        except TypeError as exc:  # a required field missing
            raise ConfigError(f"a {cls.kind} job's arguments", str(exc), "enqueue the job again") from None


def _ids(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


@dataclass(frozen=True)
class PredictJob(JobPayload):
    """Score stored notes with one version and store the predictions as cases."""

    kind: ClassVar[str] = "predict"
    permission: ClassVar[str] = "notes.predict"
    title: ClassVar[str] = "Batch prediction"
    version_dir: str
    note_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "version_dir", str(self.version_dir))
        object.__setattr__(self, "note_ids", _ids(self.note_ids))


@dataclass(frozen=True)
class ExplainJob(JobPayload):
    """Explain stored cases' predicted label (or ``target``) and store the explanations."""

    kind: ClassVar[str] = "explain"
    permission: ClassVar[str] = "explain.batch"
    title: ClassVar[str] = "Batch explanation"
    note_ids: tuple[int, ...] = ()
    target: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "note_ids", _ids(self.note_ids))


def _checked_train_args(knobs: Mapping[str, Any]) -> dict[str, Any]:
    TrainArgs.from_dict(knobs)  # bad values are refused when the job is queued, not an hour later
    return dict(knobs)


@dataclass(frozen=True)
class RetrainJob(JobPayload):
    """Continual fine-tune of the active version on reviewed cases (promoted only if nothing is forgotten)."""

    kind: ClassVar[str] = "retrain"
    permission: ClassVar[str] = "models.train"
    title: ClassVar[str] = "Retrain from reviewed cases"
    train_args: dict[str, Any] = field(default_factory=dict)
    replay: int | None = None
    margin: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_args", _checked_train_args(self.train_args))


@dataclass(frozen=True)
class FinetuneJob(JobPayload):
    """Train a new candidate version from an uploaded labelled file (never served until promoted)."""

    kind: ClassVar[str] = "finetune"
    permission: ClassVar[str] = "models.train"
    title: ClassVar[str] = "Fine-tune from a labelled file"
    data_path: str
    train_args: dict[str, Any] = field(default_factory=dict)
    text_column: str | None = None
    label_column: str | None = None
    delete_after_reading: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_args", _checked_train_args(self.train_args))


KINDS: dict[str, type[JobPayload]] = {job.kind: job for job in (PredictJob, ExplainJob, RetrainJob, FinetuneJob)}


def payload_of(kind: str, args: Mapping[str, Any]) -> JobPayload:
    """The typed payload of a stored job row."""
    if kind not in KINDS:
        raise StorageError(f"a job kind among {', '.join(KINDS)}", repr(kind), "pick one of those kinds")
    try:
        return KINDS[kind].from_dict(args)
    except ConfigError as exc:  # e.g. a job queued by an older healthmon, before an upgrade
        raise ConfigError(exc.expected, exc.found, "start the job again from the page or command that "
                          "queued it") from None


# ----------------------------------------------------------------------------- queue API
@dataclass(frozen=True)
class JobView:
    """A job as pages show it (plain values, detached from any database session)."""

    id: int
    kind: str
    status: str
    progress: float
    message: str
    result: dict[str, Any] | None
    error: str
    created_by: str
    created_at: datetime
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def _view(job: Job) -> JobView:
    return JobView(job.id, job.kind, job.status, job.progress, job.message, job.result, job.error, job.created_by,
                   as_utc(job.created_at), as_utc(job.finished_at))


def enqueue(factory: sessionmaker[Session], job: JobPayload, user: SignedIn) -> int:
    """Queue a job for a signed-in user allowed to start it; returns its id."""
    if KINDS.get(job.kind) is not type(job):
        raise StorageError(f"a job kind among {', '.join(KINDS)}", repr(job.kind), "pick one of those kinds")
    require(factory, user, job.permission)
    with transaction(factory) as s:
        row = Job(kind=job.kind, args=job.to_dict(), status="queued", progress=0.0, message="waiting for a worker",
                  created_by=user.name, error="", worker="", cancel_requested=False)
        s.add(row)
        s.flush()
        audit(s, user.name, "job.enqueue", "job", row.id, after={"kind": job.kind})
        return row.id


def get_job(factory: sessionmaker[Session], job_id: int) -> JobView:
    with transaction(factory) as s:
        job = s.get(Job, job_id, options=[defer(Job.args)])
        if job is None:
            raise StorageError("a known job", f"job {job_id}", "pick a job from the list")
        return _view(job)


def recent_jobs(factory: sessionmaker[Session], *, kinds: tuple[str, ...] | None = None, limit: int = 20) -> list[JobView]:
    with transaction(factory) as s:
        # Never loaded by the panels that poll this: a batch's args can hold thousands of note ids.
        query = select(Job).options(defer(Job.args)).order_by(Job.id.desc()).limit(limit)
        if kinds:
            query = query.where(Job.kind.in_(kinds))
        return [_view(job) for job in s.scalars(query)]


def discard_unscored_notes(session: Session, job: Job) -> None:
    """After a predict job failed or was cancelled, delete the notes it stored that were never
    scored, so patient text is not kept for nothing; notes another queued or running predict
    job still waits on stay."""
    if job.kind != PredictJob.kind:
        return
    mine = set((job.args or {}).get("note_ids") or ())
    others = session.scalars(select(Job.args).where(Job.kind == PredictJob.kind, Job.id != job.id,
                                                    Job.status.in_(("queued", "running"))))
    for args in others:
        mine -= set((args or {}).get("note_ids") or ())
    deleted = delete_unscored_notes(session, sorted(mine))
    if deleted:
        audit(session, job.created_by, "notes.discard", "job", job.id, after={"notes": len(deleted)})


def cancel(factory: sessionmaker[Session], job_id: int, user: SignedIn) -> None:
    """Ask a job to stop: a queued job is cancelled at once, a running one at its next progress report."""
    with transaction(factory) as s:
        job = s.get(Job, job_id)
        if job is None:
            raise StorageError("a known job", f"job {job_id}", "pick a job from the list")
        user = require_in(s, user, None)  # the account as it is now: deactivated since the page opened = refused
        if job.created_by != user.name:
            require_in(s, user, "users.manage")  # only the owner or an admin
        if job.status == "queued":
            job.status, job.finished_at, job.message = "cancelled", utcnow(), f"cancelled by {user.name}"
            discard_unscored_notes(s, job)
        elif job.status == "running":
            job.cancel_requested = True
        audit(s, user.name, "job.cancel", "job", job_id)


def queue_depth(factory: sessionmaker[Session]) -> dict[str, int]:
    """Jobs waiting for a worker and jobs running now (the API's /metrics reports both)."""
    with transaction(factory) as s:
        counts = dict(s.execute(select(Job.status, func.count()).where(Job.status.in_(("queued", "running")))
                                .group_by(Job.status)).all())
    return {"queued": int(counts.get("queued", 0)), "running": int(counts.get("running", 0))}
