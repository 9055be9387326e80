"""Notes: store them once, queue them for scoring, score stored notes.

The Notes and Vitals pages store an upload and queue a :class:`PredictJob` that carries
the stored notes' ids; the worker scores them with :func:`score_stored`. The CLI scores in
its own process and stores with :func:`store_scored`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from healthmon.errors import ModelError, StorageError
from healthmon.model.classifier import Classifier
from healthmon.services.accounts import SignedIn, require
from healthmon.services.jobs import PredictJob, enqueue
from healthmon.services.versions import ensure_registered, register_served
from healthmon.storage.db import transaction, unit_of_work
from healthmon.storage.repository import audit, save_predictions, save_scores, store_notes, stored_notes
from healthmon.types import Note, Prediction

Progress = Callable[[float, str], None]


def submit_for_scoring(factory: sessionmaker[Session], user: SignedIn, notes: Sequence[Note],
                       version_dir: str | Path | None) -> int:
    """Store ``notes`` and queue them for scoring by ``version_dir``; returns the job id.

    The notes and the job are stored in one transaction: a refused job stores no notes, and
    a job that fails or is cancelled deletes the notes it stored that were never scored.

    Raises:
        ModelError: no version folder to score with (before anything is stored).
    """
    require(factory, user, PredictJob.permission)
    if version_dir is None or not (Path(version_dir) / "card.json").is_file():
        raise ModelError("a model version folder to score with", f"{version_dir or 'none'} (no card.json there)",
                         "build the demo model (`python -m healthmon demo`) or promote a version on the Models page")
    try:
        return _store_and_enqueue(factory, user, notes, str(version_dir))
    except IntegrityError:
        # Another session stored one of these notes (or patients) between our look and our
        # insert; a second look finds them.
        try:
            return _store_and_enqueue(factory, user, notes, str(version_dir))
        except IntegrityError:
            raise StorageError("notes stored once", "the same notes being stored by another session",
                               "submit them again") from None


def _store_and_enqueue(factory: sessionmaker[Session], user: SignedIn, notes: Sequence[Note], version_dir: str) -> int:
    with unit_of_work(factory) as s:
        note_ids = store_notes(s, notes)
        job_id = enqueue(factory, PredictJob(version_dir, tuple(note_ids)), user)
        audit(s, user.name, "notes.store", "job", job_id, after={"notes": len(note_ids)})
        return job_id


def score_stored(factory: sessionmaker[Session], classifier: Classifier, version_dir: str | Path,
                 note_ids: Sequence[int], *, actor: str, chunk: int, on_progress: Progress,
                 audit_entity: tuple[str, object]) -> list[int]:
    """Score stored notes in chunks (reporting progress) and store the predictions as cases."""
    with transaction(factory) as s:
        texts = [note.text for note in stored_notes(s, note_ids)]
    predictions: list[Prediction] = []
    on_progress(0.0, f"scoring {len(texts)} note(s)")
    for start in range(0, len(texts), chunk):
        predictions += classifier.predict(texts[start:start + chunk])
        done = min(start + chunk, len(texts))
        on_progress(0.95 * done / len(texts), f"scored {done} of {len(texts)} note(s)")
    # Registered first in its own transaction (which tolerates another worker registering the
    # same folder at the same moment), so a race there cannot fail the job.
    register_served(factory, Path(version_dir))
    with transaction(factory) as s:
        version = ensure_registered(s, Path(version_dir))
        save_scores(s, note_ids, predictions, version)
        audit(s, actor, "notes.predict", *audit_entity, after={"notes": len(note_ids), "version": version.name})
    return list(note_ids)


def store_scored(factory: sessionmaker[Session], actor: str, notes: Sequence[Note], predictions: Sequence[Prediction],
                 version_dir: str | Path) -> tuple[list[int], str]:
    """Store notes scored elsewhere (the CLI's ``predict --store``) as cases; returns (note ids, version name)."""
    with transaction(factory) as s:
        version = ensure_registered(s, Path(version_dir))
        note_ids = save_predictions(s, notes, predictions, version)
        audit(s, actor, "notes.predict", "cli", "predict", after={"notes": len(note_ids), "version": version.name})
        return note_ids, version.name
