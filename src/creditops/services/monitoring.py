"""Monitoring use cases: run the checks of a served model, store their results, alert.

:func:`run_checks` runs one :class:`CheckRun` through a step per check kind (data and
prediction drift, performance, fairness). Each step reads what its check needs from the
decision log, calls the check's pure calculation in :mod:`creditops.monitoring`, stores the
result as a ``monitoring_reports`` row (history is kept) and raises or clears its alert.

* **Drift** reads a window of the decision log, streamed in chunks into the reference
  profile's bins (binned mode: memory does not grow with the window; the bundle holds the
  profile, not raw training rows). Two files given on the command line are compared exactly
  (:func:`file_drift`); a file or directory against a version's profile is binned
  (:func:`binned_file_drift`, or on Spark :func:`creditops.services.spark_engine.drift_spark`).
* **Performance** reads the latest labelled decisions (and the model's first ones, the
  baseline period); labels arrive late, so it says how many decisions are still unlabelled.
* **Fairness** reads the window and the model's first logged day as its baseline.
* **Alerts**: each check observes one key (``model:kind``) per run. The observed level is
  debounced across runs (:class:`~creditops.monitoring.conditions.Hysteresis`, N of the last
  M) and the episode tracker (:mod:`creditops.alerts.episodes`) decides what is sent, so one
  drift episode sends one alert and one resolution; both states are persisted.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow.parquet as pq
from sqlalchemy.orm import Session, sessionmaker

from creditops.alerts.dispatch import (
    DeliveryResult,
    build_tracker,
    send_test_alert,
    track_and_notify,
)
from creditops.alerts.episodes import Alert, AlertKind
from creditops.domain.windows import utc_text
from creditops.errors import DataError, InvalidInputError, NotFoundError
from creditops.features.dataset import read_table, table_files
from creditops.features.spec import Spec
from creditops.modeling.bundle import ScoringModel
from creditops.monitoring.conditions import (
    INSUFFICIENT,
    CheckLevel,
    Hysteresis,
    insufficient,
    overall,
)
from creditops.monitoring.drift.binned import BinnedAccumulator
from creditops.monitoring.drift.data import DriftConfig, DriftResult
from creditops.monitoring.drift.exact import data_drift_exact
from creditops.monitoring.drift.prediction import ApprovalCounts, prediction_drift
from creditops.monitoring.fairness import DecisionWindow, FairnessConfig, fairness_in_production
from creditops.monitoring.performance import LabelledWindow, PerformanceConfig, performance_drift
from creditops.services.context import AppContext
from creditops.services.model_versions import LoadedModel, load_model
from creditops.store.monitoring_repositories import (
    MonitoringReportRepository,
    MonitorStateRepository,
)
from creditops.store.repositories import DecisionRepository, LabelledWindowRepository
from creditops.store.tables import DecisionRow, MonitoringReportRow, OutcomeRow

CHUNK = 5000
ALL_CHECKS = ("data_drift", "prediction_drift", "performance", "fairness")
ALERT_STATE_KEY = "alerts"
FAIRNESS_MAX_ROWS = 100_000  # the latest decisions of a window the fairness check reads


@dataclass(frozen=True)
class CheckRequest:
    """Which checks to run on which model, over which window of its decision log, and who
    asked (``api``, ``cli``, or the worker's reason: ``schedule`` / ``predictions``)."""

    model: str
    since: datetime | None
    until: datetime | None = None
    triggered_by: str = "api"
    kinds: tuple[str, ...] = ALL_CHECKS


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
    """What every check step of one :func:`run_checks` call reads: the context, the store,
    the production version, the request and the outcome the steps add to."""

    ctx: AppContext
    sessions: sessionmaker[Session]
    loaded: LoadedModel
    request: CheckRequest
    outcome: CheckOutcome

    def record(
        self, kind: str, result: Mapping[str, Any], n: int, *, windowed: bool = True
    ) -> None:
        """Keep ``result`` as this run's ``kind`` result and store it as a report row (over
        the run's time window, or none for a check that is not windowed by time)."""
        self.outcome.results[kind] = result
        window = (self.request.since, self.request.until) if windowed else (None, None)
        self.outcome.reports[kind] = _store_report(self, kind, result, n, window)

    def alert(self, kind: AlertKind, level: str, message: tuple[str, str], details: Any) -> None:
        """Observe ``level`` for this model's ``kind`` key and send what is due;
        ``message`` is the alert's (title, summary)."""
        observed = Observation(self.request.model, kind, level, *message, details=details)
        self.outcome.deliveries += raise_alert(self.ctx, self.sessions, observed)


def run_checks(
    ctx: AppContext, sessions: sessionmaker[Session], request: CheckRequest
) -> CheckOutcome:
    """Run the requested checks of the production version; store, alert, decide."""
    loaded = load_model(ctx, request.model, "production")
    outcome = CheckOutcome(
        model=request.model,
        version=loaded.info.version,
        level="ok",
        should_retrain=False,
        reasons=[],
    )
    check = CheckRun(ctx, sessions, loaded, request, outcome)
    levels: list[CheckLevel] = []
    if "data_drift" in request.kinds or "prediction_drift" in request.kinds:
        levels += _check_drift(check)
    if "performance" in request.kinds:
        levels.append(_check_performance(check))
    if "fairness" in request.kinds:
        levels.append(_check_fairness(check))
    outcome.level = overall(levels)
    outcome.should_retrain = bool(outcome.reasons)
    window = (request.since, request.until)
    outcome.reports["check"] = _store_report(check, "check", outcome.summary(), 0, window)
    return outcome


# -- data and prediction drift ----------------------------------------------------------
def drift_config(
    settings_drift: Mapping[str, Any], weights: Mapping[str, float] | None = None
) -> DriftConfig:
    """The drift configuration from settings; ``weighted`` turns ``weights`` on."""
    data = dict(settings_drift)
    if weights is not None and data.pop("weighted", False):
        data["weights"] = dict(weights)
    try:
        return DriftConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"invalid drift configuration: {exc}", field="drift") from None


