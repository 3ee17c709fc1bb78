"""Repositories: the queries of the service store, one class per aggregate.

A repository wraps a :class:`~sqlalchemy.orm.Session` and NEVER commits: the service that
calls it owns the transaction (typically ``with factory() as s, s.begin(): ...`` or
:func:`creditops.store.engine.run_transaction`), so several repository calls commit or
roll back together. Upserts use ``INSERT ... ON CONFLICT``, which SQLite and PostgreSQL
both support, so concurrent writers of the same key cannot fail with a duplicate key.

This module holds the helpers every repository shares and the repositories of the decision
log: decisions, their outcomes and reviews, and labelled windows (decisions joined with their
outcomes). API keys, the audit trail and model controls are in
:mod:`creditops.store.admin_repositories`; monitoring reports and the monitoring worker's
state in :mod:`creditops.store.monitoring_repositories`.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, Select, Table, delete, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from creditops.errors import InvalidInputError, NotFoundError
from creditops.store.decision_records import DecisionRecord
from creditops.store.tables import Base, DecisionRow, OutcomeRow, ReviewRow

__all__ = [
    "DecisionRepository",
    "LabelledWindowRepository",
    "OutcomeRepository",
    "ReviewRepository",
    "positive",
    "rowcount",
    "upsert_insert",
    "utc_now",
]

FINAL_DECISIONS = frozenset({"approve", "decline"})


def utc_now() -> datetime:
    """The default timestamp of rows written without an explicit time."""
    return datetime.now(UTC)


def _table(row: type[Base]) -> Table:
    return cast(Table, row.__table__)


def upsert_insert(session: Session, row: type[Base]) -> Any:
    """A dialect-specific INSERT (with ``on_conflict_do_*``) for the session's database."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(_table(row))
    return sqlite.insert(_table(row))


def rowcount(result: Any) -> int:
    """Rows matched by an UPDATE or DELETE result."""
    return int(cast(CursorResult[Any], result).rowcount)


def positive(name: str, value: int, *, allow_zero: bool = False) -> None:
    """Reject a negative (or, unless ``allow_zero``, zero) limit, offset or chunk size."""
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
        positive("chunk_size", chunk_size)
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
        return rowcount(result)

    def pending_reviews(self, limit: int = 50, offset: int = 0) -> builtins.list[DecisionRow]:
        """Decisions referred to review that nobody reviewed yet, oldest first."""
        positive("limit", limit)
        positive("offset", offset, allow_zero=True)
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

    def for_decisions(self, decision_ids: Sequence[str]) -> dict[str, OutcomeRow]:
        """The outcomes recorded for these decisions, by decision id."""
        if not decision_ids:
            return {}
        query = select(OutcomeRow).where(OutcomeRow.decision_id.in_(list(decision_ids)))
        return {row.decision_id: row for row in self.session.scalars(query)}

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
        recorded_at = now or utc_now()
        values = {
            "decision_id": decision_id,
            "application_id": application_id,
            "defaulted": defaulted,
            "observed_at": observed_at,
            "recorded_at": recorded_at,
        }
        stmt = upsert_insert(self.session, OutcomeRow).values(**values)
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

    def add(  # noqa: PLR0913 - the columns of one row
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
            created_at=at or utc_now(),
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


class LabelledWindowRepository:
    """Decisions joined with their observed outcomes, for performance monitoring."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def latest(
        self, model: str, limit: int, *, oldest_first: bool = False
    ) -> builtins.list[tuple[DecisionRow, OutcomeRow]]:
        """The ``limit`` most recent (or, with ``oldest_first``, earliest) labelled decisions."""
        positive("limit", limit)
        order = DecisionRow.created_at.asc() if oldest_first else DecisionRow.created_at.desc()
        query = (
            select(DecisionRow, OutcomeRow)
            .join(OutcomeRow, OutcomeRow.decision_id == DecisionRow.decision_id)
            .where(DecisionRow.model_name == model)
            .order_by(order, DecisionRow.decision_id)
            .limit(limit)
        )
        return [(d, o) for d, o in self.session.execute(query).tuples()]

    def _matured(self, model: str, since: datetime | None, until: datetime) -> Select[Any]:
        query: Select[Any] = (
            select(DecisionRow, OutcomeRow)  # type: ignore[assignment]
            .join(OutcomeRow, OutcomeRow.decision_id == DecisionRow.decision_id)
            .where(DecisionRow.model_name == model, DecisionRow.created_at <= until)
        )
        if since is not None:
            query = query.where(DecisionRow.created_at >= since)
        return query

    def matured(
        self, model: str, since: datetime | None, until: datetime
    ) -> builtins.list[tuple[DecisionRow, OutcomeRow]]:
        """Labelled decisions made between ``since`` and ``until``, oldest first."""
        query = self._matured(model, since, until).order_by(
            DecisionRow.created_at, DecisionRow.decision_id
        )
        return [(d, o) for d, o in self.session.execute(query).tuples()]

    def count_matured(self, model: str, since: datetime | None, until: datetime) -> int:
        inner = self._matured(model, since, until).subquery()
        return int(self.session.scalar(select(func.count()).select_from(inner)) or 0)

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
