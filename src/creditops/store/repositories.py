"""Repositories: the queries of the service store, one class per aggregate.

A repository wraps a :class:`~sqlalchemy.orm.Session` and NEVER commits: the service that
calls it owns the transaction (typically ``with factory() as s, s.begin(): ...`` or
:func:`creditops.store.engine.run_transaction`), so several repository calls commit or
roll back together. Upserts use ``INSERT ... ON CONFLICT``, which SQLite and PostgreSQL
both support, so concurrent writers of the same key cannot fail with a duplicate key.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, Select, Table, delete, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from creditops.errors import InvalidInputError, NotFoundError
from creditops.store.decision_log import DecisionRecord
from creditops.store.tables import (
    ApiKeyRow,
    AuditRow,
    Base,
    DecisionRow,
    ModelControlRow,
    MonitoringReportRow,
    MonitorStateRow,
    OutcomeRow,
    ReviewRow,
)

__all__ = [
    "ApiKeyRepository",
    "AuditRepository",
    "DecisionRepository",
    "LabelledWindowRepository",
    "ModelControlRepository",
    "MonitorStateRepository",
    "MonitoringReportRepository",
    "OutcomeRepository",
    "ReviewRepository",
]

FINAL_DECISIONS = frozenset({"approve", "decline"})
AUDIT_OUTCOMES = frozenset({"ok", "denied", "error"})


def _now() -> datetime:
    return datetime.now(UTC)


def _table(row: type[Base]) -> Table:
    return cast(Table, row.__table__)


def _upsert_insert(session: Session, row: type[Base]) -> Any:
    """A dialect-specific INSERT (with ``on_conflict_do_*``) for the session's database."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(_table(row))
    return sqlite.insert(_table(row))


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _positive(name: str, value: int, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}.", field=name)


class DecisionRepository:
    """Reads of the decision log; decisions are written by the group-commit writer."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add_many(self, records: builtins.list[DecisionRecord]) -> None:
        """Insert decisions in the caller's transaction (batch jobs; the API uses the writer)."""
        if records:
            self.session.execute(
                _table(DecisionRow).insert(), [record.as_row() for record in records]
            )

    def get(self, decision_id: str) -> DecisionRow | None:
        return self.session.get(DecisionRow, decision_id)

    def get_by_application(self, application_id: str) -> builtins.list[DecisionRow]:
        """Every decision of an application, oldest first."""
        query = (
            select(DecisionRow)
            .where(DecisionRow.application_id == application_id)
            .order_by(DecisionRow.created_at, DecisionRow.decision_id)
        )
        return builtins.list(self.session.scalars(query))

    def _filtered(self, query: Select[Any], since: datetime | None, model: str | None) -> Any:
        if since is not None:
            query = query.where(DecisionRow.created_at >= since)
        if model is not None:
            query = query.where(DecisionRow.model_name == model)
        return query

    def count(self, since: datetime | None = None, model: str | None = None) -> int:
        """Decisions created at or after ``since`` (all if None), of ``model`` (all if None)."""
        query = self._filtered(select(func.count()).select_from(DecisionRow), since, model)
        return int(self.session.execute(query).scalar_one())

    def iter_since(
        self, since: datetime | None = None, model: str | None = None, chunk_size: int = 1000
    ) -> Iterator[builtins.list[DecisionRow]]:
        """Stream decisions (created at or after ``since``) in chunks, oldest first.

        Keyset pagination on ``(created_at, decision_id)``: each chunk is one indexed query
        starting after the last key of the previous chunk, so the cost per chunk does not
        grow with the position (unlike OFFSET) and every row is returned exactly once even
        when rows share a timestamp. Rows inserted behind the cursor meanwhile are not seen.
        Yielded rows are expunged from the session afterwards to keep memory flat.
        """
        _positive("chunk_size", chunk_size)
        last: tuple[datetime, str] | None = None
        while True:
            query = self._filtered(select(DecisionRow), since, model)
            if last is not None:
                last_at, last_id = last
                query = query.where(
                    (DecisionRow.created_at > last_at)
                    | ((DecisionRow.created_at == last_at) & (DecisionRow.decision_id > last_id))
                )
            query = query.order_by(DecisionRow.created_at, DecisionRow.decision_id)
            chunk = builtins.list(self.session.scalars(query.limit(chunk_size)))
            if not chunk:
                return
            last = (chunk[-1].created_at, chunk[-1].decision_id)
            yield chunk
            for row in chunk:
                if row in self.session:
                    self.session.expunge(row)
            if len(chunk) < chunk_size:
                return

    def purge_before(self, cutoff: datetime) -> int:
        """Delete decisions created before ``cutoff`` with their outcomes and reviews.

        Returns the number of decisions deleted. Bulk deletes: objects of the session that
        were loaded before are not updated (use a fresh session).
        """
        old = select(DecisionRow.decision_id).where(DecisionRow.created_at < cutoff)
        for child in (_table(ReviewRow), _table(OutcomeRow)):
            self.session.execute(delete(child).where(child.c.decision_id.in_(old)))
        decisions = _table(DecisionRow)
        result = self.session.execute(delete(decisions).where(decisions.c.created_at < cutoff))
        return _rowcount(result)

    def pending_reviews(self, limit: int = 50, offset: int = 0) -> builtins.list[DecisionRow]:
        """Decisions referred to review that nobody reviewed yet, oldest first."""
        _positive("limit", limit)
        _positive("offset", offset, allow_zero=True)
        reviewed = exists().where(ReviewRow.decision_id == DecisionRow.decision_id)
        query = (
            select(DecisionRow)
            .where(DecisionRow.decision == "review", ~reviewed)
            .order_by(DecisionRow.created_at, DecisionRow.decision_id)
            .limit(limit)
            .offset(offset)
        )
        return builtins.list(self.session.scalars(query))


class OutcomeRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, decision_id: str) -> OutcomeRow | None:
        return self.session.get(OutcomeRow, decision_id)

    def record(
        self,
        decision_id: str,
        application_id: str,
        defaulted: bool,
        observed_at: datetime,
        *,
        now: datetime | None = None,
    ) -> Literal["created", "unchanged", "updated"]:
        """Record the outcome of a decision; idempotent.

        The same outcome again is "unchanged" (nothing written); a different ``defaulted``
        or ``observed_at`` corrects the stored one ("updated", ``recorded_at`` refreshed).

        Raises:
            NotFoundError: no such decision.
            InvalidInputError: ``application_id`` is not the decision's application.
        """
        decision = self.session.get(DecisionRow, decision_id)
        if decision is None:
            raise NotFoundError(f"Decision {decision_id!r} does not exist.", field="decision_id")
        if decision.application_id != application_id:
            raise InvalidInputError(
                f"Decision {decision_id!r} belongs to application {decision.application_id!r},"
                f" not {application_id!r}.",
                field="application_id",
            )
        recorded_at = now or _now()
        values = {
            "decision_id": decision_id,
            "application_id": application_id,
            "defaulted": defaulted,
            "observed_at": observed_at,
            "recorded_at": recorded_at,
        }
        stmt = _upsert_insert(self.session, OutcomeRow).values(**values)
        # RETURNING tells reliably whether the row was inserted (rowcount of an INSERT is
        # not guaranteed by every driver).
        stmt = stmt.on_conflict_do_nothing().returning(_table(OutcomeRow).c.decision_id)
        if self.session.execute(stmt).first() is not None:
            return "created"
        existing = self.session.execute(
            select(OutcomeRow)
            .where(OutcomeRow.decision_id == decision_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()
        if existing.defaulted == defaulted and existing.observed_at == observed_at:
            return "unchanged"
        existing.defaulted = defaulted
        existing.observed_at = observed_at
        existing.recorded_at = recorded_at
        self.session.flush()
        return "updated"


class ReviewRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        decision_id: str,
        final_decision: str,
        reviewer: str,
        *,
        note: str = "",
        override_reason_code: str | None = None,
        at: datetime | None = None,
    ) -> ReviewRow:
        """Record a review of a decision (the decision itself is never changed).

        ``override_reason_code`` is given when the reviewer departs from what the model's
        policy recommended; :meth:`override_rate` counts those.
        """
        if final_decision not in FINAL_DECISIONS:
            raise InvalidInputError(
                f"final_decision must be one of {sorted(FINAL_DECISIONS)}.",
                field="final_decision",
            )
        if self.session.get(DecisionRow, decision_id) is None:
            raise NotFoundError(f"Decision {decision_id!r} does not exist.", field="decision_id")
        row = ReviewRow(
            decision_id=decision_id,
            final_decision=final_decision,
            override_reason_code=override_reason_code,
            note=note,
            reviewer=reviewer,
            created_at=at or _now(),
        )
        self.session.add(row)
        self.session.flush()
        return row

    def for_decision(self, decision_id: str) -> builtins.list[ReviewRow]:
        query = select(ReviewRow).where(ReviewRow.decision_id == decision_id)
        return builtins.list(self.session.scalars(query.order_by(ReviewRow.id)))

    def override_rate(self, since: datetime | None = None) -> float | None:
        """Share of reviews (created at or after ``since``) with an override reason code.

        None when there are no reviews in the window (a rate of 0/0 is not 0).
        """
        query = select(func.count(), func.count(ReviewRow.override_reason_code))
        if since is not None:
            query = query.where(ReviewRow.created_at >= since)
        total, overrides = self.session.execute(query).one()
        return None if total == 0 else overrides / total


class ApiKeyRepository:
    """API keys. Only the sha256 of a secret is stored and looked up.

    :meth:`touch` is a write: the caller should throttle it (e.g. once a minute per key)
    rather than call it on every request, or it defeats the decision log's group commit.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        key_id: str,
        name: str,
        key_hash: str,
        scopes: builtins.list[str],
        *,
        created_at: datetime | None = None,
    ) -> ApiKeyRow:
        row = ApiKeyRow(
            key_id=key_id,
            name=name,
            key_hash=key_hash,
            scopes=builtins.list(scopes),
            created_at=created_at or _now(),
        )
        self.session.add(row)
        self.session.flush()
        return row

    def get(self, key_id: str) -> ApiKeyRow | None:
        return self.session.get(ApiKeyRow, key_id)

    def get_active_by_hash(self, key_hash: str) -> ApiKeyRow | None:
        query = select(ApiKeyRow).where(
            ApiKeyRow.key_hash == key_hash, ApiKeyRow.revoked_at.is_(None)
        )
        return self.session.scalars(query).one_or_none()

    def list(self) -> builtins.list[ApiKeyRow]:
        """All keys, revoked ones included, oldest first."""
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.key_id)
        return builtins.list(self.session.scalars(query))

    def revoke(self, key_id: str, *, at: datetime | None = None) -> bool:
        """Revoke a key; False if it does not exist or was already revoked."""
        stmt = (
            update(ApiKeyRow)
            .where(ApiKeyRow.key_id == key_id, ApiKeyRow.revoked_at.is_(None))
            .values(revoked_at=at or _now())
            .execution_options(synchronize_session="fetch")
        )
        return _rowcount(self.session.execute(stmt)) == 1

    def touch(self, key_id: str, at: datetime) -> None:
        """Set the key's ``last_used_at`` to ``at``."""
        stmt = (
            update(ApiKeyRow)
            .where(ApiKeyRow.key_id == key_id)
            .values(last_used_at=at)
            .execution_options(synchronize_session="fetch")
        )
        self.session.execute(stmt)


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        details: dict[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> AuditRow:
        if outcome not in AUDIT_OUTCOMES:
            raise InvalidInputError(
                f"outcome must be one of {sorted(AUDIT_OUTCOMES)}.", field="outcome"
            )
        row = AuditRow(
            at=at or _now(),
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            details=dict(details or {}),
        )
        self.session.add(row)
        self.session.flush()
        return row

    def list(self, limit: int = 100, action: str | None = None) -> builtins.list[AuditRow]:
        """The newest ``limit`` entries (of ``action`` only, if given), newest first."""
        _positive("limit", limit)
        query = select(AuditRow)
        if action is not None:
            query = query.where(AuditRow.action == action)
        query = query.order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit)
        return builtins.list(self.session.scalars(query))


class ModelControlRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, model_name: str) -> ModelControlRow | None:
        return self.session.get(ModelControlRow, model_name)

    def set(
        self,
        model_name: str,
        suspended: bool,
        reason: str,
        actor: str,
        *,
        at: datetime | None = None,
    ) -> ModelControlRow:
        """Create or replace the controls of ``model_name``; returns the stored row."""
        values = {
            "model_name": model_name,
            "suspended": suspended,
            "reason": reason,
            "updated_at": at or _now(),
            "updated_by": actor,
        }
        stmt = _upsert_insert(self.session, ModelControlRow).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["model_name"],
            set_={k: stmt.excluded[k] for k in values if k != "model_name"},
        )
        self.session.execute(stmt)
        query = (
            select(ModelControlRow)
            .where(ModelControlRow.model_name == model_name)
            .execution_options(populate_existing=True)
        )
        return self.session.scalars(query).one()

    def list(self) -> builtins.list[ModelControlRow]:
        """The controls of every model that has any, by model name."""
        query = select(ModelControlRow).order_by(ModelControlRow.model_name)
        return builtins.list(self.session.scalars(query))