def _check_drift(check: CheckRun) -> list[CheckLevel]:
    """Data and prediction drift of the window: store both, alert on both; their levels."""
    model = check.request.model
    _, _, drift_settings = check.ctx.settings.monitor.for_model(model)
    config = drift_config(drift_settings, _importance(check.loaded.model))
    data, pred, n = _data_drift_from_log(check, config)
    check.record("data_drift", data, n)
    check.record("prediction_drift", pred, n)
    if pred["level"] != INSUFFICIENT:
        check.alert(
            "prediction_drift",
            pred["level"],
            (f"Prediction drift on {model}", f"score PSI {pred.get('psi', 0):.3f}"),
            pred,
        )
    if data["level"] == INSUFFICIENT:
        return [data["level"], pred["level"]]
    if data["level"] == "critical":
        check.outcome.reasons.append(
            f"data drift critical: drift score {data['drift_score']:.2f}, "
            f"{data['n_drifted']} features drifted"
        )
    check.alert(
        "data_drift",
        data["level"],
        (
            f"Data drift on {model}",
            f"drift score {data['drift_score']:.2f}; drifted share {data['drifted_share']:.0%}",
        ),
        {
            "drifted": [f["feature"] for f in data["features"] if f["drifted"]],
            "drift_score": data["drift_score"],
            "window_rows": n,
        },
    )
    return [data["level"], pred["level"]]


@dataclass
class _LogWindow:
    """A window of the decision log, reduced as it streams by: inputs aggregated into the
    reference profile's bins, scores kept as one float array, approvals counted."""

    inputs: BinnedAccumulator
    scores: npt.NDArray[np.float64]
    approved: int
    n: int


