"""Events for downstream systems: the outbox the use cases write, and its publisher.

Every committed decision (and outcome, review override, deployment change) has an event
row in ``event_outbox``, written in the same transaction as the change (decisions by the
decision log's group commit; the others through :func:`record_event`). The
:class:`OutboxPublisher` (run by ``creditops worker`` or ``creditops publish``) sends them:

1. read up to ``events.batch_size`` unsent events in ``id`` order;
2. publish them, each model's events one after the other (one in flight per model, so a
   model's events reach the stream in ``id`` order; models in parallel), each with its
   event id as the broker's de-duplication id, waiting for every acknowledgement;
3. mark the acknowledged ones sent, in one transaction.

A broker error stops that model's lane for this pass (what was acknowledged is still
marked), and the publisher backs off (doubling up to ``events.retry_max_s``) and retries
from the first unacknowledged event. A publisher killed between 2 and 3 re-sends those
events; the broker drops them within its duplicate window and consumers drop any later
repeat by event id: delivery is at least once, effectively once for an idempotent consumer.
Only one publisher pass runs at a time (``hold``: the worker's lock), so two publishers
never interleave a model's events. See ``docs/events.md``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from creditops.messaging.nats_jetstream import (
    BrokerUnavailableError,
    JetStreamBroker,
    JetStreamConfig,
    PublishAck,
)
from creditops.settings import EventSettings
from creditops.store.outbox import (
    DECISION_CREATED,
    DECISION_OVERRIDDEN,
    DEPLOYMENT_CHANGED,
    OUTCOME_RECORDED,
    OutboxBacklog,
    OutboxRepository,
    PendingEvent,
    event_document,
)

__all__ = [
    "BrokerUnavailableError",
    "EventBroker",
    "OutboxBacklog",
    "OutboxPublisher",
    "PassResult",
    "PublishSummary",
    "jetstream_broker",
    "outbox_backlog",
    "record_event",
    "subject_for",
]

log = logging.getLogger(__name__)

SUBJECT_KINDS = {
    DECISION_CREATED: "decisions",
    DECISION_OVERRIDDEN: "reviews",
    OUTCOME_RECORDED: "outcomes",
    DEPLOYMENT_CHANGED: "deployments",
}
_NOT_IN_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
PURGE_EVERY_S = 600.0


class EventBroker(Protocol):
    """What the publisher needs of a broker (:class:`JetStreamBroker` in production)."""

    async def connect(self) -> None: ...

    async def publish(
        self, subject: str, payload: bytes, *, msg_id: str, headers: dict[str, str]
    ) -> PublishAck: ...

    async def close(self) -> None: ...


def subject_for(prefix: str, event_type: str, model: str) -> str:
    """``<prefix>.<kind>.<model>``; characters a subject token cannot hold become ``_``."""
    return f"{prefix}.{SUBJECT_KINDS[event_type]}.{_NOT_IN_TOKEN.sub('_', model) or '_'}"


def jetstream_broker(settings: EventSettings) -> JetStreamBroker:
    """The NATS JetStream broker the settings describe."""
    return JetStreamBroker(
        JetStreamConfig(
            servers=[s.strip() for s in settings.nats_url.split(",") if s.strip()],
            stream=settings.stream,
            subjects=[f"{settings.subject_prefix}.>"],
            create_stream=settings.create_stream,
            duplicate_window_s=settings.duplicate_window_s,
            timeout_s=settings.publish_timeout_s,
        )
    )


def record_event(  # noqa: PLR0913 - the session and the event's fields
    session: Session,
    settings: EventSettings,
    *,
    event_type: str,
    model: str,
    version: str | None,
    data: dict[str, Any],
    occurred_at: datetime | None = None,
) -> None:
    """Add an event to the outbox in the caller's transaction (nothing when events are off)."""
    if not settings.enabled:
        return
    event = event_document(
        event_type=event_type,
        model=model,
        version=version,
        occurred_at=occurred_at or datetime.now(UTC),
        data=data,
    )
    OutboxRepository(session).add([event])


def outbox_backlog(sessions: sessionmaker[Session]) -> OutboxBacklog:
    """Unsent events and the age of the oldest (the Prometheus gauges)."""
    with sessions() as session:
        return OutboxRepository(session).backlog()


@dataclass
class PassResult:
    """What one publisher pass did."""

    read: int = 0
    published: int = 0
    duplicates: int = 0
    error: str | None = None
    leader: bool = True