class MonitoringReportRepository:
    """Stored monitoring checks; history is kept and queryable."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: MonitoringReportRow) -> MonitoringReportRow:
        self.session.add(row)
        self.session.flush()
        return row

    def get(self, report_id: str) -> MonitoringReportRow | None:
        return self.session.get(MonitoringReportRow, report_id)

    def list(
        self,
        model: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[MonitoringReportRow]:
        """Newest first."""
        _positive("limit", limit)
        _positive("offset", offset, allow_zero=True)
        query = select(MonitoringReportRow)
        if model is not None:
            query = query.where(MonitoringReportRow.model_name == model)
        if kind is not None:
            query = query.where(MonitoringReportRow.kind == kind)
        query = query.order_by(
            MonitoringReportRow.created_at.desc(), MonitoringReportRow.report_id.desc()
        )
        return builtins.list(self.session.scalars(query.limit(limit).offset(offset)))

    def latest(self, model: str, kind: str) -> MonitoringReportRow | None:
        found = self.list(model=model, kind=kind, limit=1)
        return found[0] if found else None


class MonitorStateRepository:
    """Key-value state of the monitoring worker (alert episodes, last check times)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, key: str) -> dict[str, Any] | None:
        row = self.session.get(MonitorStateRow, key)
        return dict(row.value) if row is not None else None

    def put(self, key: str, value: dict[str, Any], *, at: datetime | None = None) -> None:
        values = {"key": key, "value": value, "updated_at": at or _now()}
        stmt = _upsert_insert(self.session, MonitorStateRow).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
        self.session.execute(stmt)


class LabelledWindowRepository:
    """Decisions joined with their observed outcomes, for performance monitoring."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def latest(
        self, model: str, limit: int, *, oldest_first: bool = False
    ) -> builtins.list[tuple[DecisionRow, OutcomeRow]]:
        """The ``limit`` most recent (or, with ``oldest_first``, earliest) labelled decisions."""
        _positive("limit", limit)
        order = DecisionRow.created_at.asc() if oldest_first else DecisionRow.created_at.desc()
        query = (
            select(DecisionRow, OutcomeRow)
            .join(OutcomeRow, OutcomeRow.decision_id == DecisionRow.decision_id)
            .where(DecisionRow.model_name == model)
            .order_by(order, DecisionRow.decision_id)
            .limit(limit)
        )
        return [(d, o) for d, o in self.session.execute(query).tuples()]

    def count_unlabelled(self, model: str, since: datetime | None = None) -> int:
        query = (
            select(func.count())
            .select_from(DecisionRow)
            .where(DecisionRow.model_name == model)
            .where(~exists().where(OutcomeRow.decision_id == DecisionRow.decision_id))
        )
        if since is not None:
            query = query.where(DecisionRow.created_at >= since)
        return int(self.session.scalar(query) or 0)
