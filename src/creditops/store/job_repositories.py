"""Repositories of background jobs and of the retraining triggers (they never commit).

A job moves queued -> running -> succeeded | failed | cancelled. Claiming a job, finishing
it and failing the jobs a dead worker left running are single UPDATEs guarded by the state
they expect, so two processes can never both move the same job.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from creditops.store.repositories import positive, rowcount, utc_now
from creditops.store.tables import JobRow, TriggerRow

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
LOG_CHARS = 8000  # the job log keeps its last characters


class JobRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: JobRow) -> JobRow:
        self.session.add(row)
        self.session.flush()
        return row

    def get(self, job_id: str) -> JobRow | None:
        return self.session.get(JobRow, job_id)

    def list(
        self, model: str | None = None, limit: int = 50, offset: int = 0
    ) -> builtins.list[JobRow]:
        positive("limit", limit)
        positive("offset", offset, allow_zero=True)
        query = select(JobRow).order_by(JobRow.created_at.desc(), JobRow.job_id)
        if model is not None:
            query = query.where(JobRow.model_name == model)
        return builtins.list(self.session.scalars(query.limit(limit).offset(offset)))

    def active(self, model: str) -> JobRow | None:
        """The model's queued or running job, if any."""
        query = (
            select(JobRow)
            .where(JobRow.model_name == model, JobRow.state.in_(ACTIVE))
            .order_by(JobRow.created_at)
            .limit(1)
        )
        return self.session.scalars(query).first()

    def last_finished(self, model: str) -> JobRow | None:
        query = (
            select(JobRow)
            .where(JobRow.model_name == model, JobRow.state.in_(("succeeded", "failed")))
            .order_by(JobRow.finished_at.desc())
            .limit(1)
        )
        return self.session.scalars(query).first()

    def next_queued(self) -> JobRow | None:
        query = select(JobRow).where(JobRow.state == "queued").order_by(JobRow.created_at)
        return self.session.scalars(query.limit(1)).first()

    def claim(self, job_id: str, worker: str, at: datetime) -> bool:
        """queued -> running, for ``worker``; False when someone else moved it first."""
        result = self.session.execute(
            update(JobRow)
            .where(JobRow.job_id == job_id, JobRow.state == "queued")
            .values(state="running", started_at=at, worker=worker, stage="starting")
        )
        return rowcount(result) == 1

    def set_stage(self, job_id: str, stage: str, line: str) -> bool:
        """Record progress; returns whether a cancellation was asked for."""
        row = self.session.get(JobRow, job_id)
        if row is None:
            return False
        row.stage = stage
        row.log = (row.log + line + "\n")[-LOG_CHARS:]
        return bool(row.cancel_requested)

    def finish(self, job_id: str, state: str, result: dict[str, Any], line: str) -> None:
        row = self.session.get(JobRow, job_id)
        if row is None or row.state in FINISHED:
            return
        row.state = state
        row.result = result
        row.finished_at = utc_now()
        row.log = (row.log + line + "\n")[-LOG_CHARS:]

    def cancel(self, job_id: str) -> JobRow | None:
        """A queued job is cancelled at once; a running one is asked to stop at its next
        stage. Returns the row (None when it does not exist)."""
        row = self.session.get(JobRow, job_id)
        if row is None:
            return None
        if row.state == "queued":
            row.state, row.finished_at = "cancelled", utc_now()
            row.result = {"reason": "cancelled before it started"}
        elif row.state == "running":
            row.cancel_requested = True
        return row

    def fail_abandoned(self, reason: str) -> builtins.list[str]:
        """Fail every running job: called by the job runner while it holds the job lock, so
        none of them can still be running (their worker died). Returns their ids."""
        rows = builtins.list(self.session.scalars(select(JobRow).where(JobRow.state == "running")))
        for row in rows:
            row.state, row.finished_at = "failed", utc_now()
            row.result = {"reason": f"{reason} (during stage {row.stage or 'start'})"}
            row.log = (row.log + f"failed: {reason}\n")[-LOG_CHARS:]
        return [row.job_id for row in rows]


class TriggerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: TriggerRow) -> TriggerRow:
        self.session.add(row)
        self.session.flush()
        return row

    def list(self, model: str | None = None, limit: int = 50) -> builtins.list[TriggerRow]:
        positive("limit", limit)
        query = select(TriggerRow).order_by(TriggerRow.at.desc(), TriggerRow.id.desc())
        if model is not None:
            query = query.where(TriggerRow.model_name == model)
        return builtins.list(self.session.scalars(query.limit(limit)))

    def last_of_kind(self, model: str, kind: str) -> TriggerRow | None:
        query = (
            select(TriggerRow)
            .where(TriggerRow.model_name == model, TriggerRow.kind == kind)
            .order_by(TriggerRow.at.desc(), TriggerRow.id.desc())
            .limit(1)
        )
        return self.session.scalars(query).first()
