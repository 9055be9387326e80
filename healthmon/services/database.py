"""Connect a process (dashboard, CLI, worker, API) to its database.

Every front door starts here: it gets a session factory with the schema migrated to the
newest revision, and hands that factory to the other services.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from healthmon.config import Settings
from healthmon.storage.db import current_revision, make_engine, session_factory, upgrade

Database = sessionmaker[Session]


def connect(settings: Settings | None = None, *, migrate: bool = True) -> Database:
    """The session factory for the settings' database, after applying any pending Alembic
    migrations unless ``migrate`` is False."""
    engine = make_engine(settings=settings)
    if migrate:
        upgrade(engine)
    return session_factory(engine)


def connect_existing(settings: Settings) -> Database | None:
    """As :func:`connect`, but None where the database is a local SQLite file that does not
    exist yet: reading commands must not create one (it would hold nothing to read)."""
    try:
        url = make_url(settings.resolved_database_url)
    except ArgumentError:
        url = None  # connect() says what is wrong with it
    local = url is not None and url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if local and not Path(url.database).exists():
        return None
    return connect(settings)


def database_status(settings: Settings, *, migrate: bool) -> dict[str, Any]:
    """The database URL (password hidden) and its schema revision, after migrating if asked."""
    engine = make_engine(settings=settings)
    try:
        if migrate:
            upgrade(engine)
        return {"database": engine.url.render_as_string(hide_password=True), "revision": current_revision(engine)}
    finally:
        engine.dispose()


def readiness(factory: Database) -> dict[str, Any]:
    """Whether this process's database answers and its schema is at the newest migration
    (the API's /readyz): ``{"database": bool, "revision": str | None, "head": str | None, "current": bool}``."""
    from sqlalchemy import text

    from healthmon.storage.db import head_revision

    engine = factory.kw["bind"]
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        revision = current_revision(engine)
    except Exception as exc:  # any driver error means "not ready"; the reason is logged by the caller
        return {"database": False, "revision": None, "head": head_revision(), "current": False,
                "error": type(exc).__name__}
    head = head_revision()
    return {"database": True, "revision": revision, "head": head, "current": revision == head}