def _read_window(check: CheckRun) -> _LogWindow:
    model = check.loaded.model
    request = check.request
    accumulator = BinnedAccumulator(model.bundle.reference_profile, list(model.spec.features))
    scores: list[npt.NDArray[np.float64]] = []
    approved = n = 0
    with check.sessions() as session:
        for chunk in DecisionRepository(session).iter_since(request.since, request.model, CHUNK):
            rows = [r for r in chunk if request.until is None or r.created_at < request.until]
            if not rows:
                continue
            n += len(rows)
            approved += sum(r.decision == "approve" for r in rows)
            scores.append(np.fromiter((r.score for r in rows), dtype=np.float64, count=len(rows)))
            accumulator.update(pd.DataFrame([r.inputs for r in rows]))
    joined = np.concatenate(scores) if scores else np.empty(0, dtype=np.float64)
    return _LogWindow(accumulator, joined, approved, n)


def reference_approval_rate(model: ScoringModel) -> float:
    """Share of the reference (training) scores at or above the approve cutoff."""
    quantiles = np.asarray(model.bundle.reference_profile["score"]["quantiles"], dtype=float)
    cutoff = model.policy.approve_min_score
    levels = np.linspace(0.0, 1.0, len(quantiles))
    below = float(np.interp(cutoff, quantiles, levels, left=0.0, right=1.0))
    return 1.0 - below


