"""Repositories of deployments, the serving processes' reports and shadow decisions (they
never commit).

Every change of a deployment's state is an UPDATE guarded by the state it expects
(:meth:`DeploymentRepository.move`), so the worker and an operator acting at the same time
cannot both move it: one of them finds the row changed and is told so.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from creditops.store.repositories import positive, rowcount
from creditops.store.tables import (
    DecisionRow,
    DeploymentRow,
    OutcomeRow,
    ServingProcessRow,
    ShadowDecisionRow,
)

ACTIVE = ("pending", "progressing", "paused")


class DeploymentRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: DeploymentRow) -> DeploymentRow:
        self.session.add(row)
        self.session.flush()
        return row

    def get(self, deployment_id: str) -> DeploymentRow | None:
        return self.session.get(DeploymentRow, deployment_id)

    def list(
        self, model: str | None = None, limit: int = 50, offset: int = 0
    ) -> builtins.list[DeploymentRow]:
        positive("limit", limit)
        positive("offset", offset, allow_zero=True)
        query = select(DeploymentRow).order_by(
            DeploymentRow.created_at.desc(), DeploymentRow.deployment_id
        )
        if model is not None:
            query = query.where(DeploymentRow.model_name == model)
        return builtins.list(self.session.scalars(query.limit(limit).offset(offset)))

    def active(self, model: str | None = None) -> builtins.list[DeploymentRow]:
        """Deployments in progress (one per model at most), of one model or of all."""
        query = select(DeploymentRow).where(DeploymentRow.state.in_(ACTIVE))
        if model is not None:
            query = query.where(DeploymentRow.model_name == model)
        return builtins.list(self.session.scalars(query.order_by(DeploymentRow.model_name)))

    def recent_finished(self, since: datetime) -> builtins.list[DeploymentRow]:
        """Deployments that ended after ``since`` (the serving processes keep the previous
        version of those warm)."""
        query = select(DeploymentRow).where(
            DeploymentRow.state.not_in(ACTIVE), DeploymentRow.finished_at >= since
        )
        return builtins.list(self.session.scalars(query.order_by(DeploymentRow.finished_at)))

    def last(self, model: str) -> DeploymentRow | None:
        query = (
            select(DeploymentRow)
            .where(DeploymentRow.model_name == model)
            .order_by(DeploymentRow.created_at.desc())
            .limit(1)
        )
        return self.session.scalars(query).first()

    def move(self, deployment_id: str, expected: Sequence[str], **values: Any) -> bool:
        """Update the deployment when its state is one of ``expected``; False otherwise."""
        result = self.session.execute(
            update(DeploymentRow)
            .where(
                DeploymentRow.deployment_id == deployment_id,
                DeploymentRow.state.in_(builtins.list(expected)),
            )
            .values(**values)
        )
        return rowcount(result) == 1

    def arm_decisions(
        self, deployment_id: str, since: datetime
    ) -> builtins.list[tuple[str, float, str, dict[str, Any]]]:
        """(arm, pd, decision, inputs) of the decisions a deployment routed since ``since``
        (latencies come from :meth:`latencies`, which counts single-applicant requests)."""
        query = select(
            DecisionRow.route,
            DecisionRow.pd,
            DecisionRow.decision,
            DecisionRow.inputs,
        ).where(DecisionRow.deployment_id == deployment_id, DecisionRow.created_at >= since)
        return [(r[0], r[1], r[2], r[3]) for r in self.session.execute(query)]

    def experiment_rows(self, deployment_id: str, since: datetime) -> builtins.list[Any]:
        """(arm, pd, decision, created_at, defaulted or None, inputs) of an experiment's
        decisions since ``since``, with their outcomes where known."""
        query = (
            select(
                DecisionRow.route,
                DecisionRow.pd,
                DecisionRow.decision,
                DecisionRow.created_at,
                OutcomeRow.defaulted,
                DecisionRow.inputs,
            )
            .outerjoin(OutcomeRow, OutcomeRow.decision_id == DecisionRow.decision_id)
            .where(DecisionRow.deployment_id == deployment_id, DecisionRow.created_at >= since)
        )
        return builtins.list(self.session.execute(query))

    def latencies(self, deployment_id: str, arm: str, since: datetime) -> builtins.list[float]:
        """Latencies (ms) of one arm's single-applicant requests since ``since``. A batch
        request is timed as a whole, and its applicants may be split between the arms, so
        its time says nothing about one arm."""
        singles = (
            select(DecisionRow.request_id)
            .where(DecisionRow.deployment_id == deployment_id, DecisionRow.created_at >= since)
            .group_by(DecisionRow.request_id)
            .having(func.count() == 1)
        )
        query = select(DecisionRow.latency_ms).where(
            DecisionRow.deployment_id == deployment_id,
            DecisionRow.route == arm,
            DecisionRow.created_at >= since,
            DecisionRow.request_id.in_(singles),
        )
        return [float(v) for v in self.session.scalars(query)]


class ServingProcessRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def report(
        self, process_id: str, started_at: datetime, at: datetime, report: dict[str, Any]
    ) -> None:
        row = self.session.get(ServingProcessRow, process_id)
        if row is None:
            self.session.add(
                ServingProcessRow(
                    process_id=process_id, started_at=started_at, seen_at=at, report=report
                )
            )
        else:
            row.seen_at = at
            row.report = report
        self.session.flush()

    def alive(self, since: datetime) -> builtins.list[ServingProcessRow]:
        query = select(ServingProcessRow).where(ServingProcessRow.seen_at >= since)
        return builtins.list(self.session.scalars(query.order_by(ServingProcessRow.process_id)))

    def forget(self, process_id: str) -> None:
        self.session.execute(
            delete(ServingProcessRow).where(ServingProcessRow.process_id == process_id)
        )

    def forget_stale(self, before: datetime) -> int:
        result = self.session.execute(
            delete(ServingProcessRow).where(ServingProcessRow.seen_at < before)
        )
        return rowcount(result)


class ShadowRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_all(self, rows: Sequence[dict[str, Any]]) -> None:
        self.session.execute(insert(ShadowDecisionRow), builtins.list(rows))

    def compared(
        self, deployment_id: str, limit: int
    ) -> builtins.list[tuple[ShadowDecisionRow, DecisionRow]]:
        """Shadow decisions with the logged decision each shadows (newest first)."""
        query = (
            select(ShadowDecisionRow, DecisionRow)
            .join(DecisionRow, DecisionRow.decision_id == ShadowDecisionRow.primary_decision_id)
            .where(ShadowDecisionRow.deployment_id == deployment_id)
            .order_by(ShadowDecisionRow.created_at.desc())
            .limit(limit)
        )
        return [(s, d) for s, d in self.session.execute(query)]
