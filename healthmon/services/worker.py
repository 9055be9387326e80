"""The job worker: claims queued jobs and runs their handlers, off the page thread.

Because a job's state is in the database, a progress bar survives page reruns, every
signed-in session sees the same jobs, and the worker can be the dashboard's own threads
(``HEALTHMON_WORKER=thread``, the default) or any number of ``python -m healthmon worker``
processes: claiming is a conditional UPDATE, so two workers never run the same job.

Each handler reads its typed payload (:mod:`healthmon.services.jobs`) and calls the use
case it stands for. A worker that dies leaves its job ``running`` with an old heartbeat;
the next worker marks such jobs failed instead of leaving them spinning forever.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from healthmon.config import Settings
from healthmon.errors import HealthmonError
from healthmon.ingest.notes import read_notes_file
from healthmon.model.classifier import Classifier
from healthmon.services.cases import case_detail
from healthmon.services.explanations import explain_case
from healthmon.services.jobs import ExplainJob, FinetuneJob, PredictJob, RetrainJob, discard_unscored_notes, payload_of
from healthmon.services.notes import score_stored
from healthmon.services.retrain import retrain
from healthmon.services.versions import register_trained
from healthmon.storage.db import transaction
from healthmon.storage.models import Job, utcnow
from healthmon.training.args import TrainArgs
from healthmon.training.trainer import train

log = logging.getLogger(__name__)

ClassifierLoader = Callable[[str], Classifier]


class JobCancelled(Exception):
    """Raised inside a handler when someone asked to cancel its job."""


# ----------------------------------------------------------------------------- handlers
class JobContext:
    """What a handler gets besides its payload: a progress reporter and shared resources."""

    def __init__(self, factory: sessionmaker[Session], job_id: int, settings: Settings,
                 load_classifier: ClassifierLoader, actor: str) -> None:
        self.factory, self.job_id, self.settings = factory, job_id, settings
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


def _predict(ctx: JobContext, job: PredictJob) -> dict[str, Any]:
    if not job.note_ids:
        return {"note_ids": [], "version": Path(job.version_dir).name, "scored": 0}
    classifier = ctx.load_classifier(job.version_dir)
    note_ids = score_stored(ctx.factory, classifier, job.version_dir, job.note_ids, actor=ctx.actor,
                            chunk=max(ctx.settings.batch_size, 16), audit_entity=("job", ctx.job_id),
                            on_progress=lambda f, m: ctx.progress(f, m, force=f == 0.0))
    return {"note_ids": note_ids, "version": Path(job.version_dir).name, "scored": len(note_ids)}


def _explain(ctx: JobContext, job: ExplainJob) -> dict[str, Any]:
    for i, note_id in enumerate(job.note_ids):
        explain_case(ctx.factory, case_detail(ctx.factory, note_id), job.target, ctx.load_classifier)
        ctx.progress((i + 1) / len(job.note_ids), f"explained {i + 1} of {len(job.note_ids)} note(s)", force=i == 0)
    return {"explained": len(job.note_ids)}


def _retrain(ctx: JobContext, job: RetrainJob) -> dict[str, Any]:
    train_args = TrainArgs.from_dict(job.train_args) if job.train_args else None
    result = retrain(ctx.factory, settings=ctx.settings, args=train_args, replay=job.replay, margin=job.margin,
                     actor=ctx.actor, on_progress=lambda f, m: ctx.progress(0.9 * f, m))
    return {"version": result.version_dir.name, "promoted": result.promoted, "reason": result.reason,
            "scores": result.metrics, "run_id": result.run_id}


def _finetune(ctx: JobContext, job: FinetuneJob) -> dict[str, Any]:
    upload = Path(job.data_path)
    try:
        read = read_notes_file(upload, text_column=job.text_column, label_column=job.label_column or None)
    finally:
        if job.delete_after_reading:
            upload.unlink(missing_ok=True)  # the notes live on in the version's data/ folder only
    trained = train(read.notes, TrainArgs.from_dict(job.train_args), settings=ctx.settings, progress=False,
                    on_progress=lambda f, m: ctx.progress(0.9 * f, m))
    folder = Path(trained.version_dir)
    register_trained(ctx.factory, folder, actor=ctx.actor, rows=read.report.rows_accepted)
    test = trained.metrics.get("test", {})
    return {"version": folder.name, "rows_used": read.report.rows_accepted, "rows_rejected": read.report.rows_rejected,
            "test_macro_f1": test.get("macro_f1"), "test_accuracy": test.get("accuracy"), "test_mae": test.get("mae"),
            "stopped_by": trained.metrics.get("train", {}).get("stopped_by")}


HANDLERS: dict[str, Callable[[JobContext, Any], dict[str, Any]]] = {
    PredictJob.kind: _predict,
    ExplainJob.kind: _explain,
    RetrainJob.kind: _retrain,
    FinetuneJob.kind: _finetune,
}


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
        failed = 0
        with transaction(self.factory) as s:
            for job_id in s.scalars(select(Job.id).where(Job.status == "running", Job.heartbeat_at < limit)).all():
                # Conditional, as before: a job that reported or finished meanwhile is left alone.
                won = s.execute(
                    update(Job).where(Job.id == job_id, Job.status == "running", Job.heartbeat_at < limit)
                    .values(status="failed", finished_at=utcnow(),
                            error="its worker stopped reporting (the dashboard or worker process was restarted): "
                                  "start the job again"))
                if won.rowcount == 1:
                    failed += 1
                    discard_unscored_notes(s, s.get(Job, job_id))
        return failed

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
        ctx = JobContext(self.factory, job_id, self.settings, self.load_classifier, actor)
        stop_beat = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job_id, stop_beat), daemon=True)
        beat.start()
        try:
            result = HANDLERS[kind](ctx, payload_of(kind, args))
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
        return job_id

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
            else:
                discard_unscored_notes(s, job)

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
THREAD_LANES: dict[str, tuple[str, ...]] = {"scoring": (PredictJob.kind, ExplainJob.kind),
                                             "training": (RetrainJob.kind, FinetuneJob.kind)}


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