def _data_drift_from_log(
    check: CheckRun, config: DriftConfig
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(data drift, prediction drift, window size) of a logged window against the profile."""
    model = check.loaded.model
    profile = model.bundle.reference_profile
    window = _read_window(check)
    if window.n == 0:
        raise NotFoundError(
            f"no decisions of {check.request.model!r} in the window; nothing to compare",
            field="since",
        )
    minimum = check.ctx.settings.monitor.min_rows
    data_min, pred_min = minimum.get("data_drift", 0), minimum.get("prediction_drift", 0)
    if window.n < data_min:
        data = insufficient("data_drift", window.n, data_min)
    else:
        data = window.inputs.result(config).to_dict()
    if window.n < pred_min:
        return data, insufficient("prediction_drift", window.n, pred_min), window.n
    reference_total = int(profile["score"]["count"])
    approval = ApprovalCounts(
        reference_approved=round(reference_approval_rate(model) * reference_total),
        reference_total=reference_total,
        current_approved=window.approved,
        current_total=window.n,
    )
    pred = prediction_drift(profile["score"], window.scores, approval)
    return data, pred.to_dict(), window.n


def file_drift(
    spec: Spec, reference_path: Any, current_path: Any, config: DriftConfig
) -> DriftResult:
    """Exact drift between two files described by ``spec``."""
    reference = read_table(reference_path)
    current = read_table(current_path)
    types = dict(spec.features)
    missing = [c for c in types if c not in reference.columns or c not in current.columns]
    if missing:
        raise InvalidInputError(
            f"spec features missing from the files: {missing[:5]}", field=missing[0]
        )
    return data_drift_exact(reference, current, types, config)


@dataclass(frozen=True)
class BinnedReference:
    """What binned drift of a file needs from a model version: its frozen reference profile
    (the bins), the features it monitors and the drift configuration that judges them (the
    model's settings, weighted by feature importance when ``weighted`` is set), as the
    scheduled check uses them."""

    name: str
    version: str
    profile: Mapping[str, Any]
    features: tuple[str, ...]
    config: DriftConfig


def binned_reference(ctx: AppContext, name: str, ref: str) -> BinnedReference:
    loaded = load_model(ctx, name, ref)
    _, _, drift_settings = ctx.settings.monitor.for_model(name)
    return BinnedReference(
        name=name,
        version=loaded.info.version,
        profile=loaded.model.bundle.reference_profile,
        features=tuple(loaded.model.spec.features),
        config=drift_config(drift_settings, _importance(loaded.model)),
    )


def binned_file_drift(reference: BinnedReference, current: Path) -> DriftResult:
    """Binned drift of a file, or of a directory of files read one at a time, against a
    version's reference profile (the local engine; Spark's gives the same numbers)."""
    accumulator = BinnedAccumulator(reference.profile, reference.features)
    fmt, files = table_files(current)
    for path in files:
        if fmt == "parquet" and pq.ParquetFile(path).metadata.num_rows == 0:
            continue  # Spark writes a schema-only file for an empty output
        accumulator.update(read_table(path))
    if accumulator.n_rows == 0:
        raise DataError(f"{current} holds no rows", count=0)
    return accumulator.result(reference.config)


def _importance(model: ScoringModel) -> dict[str, float]:
    return {
        r["feature"]: float(r["importance"])
        for r in model.bundle.training.get("feature_importance", [])
    }


# -- performance ------------------------------------------------------------------------
def _labelled(pairs: Sequence[tuple[DecisionRow, OutcomeRow]]) -> LabelledWindow:
    return LabelledWindow(
        defaulted=np.array([bool(o.defaulted) for _, o in pairs], dtype=np.int8),
        pd=np.array([d.pd for d, _ in pairs], dtype=np.float64),
        predicted_bad=np.array([d.decision != "approve" for d, _ in pairs], dtype=bool),
    )


def labelled_performance(
    sessions: sessionmaker[Session],
    model: str,
    validation_metrics: Mapping[str, float],
    config: PerformanceConfig,
) -> dict[str, Any]:
    """Performance drift of ``model``'s latest labelled decisions (see
    :func:`creditops.monitoring.performance.performance_drift`)."""
    with sessions() as session:
        repo = LabelledWindowRepository(session)
        recent = repo.latest(model, config.window)
        first = repo.latest(model, config.window, oldest_first=True)
        unlabelled = repo.count_unlabelled(model)
    result = performance_drift(_labelled(recent), _labelled(first), validation_metrics, config)
    head = {"kind": "performance", "model": model, "n_labelled": len(recent)}
    return head | {"n_unlabelled": unlabelled} | result


def production_performance(
    ctx: AppContext, sessions: sessionmaker[Session], model: str, config: PerformanceConfig
) -> dict[str, Any]:
    """Performance drift of the production version of ``model`` (not stored, no alert)."""
    loaded = load_model(ctx, model, "production")
    return labelled_performance(sessions, model, loaded.info.metrics, config)


def _check_performance(check: CheckRun) -> CheckLevel:
    """Metrics over the latest labelled decisions against validation; store, alert, level."""
    model, monitor = check.request.model, check.ctx.settings.monitor
    config = PerformanceConfig(
        window=monitor.performance_window,
        max_drop=monitor.max_performance_drop,
        warning_drop=min(monitor.warning_performance_drop, monitor.max_performance_drop),
    )
    perf = labelled_performance(check.sessions, model, check.loaded.info.metrics, config)
    minimum = monitor.min_rows.get("performance", 0)
    if perf["n_labelled"] < minimum:
        perf = perf | insufficient("performance", perf["n_labelled"], minimum)
        check.record("performance", perf, perf["n_labelled"], windowed=False)
        return INSUFFICIENT
    check.record("performance", perf, perf["n_labelled"], windowed=False)  # by label count
    breaches = ", ".join(perf["breaches"])
    if perf["level"] == "critical":
        check.outcome.reasons.append(
            f"performance dropped more than {config.max_drop:.0%}: {breaches}"
        )
    check.alert(
        "performance_drift",
        perf["level"],
        (
            f"Performance drop on {model}",
            f"{breaches or 'no'} metrics dropped over {config.max_drop:.0%}",
        ),
        {
            "current": perf["current"],
            "validation": perf["validation"],
            "n_labelled": perf["n_labelled"],
            "n_unlabelled": perf["n_unlabelled"],
        },
    )
    return perf["level"]  # type: ignore[no-any-return]


# -- fairness ---------------------------------------------------------------------------
def _decision_window(rows: Sequence[DecisionRow], labels: Mapping[str, bool]) -> DecisionWindow:
    return DecisionWindow(
        inputs=pd.DataFrame([r.inputs for r in rows]),
        approved=np.array([r.decision == "approve" for r in rows], dtype=bool),
        defaulted=[labels.get(r.decision_id) for r in rows],
    )


def production_fairness(
    sessions: sessionmaker[Session],
    spec: Spec,
    request: CheckRequest,
    config: FairnessConfig,
) -> dict[str, Any]:
    """Fairness in production of ``request.model``'s window (see
    :func:`creditops.monitoring.fairness.fairness_in_production`), against the model's
    first logged day when the window starts later."""
    model, since = request.model, request.since
    with sessions() as session:
        repo = DecisionRepository(session)
        rows = [r for chunk in repo.iter_since(since, model, CHUNK) for r in chunk]
        rows = rows[-FAIRNESS_MAX_ROWS:]
        base_rows: list[DecisionRow] = []
        period = _baseline_period(repo, model, since)
        if period is not None:
            base_rows = [
                r
                for chunk in repo.iter_since(period[0], model, CHUNK)
                for r in chunk
                if r.created_at < period[1]
            ][-FAIRNESS_MAX_ROWS:]
        labels = {
            d.decision_id: bool(o.defaulted)
            for d, o in LabelledWindowRepository(session).latest(model, FAIRNESS_MAX_ROWS)
        }
    baseline = _decision_window(base_rows, labels) if base_rows else None
    result = fairness_in_production(_decision_window(rows, labels), baseline, spec, config)
    return {"kind": "fairness", "model": model} | result


def _baseline_period(
    repo: DecisionRepository, model: str, since: datetime | None
) -> tuple[datetime, datetime] | None:
    """The model's first logged day, as the baseline period for fairness drift."""
    if since is None:
        return None
    first = next(iter(repo.iter_since(None, model, 1)), [])
    if not first or first[0].created_at >= since:
        return None
    start = first[0].created_at
    return start, min(since, start + timedelta(days=1))


