"""Background jobs: batch prediction, batch explanation and training, off the page thread.

A job is a database row (``jobs``): pages enqueue it and poll its progress; a worker
claims it, runs its handler and stores the result. Because the state is in the database,
a progress bar survives page reruns, every signed-in session sees the same jobs, and the
worker can be the dashboard's own thread (``HEALTHMON_WORKER=thread``, the default) or any
number of ``python -m healthmon worker`` processes: claiming is a conditional UPDATE, so
two workers never run the same job.

Each kind names the permission needed to start it, checked again here (not only by the
page). A worker that dies leaves its job ``running`` with an old heartbeat; the next
worker marks such jobs failed instead of leaving them spinning forever.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session, defer, sessionmaker

from healthmon.auth import SignedIn, require
from healthmon.config import Settings
from healthmon.errors import HealthmonError
from healthmon.model.classifier import Classifier
from healthmon.storage.db import transaction
from healthmon.storage.models import Job, as_utc, utcnow
from healthmon.storage.repository import StorageError, audit

log = logging.getLogger(__name__)

ClassifierLoader = Callable[[str], Classifier]
FINISHED = ("succeeded", "failed", "cancelled")


class JobCancelled(Exception):
    """Raised inside a handler when someone asked to cancel its job."""


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


# ----------------------------------------------------------------------------- handlers
class JobContext:
    """What a handler gets: its arguments, a progress reporter and shared resources."""

    def __init__(self, factory: sessionmaker[Session], job_id: int, args: dict[str, Any], settings: Settings,
                 load_classifier: ClassifierLoader, actor: str) -> None:
        self.factory, self.job_id, self.args, self.settings = factory, job_id, args, settings
        self.load_classifier, self.actor = load_classifier, actor
        self._last_report = 0.0

    def progress(self, fraction: float, message: str = "", *, force: bool = False) -> None:
        """Store progress (at most ~5 writes a second) and stop if cancellation was asked for."""
        now = time.monotonic()
        if not force and now - self._last_report < 0.2:
            return
        self._last_report = now
        with transaction(self.factory) as s:
            job = s.get(Job, self.job_id)
            job.progress, job.message, job.heartbeat_at = max(0.0, min(1.0, fraction)), message, utcnow()
            cancel = job.cancel_requested
        if cancel:
            raise JobCancelled()


def _predict(ctx: JobContext) -> dict[str, Any]:
    """Score notes in chunks and store them as reviewable cases."""
    from healthmon.storage.repository import save_predictions
    from healthmon.training.continual import ensure_registered
    from healthmon.types import Note

    version_dir = ctx.args["version_dir"]
    notes = [Note(**n) for n in ctx.args["notes"]]
    if not notes:
        return {"note_ids": [], "version": Path(version_dir).name, "scored": 0}
    classifier = ctx.load_classifier(version_dir)
    chunk = max(ctx.settings.batch_size, 16)
    predictions = []
    ctx.progress(0.0, f"scoring {len(notes)} note(s)", force=True)
    for start in range(0, len(notes), chunk):
        predictions += classifier.predict([n.text for n in notes[start:start + chunk]])
        done = min(start + chunk, len(notes))
        ctx.progress(0.95 * done / len(notes), f"scored {done} of {len(notes)} note(s)")
    with transaction(ctx.factory) as s:
        version = ensure_registered(s, Path(version_dir))
        note_ids = save_predictions(s, notes, predictions, version)
        audit(s, ctx.actor, "notes.predict", "job", ctx.job_id, after={"notes": len(note_ids), "version": version.name})
    return {"note_ids": note_ids, "version": Path(version_dir).name, "scored": len(note_ids)}


def _explain(ctx: JobContext) -> dict[str, Any]:
    """Explain each note's predicted label (or a chosen one) and store the explanations."""
    from healthmon.cases import case_detail, explain_case

    note_ids = list(ctx.args["note_ids"])
    done = 0
    for i, note_id in enumerate(note_ids):
        explain_case(ctx.factory, case_detail(ctx.factory, note_id), ctx.args.get("target"), ctx.load_classifier)
        done += 1
        ctx.progress((i + 1) / len(note_ids), f"explained {i + 1} of {len(note_ids)} note(s)", force=i == 0)
    return {"explained": done}


def _retrain(ctx: JobContext) -> dict[str, Any]:
    from healthmon.training.args import TrainArgs
    from healthmon.training.continual import retrain

    knobs = dict(ctx.args.get("train_args") or {})
    train_args = TrainArgs(**knobs) if knobs else None
    result = retrain(ctx.factory, settings=ctx.settings, args=train_args, replay=ctx.args.get("replay"),
                     margin=float(ctx.args.get("margin", 0.01)), actor=ctx.actor,
                     on_progress=lambda f, m: ctx.progress(0.9 * f, m))
    return {"version": result.version_dir.name, "promoted": result.promoted, "reason": result.reason,
            "scores": result.scores, "run_id": result.run_id}


