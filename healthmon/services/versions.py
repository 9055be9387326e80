"""Model versions: register a folder, say which one is served, promote and roll back (audited).

A version is a folder (see :mod:`healthmon.model.card`); the database registry says which
one the dashboard, the API and batch jobs serve. At most one row is active at any moment
(a partial unique index), and switching retires the old one first in the same transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from healthmon.config import Settings
from healthmon.errors import NotFoundError, StorageError
from healthmon.model.card import ModelCard
from healthmon.services.accounts import SignedIn, require
from healthmon.storage import repository
from healthmon.storage.db import transaction
from healthmon.storage.models import ModelVersion
from healthmon.storage.repository import active_version, audit
from healthmon.types import as_utc


@dataclass(frozen=True)
class VersionView:
    """A registered version as the Models page lists it (plain values, no session)."""

    id: int
    name: str
    folder: str
    status: str
    status_reason: str
    created_at: datetime
    parent_id: int | None
    metrics: dict[str, Any]
    card: dict[str, Any]


def _view(row: ModelVersion) -> VersionView:
    return VersionView(row.id, row.name, row.folder, row.status, row.status_reason or "", as_utc(row.created_at),
                       row.parent_id, dict(row.metrics or {}), dict(row.card or {}))


def list_versions(factory: sessionmaker[Session]) -> list[VersionView]:
    """Every registered version, newest first."""
    with transaction(factory) as s:
        return [_view(row) for row in repository.list_versions(s)]


def served_version_dir(factory: sessionmaker[Session], settings: Settings) -> Path | None:
    """The version every front door serves.

    HEALTHMON_ACTIVE_MODEL when set (an operator's explicit choice), else the version the
    database marks active (promoted by retrain, or rolled back to), else the demo model;
    the first of those whose folder holds a card.
    """
    candidates = [settings.active_model] if settings.active_model else []
    if not candidates:
        with transaction(factory) as session:
            active = active_version(session)
            if active is not None:
                candidates.append(Path(active.folder))
        candidates.append(settings.demo_model_dir)
    for folder in candidates:
        if (Path(folder) / "card.json").is_file():
            return Path(folder)
    return None


def ensure_registered(session: Session, folder: Path, *, status: str | None = None) -> ModelVersion:
    """The version row for a folder, registered on first sight; by default active when the
    database has no active version yet, else a candidate."""
    if status is None:
        status = "active" if active_version(session) is None else "candidate"
    card = ModelCard.load(folder)
    return repository.register_version(session, folder.name, str(folder.resolve()), json.loads(card.to_json()), status=status)


def register_served(factory: sessionmaker[Session], folder: Path) -> VersionView:
    """Record a folder a front door serves as a version (active when the database has none yet).

    Safe to call from many sessions at once: when another registers the same folder at the
    same moment, its row is returned.
    """
    try:
        with transaction(factory) as session:
            return _view(ensure_registered(session, Path(folder)))
    except IntegrityError:
        # Either this folder was registered meanwhile (its row is returned) or another folder
        # became active meanwhile (the one-active index refused ours): this one is a candidate.
        with transaction(factory) as session:
            return _view(ensure_registered(session, Path(folder), status="candidate"))


def register_trained(factory: sessionmaker[Session], folder: Path, *, actor: str, rows: int) -> VersionView:
    """A newly trained version, registered as a candidate (served only once promoted), audited."""
    with transaction(factory) as session:
        row = ensure_registered(session, Path(folder), status="candidate")
        audit(session, actor, "version.train", "model_version", row.id, after={"rows": rows})
        return _view(row)


def switch_active(session: Session, target: ModelVersion, actor: str, why: str) -> None:
    current = active_version(session)
    if current is not None and current.id != target.id:
        current.status = "retired"
        current.status_reason = f"replaced by {target.name}"
        session.flush()  # retire first: at most one active row may exist at any moment
    before = {"active": current.name if current else None}
    target.status, target.status_reason = "active", why
    session.flush()
    audit(session, actor, "version.promote", "model_version", target.id, before=before,
          after={"active": target.name, "why": why})


def _actor_name(factory: sessionmaker[Session], actor: str | SignedIn) -> str:
    """A signed-in user must hold ``models.promote``; a plain name is the trusted command line."""
    if isinstance(actor, SignedIn):
        return require(factory, actor, "models.promote").name
    return actor


def set_active(factory: sessionmaker[Session], name: str, *, actor: str | SignedIn = "system",
               why: str = "") -> VersionView:
    """Serve a registered version: promote a candidate or roll back to a retired one (audited).

    The current active version is retired. A signed-in actor needs the ``models.promote``
    permission (admins); the command line passes its own name.
    """
    who = _actor_name(factory, actor)
    with transaction(factory) as s:
        target = s.scalar(select(ModelVersion).where(ModelVersion.name == name))
        if target is None:
            known = ", ".join(s.scalars(select(ModelVersion.name)))
            raise NotFoundError("a registered model version", repr(name), f"pick one of: {known or '(none)'}")
        if not (Path(target.folder) / "card.json").is_file():
            raise StorageError(f"the folder of version {name}", f"no card.json in {target.folder}",
                               "restore the folder or pick another version")
        current = active_version(s)
        kind = "rollback" if target.status == "retired" else "promote"
        switch_active(s, target, who, why or f"{kind} by {who}")
        audit(s, who, f"version.{kind}", "model_version", target.id,
              before={"active": current.name if current else None}, after={"active": target.name})
        return _view(target)


def rollback(factory: sessionmaker[Session], name: str, *, actor: str | SignedIn = "system") -> VersionView:
    """Make an earlier version active again (the current one is retired), audited."""
    return set_active(factory, name, actor=actor, why=f"rollback by {_actor_name(factory, actor)}")
