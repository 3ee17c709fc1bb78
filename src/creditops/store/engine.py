"""Engines, sessions and transaction retries for the service store.

SQLite is the embedded default and is shared by several worker processes, so every SQLite
connection is configured the same way (see ``docs/decisions/0004-decision-log-group-commit.md``):

- ``journal_mode=WAL``: readers never block the single writer and vice versa;
- ``synchronous=FULL``: a commit is fsynced before it returns, so an acknowledged decision
  survives power loss, not only a killed process (group commit pays for the fsync);
- ``busy_timeout``: a writer waits up to 30 s for the write lock instead of failing;
- ``foreign_keys=ON``: SQLite enforces the same foreign keys as PostgreSQL;
- transactions start with ``BEGIN IMMEDIATE``: the write lock is taken up front. With the
  default deferred ``BEGIN`` a transaction that first reads and later writes must upgrade its
  lock, and if another writer committed in between SQLite fails at once with "database is
  locked" without consulting the busy timeout. Read-only work can opt into a deferred
  ``BEGIN`` (see :data:`READ_ONLY_OPTION`) so that it never queues behind writers.

The Python ``sqlite3`` module's own transaction handling is switched off (``isolation_level
= None``) so that SQLAlchemy's ``begin`` event emits the BEGIN we want.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from creditops.errors import ConfigError, CreditopsError

__all__ = [
    "READ_ONLY_OPTION",
    "StoreUnavailableError",
    "check_database",
    "create_db_engine",
    "default_database_url",
    "is_transient_error",
    "normalize_database_url",
    "run_transaction",
    "session_factory",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

READ_ONLY_OPTION = "creditops_read_only"
"""Execution option: on SQLite, start transactions with a deferred ``BEGIN``.

Set it on an engine (``engine.execution_options(creditops_read_only=True)``) or use
``session_factory(engine, read_only=True)`` for work that only reads.
"""

# PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock, and the connection
# and resource classes (server restarting, too many connections, connection lost).
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"})
_TRANSIENT_SQLSTATE_CLASSES = ("08",)


class StoreUnavailableError(CreditopsError):
    """The service database cannot be reached or did not accept a write."""

    code = "store_unavailable"


def default_database_url(home: Path) -> str:
    """The embedded default: a SQLite file ``creditops.db`` in the creditops home."""
    return f"sqlite:///{home.expanduser().resolve() / 'creditops.db'}"


def normalize_database_url(url: str) -> URL:
    """Parse ``url``; plain ``postgresql://`` / ``postgres://`` mean the psycopg 3 driver.

    Raises:
        ConfigError: the URL cannot be parsed or names an unsupported database.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"Invalid database URL: {exc}", field="database_url") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"Unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://.",
            field="database_url",
        )
    return parsed


def _json_dumps(value: Any) -> str:
    # orjson writes NaN/inf as null (JSON has no NaN; PostgreSQL would reject it while SQLite
    # would store it), handles numpy scalars, and is several times faster than json.dumps.
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _is_memory_sqlite(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or bool(url.query.get("mode") == "memory")


def create_db_engine(
    url: str, *, pool_size: int = 5, sqlite_busy_timeout_s: float = 30.0
) -> Engine:
    """Create an engine for ``url`` (SQLite or PostgreSQL), configured for the service.

    Nothing connects yet. For a SQLite file the parent directory is created.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:////abs/creditops.db`` or
            ``postgresql+psycopg://user@host:5432/db``.
        pool_size: connections kept open per process.
        sqlite_busy_timeout_s: how long a SQLite connection waits for a lock.
    """
    parsed = normalize_database_url(url)
    common: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_size=pool_size, pool_pre_ping=True, **common)
    if _is_memory_sqlite(parsed):
        engine = create_engine(parsed, **common)
    else:
        Path(str(parsed.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            pool_size=pool_size,
            connect_args={"timeout": sqlite_busy_timeout_s},
            **common,
        )
    _configure_sqlite(engine, busy_timeout_ms=round(sqlite_busy_timeout_s * 1000))
    return engine


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN instead of the sqlite3 module.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY_OPTION):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)


def session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """A session factory bound to ``engine``.

    ``expire_on_commit=False`` so rows stay readable after the service committed (they are
    handed to response models after the transaction). ``read_only=True`` starts SQLite
    transactions with a deferred BEGIN (no write lock); writing in such a session may fail
    with "database is locked" under concurrency.
    """
    bind = engine.execution_options(**{READ_ONLY_OPTION: True}) if read_only else engine
    return sessionmaker(bind=bind, expire_on_commit=False)


def check_database(engine: Engine) -> None:
    """Run ``SELECT 1``; raise :class:`StoreUnavailableError` if the database is unreachable."""
    try:
        with engine.execution_options(**{READ_ONLY_OPTION: True}).connect() as conn:
            conn.execute(text("SELECT 1")).scalar_one()
    except SQLAlchemyError as exc:
        raise StoreUnavailableError(
            f"The service database is unavailable ({type(exc).__name__}: {_first_line(exc)})."
        ) from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def is_transient_error(exc: BaseException) -> bool:
    """Whether retrying the whole transaction may succeed.

    True for SQLite "database is locked/busy", PostgreSQL serialization failures and
    deadlocks, lost or refused connections. False for everything else (constraint
    violations, missing tables, bad SQL), which would fail again.
    """
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES)
    module = type(orig).__module__
    name = type(orig).__name__
    if module.startswith("sqlite3"):
        message = str(orig).lower()
        return name == "OperationalError" and ("locked" in message or "busy" in message)
    if module.startswith("psycopg"):
        # psycopg raises OperationalError without a SQLSTATE when it cannot connect at all.
        return name == "OperationalError"
    return False


def run_transaction(
    factory: sessionmaker[Session],
    work: Callable[[Session], T],
    *,
    attempts: int = 5,
    backoff_s: float = 0.05,
) -> T:
    """Run ``work(session)`` in one transaction and commit; retry it on transient errors.

    ``work`` may run more than once, so it must have no effects outside the session. After
    ``attempts`` failures the last error is raised as :class:`StoreUnavailableError`;
    non-transient database errors propagate unchanged.
    """
    for attempt in range(1, attempts + 1):
        try:
            with factory() as session, session.begin():
                return work(session)
        except DBAPIError as exc:
            if not is_transient_error(exc):
                raise
            if attempt == attempts:
                raise StoreUnavailableError(
                    f"The service database stayed busy after {attempts} attempts "
                    f"({_first_line(exc)})."
                ) from exc
            log.warning("transient database error, retrying (%d/%d): %s", attempt, attempts, exc)
            time.sleep(backoff_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")  # pragma: no cover
