"""ORM rows of the service store, portable between SQLite and PostgreSQL.

Every timestamp is a timezone-aware UTC ``datetime`` in Python. :class:`UTCDateTime` stores
it as ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL and as naive-UTC text on SQLite (whose
fixed-width ISO format sorts chronologically, which keyset pagination relies on), and gives
back aware UTC datetimes on both. Naive datetimes are refused rather than guessed.

``versions/0001_initial.py`` in ``migrations/`` is written by hand to match this module; the
integration tests check that the migrated schema equals :data:`metadata`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "ApiKeyRow",
    "AuditHeadRow",
    "AuditRow",
    "Base",
    "DecisionRow",
    "DeploymentRow",
    "EventOutboxRow",
    "JobRow",
    "ModelControlRow",
    "MonitorStateRow",
    "MonitoringReportRow",
    "OutcomeRow",
    "ReviewRow",
    "ServingProcessRow",
    "ShadowDecisionRow",
    "TriggerRow",
    "UTCDateTime",
    "metadata",
]

# Deterministic constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (see the module docstring)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - drivers give datetimes
            raise TypeError(f"expected a datetime from the database, got {type(value)!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


metadata = Base.metadata


class DecisionRow(Base):
    """One credit decision the service returned (append-only; never updated)."""

    __tablename__ = "decisions"
    __table_args__ = (
        # Serves "created_at >= ?" filters and the keyset order of exports and purges.
        Index("ix_decisions_created_at_decision_id", "created_at", "decision_id"),
    )

    decision_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    application_id: Mapped[str] = mapped_column(String(128), index=True)
    model_name: Mapped[str] = mapped_column(String(128), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[str] = mapped_column(String(64))
    pd: Mapped[float] = mapped_column(Double)
    score: Mapped[float] = mapped_column(Double)
    decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    latency_ms: Mapped[float] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    request_id: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    route: Mapped[str] = mapped_column(String(32))  # the arm: production, stable, candidate
    suspended: Mapped[bool] = mapped_column(Boolean)
    deployment_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # from 0004


class OutcomeRow(Base):
    """The observed outcome (default or not) of a decided application."""

    __tablename__ = "outcomes"

    decision_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("decisions.decision_id"), primary_key=True
    )
    application_id: Mapped[str] = mapped_column(String(128), index=True)
    defaulted: Mapped[bool] = mapped_column(Boolean)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReviewRow(Base):
    """A manual review of a decision; an override is recorded next to, never over, it."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("decisions.decision_id"), index=True
    )
    final_decision: Mapped[str] = mapped_column(String(16))
    override_reason_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    note: Mapped[str] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ApiKeyRow(Base):
    """An API key: only the sha256 of its secret is stored."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditRow(Base):
    """Who did what to which target, and whether it was allowed."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    # the hash chain (store/audit_chain.py), from 0005
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The last record of the audit hash chain (one row, id 1)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class ModelControlRow(Base):
    """Operational switches of one model (today: automated decisioning suspended or not)."""

    __tablename__ = "model_controls"

    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    suspended: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(128))


class MonitoringReportRow(Base):
    """One stored monitoring check (drift, performance, fairness) with its full result."""

    __tablename__ = "monitoring_reports"
    __table_args__ = (
        Index("ix_monitoring_reports_model_name_created_at", "model_name", "created_at"),
    )

    report_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    n_current: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(32))  # 16 up to 0002
    should_retrain: Mapped[bool] = mapped_column(Boolean)
    triggered_by: Mapped[str] = mapped_column(String(32))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)


class MonitorStateRow(Base):
    """Small persisted state of the monitoring worker (alert episodes, schedules)."""

    __tablename__ = "monitor_state"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobRow(Base):
    """A background job (today: retraining a model), run by the worker.

    ``state`` is queued, running, succeeded, failed or cancelled; ``stage`` the step a
    running job is in; ``result`` what it produced (a new version, the existing version a
    retraining matched, or why it failed); ``log`` the last lines of its progress.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_model_name_created_at", "model_name", "created_at"),
        Index("ix_jobs_state", "state"),
        # At most one queued or running job per model, whatever number of processes ask.
        Index(
            "uq_jobs_active_model",
            "model_name",
            unique=True,
            sqlite_where=text("state IN ('queued', 'running')"),
            postgresql_where=text("state IN ('queued', 'running')"),
        ),
    )

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    trigger_kind: Mapped[str] = mapped_column(String(32))
    trigger_reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(128))
    force: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    log: Mapped[str] = mapped_column(Text)


class TriggerRow(Base):
    """A retraining trigger as it was observed: its kind, reason and evidence, and what
    came of it (a job, or why none: a job already running, the cool-down, ...)."""

    __tablename__ = "retrain_triggers"
    __table_args__ = (Index("ix_retrain_triggers_model_name_at", "model_name", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


ACTIVE_DEPLOYMENT = text("state IN ('pending', 'progressing', 'paused')")


class DeploymentRow(Base):
    """A deployment of a candidate version next to the stable one (``domain/deployments``).

    ``history`` is the list of what happened, in order (started, steps with their gate
    results, pauses, rollback, promotion), each with its time and actor.
    """

    __tablename__ = "deployments"
    __table_args__ = (
        Index("ix_deployments_model_name_created_at", "model_name", "created_at"),
        # At most one deployment in progress per model, whatever number of processes ask.
        Index(
            "uq_deployments_active_model",
            "model_name",
            unique=True,
            sqlite_where=ACTIVE_DEPLOYMENT,
            postgresql_where=ACTIVE_DEPLOYMENT,
        ),
    )

    deployment_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    strategy: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    stable_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    candidate_version: Mapped[str] = mapped_column(String(64))
    steps: Mapped[list[float]] = mapped_column(JSON)
    step: Mapped[int] = mapped_column(Integer)
    traffic_share: Mapped[float] = mapped_column(Double)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    started_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    step_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # from 0005


class ServingProcessRow(Base):
    """One API process as it last reported itself: alive when ``seen_at`` is recent;
    ``report`` holds, per deployment, whether its versions loaded and passed their health
    check and the candidate's attempts and errors."""

    __tablename__ = "serving_processes"

    process_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)


class ShadowDecisionRow(Base):
    """What a shadow candidate would have decided for a logged decision (never returned)."""

    __tablename__ = "shadow_decisions"

    decision_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    primary_decision_id: Mapped[str] = mapped_column(String(36), index=True)
    deployment_id: Mapped[str] = mapped_column(String(36), index=True)
    application_id: Mapped[str] = mapped_column(String(128))
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    pd: Mapped[float] = mapped_column(Double)
    score: Mapped[float] = mapped_column(Double)
    decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


UNSENT_EVENT = text("sent_at IS NULL")


class EventOutboxRow(Base):
    """An event for downstream systems (``docs/events.md``), written in the transaction of
    the change it reports (the transactional outbox) and marked sent by the publisher once
    the broker acknowledged it (from 0006).

    ``id`` orders the events: the publisher sends each model's events in ``id`` order.
    ``payload`` is the event document exactly as it is published (JSON text).
    """

    __tablename__ = "event_outbox"
    __table_args__ = (
        # The publisher's "unsent, oldest first" read and the backlog gauges.
        Index(
            "ix_event_outbox_unsent",
            "id",
            sqlite_where=UNSENT_EVENT,
            postgresql_where=UNSENT_EVENT,
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    model_name: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(64))
    schema_version: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
