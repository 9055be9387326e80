"""Engine, sessions and migrations.

SQLite (the default, a file in the data folder) runs in WAL mode with foreign keys on and
a busy timeout, so the dashboard's readers never block a reviewer's write and concurrent
writers wait instead of failing. PostgreSQL comes in through ``HEALTHMON_DATABASE_URL``.
The schema is only ever created by Alembic migrations (``upgrade``), never by
``create_all``, so every database has a migration history from its first table on.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from healthmon.config import Settings
from healthmon.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str | None = None, *, settings: Settings | None = None) -> Engine:
    """An engine for ``url`` (default: the settings' database), SQLite tuned for concurrency."""
    url = url or (settings or Settings()).resolved_database_url
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            "a SQLAlchemy database URL (sqlite:///path.db or postgresql+psycopg://user@host/db)",
            repr(url),
            "fix HEALTHMON_DATABASE_URL",
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL syncs at checkpoints instead of at every commit: the database stays
            # consistent after a power cut, which may lose only the last commits. Each API call's
            # audit entry is a commit; FULL made them a disk flush each.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


MIGRATION_LOCK = 0x6865616C74686D6E  # "healthmn": any fixed 64-bit key of our own


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision`` (idempotent)."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Several servers and workers may start together on one empty database: the
                # first to take this transaction-scoped lock migrates, the others wait and then
                # find nothing left to do (without it the second failed creating the same table).
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except (OperationalError, ProgrammingError, CommandError) as exc:
        raise ConfigError(
            "a reachable database at a schema revision this healthmon knows, that the migrations can write to",
            f"{engine.url.render_as_string(hide_password=True)}: {getattr(exc, 'orig', None) or exc}",
            "check HEALTHMON_DATABASE_URL, that the server runs and the user may create tables",
        ) from exc


def head_revision() -> str:
    """The newest migration shipped with this code."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return str(ScriptDirectory.from_config(config).get_current_head())


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


# The session of the innermost :func:`unit_of_work`, with the factory it came from.
_UNIT_OF_WORK: ContextVar[tuple[sessionmaker[Session], Session] | None] = ContextVar("healthmon_unit_of_work",
                                                                                   default=None)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error. Inside
    :func:`unit_of_work` on the same factory it is that unit's session instead: the work
    commits or rolls back with the whole unit."""
    joined = _UNIT_OF_WORK.get()
    if joined is None or joined[0] is not factory:
        with factory() as session, session.begin():
            yield session
        return
    session = joined[1]
    yield session
    # What a commit would show the next block: its writes flushed, and every object read again
    # (an UPDATE issued without the ORM, such as a compare-and-swap, leaves loaded objects stale).
    session.flush()
    session.expire_all()


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Several store calls as one transaction: each :func:`transaction` on ``factory`` inside
    (in this thread) joins it, so an error in any of them rolls back what the others wrote.
    The CLI's ``advice`` command records demographics, a scale, drafts and decisions this way:
    a refused draft or decision leaves nothing of the command behind. An error raised inside
    must end the unit (caught and carried on from, it would leave the failed call's writes)."""
    with transaction(factory) as session:
        token = _UNIT_OF_WORK.set((factory, session))
        try:
            yield session
        finally:
            _UNIT_OF_WORK.reset(token)


def insert_or_skip(session: Session, table: type, unique_columns: list[str]):  # noqa: ANN201 - the dialect's INSERT
    """``INSERT ... ON CONFLICT (unique_columns) DO NOTHING`` for SQLite and PostgreSQL.

    Rows another session stored a moment ago are skipped instead of failing the whole
    transaction, which is how concurrent uploads and concurrent drafting stay safe.
    """
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = session.get_bind().dialect.name
    module = {"postgresql": postgresql, "sqlite": sqlite}.get(dialect)
    if module is None:
        raise ConfigError("a SQLite or PostgreSQL database", f"a {dialect} database", "set HEALTHMON_DATABASE_URL")
    return module.insert(table).on_conflict_do_nothing(index_elements=unique_columns)
