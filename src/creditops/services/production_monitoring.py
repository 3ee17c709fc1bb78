"""The performance and fairness checks of :func:`creditops.services.monitoring.run_checks`.

Each runs its check (:mod:`creditops.services.production_checks`), records the result in the
run's :class:`~creditops.services.monitoring_reports.CheckOutcome`, stores it as a report,
alerts, and returns its level. The data and prediction drift checks are in
:mod:`creditops.services.monitoring`; reports and alerts in
:mod:`creditops.services.monitoring_reports`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from creditops.services.monitoring_reports import CheckRun, alert
from creditops.services.production_checks import (
    PerformanceConfig,
    fairness_in_production,
    performance_drift,
)
from creditops.store.repositories import DecisionRepository


def check_performance(check: CheckRun) -> str:
    """Metrics over the latest labelled decisions against validation; store, alert, level."""
    ctx, sessions, loaded, outcome = check.ctx, check.sessions, check.loaded, check.outcome
    model, monitor = outcome.model, ctx.settings.monitor
    perf = performance_drift(
        sessions,
        model,
        loaded.info.metrics,
        PerformanceConfig(window=monitor.performance_window, max_drop=monitor.max_performance_drop),
    )
    check.record("performance", perf, perf["n_labelled"], windowed=False)  # by label count
    if perf["level"] == "critical":
        outcome.reasons.append(
            "performance dropped more than "
            f"{monitor.max_performance_drop:.0%}: {', '.join(perf['breaches'])}"
        )
    outcome.deliveries += alert(
        ctx,
        sessions,
        model,
        "performance_drift",
        perf["level"],
        f"Performance drop on {model}",
        f"{', '.join(perf['breaches']) or 'no'} metrics dropped over "
        f"{monitor.max_performance_drop:.0%}",
        {
            "current": perf["current"],
            "validation": perf["validation"],
            "n_labelled": perf["n_labelled"],
            "n_unlabelled": perf["n_unlabelled"],
        },
    )
    return str(perf["level"])


def check_fairness(check: CheckRun) -> str:
    """Approval rates by protected group and their drift; store, alert, level."""
    ctx, sessions, loaded, outcome = check.ctx, check.sessions, check.loaded, check.outcome
    model, since, monitor = outcome.model, check.since, ctx.settings.monitor
    baseline = _baseline_window(sessions, model, since)
    fair = fairness_in_production(
        sessions,
        model,
        loaded.model.spec,
        since,
        baseline=baseline,
        min_ratio=monitor.fairness_min_ratio,
    )
    check.record("fairness", fair, fair["n"])
    outcome.deliveries += alert(
        ctx,
        sessions,
        model,
        "fairness",
        fair["level"],
        f"Fairness warning on {model}",
        "approval rates by protected group moved or fall below the four-fifths rule",
        {a["attribute"]: a.get("disparate_impact_ratio") for a in fair["attributes"]},
    )
    return str(fair["level"])


def _baseline_window(
    sessions: sessionmaker[Session], model: str, since: datetime | None
) -> tuple[datetime, datetime] | None:
    """The model's first logged day, as the baseline period for fairness drift."""
    if since is None:
        return None
    with sessions() as session:
        first = next(iter(DecisionRepository(session).iter_since(None, model, 1)), [])
    if not first or first[0].created_at >= since:
        return None
    start = first[0].created_at
    return start, min(since, start + timedelta(days=1))
