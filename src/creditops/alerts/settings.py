"""Alert channel settings (``CREDITOPS_ALERTS__...``): which channels are selected, the SMTP
server, the webhook URLs and the retry budget, with the validation that refuses a selected
channel that is not configured or a secret that is still a placeholder.

Secrets (SMTP password, webhook URLs, which embed a token, webhook headers) are
``SecretStr``. :mod:`creditops.settings` composes this section into the root settings.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

Channel = Literal["log", "email", "slack", "teams", "webhook"]
CHANNELS: tuple[str, ...] = get_args(Channel)

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
    if any(c in value for c in "\r\n\x00"):  # would start a new mail header
        raise ValueError("an e-mail address must not contain line breaks")
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


# Cloud metadata services: a webhook aimed at one would hand the service's credentials to
# whoever wrote the URL (server-side request forgery).
METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata",
        "169.254.169.254",
        "fd00:ec2::254",
        "100.100.100.200",
        "169.254.170.2",
    }
)


def forbidden_target(host: str) -> str | None:
    """Why a webhook must not go to ``host`` (a name or an address), or None.

    Refused: cloud metadata services, link-local, unspecified, multicast and reserved
    addresses. Loopback and private (RFC 1918, unique local) addresses are allowed: alert
    receivers often live on an internal network. ``alerts.allow_private_targets`` lifts
    the refusal (local development against odd set-ups).
    """
    name = host.strip("[]").lower().rstrip(".")
    if name in METADATA_HOSTS:
        return "a cloud metadata service"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None  # a host name: checked again, resolved, when a message is sent
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata service"
    if address.is_loopback:
        return None
    for label, bad in (
        ("a link-local", address.is_link_local),
        ("an unspecified", address.is_unspecified),
        ("a multicast", address.is_multicast),
        ("a reserved", address.is_reserved),
    ):
        if bad:
            return f"{label} address"
    return None


_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(h) for h in METADATA_HOSTS if h[0].isdigit() or ":" in h
)


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
    allow_private_targets: bool = Field(
        default=False,
        description="Let webhooks reach link-local, cloud-metadata, multicast and reserved "
        "addresses (refused by default: server-side request forgery). Loopback and "
        "private-network receivers are allowed either way.",
    )

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
    def _targets_allowed(self) -> AlertSettings:
        if self.allow_private_targets:
            return self
        for name in ("slack_webhook_url", "teams_webhook_url", "webhook_url"):
            url: SecretStr | None = getattr(self, name)
            host = urlsplit(url.get_secret_value()).hostname if url else None
            why = forbidden_target(host) if host else None
            if why:
                raise ValueError(f"{name} points at {why}; set allow_private_targets to allow it")
        return self

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
