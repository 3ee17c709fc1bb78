"""Monitoring use cases: run the checks of a served model, store them, alert, report.

A check reads a window of the decision log, streamed in chunks into the reference profile's
bins (binned mode: memory does not grow with the window's inputs; the bundle holds the
profile, not raw training rows). Files given on the command line are compared exactly.
Every result is stored as a ``monitoring_reports`` row (history kept); alerts go through the
episode tracker, whose state is persisted, so one drift episode sends one alert and one
resolution.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from creditops.errors import InvalidInputError, NotFoundError
from creditops.features.dataset import read_table
from creditops.features.spec import Spec
from creditops.modeling.bundle import ScoringModel
from creditops.monitoring.alerts import Alert
from creditops.monitoring.drift import DriftResult
from creditops.monitoring.drift_binned import BinnedAccumulator
from creditops.monitoring.drift_config import DriftConfig
from creditops.monitoring.drift_exact import data_drift_exact
from creditops.monitoring.drift_stats import Hysteresis
from creditops.monitoring.prediction_drift import ApprovalCounts, prediction_drift
from creditops.services.alerting import build_dispatcher, build_tracker, track_and_notify
from creditops.services.context import AppContext
from creditops.services.models import LoadedModel, load_model
from creditops.services.production_checks import (
    PerformanceConfig,
    fairness_in_production,
    performance_drift,
)
from creditops.store.repositories import (
    DecisionRepository,
    MonitoringReportRepository,
    MonitorStateRepository,
)
from creditops.store.tables import MonitoringReportRow

CHUNK = 5000
ALERT_STATE_KEY = "alerts"
ALL_CHECKS = ("data_drift", "prediction_drift", "performance", "fairness")


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


def drift_config(
    settings_drift: Mapping[str, Any], weights: Mapping[str, float] | None = None
) -> DriftConfig:
    data = dict(settings_drift)
    if weights is not None and data.pop("weighted", False):
        data["weights"] = dict(weights)
    try:
        return DriftConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"invalid drift configuration: {exc}", field="drift") from None


@dataclass
class LogWindow:
    """A window of the decision log, reduced as it streams by: inputs aggregated into the
    reference profile's bins, scores kept as one float array, approvals counted."""

    inputs: BinnedAccumulator
    scores: npt.NDArray[np.float64]
    approved: int
    n: int


def _window(
    sessions: sessionmaker[Session],
    model: str,
    since: datetime | None,
    until: datetime | None,
    profile: Mapping[str, Any],
    feature_types: Mapping[str, str],
) -> LogWindow:
    accumulator = BinnedAccumulator(profile, list(feature_types))
    scores: list[npt.NDArray[np.float64]] = []
    approved = n = 0
    with sessions() as session:
        for chunk in DecisionRepository(session).iter_since(since, model, CHUNK):
            rows = [r for r in chunk if until is None or r.created_at < until]
            if not rows:
                continue
            n += len(rows)
            approved += sum(r.decision == "approve" for r in rows)
            scores.append(np.fromiter((r.score for r in rows), dtype=np.float64, count=len(rows)))
            accumulator.update(pd.DataFrame([r.inputs for r in rows]))
    joined = np.concatenate(scores) if scores else np.empty(0, dtype=np.float64)
    return LogWindow(accumulator, joined, approved, n)


def _feature_types(spec: Spec) -> dict[str, str]:
    return dict(spec.features)


def reference_approval_rate(model: ScoringModel) -> float:
    """Share of the reference (training) scores at or above the approve cutoff."""
    quantiles = np.asarray(model.bundle.reference_profile["score"]["quantiles"], dtype=float)
    cutoff = model.policy.approve_min_score
    levels = np.linspace(0.0, 1.0, len(quantiles))
    below = float(np.interp(cutoff, quantiles, levels, left=0.0, right=1.0))
    return 1.0 - below


