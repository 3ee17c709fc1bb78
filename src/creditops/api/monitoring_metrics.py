"""Prometheus gauges of the latest stored monitoring checks.

The worker (or an API call) stores check results in the database; every API replica exports
the latest ones at scrape time through this collector, so dashboards and alert rules work
however many replicas and workers run. Reads are cached for ``ttl_s`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from creditops.monitoring.conditions import INSUFFICIENT
from creditops.services.monitoring import LatestResult

log = logging.getLogger("creditops.api")
LEVELS = {"ok": 0, "warning": 1, "critical": 2}
GAUGES = (  # name, help, labels
    ("creditops_drift_score", "Dataset drift score in [0, 1].", ["model"]),
    ("creditops_drifted_features", "Features drifted in the last check.", ["model"]),
    ("creditops_drift_level", "0 ok, 1 warning, 2 critical.", ["model"]),
    ("creditops_feature_psi", "PSI per feature.", ["model", "feature"]),
    ("creditops_window_approval_rate", "Approval rate of the checked window.", ["model"]),
    ("creditops_window_performance", "Metric over labelled decisions.", ["model", "metric"]),
    (
        "creditops_performance_drop_ratio",
        "Relative drop vs validation (0.05 = 5% worse).",
        ["model", "metric"],
    ),
    (
        "creditops_fairness_ratio",
        "Fairness ratios in production.",
        ["model", "attribute", "metric"],
    ),
    (
        "creditops_group_approval_rate",
        "Approval rate by protected group.",
        ["model", "attribute", "group"],
    ),
    (
        "creditops_last_check_timestamp_seconds",
        "Unix time of the last stored check.",
        ["model", "check"],
    ),
)
METRIC_NAMES = tuple(name for name, _, _ in GAUGES)
Gauges = dict[str, GaugeMetricFamily]
Latest = Callable[[], Mapping[tuple[str, str], LatestResult]]


class MonitoringCollector(Collector):
    """Exports the latest result of each (model, check kind) that ``latest`` returns."""

    def __init__(self, latest: Latest, ttl_s: float = 10.0) -> None:
        self._latest = latest
        self._ttl = ttl_s
        self._cache: tuple[float, Mapping[tuple[str, str], LatestResult]] = (-ttl_s, {})

    def _results(self) -> Mapping[tuple[str, str], LatestResult]:
        now = time.monotonic()
        if now - self._cache[0] >= self._ttl:
            self._cache = (now, self._latest())
        return self._cache[1]

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        g = {name: GaugeMetricFamily(name, doc, labels=labels) for name, doc, labels in GAUGES}
        try:
            latest = self._results()
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("monitoring gauges unavailable: %s", exc)
            latest = {}
        for (model, kind), item in latest.items():
            g["creditops_last_check_timestamp_seconds"].add_metric([model, kind], item.at)
            if item.level != INSUFFICIENT:  # too few rows: nothing judged, nothing to show
                _EXPORTERS[kind](g, model, item)
        yield from g.values()


def _data_drift(g: Gauges, model: str, item: LatestResult) -> None:
    result = item.result
    g["creditops_drift_score"].add_metric([model], float(result.get("drift_score", 0)))
    g["creditops_drifted_features"].add_metric([model], float(result.get("n_drifted", 0)))
    g["creditops_drift_level"].add_metric([model], LEVELS.get(item.level, 0))
    for feature in result.get("features", []):
        if feature.get("psi") is not None:
            g["creditops_feature_psi"].add_metric(
                [model, feature["feature"]], float(feature["psi"])
            )


def _prediction_drift(g: Gauges, model: str, item: LatestResult) -> None:
    rate = item.result.get("current_approval_rate")
    if rate is not None:
        g["creditops_window_approval_rate"].add_metric([model], float(rate))


def _performance(g: Gauges, model: str, item: LatestResult) -> None:
    for gauge, key in (
        ("creditops_window_performance", "current"),
        ("creditops_performance_drop_ratio", "drop_vs_validation"),
    ):
        for metric, value in (item.result.get(key) or {}).items():
            if value is not None:
                g[gauge].add_metric([model, metric], float(value))


def _fairness(g: Gauges, model: str, item: LatestResult) -> None:
    for attribute in item.result.get("attributes", []):
        name = attribute["attribute"]
        for metric in ("demographic_parity", "disparate_impact", "equal_opportunity"):
            value = attribute.get(f"{metric}_ratio")
            if value is not None:
                g["creditops_fairness_ratio"].add_metric([model, name, metric], float(value))
        for group in attribute.get("groups", []):
            if group.get("approval_rate") is not None:
                g["creditops_group_approval_rate"].add_metric(
                    [model, name, str(group["group"])], float(group["approval_rate"])
                )


_EXPORTERS: dict[str, Callable[[Gauges, str, LatestResult], Any]] = {
    "data_drift": _data_drift,
    "prediction_drift": _prediction_drift,
    "performance": _performance,
    "fairness": _fairness,
}


DEPLOYMENT_METRICS = (
    "creditops_deployment_state",
    "creditops_traffic_share",
    "creditops_deployment_gate_check",
)
STATE_CODES = {
    "pending": 0,
    "progressing": 1,
    "paused": 2,
    "succeeded": 3,
    "rolled_back": 4,
    "aborted": 5,
    "awaiting_approval": 6,
}


class DeploymentCollector(Collector):
    """Exports the latest deployment of each served model, as the store has it: its state,
    the traffic share of each version, and the gate checks of its last judged step. Reads
    are cached for ``ttl_s`` seconds."""

    def __init__(self, latest: Callable[[], list[dict[str, Any]]], ttl_s: float = 2.0) -> None:
        self._latest = latest
        self._ttl = ttl_s
        self._cached: list[dict[str, Any]] = []
        self._read_at = -1e9

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        if time.monotonic() - self._read_at > self._ttl:
            try:
                self._cached = self._latest()
            except Exception as exc:  # a scrape must not fail because the store is busy
                log.warning("deployment gauges not read: %s", exc)
            self._read_at = time.monotonic()
        state = GaugeMetricFamily(
            "creditops_deployment_state",
            "Latest deployment per model: 0 pending, 1 progressing, 2 paused, 3 succeeded, "
            "4 rolled back, 5 aborted, 6 awaiting approval.",
            labels=["model", "deployment_id", "strategy", "state"],
        )
        share = GaugeMetricFamily(
            "creditops_traffic_share",
            "Share of the answers given by each version of a model during its deployment.",
            labels=["model", "version", "arm"],
        )
        gate = GaugeMetricFamily(
            "creditops_deployment_gate_check",
            "The last judged canary step's checks: 1 passed, 0 failed.",
            labels=["model", "deployment_id", "step", "check"],
        )
        for d in self._cached:
            labels = [d["model"], d["deployment_id"], d["strategy"], d["state"]]
            state.add_metric(labels, STATE_CODES.get(d["state"], -1))
            active = d["state"] in ("pending", "progressing", "paused")
            if active and d["stable_version"] is not None and d["strategy"] != "shadow":
                share.add_metric(
                    [d["model"], d["stable_version"], "stable"], 1 - d["traffic_share"]
                )
                share.add_metric(
                    [d["model"], d["candidate_version"], "candidate"], d["traffic_share"]
                )
            judged = [h for h in d["history"] if h.get("checks")]
            if judged:
                last = judged[-1]
                for check in last["checks"]:
                    gate.add_metric(
                        [d["model"], d["deployment_id"], str(last.get("step", "")), check["name"]],
                        1.0 if check["passed"] else 0.0,
                    )
            elif active is False and d["history"]:
                evidence = d["history"][-1].get("evidence") or {}
                for check in evidence.get("checks", []):
                    gate.add_metric(
                        [
                            d["model"],
                            d["deployment_id"],
                            str(evidence.get("step", "")),
                            check["name"],
                        ],
                        1.0 if check["passed"] else 0.0,
                    )
        yield state
        yield share
        yield gate
