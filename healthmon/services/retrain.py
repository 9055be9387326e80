"""Continual fine-tuning from reviewed cases, guarded against forgetting.

``retrain`` trains a candidate from the active version on the reviewed labels (the
adjudicated, else the latest label of each case) plus a replay sample of the data the
active version was trained on, then promotes it only if:

(a) on the frozen regression set (the first version's test split, inherited by every
    descendant) its accuracy is at most ``margin`` below the active version's, and
(b) on reviewed cases held out of its training it is more accurate than the active one.

Otherwise it stays a candidate with the reason recorded. Every run is a training_runs row;
promotion happens in one transaction after the candidate folder is complete, so a run
killed at any point leaves the active version as it was.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sqlalchemy.orm import Session, sessionmaker

from healthmon.config import Settings
from healthmon.errors import StorageError, TrainingError
from healthmon.model.card import ModelCard
from healthmon.model.lineage import REGRESSION_FILE, lineage_root, load_examples
from healthmon.services.accounts import SignedIn, require
from healthmon.services.jobs import FinetuneJob, RetrainJob, enqueue
from healthmon.services.versions import ensure_registered, switch_active
from healthmon.storage.db import transaction
from healthmon.storage.models import ModelVersion, TrainingRun, utcnow
from healthmon.storage.repository import active_version, audit, register_version, reviewed_labels
from healthmon.training import trainer
from healthmon.training.args import TrainArgs
from healthmon.training.data import Example
from healthmon.training.replay import compare_versions, is_held_out, replay_sample
from healthmon.types import Note


@dataclass(frozen=True)
class RetrainResult:
    run_id: int
    version_dir: Path
    promoted: bool
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)


def retrain(
    factory: sessionmaker[Session],
    *,
    settings: Settings | None = None,
    parent_dir: Path | None = None,
    args: TrainArgs | None = None,
    replay: int | None = None,
    holdout_fraction: float = 0.2,
    margin: float = 0.01,
    out_dir: Path | None = None,
    actor: str = "system",
    progress: bool = False,
    on_progress: Callable[[float, str], None] | None = None,
) -> RetrainResult:
    """Train, evaluate and (maybe) promote a candidate; see the module docstring.

    Args:
        parent_dir: version to continue from (default: the active one in the database).
        args: training knobs; ``init_from`` and ``label_order`` are set here. LoRA by default.
        replay: earlier training notes mixed in (default: as many as reviewed training
            cases, at least 200). 0 trains on the reviewed cases alone.
        holdout_fraction: share of reviewed cases kept out of training to judge (b).
        margin: largest accuracy drop on the regression set that still allows promotion.
        on_progress: training progress reporter (see :func:`healthmon.training.trainer.train`).
    """
    settings = settings or Settings()
    with transaction(factory) as s:
        active = active_version(s)
        if parent_dir is None:
            if active is None:
                raise StorageError("an active model version to continue from", "none in the database",
                                   "pass --from VERSION_DIR (it will be registered as active)")
            parent_dir = Path(active.folder)
        parent_row = ensure_registered(s, Path(parent_dir))
        reviewed = reviewed_labels(s)
        run = TrainingRun(kind="retrain", args={"parent": str(parent_dir), "replay": replay,
                                                "holdout_fraction": holdout_fraction, "margin": margin})
        s.add(run)
        s.flush()
        run_id, parent_id = run.id, parent_row.id
    try:
        result = _retrain(factory, settings, Path(parent_dir), args, reviewed, replay, holdout_fraction, margin,
                          out_dir, actor, progress, run_id, parent_id, trainer.train, on_progress)
    except BaseException as exc:  # KeyboardInterrupt too: the run is marked, the active version untouched
        with transaction(factory) as s:
            row = s.get(TrainingRun, run_id)
            row.status, row.finished_at, row.error = "failed", utcnow(), f"{type(exc).__name__}: {exc}"
        raise
    return result


def _retrain(factory, settings, parent_dir, args, reviewed, replay, holdout_fraction, margin, out_dir, actor,
             progress, run_id, parent_id, train, on_progress=None) -> RetrainResult:  # noqa: ANN001
    parent_card = ModelCard.load(parent_dir)
    if parent_card.regression:
        raise TrainingError("a classification version to continue from reviewed labels",
                            f"{parent_dir.name}, a regression version (it predicts {parent_card.labels[0]})",
                            "train a new regression version with `healthmon train --task regression`")
    seed = settings.seed
    if not 0 < holdout_fraction < 1:
        raise TrainingError("a held-out share of reviewed cases between 0 and 1", repr(holdout_fraction),
                            "e.g. --holdout 0.2: without held-out cases no improvement can be shown")
    unlabelled = sum(1 for r in reviewed if not r["labels"])
    cases = [r for r in reviewed if r["labels"]]
    if len(cases) < 10:
        raise TrainingError("at least 10 reviewed cases with a label to retrain on",
                            f"{len(cases)} ({unlabelled} reviewed as 'no label' are not used)", "review more cases first")
    # A case is held out by a hash of its id, the same way in every run: cases judged in
    # check (b) are never trained on by this or any earlier retrain.
    held_out = [c for c in cases if is_held_out(c["note_id"], holdout_fraction)]
    fit = [Example(c["text"], tuple(c["labels"])) for c in cases if not is_held_out(c["note_id"], holdout_fraction)]
    # Replay from the lineage's first version: each generation's own training data is
    # mostly a replay sample already, and sampling samples would shrink the original away.
    earlier = load_examples(lineage_root(parent_dir), "train")
    size = replay if replay is not None else max(200, len(fit))
    replayed = replay_sample(earlier, size, seed, exclude={c["text"] for c in cases})
    notes = [Note(text=e.text, note_id=f"reviewed-{i}", labels=e.labels) for i, e in enumerate(fit)]
    notes += [Note(text=text, note_id=f"replay-{i}", labels=labels) for i, (text, labels) in enumerate(replayed)]
    new_labels = sorted({label for c in cases for label in c["labels"]} - set(parent_card.labels))
    base_args = args or TrainArgs(mode="lora", multi_label=parent_card.multi_label)
    train_args = TrainArgs(**{**base_args.to_dict(), "init_from": str(parent_dir.resolve()),
                              "label_order": tuple(parent_card.labels) + tuple(new_labels),
                              "multi_label": parent_card.multi_label})
    trained = train(notes, train_args, out_dir=out_dir, settings=settings, progress=progress, on_progress=on_progress)

    regression = load_examples(parent_dir, REGRESSION_FILE.removesuffix(".jsonl"))
    held = [(c["text"], tuple(c["labels"])) for c in held_out]
    scores = {
        **compare_versions(parent_dir, Path(trained.version_dir), regression, held, settings),
        "reviewed_train": len(fit),
        "reviewed_held_out": len(held),
        "reviewed_unlabelled_skipped": unlabelled,
        "replayed": len(replayed),
        "new_labels": new_labels,
        "margin": margin,
    }
    drop = scores["regression_active"] - scores["regression_candidate"]
    if drop > margin + 1e-9:  # a drop of exactly the margin is allowed (float noise aside)
        reason = (f"regression-set accuracy fell {drop:.3f} ({scores['regression_active']:.3f} -> "
                  f"{scores['regression_candidate']:.3f}), more than the {margin:.3f} allowed")
    elif not held:
        reason = "no held-out reviewed cases to show an improvement on"
    elif not scores["reviewed_candidate"] > scores["reviewed_active"]:
        reason = (f"held-out reviewed accuracy did not improve ({scores['reviewed_active']:.3f} -> "
                  f"{scores['reviewed_candidate']:.3f})")
    else:
        reason = ""
    promoted = not reason
    folder = Path(trained.version_dir)
    with transaction(factory) as s:
        candidate = register_version(s, folder.name, str(folder.resolve()), json.loads(trained.card.to_json()),
                                     parent=s.get(ModelVersion, parent_id))
        candidate.metrics = {**candidate.metrics, "retrain": scores}
        current = active_version(s)
        if promoted and (current is None or current.id != parent_id):
            # Compared with the parent, not with whatever became active meanwhile (a
            # rollback, another retrain): never replace a version it was not judged against.
            promoted = False
            reason = (f"the active version changed during the run ({current.name if current else 'none'} instead "
                      f"of the parent it was compared with): retrain again from the active version")
        if promoted:
            switch_active(s, candidate, actor, f"retrain run {run_id}: regression drop {drop:+.3f}, "
                           f"held-out {scores['reviewed_active']:.3f} -> {scores['reviewed_candidate']:.3f}")
        else:
            candidate.status, candidate.status_reason = "candidate", reason
            audit(s, actor, "version.refuse", "model_version", candidate.id, after={"reason": reason, **scores})
        run = s.get(TrainingRun, run_id)
        run.status, run.finished_at, run.metrics, run.model_version_id = "succeeded", utcnow(), scores, candidate.id
    return RetrainResult(run_id, folder, promoted, reason or "promoted", scores)


def submit_retrain(factory: sessionmaker[Session], user: SignedIn, train_args: dict[str, Any], *,
                   margin: float = 0.01, replay: int | None = None) -> int:
    """Queue a retrain of the active version (see :func:`retrain`); returns the job id."""
    return enqueue(factory, RetrainJob(train_args=train_args, replay=replay, margin=margin), user)


def submit_finetune(factory: sessionmaker[Session], user: SignedIn, settings: Settings, data: bytes, filename: str,
                    train_args: dict[str, Any]) -> int:
    """Keep an uploaded labelled file until a worker has read it, and queue a fine-tune on it.

    The file is deleted once read: the notes live on only in the new version's data folder.
    """
    require(factory, user, FinetuneJob.permission)
    TrainArgs.from_dict(train_args)  # bad knobs are refused before the upload is saved
    uploads = settings.data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    path = uploads / f"{uuid.uuid4().hex}{Path(filename).suffix.lower()}"
    path.write_bytes(data)
    try:
        return enqueue(factory, FinetuneJob(data_path=str(path.resolve()), train_args=train_args,
                                            delete_after_reading=True), user)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