def data_drift_from_log(
    loaded: LoadedModel,
    sessions: sessionmaker[Session],
    since: datetime | None,
    until: datetime | None,
    config: DriftConfig,
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(data drift, prediction drift, window size) of a logged window against the profile."""
    model = loaded.model
    profile = model.bundle.reference_profile
    types = _feature_types(model.spec)
    window = _window(sessions, loaded.info.name, since, until, profile, types)
    n = window.n
    if n == 0:
        raise NotFoundError(
            f"no decisions of {loaded.info.name!r} in the window; nothing to compare",
            field="since",
        )
    data = window.inputs.result(config)
    reference_total = int(profile["score"]["count"])
    approval = ApprovalCounts(
        reference_approved=round(reference_approval_rate(model) * reference_total),
        reference_total=reference_total,
        current_approved=window.approved,
        current_total=n,
    )
    pred = prediction_drift(profile["score"], window.scores, approval)
    return data.to_dict(), pred.to_dict(), n


def file_drift(
    spec: Spec, reference_path: Any, current_path: Any, config: DriftConfig
) -> DriftResult:
    """Exact drift between two files described by ``spec``."""
    reference = read_table(reference_path)
    current = read_table(current_path)
    types = _feature_types(spec)
    missing = [c for c in types if c not in reference.columns or c not in current.columns]
    if missing:
        raise InvalidInputError(
            f"spec features missing from the files: {missing[:5]}", field=missing[0]
        )
    return data_drift_exact(reference, current, types, config)


def _store(
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


def _alert(
    ctx: AppContext,
    sessions: sessionmaker[Session],
    model: str,
    kind: str,
    level: str,
    title: str,
    summary: str,
    details: Mapping[str, Any],
) -> list[dict[str, Any]]:
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
    alert = Alert(
        key=key,
        model=model,
        kind=kind,  # type: ignore[arg-type]
        severity="critical" if level == "critical" else "warning",
        title=title,
        summary=summary,
        at=datetime.now(UTC),
        details=dict(details),
    )
    outcome = track_and_notify(tracker, build_dispatcher(settings), alert, level)
    with sessions.begin() as session:
        repo = MonitorStateRepository(session)
        repo.put(ALERT_STATE_KEY, tracker.to_dict())
        repo.put(f"hysteresis:{key}", smoothed.to_dict())
    return [r.to_dict() for r in outcome.results]


def run_checks(
    ctx: AppContext,
    sessions: sessionmaker[Session],
    model: str,
    *,
    since: datetime | None,
    until: datetime | None = None,
    triggered_by: str = "api",
    kinds: tuple[str, ...] = ALL_CHECKS,
) -> CheckOutcome:
    """Run the checks of the production version of ``model``; store, alert, decide."""
    loaded = load_model(ctx, model, "production")
    monitor = ctx.settings.monitor
    _, _, drift_settings = monitor.for_model(model)
    version = loaded.info.version
    outcome = CheckOutcome(
        model=model, version=version, level="ok", should_retrain=False, reasons=[]
    )
    levels = []
    if "data_drift" in kinds or "prediction_drift" in kinds:
        config = drift_config(drift_settings, _importance(loaded))
        data, pred, n = data_drift_from_log(loaded, sessions, since, until, config)
        outcome.results["data_drift"] = data
        outcome.results["prediction_drift"] = pred
        outcome.reports["data_drift"] = _store(
            sessions,
            model,
            version,
            "data_drift",
            data["level"],
            data,
            n,
            since,
            until,
            triggered_by,
        )
        outcome.reports["prediction_drift"] = _store(
            sessions,
            model,
            version,
            "prediction_drift",
            pred["level"],
            pred,
            n,
            since,
            until,
            triggered_by,
        )
        levels += [data["level"], pred["level"]]
        if data["level"] == "critical":
            outcome.reasons.append(
                f"data drift critical: drift score {data['drift_score']:.2f}, "
                f"{data['n_drifted']} features drifted"
            )
        outcome.deliveries += _alert(
            ctx,
            sessions,
            model,
            "data_drift",
            data["level"],
            f"Data drift on {model}",
            f"drift score {data['drift_score']:.2f}; drifted share {data['drifted_share']:.0%}",
            {
                "drifted": [f["feature"] for f in data["features"] if f["drifted"]],
                "drift_score": data["drift_score"],
                "window_rows": n,
            },
        )
        outcome.deliveries += _alert(
            ctx,
            sessions,
            model,
            "prediction_drift",
            pred["level"],
            f"Prediction drift on {model}",
            f"score PSI {pred.get('psi', 0):.3f}",
            pred,
        )
    if "performance" in kinds:
        perf = performance_drift(
            sessions,
            model,
            loaded.info.metrics,
            PerformanceConfig(
                window=monitor.performance_window, max_drop=monitor.max_performance_drop
            ),
        )
        outcome.results["performance"] = perf
        outcome.reports["performance"] = _store(
            sessions,
            model,
            version,
            "performance",
            perf["level"],
            perf,
            perf["n_labelled"],
            None,
            None,
            triggered_by,
        )
        levels.append(perf["level"])
        if perf["level"] == "critical":
            outcome.reasons.append(
                "performance dropped more than "
                f"{monitor.max_performance_drop:.0%}: {', '.join(perf['breaches'])}"
            )
        outcome.deliveries += _alert(
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
    if "fairness" in kinds:
        baseline = _baseline_window(sessions, model, since)
        fair = fairness_in_production(
            sessions,
            model,
            loaded.model.spec,
            since,
            baseline=baseline,
            min_ratio=monitor.fairness_min_ratio,
        )
        outcome.results["fairness"] = fair
        outcome.reports["fairness"] = _store(
            sessions,
            model,
            version,
            "fairness",
            fair["level"],
            fair,
            fair["n"],
            since,
            until,
            triggered_by,
        )
        levels.append(fair["level"])
        outcome.deliveries += _alert(
            ctx,
            sessions,
            model,
            "fairness",
            fair["level"],
            f"Fairness warning on {model}",
            "approval rates by protected group moved or fall below the four-fifths rule",
            {a["attribute"]: a.get("disparate_impact_ratio") for a in fair["attributes"]},
        )
    order = {"ok": 0, "warning": 1, "critical": 2}
    outcome.level = max(levels, key=lambda lv: order.get(lv, 0)) if levels else "ok"
    outcome.should_retrain = bool(outcome.reasons)
    outcome.reports["check"] = _store(
        sessions,
        model,
        version,
        "check",
        outcome.level,
        outcome.summary(),
        0,
        since,
        until,
        triggered_by,
        should_retrain=outcome.should_retrain,
    )
    return outcome


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


def _importance(loaded: LoadedModel) -> dict[str, float]:
    return {
        r["feature"]: float(r["importance"])
        for r in loaded.model.bundle.training.get("feature_importance", [])
    }


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