def _finetune(ctx: JobContext) -> dict[str, Any]:
    """Train a new candidate version from a labelled file (never served until promoted)."""
    from healthmon.ingest.notes import read_notes_file
    from healthmon.storage.repository import register_version
    from healthmon.training.args import TrainArgs
    from healthmon.training.trainer import train

    upload = Path(ctx.args["data_path"])
    try:
        read = read_notes_file(upload, text_column=ctx.args.get("text_column"),
                               label_column=ctx.args.get("label_column") or None)
    finally:
        if ctx.args.get("delete_after_reading"):
            upload.unlink(missing_ok=True)  # the notes live on in the version's data/ folder only
    trained = train(read.notes, TrainArgs(**(ctx.args.get("train_args") or {})), settings=ctx.settings,
                    progress=False, on_progress=lambda f, m: ctx.progress(0.9 * f, m))
    folder = Path(trained.version_dir)
    with transaction(ctx.factory) as s:
        row = register_version(s, folder.name, str(folder.resolve()), json.loads(trained.card.to_json()))
        audit(s, ctx.actor, "version.train", "model_version", row.id, after={"rows": read.report.rows_accepted})
    test = trained.metrics.get("test", {})
    return {"version": folder.name, "rows_used": read.report.rows_accepted, "rows_rejected": read.report.rows_rejected,
            "test_macro_f1": test.get("macro_f1"), "test_accuracy": test.get("accuracy")}


@dataclass(frozen=True)
class JobKind:
    handler: Callable[[JobContext], dict[str, Any]]
    permission: str
    title: str


KINDS: dict[str, JobKind] = {
    "predict": JobKind(_predict, "notes.predict", "Batch prediction"),
    "explain": JobKind(_explain, "explain.batch", "Batch explanation"),
    "retrain": JobKind(_retrain, "models.train", "Retrain from reviewed cases"),
    "finetune": JobKind(_finetune, "models.train", "Fine-tune from a labelled file"),
}


# ----------------------------------------------------------------------------- queue API
def enqueue(factory: sessionmaker[Session], kind: str, args: dict[str, Any], user: SignedIn) -> int:
    """Queue a job for a signed-in user allowed to start it; returns its id."""
    if kind not in KINDS:
        raise StorageError(f"a job kind among {', '.join(KINDS)}", repr(kind), "pick one of those kinds")
    require(user, KINDS[kind].permission)
    with transaction(factory) as s:
        job = Job(kind=kind, args=args, status="queued", progress=0.0, message="waiting for a worker",
                  created_by=user.name, error="", worker="", cancel_requested=False)
        s.add(job)
        s.flush()
        audit(s, user.name, "job.enqueue", "job", job.id, after={"kind": kind})
        return job.id


def get_job(factory: sessionmaker[Session], job_id: int) -> JobView:
    with transaction(factory) as s:
        job = s.get(Job, job_id, options=[defer(Job.args)])
        if job is None:
            raise StorageError("a known job", f"job {job_id}", "pick a job from the list")
        return _view(job)


def recent_jobs(factory: sessionmaker[Session], *, kinds: tuple[str, ...] | None = None, limit: int = 20) -> list[JobView]:
    with transaction(factory) as s:
        # args can hold a whole upload of notes: never loaded by the panels that poll this.
        query = select(Job).options(defer(Job.args)).order_by(Job.id.desc()).limit(limit)
        if kinds:
            query = query.where(Job.kind.in_(kinds))
        return [_view(job) for job in s.scalars(query)]


def cancel(factory: sessionmaker[Session], job_id: int, user: SignedIn) -> None:
    """Ask a job to stop: a queued job is cancelled at once, a running one at its next progress report."""
    with transaction(factory) as s:
        job = s.get(Job, job_id)
        if job is None:
            raise StorageError("a known job", f"job {job_id}", "pick a job from the list")
        if job.created_by != user.name:
            require(user, "users.manage")  # only the owner or an admin
        if job.status == "queued":
            job.status, job.finished_at, job.message = "cancelled", utcnow(), f"cancelled by {user.name}"
        elif job.status == "running":
            job.cancel_requested = True
        audit(s, user.name, "job.cancel", "job", job_id)


