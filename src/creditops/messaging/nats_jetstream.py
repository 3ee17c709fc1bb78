"""NATS JetStream as the event broker (``docs/events.md``).

:class:`JetStreamBroker` publishes one event at a time and waits for the stream's
acknowledgement, with the event id as ``Nats-Msg-Id``: JetStream drops a second message with
the same id within the stream's duplicate window, so a re-send after a lost acknowledgement
(a broker restart, a killed publisher) is stored once. The connection reconnects by itself;
a publish that cannot be acknowledged raises :class:`BrokerUnavailableError` and the caller
retries it (a connection lost for good is replaced on the next publish).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from creditops.errors import CreditopsError

__all__ = ["BrokerUnavailableError", "JetStreamBroker", "JetStreamConfig", "PublishAck"]

log = logging.getLogger(__name__)
MSG_ID_HEADER = "Nats-Msg-Id"


class BrokerUnavailableError(CreditopsError):
    """The broker did not acknowledge a message (unreachable, restarting, timed out)."""

    code = "broker_unavailable"


@dataclass(frozen=True)
class JetStreamConfig:
    """Where and how to publish: the servers, the stream and its subjects."""

    servers: list[str]
    stream: str
    subjects: list[str]
    create_stream: bool = True
    duplicate_window_s: float = 120.0
    timeout_s: float = 5.0


@dataclass(frozen=True)
class PublishAck:
    """The stream's acknowledgement: its sequence, and whether it was a duplicate id."""

    sequence: int
    duplicate: bool


class JetStreamBroker:
    """Publishes to a JetStream stream (created on first connect if configured so)."""

    def __init__(self, config: JetStreamConfig) -> None:
        self.config = config
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._stream_ready = False

    async def connect(self) -> None:
        """Connect (if not connected) and make sure the stream exists."""
        if self._nc is None or self._nc.is_closed:
            try:
                self._nc = await nats.connect(
                    servers=self.config.servers,
                    connect_timeout=2,
                    reconnect_time_wait=0.5,
                    # Bounded: a first connect to a server that is down fails after about
                    # 2 s (nats-py would retry it forever with -1); a connection that
                    # stays lost closes, and the next publish connects afresh.
                    max_reconnect_attempts=4,
                    allow_reconnect=True,
                    error_cb=_log_error,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=_log_reconnected,
                )
            except (OSError, nats.errors.Error) as exc:
                self._nc = None
                raise BrokerUnavailableError(f"NATS not reachable: {_describe(exc)}") from exc
            self._js = self._nc.jetstream(timeout=self.config.timeout_s)
            self._stream_ready = False
        if not self._stream_ready:
            await self._ensure_stream()
            self._stream_ready = True

    async def _ensure_stream(self) -> None:
        js = self._context()
        try:
            await js.stream_info(self.config.stream)
            return
        except nats.js.errors.NotFoundError:
            if not self.config.create_stream:
                raise BrokerUnavailableError(
                    f"JetStream stream {self.config.stream!r} does not exist "
                    "(events.create_stream is off)"
                ) from None
        except (OSError, nats.errors.Error) as exc:
            raise BrokerUnavailableError(f"JetStream not ready: {_describe(exc)}") from exc
        try:
            await js.add_stream(
                StreamConfig(
                    name=self.config.stream,
                    subjects=self.config.subjects,
                    storage=StorageType.FILE,
                    duplicate_window=self.config.duplicate_window_s,
                )
            )
        except (OSError, nats.errors.Error) as exc:
            raise BrokerUnavailableError(f"cannot create the stream: {_describe(exc)}") from exc
        log.info("created JetStream stream %s (%s)", self.config.stream, self.config.subjects)

    async def publish(
        self, subject: str, payload: bytes, *, msg_id: str, headers: dict[str, str]
    ) -> PublishAck:
        """Publish one message and wait for the stream's acknowledgement."""
        await self.connect()
        try:
            ack = await self._context().publish(
                subject,
                payload,
                timeout=self.config.timeout_s,
                stream=self.config.stream,
                headers={**headers, MSG_ID_HEADER: msg_id},
            )
        except (OSError, nats.errors.Error) as exc:  # timeouts, no responders, API errors
            if isinstance(exc, nats.js.errors.NotFoundError):
                self._stream_ready = False
            raise BrokerUnavailableError(f"publish to {subject} failed: {_describe(exc)}") from exc
        return PublishAck(sequence=int(ack.seq), duplicate=bool(ack.duplicate))

    async def _disconnected(self) -> None:
        if self._nc is not None:  # not when we close it ourselves
            log.warning("NATS: disconnected; reconnecting")

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.close()
            except Exception:  # closing a broken connection: nothing left to save
                log.debug("closing the NATS connection failed", exc_info=True)

    def _context(self) -> JetStreamContext:
        if self._js is None:
            raise BrokerUnavailableError("not connected to NATS")
        return self._js


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _log_error(exc: Exception) -> None:
    log.warning("NATS: %s", _describe(exc))


async def _log_reconnected() -> None:
    log.info("NATS: reconnected")
