"""Opaque ids for dashboard links: a case or a patient named in a URL by a random reference.

The Case and Patient pages put ``?case=<ref>`` / ``?patient=<ref>`` in the address bar so a reload
or a shared link opens the same record; the reference is random and resolved here, so the URL
carries neither the patient's identifier nor the case's row number. A reference is made once per
record and reused, so a bookmark keeps working.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from healthmon.storage.db import transaction
from healthmon.storage.models import LinkRef

KINDS = ("case", "patient")


def link_ref(factory: sessionmaker[Session], kind: str, target: str | int) -> str:
    """The opaque reference for this case (note id) or patient (patient identifier), made if new."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    target = str(target)
    for _ in range(3):  # two pages linking the same record at once: the loser reads the winner's
        with transaction(factory) as session:
            ref = session.scalar(select(LinkRef.ref).where(LinkRef.kind == kind, LinkRef.target == target))
            if ref is not None:
                return ref
        try:
            with transaction(factory) as session:
                ref = secrets.token_urlsafe(12)
                session.add(LinkRef(ref=ref, kind=kind, target=target))
            return ref
        except IntegrityError:
            continue
    raise RuntimeError(f"could not store a link reference for a {kind}")


def resolve_ref(factory: sessionmaker[Session], kind: str, ref: str) -> str | None:
    """The case's note id (as text) or the patient's identifier behind ``ref``; None if unknown."""
    if not ref or len(ref) > 32:
        return None
    with transaction(factory) as session:
        return session.scalar(select(LinkRef.target).where(LinkRef.kind == kind, LinkRef.ref == ref))
