"""Repositories of monitoring: the stored monitoring reports and the monitoring worker's
key-value state.

Like every repository they never commit (see :mod:`creditops.store.repositories`, which also
holds the shared helpers and the decision log's repositories, including the labelled windows
that performance monitoring reads); API keys, the audit trail and model controls are in
:mod:`creditops.store.admin_repositories`.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from creditops.store.repositories import positive, upsert_insert, utc_now
from creditops.store.tables import MonitoringReportRow, MonitorStateRow

__all__ = [
    "MonitorStateRepository",
    "MonitoringReportRepository",
]


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
        positive("limit", limit)
        positive("offset", offset, allow_zero=True)
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
        values = {"key": key, "value": value, "updated_at": at or utc_now()}
        stmt = upsert_insert(self.session, MonitorStateRow).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
        self.session.execute(stmt)