@dataclass
class PublishSummary:
    """What a publisher run did (``creditops publish --json``)."""

    published: int = 0
    duplicates: int = 0
    passes: int = 0
    errors: int = 0
    backlog: int = 0
    lag_seconds: float = 0.0
    last_error: str | None = None
    purged: int = field(default=0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Hold = Callable[[], AbstractContextManager[bool]]


class OutboxPublisher:
    """Sends the outbox to the broker (see the module docstring).

    Args:
        sessions: writable sessions of the service store.
        broker: where events go.
        settings: the ``events`` settings (batch size, back-off, retention of sent rows).
        hold: context manager that yields whether this process may publish now (the
            worker's single-publisher lock); default: always.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        broker: EventBroker,
        settings: EventSettings,
        *,
        hold: Hold | None = None,
    ) -> None:
        self._sessions = sessions
        self._broker = broker
        self._settings = settings
        self._hold: Hold = hold or (lambda: nullcontext(True))
        self._purged_at = time.monotonic()

    async def publish_pass(self) -> PassResult:
        """One read-publish-mark pass; never raises for a broker error (see ``error``)."""
        with self._hold() as leader:
            if not leader:
                return PassResult(leader=False)
            events = await asyncio.to_thread(self._read)
            result = PassResult(read=len(events))
            if not events:
                return result
            try:
                await self._broker.connect()
            except BrokerUnavailableError as exc:
                result.error = exc.message
                return result
            lanes: dict[str, list[PendingEvent]] = {}
            for event in events:
                lanes.setdefault(event.model_name, []).append(event)
            outcomes = await asyncio.gather(*(self._publish_lane(lane) for lane in lanes.values()))
            sent: list[int] = []
            for acked, duplicates, error in outcomes:
                sent.extend(acked)
                result.duplicates += duplicates
                result.published += len(acked) - duplicates
                result.error = result.error or error
            if sent:
                await asyncio.to_thread(self._mark_sent, sent)
            return result

    async def _publish_lane(
        self, events: Sequence[PendingEvent]
    ) -> tuple[list[int], int, str | None]:
        """One model's events in order, one in flight: (acknowledged ids, duplicates, error)."""
        acked: list[int] = []
        duplicates = 0
        prefix = self._settings.subject_prefix
        for event in events:
            try:
                ack = await self._broker.publish(
                    subject_for(prefix, event.event_type, event.model_name),
                    event.payload.encode(),
                    msg_id=event.event_id,
                    headers={
                        "Creditops-Sequence": str(event.id),
                        "Creditops-Event-Type": event.event_type,
                        "Creditops-Schema": event.schema_version,
                    },
                )
            except BrokerUnavailableError as exc:
                return acked, duplicates, exc.message
            acked.append(event.id)
            duplicates += int(ack.duplicate)
        return acked, duplicates, None

    async def run(self, stop: threading.Event, *, once: bool = False) -> PublishSummary:
        """Publish until ``stop`` is set. With ``once``: until the outbox is empty, and a
        broker error raises :class:`BrokerUnavailableError` instead of being retried."""
        summary = PublishSummary()
        backoff = 0.1
        try:
            while not stop.is_set():
                result = await self.publish_pass()
                summary.passes += 1
                summary.published += result.published
                summary.duplicates += result.duplicates
                if result.error is not None:
                    summary.errors += 1
                    summary.last_error = result.error
                    if once:
                        raise BrokerUnavailableError(result.error)
                    log.warning(
                        "publishing events failed (retry in %.1fs): %s", backoff, result.error
                    )
                    await _wait(stop, backoff)
                    backoff = min(backoff * 2, self._settings.retry_max_s)
                    continue
                backoff = 0.1
                summary.purged += await self._purge_due()
                if result.read < self._settings.batch_size or not result.leader:
                    if once:
                        break
                    await _wait(stop, self._settings.poll_interval_s)
        finally:
            await self._broker.close()
        backlog = await asyncio.to_thread(outbox_backlog, self._sessions)
        summary.backlog, summary.lag_seconds = backlog.events, round(backlog.oldest_age_s, 3)
        return summary

    async def _purge_due(self) -> int:
        if time.monotonic() - self._purged_at < PURGE_EVERY_S:
            return 0
        self._purged_at = time.monotonic()
        return await asyncio.to_thread(self._purge)

    # -- database work, on a thread -----------------------------------------------------
    def _read(self) -> list[PendingEvent]:
        with self._sessions() as session:
            return OutboxRepository(session).unsent(self._settings.batch_size)

    def _mark_sent(self, ids: list[int]) -> None:
        with self._sessions.begin() as session:
            OutboxRepository(session).mark_sent(ids)

    def _purge(self) -> int:
        cutoff = datetime.now(UTC) - timedelta(hours=self._settings.keep_sent_hours)
        with self._sessions.begin() as session:
            return OutboxRepository(session).purge_sent(cutoff)


async def _wait(stop: threading.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        await asyncio.sleep(min(remaining, 0.05))
