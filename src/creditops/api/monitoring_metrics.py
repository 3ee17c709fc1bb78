"""Prometheus gauges of the latest stored monitoring checks.

The worker (or an API call) stores check results in the database; every API replica exports
the latest ones at scrape time through this collector, so dashboards and alert rules work
however many replicas and workers run. Reads are cached for ``ttl_s`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from creditops.store.monitoring_repositories import MonitoringReportRepository

LEVELS = {"ok": 0, "warning": 1, "critical": 2}
METRIC_NAMES = (
    "creditops_drift_score",
    "creditops_drifted_features",
    "creditops_drift_level",
    "creditops_feature_psi",
    "creditops_window_approval_rate",
    "creditops_window_performance",
    "creditops_performance_drop_ratio",
    "creditops_fairness_ratio",
    "creditops_group_approval_rate",
    "creditops_last_check_timestamp_seconds",
)
KINDS = ("data_drift", "prediction_drift", "performance", "fairness")


class MonitoringCollector(Collector):
    def __init__(
        self, sessions: sessionmaker[Session], models: Callable[[], list[str]], ttl_s: float = 10.0
    ) -> None:
        self._sessions = sessions
        self._models = models
        self._ttl = ttl_s
        self._cache: tuple[float, dict[tuple[str, str], dict[str, Any]]] = (0.0, {})

    def _latest(self) -> dict[tuple[str, str], dict[str, Any]]:
        now = time.monotonic()
        if now - self._cache[0] < self._ttl:
            return self._cache[1]
        found: dict[tuple[str, str], dict[str, Any]] = {}
        with self._sessions() as session:
            repo = MonitoringReportRepository(session)
            for model in self._models():
                for kind in KINDS:
                    row = repo.latest(model, kind)
                    if row is not None:
                        found[(model, kind)] = {
                            "result": row.result,
                            "at": row.created_at.timestamp(),
                            "level": row.level,
                        }
        self._cache = (now, found)
        return found

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        g = {
            name: GaugeMetricFamily(name, doc, labels=labels)
            for name, doc, labels in (
                ("creditops_drift_score", "Dataset drift score in [0, 1].", ["model"]),
                ("creditops_drifted_features", "Features drifted in the last check.", ["model"]),
                ("creditops_drift_level", "0 ok, 1 warning, 2 critical.", ["model"]),
                ("creditops_feature_psi", "PSI per feature.", ["model", "feature"]),
                (
                    "creditops_window_approval_rate",
                    "Approval rate of the checked window.",
                    ["model"],
                ),
                (
                    "creditops_window_performance",
                    "Metric over labelled decisions.",
                    ["model", "metric"],
                ),
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
        }
        try:
            latest = self._latest()
        except Exception:
            latest = {}
        for (model, kind), item in latest.items():
            result = item["result"]
            g["creditops_last_check_timestamp_seconds"].add_metric([model, kind], item["at"])
            if kind == "data_drift":
                g["creditops_drift_score"].add_metric([model], float(result.get("drift_score", 0)))
                g["creditops_drifted_features"].add_metric(
                    [model], float(result.get("n_drifted", 0))
                )
                g["creditops_drift_level"].add_metric([model], LEVELS.get(item["level"], 0))
                for feature in result.get("features", []):
                    if feature.get("psi") is not None:
                        g["creditops_feature_psi"].add_metric(
                            [model, feature["feature"]], float(feature["psi"])
                        )
            elif kind == "prediction_drift":
                rate = result.get("current_approval_rate")
                if rate is not None:
                    g["creditops_window_approval_rate"].add_metric([model], float(rate))
            elif kind == "performance":
                for metric, value in (result.get("current") or {}).items():
                    if value is not None:
                        g["creditops_window_performance"].add_metric([model, metric], float(value))
                for metric, value in (result.get("drop_vs_validation") or {}).items():
                    if value is not None:
                        g["creditops_performance_drop_ratio"].add_metric(
                            [model, metric], float(value)
                        )
            elif kind == "fairness":
                for attribute in result.get("attributes", []):
                    name = attribute["attribute"]
                    for metric in ("demographic_parity", "disparate_impact", "equal_opportunity"):
                        value = attribute.get(f"{metric}_ratio")
                        if value is not None:
                            g["creditops_fairness_ratio"].add_metric(
                                [model, name, metric], float(value)
                            )
                    for group in attribute.get("groups", []):
                        if group.get("approval_rate") is not None:
                            g["creditops_group_approval_rate"].add_metric(
                                [model, name, str(group["group"])], float(group["approval_rate"])
                            )
        yield from g.values()
