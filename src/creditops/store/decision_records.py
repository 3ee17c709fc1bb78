"""A logged decision and how it is bound for the decision log's INSERT.

:class:`DecisionRecord` is one decision as the ``decisions`` table stores it (the service,
the repositories and the tests build them); :class:`PreparedInsert` is the writer's compiled
statement and per-column binding. The writer thread itself, with its group commit and
guarantees, is in :mod:`creditops.store.decision_log`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Engine, Table, insert

__all__ = ["DECISIONS", "RECORD_FIELDS", "DecisionRecord", "PreparedInsert"]

DECISIONS: Final = frozenset({"approve", "review", "decline"})


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One decision as it is logged; the fields are the columns of ``decisions``.

    ``reasons`` and ``inputs`` are serialized by the writer thread, so they must not be
    mutated after the record was submitted. Raises ``ValueError`` for a malformed record
    (these are programming errors of the caller, not user input).
    """

    decision_id: str
    application_id: str
    model_name: str
    model_version: str
    policy_version: str
    pd: float
    score: float
    decision: str
    reasons: list[dict[str, Any]]
    inputs: dict[str, Any]
    latency_ms: float
    created_at: datetime
    request_id: str
    api_key_id: str | None
    route: str
    suspended: bool
    deployment_id: str | None = None

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None or self.created_at.utcoffset() is None:
            raise ValueError("DecisionRecord.created_at must be timezone-aware (UTC)")
        if self.decision not in DECISIONS:
            raise ValueError(f"DecisionRecord.decision must be one of {sorted(DECISIONS)}")
        if len(self.decision_id) != 36:
            raise ValueError("DecisionRecord.decision_id must be a UUID string")
        uuid.UUID(self.decision_id)

    def as_row(self) -> dict[str, Any]:
        """The record as a column -> value mapping for ``insert(decisions)``."""
        return {name: getattr(self, name) for name in RECORD_FIELDS}


RECORD_FIELDS: Final = tuple(f.name for f in fields(DecisionRecord))


class PreparedInsert:
    """``INSERT INTO decisions`` compiled once for the engine's dialect.

    The writer thread holds the GIL while it builds parameters, so every microsecond it
    spends per row is taken from the event loop. SQLAlchemy's ``Connection.execute`` pays
    for statement caching, event dispatch and result set-up on every transaction; here the
    statement is compiled once, each column's own bind processor (the same functions
    SQLAlchemy would call: the JSON serializer, ``UTCDateTime``) is looked up once, and the
    rows go to the driver on one long-lived pooled connection: ``executemany`` in general,
    multi-row statements on SQLite (:meth:`sqlite_statements`).
    """

    def __init__(self, engine: Engine, table: Table) -> None:
        dialect = engine.dialect
        compiled = insert(table).compile(dialect=dialect)
        self.sql = compiled.string
        columns = {column.key: column for column in table.columns}
        names = list(compiled.positiontup or []) if compiled.positional else list(columns)
        if set(names) != set(RECORD_FIELDS):  # pragma: no cover - defined together
            raise RuntimeError(f"decision columns {names} differ from the record's {RECORD_FIELDS}")
        self.names = names
        self.positional = compiled.positional
        processors = [columns[n].type.bind_processor(dialect) for n in names]
        self.processors: list[tuple[int, Callable[[Any], Any]]] = [
            (i, p) for i, p in enumerate(processors) if p is not None
        ]
        self.is_sqlite = dialect.name == "sqlite"
        self.dbapi_error: type[Exception] = dialect.loaded_dbapi.Error
        head, values, tail = self.sql.partition(" VALUES ")
        if self.is_sqlite and (not values or not tail.startswith("(") or not tail.endswith(")")):
            raise RuntimeError(f"unexpected INSERT for SQLite: {self.sql}")  # pragma: no cover
        self._sqlite_head, self._sqlite_row = head + values, tail
        self._sqlite_sql: dict[int, str] = {}

    def sqlite_statements(
        self, rows: list[tuple[Any, ...]], max_variables: int
    ) -> list[tuple[str, list[Any]]]:
        """``rows`` as few multi-row ``INSERT ... VALUES (...), (...)`` statements as
        SQLite's variable limit allows, each with its flat parameter list.

        The sqlite3 module releases the GIL around every ``sqlite3_step``, so
        ``executemany`` gives the GIL away and must win it back once per row; under load the
        event loop holds it, and each win-back waited for the loop. One statement per batch
        needs one step (decision 0006).
        """
        per_statement = max(1, max_variables // len(self.names))
        statements = []
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            sql = self._sqlite_sql.get(len(chunk))
            if sql is None:
                sql = self._sqlite_head + ", ".join([self._sqlite_row] * len(chunk))
                if len(self._sqlite_sql) < 64:  # the common sizes; the rest built each time
                    self._sqlite_sql[len(chunk)] = sql
            statements.append((sql, [value for row in chunk for value in row]))
        return statements

    def row(self, record: DecisionRecord) -> tuple[Any, ...]:
        values = [getattr(record, name) for name in self.names]
        for i, process in self.processors:
            values[i] = process(values[i])
        return tuple(values)

    def parameters(self, rows: list[tuple[Any, ...]]) -> list[Any]:
        if self.positional:
            return rows
        return [dict(zip(self.names, row, strict=True)) for row in rows]
