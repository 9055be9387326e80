"""What the REST API and the CDS Hooks service ask of the application layer beyond the pages' calls.

The API resolves a model version by name, records every call it answers in the audit log (who,
which route, which patients), and stores API-scored notes as cases. Permissions are the same
table the pages use (:data:`healthmon.services.accounts.PERMISSIONS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from healthmon.config import Settings
from healthmon.errors import ModelError
from healthmon.services.accounts import SignedIn, check_role, require
from healthmon.services.versions import ensure_registered, list_versions, register_served, served_version_dir
from healthmon.storage.db import transaction
from healthmon.storage.repository import audit, save_predictions
from healthmon.types import Note, Prediction

ACTIVE = "active"


class UnknownVersion(ModelError):
    """A model version name that no registered version has."""




def resolve_version(factory: sessionmaker[Session], settings: Settings, name: str) -> Path:
    """The folder of version ``name``; ``active`` is the version every front door serves.

    Raises:
        ModelError: no such registered version, or its folder has no card.
    """
    if name == ACTIVE:
        folder = served_version_dir(factory, settings)
        if folder is None:
            raise ModelError("a served model version", "none (no demo model, no active version)",
                             "build the demo model with `python -m healthmon demo` or promote a version")
        return folder
    known = {v.name: Path(v.folder) for v in list_versions(factory)}
    served = served_version_dir(factory, settings)
    if served is not None:
        known.setdefault(served.name, served)
    folder = known.get(name)
    if folder is None or not (folder / "card.json").is_file():
        listed = ", ".join(sorted(known)[:10]) or "none registered"
        raise UnknownVersion(f"a registered model version name or `{ACTIVE}`", repr(name),
                         f"use one of: {ACTIVE}, {listed}")
    return folder


def check_allowed(user: SignedIn, permission: str, factory: sessionmaker[Session] | None = None) -> SignedIn:
    """The caller, if their role has ``permission``: asked before model work that touches no
    database (a predict without ``store``), so the API refuses it with the pages' own rule.

    With ``factory`` the role is read from the database (:func:`require`). Without it, the role
    ``user`` carries is used: the API builds ``user`` from the database on every request
    (:func:`healthmon.services.tokens.authenticate`), so it is as fresh as one request.
    """
    return require(factory, user, permission) if factory is not None else check_role(user, permission)


def record_calls(factory: sessionmaker[Session],
                 calls: Sequence[tuple[str, str, int, Sequence[str], dict | None]]) -> None:
    """Several calls' audit entries in one transaction: (account, route, status, patients, detail)."""
    with transaction(factory) as s:
        for account, route, status, patients, detail in calls:
            audit(s, account, "api.call", "route", route,
                  after={"status": status, "patients": sorted({p for p in patients if p}), "via": "api",
                         **(detail or {})})


def store_api_predictions(factory: sessionmaker[Session], user: SignedIn, notes: Sequence[Note],
                          predictions: Sequence[Prediction], version_dir: Path) -> list[int]:
    """Store API-scored notes as cases (``?store=true``), as ``predict --store`` does; returns note ids."""
    require(factory, user, "notes.predict")
    try:
        return _store(factory, user, notes, predictions, version_dir)
    except IntegrityError:
        # Another call stored the same patient or note between our look and our insert (two
        # CDS hooks for one chart, two servers): a second look finds the rows.
        return _store(factory, user, notes, predictions, version_dir)


def _store(factory: sessionmaker[Session], user: SignedIn, notes: Sequence[Note],
           predictions: Sequence[Prediction], version_dir: Path) -> list[int]:
    with transaction(factory) as s:
        version = ensure_registered(s, version_dir)
        note_ids = save_predictions(s, notes, predictions, version)
        audit(s, user.name, "notes.predict", "api", "predict", after={"notes": len(note_ids), "version": version.name})
        return note_ids


def list_model_versions(factory: sessionmaker[Session], settings: Settings, user: SignedIn) -> list[dict]:
    """Registered versions for an integration: name, status, labels and test figures."""
    require(factory, user, "models.view")
    served = served_version_dir(factory, settings)
    if served is not None:
        register_served(factory, served)
    rows = []
    for v in list_versions(factory):
        card = v.card or {}
        test = (v.metrics or {}).get("test") or {}
        rows.append({"name": v.name, "status": v.status, "created_at": v.created_at,
                     "problem_type": card.get("problem_type", ""), "labels": list(card.get("labels") or []),
                     "test_metrics": {k: val for k, val in test.items() if isinstance(val, (int, float))},
                     "served": served is not None and Path(v.folder).resolve() == served.resolve()})
    return rows


def promote_version(factory: sessionmaker[Session], user: SignedIn, name: str) -> str:
    """Make a registered version the served one (``models.promote``: admins); returns its name."""
    from healthmon.services.versions import set_active

    actor = require(factory, user, "models.promote")
    return set_active(factory, name, actor=actor, why=f"promoted through the API by {user.name}").name
