"""Alert delivery: e-mail (SMTP), webhooks (Slack, Microsoft Teams, generic JSON) and a log
channel, their settings, and the glue between the episode tracker and the senders.

Delivery never raises to the caller: :meth:`AlertDispatcher.dispatch` returns one
:class:`DeliveryResult` per channel, and a failing channel never stops the others. Webhooks
are retried on connection errors, timeouts, 429 and 5xx with an exponential backoff that is
bounded both in attempts and in total time; e-mail is tried once (SMTP servers queue and
retry themselves, and a second attempt after an ambiguous failure could send it twice).

Secrets (SMTP password, webhook URLs, which embed a token, webhook headers) are
``SecretStr`` and never appear in error messages: a webhook error names only the host.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import smtplib
import ssl
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from creditops.errors import ConfigError, CreditopsError, InvalidInputError
from creditops.monitoring.alerts import (
    Action,
    ActionKind,
    Alert,
    AlertTracker,
    Level,
    Notification,
    generic_payload,
    headline,
    html_body,
    notification_for,
    slack_payload,
    subject,
    teams_payload,
    text_body,
)

if TYPE_CHECKING:  # httpx is imported when a webhook is sent: settings stay cheap to load
    import httpx

Channel = Literal["log", "email", "slack", "teams", "webhook"]
CHANNELS: tuple[str, ...] = get_args(Channel)
WebhookFlavor = Literal["slack", "teams", "generic"]

logger = logging.getLogger(__name__)
ALERT_LOGGER = "creditops.alerts"

# Values people leave in example configs; refusing them catches a config that was never
# filled in before it fails at 3 a.m. with an authentication error.
_PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "password",
        "passw0rd",
        "secret",
        "example",
        "placeholder",
        "todo",
        "xxx",
        "xxxx",
        "xxxxxx",
        "123456",
        "your-password",
        "yourpassword",
    }
)


class DeliveryError(CreditopsError):
    """One channel could not deliver a notification."""

    code = "delivery_failed"

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


@dataclass(frozen=True)
class DeliveryResult:
    channel: str
    ok: bool
    error: str | None = None
    attempts: int = 1
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- settings -----------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_placeholder(secret: str) -> bool:
    value = secret.strip().lower()
    templated = (value[:1], value[-1:]) in {("<", ">"), ("$", "}")}
    return not value or value in _PLACEHOLDER_SECRETS or templated


def _split_list(value: Any) -> Any:
    """A list from the environment: a JSON list or comma-separated items."""
    if not isinstance(value, str):
        return value
    if value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list: {exc}") from exc
    return [item.strip() for item in value.split(",") if item.strip()]


def _check_address(value: str) -> str:
    _, addr = parseaddr(value)
    if "@" not in addr or addr.startswith("@") or addr.endswith("@"):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


class EmailSettings(BaseModel):
    """SMTP delivery. ``use_tls`` = STARTTLS on a plain connection (port 587); ``use_ssl`` =
    TLS from the first byte (port 465)."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(default=None, description="SMTP server; None = e-mail not set up.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port (587 STARTTLS).")
    use_tls: bool = Field(default=True, description="Upgrade the connection with STARTTLS.")
    use_ssl: bool = Field(default=False, description="Implicit TLS (SMTPS, usually port 465).")
    username: str | None = Field(default=None, description="SMTP AUTH user (None = no AUTH).")
    password: SecretStr | None = Field(default=None, description="SMTP password.")
    from_addr: str = Field(default="creditops@localhost", description="Sender address.")
    to_addrs: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Recipients, comma-separated."
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="SMTP timeout.")
    ca_file: Path | None = Field(
        default=None, description="CA bundle to verify the server with (private CAs)."
    )
    allow_insecure_auth: bool = Field(
        default=False,
        description="Allow AUTH without TLS to a non-loopback server (sends the password "
        "in clear text).",
    )

    @field_validator("to_addrs", mode="before")
    @classmethod
    def _split_addrs(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("from_addr")
    @classmethod
    def _valid_from(cls, value: str) -> str:
        return _check_address(value)

    @field_validator("to_addrs")
    @classmethod
    def _valid_to(cls, value: list[str]) -> list[str]:
        return [_check_address(v) for v in value]

    @model_validator(mode="after")
    def _consistent(self) -> EmailSettings:
        if self.use_tls and self.use_ssl:
            raise ValueError("use_tls (STARTTLS) and use_ssl (implicit TLS) exclude each other")
        if (self.username is None) != (self.password is None):
            raise ValueError("SMTP AUTH needs both username and password")
        if self.password is not None:
            if _is_placeholder(self.password.get_secret_value()):
                raise ValueError("the SMTP password is empty or a placeholder; set the real one")
            insecure = not (self.use_tls or self.use_ssl)
            if (
                insecure
                and self.host
                and not _is_loopback(self.host)
                and not self.allow_insecure_auth
            ):
                raise ValueError(
                    "SMTP AUTH without TLS would send the password in clear text; enable "
                    "use_tls or use_ssl (or set allow_insecure_auth)"
                )
        return self

    @property
    def configured(self) -> bool:
        return bool(self.host and self.to_addrs)


def _check_url(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    parts = urlsplit(value.get_secret_value())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("a webhook URL must be an http(s) URL with a host")
    return value


class AlertSettings(BaseModel):
    """Where alerts go (``CREDITOPS_ALERTS__...``). ``channels`` may be a comma-separated
    string. A channel that is selected must be configured."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Master switch: false sends nothing.")
    # NoDecode: a comma-separated string from the environment is split by the validator below
    # instead of being parsed as JSON (a JSON list still works).
    channels: Annotated[list[Channel], NoDecode] = Field(
        default_factory=lambda: list[Channel](["log"]),
        description="Where alerts go: log, email, slack, teams, webhook (comma-separated).",
    )
    cooldown_hours: float = Field(
        default=6.0, ge=0, description="No repeat of the same alert key and severity within this."
    )
    email: EmailSettings = Field(default_factory=EmailSettings)
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="Slack incoming-webhook URL (a secret)."
    )
    teams_webhook_url: SecretStr | None = Field(
        default=None, description="Microsoft Teams incoming-webhook URL (a secret)."
    )
    webhook_url: SecretStr | None = Field(default=None, description="Generic JSON webhook.")
    webhook_headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra headers of the generic webhook (e.g. auth)."
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="Per webhook request.")
    max_attempts: int = Field(default=3, ge=1, le=10, description="Webhook attempts.")
    retry_backoff_s: float = Field(default=0.5, ge=0, le=30, description="First retry delay.")
    max_total_s: float = Field(default=30.0, gt=0, le=600, description="Webhook time budget.")

    @field_validator("channels", mode="before")
    @classmethod
    def _split_channels(cls, value: Any) -> Any:
        value = _split_list(value)
        if isinstance(value, list):
            value = [v.strip().lower() if isinstance(v, str) else v for v in value]
            return list(dict.fromkeys(value))
        return value

    @field_validator("slack_webhook_url", "teams_webhook_url", "webhook_url")
    @classmethod
    def _valid_url(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_url(value)

    @model_validator(mode="after")
    def _selected_are_configured(self) -> AlertSettings:
        if self.enabled:
            missing = [c for c in self.channels if not channel_configured(self, c)]
            if missing:
                raise ValueError(f"alert channels selected but not configured: {missing}")
        return self

    @property
    def cooldown(self) -> timedelta:
        return timedelta(hours=self.cooldown_hours)


def channel_configured(settings: AlertSettings, channel: str) -> bool:
    return {
        "log": True,
        "email": settings.email.configured,
        "slack": settings.slack_webhook_url is not None,
        "teams": settings.teams_webhook_url is not None,
        "webhook": settings.webhook_url is not None,
    }.get(channel, False)


# -- senders ------------------------------------------------------------------------------
class AlertSender(Protocol):
    channel: str

    def send(self, notification: Notification) -> int:
        """Deliver; return the number of attempts. Raise :class:`DeliveryError` on failure."""
        ...


class LogSender:
    """Writes every notification to the ``creditops.alerts`` logger at WARNING."""

    channel = "log"

    def __init__(self, logger_name: str = ALERT_LOGGER) -> None:
        self._log = logging.getLogger(logger_name)

    def send(self, notification: Notification) -> int:
        self._log.warning(
            "%s | %s | %s",
            subject(notification),
            headline(notification),
            notification.summary,
            extra={"alert": generic_payload(notification)},
        )
        return 1


class EmailSender:
    """Sends a multipart (plain text + HTML) message over SMTP with the standard library."""

    channel = "email"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        from_addr: str,
        to_addrs: Sequence[str],
        use_tls: bool = True,
        use_ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if use_tls and use_ssl:
            raise ConfigError("use_tls (STARTTLS) and use_ssl exclude each other.")
        if not to_addrs:
            raise ConfigError("E-mail alerts need at least one recipient.", field="to_addrs")
        self.host, self.port = host, port
        self.from_addr, self.to_addrs = from_addr, list(to_addrs)
        self.use_tls, self.use_ssl = use_tls, use_ssl
        self.username, self._password = username, password
        self.timeout_s = timeout_s
        self._ssl_context = ssl_context

    def message(self, notification: Notification) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = subject(notification)
        msg["From"] = self.from_addr
        msg["To"] = ", ".join(self.to_addrs)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain="creditops.alerts")
        msg["X-Creditops-Alert-Key"] = notification.key
        msg.set_content(text_body(notification))
        msg.add_alternative(html_body(notification), subtype="html")
        return msg

    def _connect(self, context: ssl.SSLContext) -> smtplib.SMTP:
        if self.use_ssl:
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=context)
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)

    def send(self, notification: Notification) -> int:
        msg = self.message(notification)
        context = self._ssl_context or ssl.create_default_context()
        where = f"SMTP {self.host}:{self.port}"
        try:
            with self._connect(context) as smtp:
                if self.use_tls:
                    smtp.starttls(context=context)
                if self.username is not None:
                    smtp.login(self.username, self._password or "")
                refused = smtp.send_message(msg, self.from_addr, self.to_addrs)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{where}: authentication failed ({exc.smtp_code})") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"{where}: {exc}") from exc
        except smtplib.SMTPResponseException as exc:
            reply = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else exc.smtp_error
            )
            raise DeliveryError(f"{where}: {exc.smtp_code} {reply}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}") from exc
        if refused:
            raise DeliveryError(f"{where}: recipients refused: {sorted(refused)}")
        return 1


_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S = 10.0


class WebhookSender:
    """POSTs the notification as JSON in the Slack, Teams or generic shape."""

    def __init__(
        self,
        url: str,
        flavor: WebhookFlavor = "generic",
        *,
        timeout_s: float = 10.0,
        headers: dict[str, str] | None = None,
        max_attempts: int = 3,
        backoff_s: float = 0.5,
        max_total_s: float = 30.0,
        channel: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("A webhook URL must be an http(s) URL with a host.", field="url")
        if max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1.", field="max_attempts")
        self._url = url
        self._host = parts.hostname
        self.flavor: WebhookFlavor = flavor
        self.channel = channel or ("webhook" if flavor == "generic" else flavor)
        self.timeout_s, self.max_attempts = timeout_s, max_attempts
        self.backoff_s, self.max_total_s = backoff_s, max_total_s
        self._headers = {"User-Agent": "creditops-alerts", **(headers or {})}

    def payload(self, notification: Notification) -> dict[str, Any]:
        if self.flavor == "slack":
            return slack_payload(notification)
        if self.flavor == "teams":
            return teams_payload(notification)
        return generic_payload(notification)

    def send(self, notification: Notification) -> int:
        import httpx

        body = json.dumps(self.payload(notification), allow_nan=False).encode()
        headers = {**self._headers, "Content-Type": "application/json"}
        deadline = time.monotonic() + self.max_total_s
        delay, attempt, last = self.backoff_s, 0, "no attempt"
        with httpx.Client(follow_redirects=False) as client:
            while True:
                attempt += 1
                remaining = deadline - time.monotonic()
                timeout = max(0.05, min(self.timeout_s, remaining))
                wait = delay
                try:
                    response = client.post(
                        self._url, content=body, headers=headers, timeout=timeout
                    )
                except httpx.TransportError as exc:  # connect errors, timeouts, resets
                    last = f"{type(exc).__name__}"
                else:
                    if response.is_success:
                        return attempt
                    last = f"HTTP {response.status_code}"
                    if response.status_code not in _RETRY_STATUSES:
                        break
                    wait = max(delay, _retry_after(response))
                if attempt >= self.max_attempts or time.monotonic() + wait >= deadline:
                    break
                time.sleep(wait)
                delay *= 2
        raise DeliveryError(
            f"webhook {self._host}: {last} after {attempt} attempt(s)", attempts=attempt
        )


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(_MAX_RETRY_AFTER_S, max(0.0, float(response.headers.get("Retry-After", "0"))))
    except ValueError:  # an HTTP date: not worth parsing for a bounded retry
        return 0.0


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
def build_sender(settings: AlertSettings, channel: str) -> AlertSender:
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
    return WebhookSender(
        url.get_secret_value(),
        flavor,
        timeout_s=settings.timeout_s,
        headers=headers,
        max_attempts=settings.max_attempts,
        backoff_s=settings.retry_backoff_s,
        max_total_s=settings.max_total_s,
    )


def _email_sender(settings: AlertSettings) -> EmailSender:
    email = settings.email
    assert email.host is not None
    context = None
    if email.use_tls or email.use_ssl:
        cafile = str(email.ca_file) if email.ca_file else None
        try:
            context = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"Cannot load the SMTP CA file: {exc}", field="ca_file") from exc
    return EmailSender(
        email.host,
        email.port,
        from_addr=email.from_addr,
        to_addrs=email.to_addrs,
        use_tls=email.use_tls,
        use_ssl=email.use_ssl,
        username=email.username,
        password=email.password.get_secret_value() if email.password else None,
        timeout_s=email.timeout_s,
        ssl_context=context,
    )


def build_dispatcher(settings: AlertSettings) -> AlertDispatcher:
    """A dispatcher over the selected channels (none when alerts are disabled)."""
    if not settings.enabled:
        return AlertDispatcher([])
    return AlertDispatcher([build_sender(settings, c) for c in settings.channels])


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
    dispatcher = AlertDispatcher([build_sender(settings, c) for c in channels])
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
