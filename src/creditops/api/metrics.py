"""Prometheus metrics of the decision service.

Names follow Prometheus conventions: ``creditops_`` prefix, base units (seconds), ``_total``
for counters. With several worker processes, set ``PROMETHEUS_MULTIPROC_DIR`` (``creditops
serve --workers N`` does) and /metrics aggregates every process's values.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from creditops.services.decisions import DecisionResult

M = TypeVar("M", bound=MetricWrapperBase)
APPROVAL_WINDOW = 1000  # decisions behind creditops_approval_rate (per process)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
PD_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
SCORE_BUCKETS = tuple(float(s) for s in range(300, 901, 25))


@dataclass
class ServiceMetrics:
    registry: CollectorRegistry
    requests: Counter
    request_seconds: Histogram
    predictions: Counter
    pd: Histogram
    score: Histogram
    approval_rate: Gauge
    log_queue_depth: Gauge
    log_commit_seconds: Histogram
    log_batch_size: Histogram
    model_info: Gauge
    errors: Counter
    reviews: Counter
    overrides: Counter
    suspended: Gauge
    extra: list[Collector] = field(default_factory=list)
    _children: dict[tuple[int, tuple[str, ...]], Any] = field(default_factory=dict)
    _recent: dict[str, deque[bool]] = field(default_factory=dict)
    _approved: dict[str, int] = field(default_factory=dict)  # approvals in _recent

    def child(self, metric: M, *labels: str) -> M:
        """``metric.labels(*labels)``, cached: the hot path calls this several times per
        request and ``labels()`` validates and locks every time. Not for metrics that are
        ever ``clear()``-ed (their children would be stale)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return cast(M, found)

    def observe_decisions(self, results: Sequence[DecisionResult]) -> None:
        """Count decisions, their PD and score, and the approval share of the last
        :data:`APPROVAL_WINDOW` decisions per model."""
        for r in results:
            self.child(self.predictions, r.model_name, r.model_version, r.decision).inc()
            self.child(self.pd, r.model_name).observe(r.pd)
            self.child(self.score, r.model_name).observe(r.score)
            window = self._recent.setdefault(r.model_name, deque(maxlen=APPROVAL_WINDOW))
            approved = r.decision == "approve"
            # keep a running count instead of summing the window on every request
            dropped = window[0] if len(window) == APPROVAL_WINDOW else False
            self._approved[r.model_name] = (
                self._approved.get(r.model_name, 0) + int(approved) - int(dropped)
            )
            window.append(approved)
        for name in {r.model_name for r in results}:
            window = self._recent[name]
            self.child(self.approval_rate, name).set(self._approved[name] / len(window))

    def add_collector(self, collector: Collector) -> None:
        """A collector exported in every mode (e.g. the stored monitoring results)."""
        self.extra.append(collector)
        self.registry.register(collector)

    def render(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            for collector in self.extra:
                registry.register(collector)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def build_metrics() -> ServiceMetrics:
    r = CollectorRegistry(auto_describe=True)
    metrics = ServiceMetrics(
        registry=r,
        requests=Counter(
            "creditops_http_requests_total",
            "HTTP requests.",
            ["route", "method", "status"],
            registry=r,
        ),
        request_seconds=Histogram(
            "creditops_http_request_duration_seconds",
            "HTTP request latency.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        ),
        predictions=Counter(
            "creditops_predictions_total",
            "Decisions returned.",
            ["model", "version", "decision"],
            registry=r,
        ),
        pd=Histogram(
            "creditops_pd",
            "Predicted probability of default.",
            ["model"],
            buckets=PD_BUCKETS,
            registry=r,
        ),
        score=Histogram(
            "creditops_score_points", "Score points.", ["model"], buckets=SCORE_BUCKETS, registry=r
        ),
        approval_rate=Gauge(
            "creditops_approval_rate",
            "Approval share of the last 1,000 decisions (per process).",
            ["model"],
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        log_queue_depth=Gauge(
            "creditops_decision_log_queue_depth",
            "Decisions waiting for their group commit.",
            registry=r,
            multiprocess_mode="livesum",
        ),
        log_commit_seconds=Histogram(
            "creditops_decision_log_commit_duration_seconds",
            "Group commit latency.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        ),
        log_batch_size=Histogram(
            "creditops_decision_log_batch_size",
            "Decisions per group commit.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        ),
        model_info=Gauge(
            "creditops_model_info",
            "Loaded model versions (value 1).",
            ["model", "version", "bundle_sha256", "route"],
            registry=r,
            multiprocess_mode="max",
        ),
        errors=Counter("creditops_errors_total", "Errors by type.", ["type"], registry=r),
        reviews=Counter(
            "creditops_reviews_total", "Manual review outcomes recorded.", ["model"], registry=r
        ),
        overrides=Counter(
            "creditops_review_overrides_total",
            "Reviews that overrode the model's decision.",
            ["model"],
            registry=r,
        ),
        suspended=Gauge(
            "creditops_model_suspended",
            "1 while automated decisioning is suspended.",
            ["model"],
            registry=r,
            multiprocess_mode="max",
        ),
    )
    # CPU and memory of the answering process (process_cpu_seconds_total, ...)
    metrics.add_collector(ProcessCollector(registry=None))
    return metrics