def known_groups(model: ScoringModel) -> dict[str, frozenset[str]]:
    """The training categories of each categorical protected attribute (its profile)."""
    features = model.bundle.reference_profile.get("features", {})
    return {
        column: frozenset(features[column]["categories"])
        for column in model.spec.protected
        if features.get(column, {}).get("type") == "categorical"
    }


def _check_fairness(check: CheckRun) -> CheckLevel:
    """Approval rates by protected group and their drift; store, alert, level."""
    model = check.request.model
    config = FairnessConfig(
        min_ratio=check.ctx.settings.monitor.fairness_min_ratio,
        known_groups=known_groups(check.loaded.model),
    )
    fair = production_fairness(check.sessions, check.loaded.model.spec, check.request, config)
    minimum = check.ctx.settings.monitor.min_rows.get("fairness", 0)
    if fair["n"] < minimum:
        fair = fair | insufficient("fairness", fair["n"], minimum)
        check.record("fairness", fair, fair["n"])
        return INSUFFICIENT
    check.record("fairness", fair, fair["n"])
    check.alert(
        "fairness",
        fair["level"],
        (
            f"Fairness warning on {model}",
            "approval rates by protected group moved or fall below the four-fifths rule",
        ),
        {a["attribute"]: a.get("disparate_impact_ratio") for a in fair["attributes"]},
    )
    return fair["level"]  # type: ignore[no-any-return]


# -- stored reports ---------------------------------------------------------------------
SUMMARY_KEYS = (
    "drift_score",
    "drifted_share",
    "n_drifted",
    "level",
    "breaches",
    "psi",
    "approval_rate_change",
)


def _store_report(
    check: CheckRun,
    kind: str,
    result: Mapping[str, Any],
    n: int,
    window: tuple[datetime | None, datetime | None],
) -> str:
    """Store one check's result as a ``monitoring_reports`` row; return the report id."""
    report_id = str(uuid.uuid4())
    outcome = check.outcome
    with check.sessions.begin() as session:
        MonitoringReportRepository(session).add(
            MonitoringReportRow(
                report_id=report_id,
                model_name=outcome.model,
                model_version=outcome.version,
                kind=kind,
                created_at=datetime.now(UTC),
                window_start=window[0],
                window_end=window[1],
                n_current=n,
                level=result["level"],
                should_retrain=bool(result.get("should_retrain", False)),
                triggered_by=check.request.triggered_by,
                summary={k: result[k] for k in SUMMARY_KEYS if k in result},
                result=dict(result),
            )
        )
    return report_id


