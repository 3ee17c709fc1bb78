"""Prometheus gauges of the event outbox (``docs/events.md``).

The backlog is read from the database at scrape time (cached for ``ttl_s``), so every API
replica exports the same numbers however many publishers run, and an alert fires on them
even when the publisher itself is down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from creditops.services.events import OutboxBacklog

log = logging.getLogger("creditops.api")
OUTBOX_METRICS = ("creditops_outbox_backlog", "creditops_outbox_publish_lag_seconds")


class OutboxCollector(Collector):
    """Exports the outbox backlog and the age of its oldest unsent event."""

    def __init__(self, backlog: Callable[[], OutboxBacklog], ttl_s: float = 5.0) -> None:
        self._backlog = backlog
        self._ttl = ttl_s
        self._cached: OutboxBacklog | None = None
        self._read_at = -1e9

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        if time.monotonic() - self._read_at > self._ttl:
            try:
                self._cached = self._backlog()
            except Exception as exc:  # a scrape must answer even when the database does not
                log.warning("outbox gauges not read: %s", exc)
                self._cached = None
            self._read_at = time.monotonic()
        if self._cached is None:
            return
        backlog = GaugeMetricFamily(
            "creditops_outbox_backlog",
            "Events committed to the outbox and not yet acknowledged by the broker.",
        )
        backlog.add_metric([], float(self._cached.events))
        lag = GaugeMetricFamily(
            "creditops_outbox_publish_lag_seconds",
            "Age of the oldest unsent event (0 when the outbox is drained).",
        )
        lag.add_metric([], self._cached.oldest_age_s)
        yield backlog
        yield lag
