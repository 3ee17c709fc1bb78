"""Alembic migrations of the service store, driven from code.

The migration scripts ship inside the package (``creditops/store/migrations``); the Alembic
``Config`` is built here, so users need no ``alembic.ini``. Each command runs on one
connection made by :func:`~creditops.store.engine.create_db_engine` (same SQLite pragmas as
the service) inside one transaction, so a failed upgrade leaves the schema unchanged.

The version is kept in ``creditops_alembic_version`` rather than Alembic's default
``alembic_version``, so creditops can share a PostgreSQL database (e.g. with MLflow, which
also uses Alembic) without the two overwriting each other's version.

Several processes may migrate at once (e.g. every uvicorn worker calls
:func:`ensure_current` at start-up): on SQLite the ``BEGIN IMMEDIATE`` transaction
serializes them, on PostgreSQL a transaction-scoped advisory lock does; the later ones then
find the database at head and do nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import as_file, files
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from creditops.errors import InvalidInputError
from creditops.store.engine import (
    READ_ONLY_OPTION,
    StoreUnavailableError,
    create_db_engine,
    is_transient_error,
)
from creditops.store.tables import metadata

log = logging.getLogger(__name__)

__all__ = [
    "VERSION_TABLE",
    "current_revision",
    "downgrade_database",
    "ensure_current",
    "head_revision",
    "schema_differences",
    "upgrade_database",
]

VERSION_TABLE = "creditops_alembic_version"

# Arbitrary constant key of the PostgreSQL advisory lock taken while migrating.
_PG_MIGRATION_LOCK = 0x63726564  # "cred"


@contextmanager
def _alembic_config(connection: Connection | None = None) -> Iterator[Config]:
    with as_file(files("creditops.store").joinpath("migrations")) as location:
        config = Config()
        # configparser interpolation: a literal % in the path must be doubled.
        config.set_main_option("script_location", str(location).replace("%", "%%"))
        if connection is not None:
            config.attributes["connection"] = connection
        yield config


@contextmanager
def _engine(url: str) -> Iterator[Engine]:
    engine = create_db_engine(url, pool_size=1)
    try:
        yield engine
    except OperationalError as exc:
        raise StoreUnavailableError(
            f"Cannot migrate the service database: {str(exc).splitlines()[0]}"
        ) from exc
    finally:
        engine.dispose()


@contextmanager
def _read_connection(url: str) -> Iterator[Connection]:
    with (
        _engine(url) as engine,
        engine.execution_options(**{READ_ONLY_OPTION: True}).connect() as conn,
    ):
        yield conn


def _run(url: str, action: str, revision: str) -> None:
    with _engine(url) as engine, engine.begin() as conn, _alembic_config(conn) as config:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        try:
            if action == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
        except CommandError as exc:
            raise InvalidInputError(f"Cannot {action} to {revision!r}: {exc}") from exc


def upgrade_database(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (creating it if needed)."""
    _run(url, "upgrade", revision)


def downgrade_database(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"`` drops everything)."""
    _run(url, "downgrade", revision)


def ensure_current(url: str, *, attempts: int = 5) -> None:
    """Bring the database at ``url`` to the newest schema (no-op when it is already there).

    Called by the service and the CLI at start-up, so the embedded SQLite store needs no
    separate migration step. Several workers start at once: on a SQLite file that does not
    exist yet, one of them rarely got "database is locked" at once instead of waiting for the
    busy timeout (about 1 in 40 runs of three threads under CPU load; the switch of a new file
    to WAL is the likely moment). Transient errors are therefore retried with backoff.
    """
    for attempt in range(attempts):
        try:
            upgrade_database(url, "head")
            return
        except StoreUnavailableError as exc:
            if attempt + 1 >= attempts or not is_transient_error(exc.__cause__ or exc):
                raise
            log.warning("migrating the service database: %s; retrying", exc)
            time.sleep(0.05 * 2**attempt)


def current_revision(url: str) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    with _read_connection(url) as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        revision: str | None = context.get_current_revision()
        return revision


def head_revision() -> str:
    """The newest revision shipped with this version of creditops."""
    with _alembic_config() as config:
        head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError("no migrations found in creditops.store.migrations")
    return head


def schema_differences(url: str) -> list[Any]:
    """Differences between the database schema and :data:`creditops.store.tables.metadata`.

    Empty when the database is migrated to head and nobody altered it by hand. The entries
    are Alembic's autogenerate diff tuples (e.g. ``("add_table", Table)``).
    """
    with _read_connection(url) as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        diffs: list[Any] = compare_metadata(context, metadata)
        return diffs