def list_reports(
    sessions: sessionmaker[Session], model: str | None, kind: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    with sessions() as session:
        return [
            _report_dict(r, full=False)
            for r in MonitoringReportRepository(session).list(model, kind, limit, offset)
        ]


def get_report(sessions: sessionmaker[Session], report_id: str) -> dict[str, Any]:
    with sessions() as session:
        row = MonitoringReportRepository(session).get(report_id)
        if row is None:
            raise NotFoundError(f"report {report_id!r} does not exist", field="report_id")
        return _report_dict(row, full=True)


@dataclass(frozen=True)
class LatestResult:
    """The latest stored result of one check kind of one model (for dashboards)."""

    result: Mapping[str, Any]
    at: float  # Unix time it was stored
    level: str


def latest_results(
    sessions: sessionmaker[Session], models: Sequence[str]
) -> dict[tuple[str, str], LatestResult]:
    """The latest stored result per (model, check kind) of ``models``."""
    found: dict[tuple[str, str], LatestResult] = {}
    with sessions() as session:
        repo = MonitoringReportRepository(session)
        for model in models:
            for kind in ALL_CHECKS:
                row = repo.latest(model, kind)
                if row is not None:
                    found[(model, kind)] = LatestResult(
                        row.result, row.created_at.timestamp(), row.level
                    )
    return found


def _report_dict(row: MonitoringReportRow, *, full: bool) -> dict[str, Any]:
    out = {
        "report_id": row.report_id,
        "model": row.model_name,
        "version": row.model_version,
        "kind": row.kind,
        "created_at": utc_text(row.created_at),
        "level": row.level,
        "n_current": row.n_current,
        "should_retrain": row.should_retrain,
        "triggered_by": row.triggered_by,
        "summary": row.summary,
        "window_start": utc_text(row.window_start) if row.window_start else None,
        "window_end": utc_text(row.window_end) if row.window_end else None,
    }
    if full:
        out["result"] = row.result
    return out


# -- alerts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Observation:
    """The level one check observed for one model, with the message an alert about it
    would carry (``details`` are listed as facts)."""

    model: str
    kind: AlertKind
    level: str
    title: str
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.model}:{self.kind}"


def raise_alert(
    ctx: AppContext, sessions: sessionmaker[Session], observed: Observation
) -> list[dict[str, Any]]:
    """Debounce ``observed.level`` for its key and notify what the episode tracker decides.

    Returns the delivery results (empty when alerts are disabled or nothing is sent).
    """
    settings = ctx.settings.alerts
    if not settings.enabled:
        return []
    key = observed.key
    with sessions() as session:
        repo = MonitorStateRepository(session)
        state = repo.get(ALERT_STATE_KEY)
        debounce = repo.get(f"hysteresis:{key}")
    # The observed level is debounced across windows (N of the last M) before it can raise
    # or clear an alert, so a level does not flap.
    previous = Hysteresis.from_dict(debounce or ctx.settings.monitor.hysteresis)
    smoothed = previous.update(observed.level)  # type: ignore[arg-type]
    tracker = build_tracker(settings, state)
    current = Alert(
        key=key,
        model=observed.model,
        kind=observed.kind,
        severity="critical" if smoothed.level == "critical" else "warning",
        title=observed.title,
        summary=observed.summary,
        at=datetime.now(UTC),
        details=dict(observed.details),
    )
    outcome = track_and_notify(tracker, ctx.alert_dispatcher, current, smoothed.level)
    with sessions.begin() as session:
        repo = MonitorStateRepository(session)
        repo.put(ALERT_STATE_KEY, tracker.to_dict())
        repo.put(f"hysteresis:{key}", smoothed.to_dict())
    return [r.to_dict() for r in outcome.results]


def send_alert_test(ctx: AppContext, channel: str | None = None) -> list[DeliveryResult]:
    """Send a test alert to one channel (configured, even if not selected) or to every
    selected channel (see :func:`creditops.alerts.dispatch.send_test_alert`)."""
    return send_test_alert(ctx.settings.alerts, channel)
