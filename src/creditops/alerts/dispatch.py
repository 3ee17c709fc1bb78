"""Alert dispatch: the senders of the selected channels built from
:class:`~creditops.alerts.settings.AlertSettings`, one notification sent through all of
them, and :func:`track_and_notify`, which asks the episode tracker what an observation calls
for and sends it.

Delivery never raises to the caller: :meth:`AlertDispatcher.dispatch` returns one
:class:`DeliveryResult` per channel, and a failing channel never stops the others.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from creditops.alerts.episodes import (
    Action,
    ActionKind,
    Alert,
    AlertTracker,
    Level,
    Notification,
    notification_for,
)
from creditops.alerts.senders import (
    AlertSender,
    DeliveryError,
    EmailSender,
    LogSender,
    RetryPolicy,
    WebhookFlavor,
    WebhookSender,
)
from creditops.alerts.settings import CHANNELS, AlertSettings, channel_configured
from creditops.errors import ConfigError, InvalidInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryResult:
    channel: str
    ok: bool
    error: str | None = None
    attempts: int = 1
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AlertDispatcher:
    """Sends one notification through every sender; never raises."""

    def __init__(self, senders: Sequence[AlertSender]) -> None:
        self.senders = list(senders)

    @property
    def channels(self) -> list[str]:
        return [s.channel for s in self.senders]

    def dispatch(self, notification: Notification) -> list[DeliveryResult]:
        results = []
        for sender in self.senders:
            start = time.monotonic()
            try:
                attempts = sender.send(notification)
            except DeliveryError as exc:
                result = DeliveryResult(sender.channel, False, exc.message, exc.attempts)
            except Exception as exc:  # a broken channel must never stop the others
                result = DeliveryResult(sender.channel, False, f"{type(exc).__name__}: {exc}")
            else:
                result = DeliveryResult(sender.channel, True, None, attempts)
            result = DeliveryResult(
                result.channel,
                result.ok,
                result.error,
                result.attempts,
                round(time.monotonic() - start, 4),
            )
            if not result.ok:
                logger.warning(
                    "alert %s via %s failed: %s", notification.key, result.channel, result.error
                )
            results.append(result)
        return results


# -- building from settings ---------------------------------------------------------------
def _build_sender(settings: AlertSettings, channel: str) -> AlertSender:
    """The sender of one channel; :class:`ConfigError` when it is not configured."""
    if channel not in CHANNELS:
        raise InvalidInputError(
            f"Unknown alert channel {channel!r}; expected one of {', '.join(CHANNELS)}.",
            field="channel",
        )
    if not channel_configured(settings, channel):
        raise ConfigError(f"Alert channel {channel!r} is not configured.", field="channel")
    if channel == "log":
        return LogSender()
    if channel == "email":
        return _email_sender(settings)
    url = {
        "slack": settings.slack_webhook_url,
        "teams": settings.teams_webhook_url,
        "webhook": settings.webhook_url,
    }[channel]
    assert url is not None  # channel_configured checked it
    headers = (
        {k: v.get_secret_value() for k, v in settings.webhook_headers.items()}
        if channel == "webhook"
        else {}
    )
    flavor: WebhookFlavor = "generic" if channel == "webhook" else channel  # type: ignore[assignment]
    retry = RetryPolicy(
        timeout_s=settings.timeout_s,
        max_attempts=settings.max_attempts,
        backoff_s=settings.retry_backoff_s,
        max_total_s=settings.max_total_s,
    )
    return WebhookSender(
        url.get_secret_value(),
        flavor,
        retry=retry,
        headers=headers,
        allow_private_targets=settings.allow_private_targets,
    )


def _email_sender(settings: AlertSettings) -> EmailSender:
    email = settings.email
    context = None
    if email.use_tls or email.use_ssl:
        cafile = str(email.ca_file) if email.ca_file else None
        try:
            context = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"Cannot load the SMTP CA file: {exc}", field="ca_file") from exc
    return EmailSender(email, context)


def build_dispatcher(settings: AlertSettings) -> AlertDispatcher:
    """A dispatcher over the selected channels (none when alerts are disabled)."""
    if not settings.enabled:
        return AlertDispatcher([])
    return AlertDispatcher([_build_sender(settings, c) for c in settings.channels])


def build_tracker(settings: AlertSettings, state: dict[str, Any] | None = None) -> AlertTracker:
    """A tracker with the configured cool-down, restored from a persisted state if given."""
    if state:
        return AlertTracker.from_dict(state, cooldown=settings.cooldown)
    return AlertTracker(settings.cooldown)


def send_test_alert(
    settings: AlertSettings, channel: str | None = None, *, model: str = "creditops"
) -> list[DeliveryResult]:
    """Send a test alert to one channel (configured, even if not selected) or, with
    ``channel=None``, to every selected channel. Disabled alerting is a ConfigError: the
    master switch also silences tests."""
    if not settings.enabled:
        raise ConfigError("Alerting is disabled (alerts.enabled = false).", field="enabled")
    channels = [channel] if channel is not None else list(settings.channels)
    dispatcher = AlertDispatcher([_build_sender(settings, c) for c in channels])
    now = datetime.now(UTC)
    alert = Alert(
        key=f"{model}:test",
        model=model,
        kind="test",
        severity="warning",
        title="Test alert",
        summary="This is a test of the creditops alert channels; no action is needed.",
        at=now,
        details={"channels": dispatcher.channels, "sent_at": now},
    )
    return dispatcher.dispatch(alert)


@dataclass(frozen=True)
class NotifyOutcome:
    action: Action
    notification: Notification | None
    results: list[DeliveryResult]
    recorded: bool


def track_and_notify(
    tracker: AlertTracker, dispatcher: AlertDispatcher, current: Alert, level: Level
) -> NotifyOutcome:
    """Observe ``current.key`` at ``level`` (time ``current.at``) and send what is due.

    The observation is recorded in the tracker unless a notification was due and every
    channel failed; then the state stays as it was, so the next window tries again.
    """
    action = tracker.decide(current.key, level, current.at)
    notification = notification_for(action, current)
    results = dispatcher.dispatch(notification) if notification is not None else []
    failed = bool(results) and not any(r.ok for r in results)
    if not failed:
        tracker.observe(current.key, level, current.at)
    if action.kind is ActionKind.SUPPRESSED:
        logger.info("alert %s held back by the cool-down", current.key)
    return NotifyOutcome(action, notification, results, recorded=not failed)