# ----------------------------------------------------------------------------- worker
class Worker:
    """Claims queued jobs one at a time and runs them; see the module docstring."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings, load_classifier: ClassifierLoader,
                 *, name: str | None = None, kinds: tuple[str, ...] | None = None) -> None:
        self.factory, self.settings, self.load_classifier = factory, settings, load_classifier
        self.kinds = kinds  # None: every kind
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"

    def fail_stale(self) -> int:
        """Mark running jobs whose worker stopped reporting as failed; returns how many."""
        limit = utcnow() - timedelta(seconds=self.settings.job_stale_seconds)
        with transaction(self.factory) as s:
            result = s.execute(
                update(Job).where(Job.status == "running", Job.heartbeat_at < limit)
                .values(status="failed", finished_at=utcnow(),
                        error="its worker stopped reporting (the dashboard or worker process was restarted): "
                              "start the job again")
            )
            return result.rowcount or 0

    def claim(self) -> int | None:
        with transaction(self.factory) as s:
            query = select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(1)
            if self.kinds is not None:
                query = query.where(Job.kind.in_(self.kinds))
            candidate = s.scalar(query)
            if candidate is None:
                return None
            now = utcnow()
            won = s.execute(update(Job).where(Job.id == candidate, Job.status == "queued").values(
                status="running", worker=self.name, started_at=now, heartbeat_at=now, message="starting"))
            return candidate if won.rowcount == 1 else None

    def run_once(self) -> int | None:
        """Run the oldest queued job, if any; returns its id."""
        job_id = self.claim()
        if job_id is None:
            return None
        with transaction(self.factory) as s:
            job = s.get(Job, job_id)
            kind, args, actor = job.kind, dict(job.args or {}), job.created_by
        ctx = JobContext(self.factory, job_id, args, self.settings, self.load_classifier, actor)
        stop_beat = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job_id, stop_beat), daemon=True)
        beat.start()
        try:
            result = KINDS[kind].handler(ctx)
        except JobCancelled:
            self._finish(job_id, "cancelled", message="cancelled on request")
        except HealthmonError as exc:
            self._finish(job_id, "failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug in one job must not stop the worker
            log.exception("job %s (%s) failed", job_id, kind)
            self._finish(job_id, "failed", error=f"internal error ({type(exc).__name__}: {exc}); "
                                                 "see the server log and report it")
        else:
            try:
                self._finish(job_id, "succeeded", result=result, message="done")
            except Exception as exc:  # noqa: BLE001 - e.g. a result the database cannot store
                log.exception("job %s (%s): storing its result failed", job_id, kind)
                self._finish(job_id, "failed", error=f"the job ran but its result could not be stored "
                                                     f"({type(exc).__name__}: {exc}); see the server log")
        finally:
            stop_beat.set()
            self._trim_args(job_id)
        return job_id

    def _trim_args(self, job_id: int) -> None:
        # A finished predict job need not keep a second copy of every note's text.
        try:
            with transaction(self.factory) as s:
                job = s.get(Job, job_id)
                if job is not None and "notes" in (job.args or {}):
                    job.args = {**job.args, "notes": len(job.args["notes"])}
        except Exception:  # noqa: BLE001 - housekeeping only
            log.warning("could not trim the arguments of job %s", job_id, exc_info=True)

    def _heartbeat(self, job_id: int, stop: threading.Event) -> None:
        # Long steps (a model load, one training epoch's evaluation) report no progress for a
        # while; the heartbeat tells other workers this job is still alive.
        interval = max(1.0, self.settings.job_stale_seconds / 4)
        while not stop.wait(interval):
            try:
                with transaction(self.factory) as s:
                    s.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(heartbeat_at=utcnow()))
            except Exception:  # noqa: BLE001 - a missed beat is retried; the job itself goes on
                log.warning("heartbeat for job %s failed", job_id, exc_info=True)

    def _finish(self, job_id: int, status: str, *, result: dict | None = None, error: str = "", message: str = "") -> None:
        with transaction(self.factory) as s:
            job = s.get(Job, job_id)
            job.status, job.finished_at, job.result, job.error = status, utcnow(), result, error
            job.message = message or status
            if status == "succeeded":
                job.progress = 1.0

    def run_forever(self, stop: threading.Event, *, poll_seconds: float = 0.25) -> None:
        self.fail_stale()
        last_sweep = time.monotonic()
        while not stop.is_set():
            try:
                ran = self.run_once()
                if time.monotonic() - last_sweep > self.settings.job_stale_seconds:
                    self.fail_stale()
                    last_sweep = time.monotonic()
            except Exception:  # noqa: BLE001 - e.g. the database briefly unavailable: retry, never die
                log.exception("worker loop error")
                ran = None
            if ran is None:
                stop.wait(poll_seconds)


# The dashboard's own workers: one for quick clinical work, one for training, so an hour of
# fine-tuning never holds a clinician's batch of notes in the queue.
THREAD_LANES: dict[str, tuple[str, ...]] = {"scoring": ("predict", "explain"), "training": ("retrain", "finetune")}


def start_thread_workers(factory: sessionmaker[Session], settings: Settings, load_classifier: ClassifierLoader
                         ) -> tuple[threading.Event, list[threading.Thread]]:
    """Workers in daemon threads of the current process (the dashboard's default); set the
    returned event to stop them."""
    stop = threading.Event()
    threads = []
    for lane, kinds in THREAD_LANES.items():
        worker = Worker(factory, settings, load_classifier, kinds=kinds)
        thread = threading.Thread(target=worker.run_forever, args=(stop,), name=f"healthmon-{lane}", daemon=True)
        thread.start()
        threads.append(thread)
    return stop, threads
