"""Monitoring use cases: run the checks of a served model, store them, alert, report.

A check reads a window of the decision log, streamed in chunks into the reference profile's
bins (binned mode: memory does not grow with the window's inputs; the bundle holds the
profile, not raw training rows). Files given on the command line are compared exactly.

This module holds :func:`run_checks` and the data and prediction drift checks. The
performance and fairness checks are in :mod:`creditops.services.production_monitoring`; the
outcome of a run, its stored reports and alerts in :mod:`creditops.services.monitoring_reports`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from creditops.errors import InvalidInputError, NotFoundError
from creditops.features.dataset import read_table
from creditops.features.spec import Spec
from creditops.modeling.bundle import ScoringModel
from creditops.monitoring.drift import DriftResult
from creditops.monitoring.drift_binned import BinnedAccumulator
from creditops.monitoring.drift_config import DriftConfig
from creditops.monitoring.drift_exact import data_drift_exact
from creditops.monitoring.prediction_drift import ApprovalCounts, prediction_drift
from creditops.services.context import AppContext
from creditops.services.models import LoadedModel, load_model
from creditops.services.monitoring_reports import CheckOutcome, CheckRun, alert, store
from creditops.services.production_monitoring import check_fairness, check_performance
from creditops.store.repositories import DecisionRepository

CHUNK = 5000
ALL_CHECKS = ("data_drift", "prediction_drift", "performance", "fairness")


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
    version = loaded.info.version
    outcome = CheckOutcome(
        model=model, version=version, level="ok", should_retrain=False, reasons=[]
    )
    check = CheckRun(ctx, sessions, loaded, outcome, since, until, triggered_by)
    levels = []
    if "data_drift" in kinds or "prediction_drift" in kinds:
        levels += _check_drift(check)
    if "performance" in kinds:
        levels.append(check_performance(check))
    if "fairness" in kinds:
        levels.append(check_fairness(check))
    order = {"ok": 0, "warning": 1, "critical": 2}
    outcome.level = max(levels, key=lambda lv: order.get(lv, 0)) if levels else "ok"
    outcome.should_retrain = bool(outcome.reasons)
    outcome.reports["check"] = store(
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


def _check_drift(check: CheckRun) -> list[str]:
    """Data and prediction drift of the window: store both, alert on both; their levels."""
    ctx, sessions, loaded, outcome = check.ctx, check.sessions, check.loaded, check.outcome
    _, _, drift_settings = ctx.settings.monitor.for_model(outcome.model)
    config = drift_config(drift_settings, _importance(loaded))
    data, pred, n = data_drift_from_log(loaded, sessions, check.since, check.until, config)
    check.record("data_drift", data, n)
    check.record("prediction_drift", pred, n)
    if data["level"] == "critical":
        outcome.reasons.append(
            f"data drift critical: drift score {data['drift_score']:.2f}, "
            f"{data['n_drifted']} features drifted"
        )
    _alert_drift(ctx, sessions, outcome, data, pred, n)
    return [data["level"], pred["level"]]


def _alert_drift(
    ctx: AppContext,
    sessions: sessionmaker[Session],
    outcome: CheckOutcome,
    data: Mapping[str, Any],
    pred: Mapping[str, Any],
    n: int,
) -> None:
    """Alert on the run's data drift and on its prediction drift (one key each)."""
    model = outcome.model
    outcome.deliveries += alert(
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
    outcome.deliveries += alert(
        ctx,
        sessions,
        model,
        "prediction_drift",
        pred["level"],
        f"Prediction drift on {model}",
        f"score PSI {pred.get('psi', 0):.3f}",
        pred,
    )


def _importance(loaded: LoadedModel) -> dict[str, float]:
    return {
        r["feature"]: float(r["importance"])
        for r in loaded.model.bundle.training.get("feature_importance", [])
    }
