"""What a run of monitoring checks leaves behind: its outcome, its stored reports and alerts.

Every result is stored as a ``monitoring_reports`` row (history kept); alerts go through the
episode tracker, whose state is persisted, so one drift episode sends one alert and one
resolution.

The checks themselves: :func:`creditops.services.monitoring.run_checks` with the data and
prediction drift checks in :mod:`creditops.services.monitoring`, the performance and fairness
checks in :mod:`creditops.services.production_monitoring`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from creditops.errors import NotFoundError
from creditops.monitoring.alerts import Alert
from creditops.monitoring.drift_levels import Hysteresis
from creditops.services.alerting import build_dispatcher, build_tracker, track_and_notify
from creditops.services.context import AppContext
from creditops.services.models import LoadedModel
from creditops.store.monitoring_repositories import (
    MonitoringReportRepository,
    MonitorStateRepository,
)
from creditops.store.tables import MonitoringReportRow

ALERT_STATE_KEY = "alerts"


@dataclass
class CheckOutcome:
    model: str
    version: str
    level: str
    should_retrain: bool
    reasons: list[str]
    reports: dict[str, str] = field(default_factory=dict)  # kind -> report id
    results: dict[str, Any] = field(default_factory=dict)
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "level": self.level,
            "should_retrain": self.should_retrain,
            "reasons": self.reasons,
            "reports": self.reports,
        }


@dataclass(frozen=True)
class CheckRun:
    """What every check of one :func:`~creditops.services.monitoring.run_checks` call reads:
    the context, the store, the production version, the outcome the checks add to, the
    window and who started the run."""

    ctx: AppContext
    sessions: sessionmaker[Session]
    loaded: LoadedModel
    outcome: CheckOutcome
    since: datetime | None
    until: datetime | None
    triggered_by: str

    def record(
        self, kind: str, result: Mapping[str, Any], n: int, *, windowed: bool = True
    ) -> None:
        """Keep ``result`` as this run's ``kind`` result and store it as a report row (over
        the run's time window, or none for a check that is not windowed by time)."""
        outcome = self.outcome
        outcome.results[kind] = result
        outcome.reports[kind] = store(
            self.sessions,
            outcome.model,
            outcome.version,
            kind,
            result["level"],
            result,
            n,
            self.since if windowed else None,
            self.until if windowed else None,
            self.triggered_by,
        )


def store(
    sessions: sessionmaker[Session],
    model: str,
    version: str,
    kind: str,
    level: str,
    result: Mapping[str, Any],
    n: int,
    since: datetime | None,
    until: datetime | None,
    triggered_by: str,
    should_retrain: bool = False,
) -> str:
    """Store one check's result as a ``monitoring_reports`` row; return the report id."""
    report_id = str(uuid.uuid4())
    summary = {
        k: result[k]
        for k in (
            "drift_score",
            "drifted_share",
            "n_drifted",
            "level",
            "breaches",
            "psi",
            "approval_rate_change",
        )
        if k in result
    }
    with sessions.begin() as session:
        MonitoringReportRepository(session).add(
            MonitoringReportRow(
                report_id=report_id,
                model_name=model,
                model_version=version,
                kind=kind,
                created_at=datetime.now(UTC),
                window_start=since,
                window_end=until,
                n_current=n,
                level=level,
                should_retrain=should_retrain,
                triggered_by=triggered_by,
                summary=summary,
                result=dict(result),
            )
        )
    return report_id


def alert(
    ctx: AppContext,
    sessions: sessionmaker[Session],
    model: str,
    kind: str,
    level: str,
    title: str,
    summary: str,
    details: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Observe ``level`` for ``model:kind`` and notify what the episode tracker decides.

    Returns the delivery results (empty when alerts are disabled or nothing is sent).
    """
    settings = ctx.settings.alerts
    if not settings.enabled:
        return []
    key = f"{model}:{kind}"
    with sessions() as session:
        repo = MonitorStateRepository(session)
        state = repo.get(ALERT_STATE_KEY)
        debounce = repo.get(f"hysteresis:{key}")
    # The observed level is debounced across windows (N of the last M) before it can raise
    # or clear an alert, so a level does not flap.
    previous = Hysteresis.from_dict(debounce or ctx.settings.monitor.hysteresis)
    smoothed = previous.update(level)  # type: ignore[arg-type]
    level = smoothed.level
    tracker = build_tracker(settings, state)
    current = Alert(
        key=key,
        model=model,
        kind=kind,  # type: ignore[arg-type]
        severity="critical" if level == "critical" else "warning",
        title=title,
        summary=summary,
        at=datetime.now(UTC),
        details=dict(details),
    )
    outcome = track_and_notify(tracker, build_dispatcher(settings), current, level)
    with sessions.begin() as session:
        repo = MonitorStateRepository(session)
        repo.put(ALERT_STATE_KEY, tracker.to_dict())
        repo.put(f"hysteresis:{key}", smoothed.to_dict())
    return [r.to_dict() for r in outcome.results]


def list_reports(
    sessions: sessionmaker[Session], model: str | None, kind: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    with sessions() as session:
        return [
            report_dict(r, full=False)
            for r in MonitoringReportRepository(session).list(model, kind, limit, offset)
        ]


def get_report(sessions: sessionmaker[Session], report_id: str) -> dict[str, Any]:
    with sessions() as session:
        row = MonitoringReportRepository(session).get(report_id)
        if row is None:
            raise NotFoundError(f"report {report_id!r} does not exist", field="report_id")
        return report_dict(row, full=True)


def report_dict(row: MonitoringReportRow, *, full: bool) -> dict[str, Any]:
    out = {
        "report_id": row.report_id,
        "model": row.model_name,
        "version": row.model_version,
        "kind": row.kind,
        "created_at": row.created_at.isoformat(),
        "level": row.level,
        "n_current": row.n_current,
        "should_retrain": row.should_retrain,
        "triggered_by": row.triggered_by,
        "summary": row.summary,
        "window_start": row.window_start.isoformat() if row.window_start else None,
        "window_end": row.window_end.isoformat() if row.window_end else None,
    }
    if full:
        out["result"] = row.result
    return out
