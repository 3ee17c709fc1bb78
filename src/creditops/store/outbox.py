"""The transactional outbox: events for downstream systems, stored with the change they
report and published later (``docs/events.md``).

An event row is written in the SAME transaction as the change (a decision by the decision
log's group commit, an outcome, a review override, a deployment change), so an event exists
exactly when its change was committed. The publisher (``services/events.py``) reads the
unsent rows in ``id`` order, sends them to the broker and marks them sent: delivery is at
least once, and consumers drop duplicates by the event id.

This module holds the event envelope (:func:`event_document`), the decision event built from
a decision record (:func:`decision_event`), the writer's compiled INSERT
(:class:`PreparedOutboxInsert`) and the repository the publisher and the other services use
(:class:`OutboxRepository`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

import orjson
from sqlalchemy import Engine, Table, delete, func, select, update
from sqlalchemy.orm import Session

from creditops.domain.windows import utc_text
from creditops.store.decision_records import DecisionRecord
from creditops.store.tables import EventOutboxRow

__all__ = [
    "DECISION_CREATED",
    "DECISION_OVERRIDDEN",
    "DECISION_SCHEMA",
    "DEPLOYMENT_CHANGED",
    "DEPLOYMENT_SCHEMA",
    "EVENT_TYPES",
    "OUTCOME_RECORDED",
    "OUTCOME_SCHEMA",
    "OutboxBacklog",
    "OutboxEvent",
    "OutboxRepository",
    "PendingEvent",
    "PreparedOutboxInsert",
    "decision_event",
    "event_document",
    "new_event_id",
]

DECISION_SCHEMA: Final = "creditops.decision/1"
OUTCOME_SCHEMA: Final = "creditops.outcome/1"
DEPLOYMENT_SCHEMA: Final = "creditops.deployment/1"
DECISION_CREATED: Final = "decision.created"
DECISION_OVERRIDDEN: Final = "decision.overridden"
OUTCOME_RECORDED: Final = "outcome.recorded"
DEPLOYMENT_CHANGED: Final = "deployment.changed"
EVENT_TYPES: Final = {
    DECISION_CREATED: DECISION_SCHEMA,
    DECISION_OVERRIDDEN: DECISION_SCHEMA,
    OUTCOME_RECORDED: OUTCOME_SCHEMA,
    DEPLOYMENT_CHANGED: DEPLOYMENT_SCHEMA,
}
# The columns the writer inserts (``id`` is assigned by the database, ``sent_at`` is NULL).
INSERT_COLUMNS: Final = (
    "event_id",
    "model_name",
    "event_type",
    "schema_version",
    "payload",
    "created_at",
)


def new_event_id() -> str:
    """A random (version 4) UUID as text."""
    return str(uuid.UUID(bytes=os.urandom(16), version=4))


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One event as the outbox stores it; ``payload`` is the published JSON document."""

    event_id: str
    model_name: str
    event_type: str
    schema_version: str
    payload: str
    created_at: datetime

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in INSERT_COLUMNS}


def event_document(  # noqa: PLR0913 - the envelope's fields, keyword-only
    *,
    event_type: str,
    model: str,
    version: str | None,
    occurred_at: datetime,
    data: dict[str, Any],
    event_id: str | None = None,
) -> OutboxEvent:
    """The versioned envelope around ``data`` (``docs/events/*.schema.json``)."""
    schema = EVENT_TYPES.get(event_type)
    if schema is None:
        raise ValueError(f"unknown event type {event_type!r}: one of {sorted(EVENT_TYPES)}")
    event_id = event_id or new_event_id()
    document = {
        "schema": schema,
        "id": event_id,
        "type": event_type,
        "model": model,
        "version": version,
        "occurred_at": utc_text(occurred_at),
        "data": data,
    }
    payload = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return OutboxEvent(event_id, model, event_type, schema, payload, occurred_at)


# The decisions of one batch share their time: format it once.
_time_text = lru_cache(maxsize=64)(utc_text)


def decision_event(record: DecisionRecord) -> OutboxEvent:
    """The ``decision.created`` event of a logged decision, built on the hot path (a few
    microseconds). Its event id is the decision id: a decision has exactly one such event,
    and the id is already a random UUID. The applicant's inputs are not in it (personal
    data stays in the decision log; consumers fetch it by decision id)."""
    document = {
        "schema": DECISION_SCHEMA,
        "id": record.decision_id,
        "type": DECISION_CREATED,
        "model": record.model_name,
        "version": record.model_version,
        "occurred_at": _time_text(record.created_at),
        "data": {
            "decision_id": record.decision_id,
            "application_id": record.application_id,
            "pd": record.pd,
            "score": record.score,
            "decision": record.decision,
            "reasons": record.reasons,
            "policy_version": record.policy_version,
            "route": record.route,
            "suspended": record.suspended,
            "deployment_id": record.deployment_id,
            "request_id": record.request_id,
        },
    }
    payload = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return OutboxEvent(
        record.decision_id,
        record.model_name,
        DECISION_CREATED,
        DECISION_SCHEMA,
        payload,
        record.created_at,
    )


