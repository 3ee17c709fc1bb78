"""Alert senders: one class per delivery channel (log, e-mail over SMTP, webhooks over HTTP
in the Slack, Microsoft Teams or generic JSON shape), each raising :class:`DeliveryError`
when it cannot deliver.

Webhooks are retried on connection errors, timeouts, 429 and 5xx with an exponential backoff
that is bounded both in attempts and in total time; e-mail is tried once (SMTP servers queue
and retry themselves, and a second attempt after an ambiguous failure could send it twice).
Secrets never appear in error messages: a webhook error names only the host. This is the
only module of creditops that speaks SMTP or HTTP to the outside.
"""

from __future__ import annotations

import json
import logging
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

from creditops.alerts.episodes import Notification
from creditops.alerts.messages import (
    generic_payload,
    headline,
    html_body,
    slack_payload,
    subject,
    teams_payload,
    text_body,
)
from creditops.alerts.settings import EmailSettings, forbidden_target
from creditops.errors import ConfigError, CreditopsError

if TYPE_CHECKING:  # httpx is imported when a webhook is sent: importing senders stays cheap
    import httpx

WebhookFlavor = Literal["slack", "teams", "generic"]
ALERT_LOGGER = "creditops.alerts"


class DeliveryError(CreditopsError):
    """One channel could not deliver a notification."""

    code = "delivery_failed"

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


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
    """Sends a multipart (plain text + HTML) message over SMTP with the standard library,
    to the server and recipients of an :class:`~creditops.alerts.settings.EmailSettings`."""

    channel = "email"

    def __init__(self, settings: EmailSettings, ssl_context: ssl.SSLContext | None = None) -> None:
        if not settings.host:
            raise ConfigError("E-mail alerts need an SMTP host.", field="host")
        if not settings.to_addrs:
            raise ConfigError("E-mail alerts need at least one recipient.", field="to_addrs")
        self.host, self.port = settings.host, settings.port
        self.from_addr, self.to_addrs = settings.from_addr, list(settings.to_addrs)
        self.use_tls, self.use_ssl = settings.use_tls, settings.use_ssl
        self.username = settings.username
        self._password = settings.password.get_secret_value() if settings.password else None
        self.timeout_s = settings.timeout_s
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


@dataclass(frozen=True)
class RetryPolicy:
    """How a webhook is retried: at most ``max_attempts`` attempts and ``max_total_s``
    seconds in all, each attempt waiting ``timeout_s`` at most, the first retry after
    ``backoff_s`` (doubled each time, or the server's ``Retry-After`` up to 10 s)."""

    timeout_s: float = 10.0
    max_attempts: int = 3
    backoff_s: float = 0.5
    max_total_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1.", field="max_attempts")


class WebhookSender:
    """POSTs the notification as JSON in the Slack, Teams or generic shape."""

    def __init__(
        self,
        url: str,
        flavor: WebhookFlavor = "generic",
        *,
        retry: RetryPolicy | None = None,
        headers: dict[str, str] | None = None,
        allow_private_targets: bool = False,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("A webhook URL must be an http(s) URL with a host.", field="url")
        self._url = url
        self._host = parts.hostname
        self.flavor: WebhookFlavor = flavor
        self.channel: str = "webhook" if flavor == "generic" else flavor
        self.retry = retry or RetryPolicy()
        self._headers = {"User-Agent": "creditops-alerts", **(headers or {})}
        self._allow_private = allow_private_targets

    def payload(self, notification: Notification) -> dict[str, Any]:
        if self.flavor == "slack":
            return slack_payload(notification)
        if self.flavor == "teams":
            return teams_payload(notification)
        return generic_payload(notification)

    def _check_target(self) -> None:
        """Refuse a host that is, or resolves to, an address webhooks must not reach (see
        :func:`~creditops.alerts.settings.forbidden_target`)."""
        if self._allow_private:
            return
        why = forbidden_target(self._host)
        if why is None:
            try:
                infos = socket.getaddrinfo(self._host, None, proto=socket.IPPROTO_TCP)
            except OSError:
                return  # unresolvable: the request fails with a connect error and is retried
            addresses = {str(info[4][0]) for info in infos}
            why = next((w for w in map(forbidden_target, sorted(addresses)) if w), None)
        if why:
            raise DeliveryError(f"webhook {self._host}: refused, it points at {why}")

    def send(self, notification: Notification) -> int:
        import httpx

        self._check_target()
        body = json.dumps(self.payload(notification), allow_nan=False).encode()
        headers = {**self._headers, "Content-Type": "application/json"}
        retry = self.retry
        deadline = time.monotonic() + retry.max_total_s
        delay, attempt, last = retry.backoff_s, 0, "no attempt"
        with httpx.Client(follow_redirects=False) as client:
            while True:
                attempt += 1
                remaining = deadline - time.monotonic()
                timeout = max(0.05, min(retry.timeout_s, remaining))
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
                if attempt >= retry.max_attempts or time.monotonic() + wait >= deadline:
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