class PreparedOutboxInsert:
    """``INSERT INTO event_outbox`` prepared once for the engine's dialect, for the decision
    log's group commit (the same technique as the decision INSERT: the columns' bind
    processors looked up once, rows bound as tuples).

    The rows go in multi-row ``INSERT ... VALUES (...), (...)`` statements on SQLite and
    PostgreSQL alike: ``executemany`` costs the server a statement per row, which made the
    outbox of a 128-decision group cost as much as the decisions themselves (see
    docs/events.md, "Cost on the hot path")."""

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect
        table: Table = EventOutboxRow.__table__  # type: ignore[assignment]
        columns = {column.key: column for column in table.columns}
        self.names = list(INSERT_COLUMNS)
        processors = [columns[n].type.bind_processor(dialect) for n in self.names]
        at = self.names.index("created_at")
        convert_time = processors[at]
        if convert_time is not None:  # a batch shares its time: convert it once
            processors[at] = lru_cache(maxsize=64)(convert_time)
        self._processors: list[tuple[int, Callable[[Any], Any]]] = [
            (i, p) for i, p in enumerate(processors) if p is not None
        ]
        marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
        if marker is None:  # pragma: no cover - the two supported drivers have one
            raise RuntimeError(f"unsupported paramstyle {dialect.paramstyle!r}")
        compiled = table.insert().compile(dialect=dialect, column_keys=self.names).string
        head, values, _ = compiled.partition(" VALUES ")
        listed = [c.strip().strip('"') for c in head[head.index("(") + 1 : -1].split(",")]
        if listed != self.names:  # pragma: no cover - defined together
            raise RuntimeError(f"unexpected INSERT for the outbox: {compiled}")
        self._head = head + values
        self._row_sql = f"({', '.join([marker] * len(self.names))})"
        self._sql: dict[int, str] = {}

    def row(self, event: OutboxEvent) -> tuple[Any, ...]:
        values = [getattr(event, name) for name in self.names]
        for i, process in self._processors:
            values[i] = process(values[i])
        return tuple(values)

    def statements(
        self, rows: Sequence[tuple[Any, ...]], max_variables: int
    ) -> list[tuple[str, list[Any]]]:
        """``rows`` as few multi-row INSERT statements as ``max_variables`` (bound
        parameters per statement) allows, each with its flat parameter list."""
        per_statement = max(1, max_variables // len(self.names))
        statements = []
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            sql = self._sql.get(len(chunk))
            if sql is None:
                sql = self._head + ", ".join([self._row_sql] * len(chunk))
                if len(self._sql) < 64:  # the common sizes; the rest built each time
                    self._sql[len(chunk)] = sql
            statements.append((sql, [value for row in chunk for value in row]))
        return statements


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An unsent event as the publisher reads it."""

    id: int
    event_id: str
    model_name: str
    event_type: str
    schema_version: str
    payload: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    """Unsent events and the age of the oldest (0 when none)."""

    events: int
    oldest_age_s: float


class OutboxRepository:
    """Reads and writes of ``event_outbox`` in the caller's session (never commits)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, events: Sequence[OutboxEvent]) -> None:
        """Store ``events`` in the caller's transaction."""
        if events:
            self.session.execute(
                EventOutboxRow.__table__.insert(),  # type: ignore[attr-defined]
                [e.as_row() for e in events],
            )

    def unsent(self, limit: int) -> list[PendingEvent]:
        """The oldest ``limit`` unsent events, in ``id`` order."""
        t = EventOutboxRow
        rows = self.session.execute(
            select(
                t.id,
                t.event_id,
                t.model_name,
                t.event_type,
                t.schema_version,
                t.payload,
                t.created_at,
            )
            .where(t.sent_at.is_(None))
            .order_by(t.id)
            .limit(limit)
        ).all()
        return [PendingEvent(*row) for row in rows]

    def mark_sent(self, ids: Sequence[int], at: datetime | None = None) -> int:
        """Mark the events ``ids`` sent (in chunks of 500); the number of rows changed."""
        at = at or datetime.now(UTC)
        changed = 0
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            result = self.session.execute(
                update(EventOutboxRow)
                .where(EventOutboxRow.id.in_(chunk), EventOutboxRow.sent_at.is_(None))
                .values(sent_at=at)
            )
            changed += int(result.rowcount)  # type: ignore[attr-defined]
        return changed

    def backlog(self, now: datetime | None = None) -> OutboxBacklog:
        t = EventOutboxRow
        count, oldest = self.session.execute(
            select(func.count(), func.min(t.created_at)).where(t.sent_at.is_(None))
        ).one()
        if not count or oldest is None:
            return OutboxBacklog(0, 0.0)
        now = now or datetime.now(UTC)  # min() keeps the column type: an aware datetime
        return OutboxBacklog(int(count), max(0.0, (now - oldest).total_seconds()))

    def purge_sent(self, before: datetime) -> int:
        """Delete events sent before ``before``; the number deleted."""
        result = self.session.execute(
            delete(EventOutboxRow).where(
                EventOutboxRow.sent_at.is_not(None), EventOutboxRow.sent_at < before
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
