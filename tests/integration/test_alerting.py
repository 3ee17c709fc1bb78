"""Alerting: the episode tracker (pure, table-driven), the message formats, and delivery to
REAL local servers on 127.0.0.1: an aiosmtpd SMTP server (plain, AUTH, STARTTLS with a
self-signed certificate) and an ``http.server`` webhook receiver that can answer with
scripted status codes or stall.
"""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import json
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditops.alerts.dispatch import (
    AlertDispatcher,
    build_dispatcher,
    build_tracker,
    send_test_alert,
    track_and_notify,
)
from creditops.alerts.episodes import (
    ActionKind,
    Alert,
    AlertTracker,
    Level,
    Resolution,
    notification_for,
)
from creditops.alerts.messages import (
    detail_lines,
    generic_payload,
    html_body,
    slack_payload,
    subject,
    teams_payload,
    text_body,
)
from creditops.alerts.senders import (
    ALERT_LOGGER,
    AlertSender,
    EmailSender,
    LogSender,
    RetryPolicy,
    WebhookSender,
)
from creditops.alerts.settings import AlertSettings, EmailSettings
from creditops.errors import ConfigError, InvalidInputError

HOST = "127.0.0.1"
T0 = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)
DETAILS = {
    "drifted_features": {"LIMIT_BAL": 0.3127, "PAY_0": 0.2841},
    "psi_threshold": 0.25,
    "window": "2026-02-23..2026-03-01",
}


def hours(h: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=h)


def make_alert(at: dt.datetime = T0, **overrides: Any) -> Alert:
    values: dict[str, Any] = {
        "key": "taiwan:data_drift",
        "model": "taiwan",
        "kind": "data_drift",
        "severity": "warning",
        "title": "Data drift",
        "summary": "2 of 23 features drifted (PSI above 0.25).",
        "at": at,
        "details": DETAILS,
        "report_url": "http://reports.local/taiwan/drift/2026-03-01.html",
    }
    values.update(overrides)
    return Alert(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# -- tracker (pure) -----------------------------------------------------------------------
N, F, R, S = ActionKind.NONE, ActionKind.FIRE, ActionKind.RESOLVE, ActionKind.SUPPRESSED
# (hour, observed level, expected action, expected severity of the action)
TRACKER_CASES = {
    "quiet": [(0, "ok", N, None), (1, "ok", N, None)],
    "one_episode_many_windows": [
        (0, "ok", N, None),
        (1, "warning", F, "warning"),
        (2, "warning", N, "warning"),
        (3, "warning", N, "warning"),
        (4, "ok", R, "warning"),
        (5, "ok", N, None),
    ],
    "escalation_once_then_deescalation_silent": [
        (0, "warning", F, "warning"),
        (1, "critical", F, "critical"),
        (2, "critical", N, "critical"),
        (3, "warning", N, "critical"),
        (4, "critical", N, "critical"),
        (5, "ok", R, "critical"),
    ],
    "straight_to_critical": [(0, "critical", F, "critical"), (1, "warning", N, "critical")],
    "flap_within_cooldown_is_silent": [
        (0, "warning", F, "warning"),
        (1, "ok", R, "warning"),
        (2, "warning", S, "warning"),
        (3, "ok", N, None),
        (4, "warning", S, "warning"),
        (5, "ok", N, None),
    ],
    "lower_severity_within_cooldown_of_higher": [
        (0, "critical", F, "critical"),
        (1, "ok", R, "critical"),
        (2, "warning", S, "warning"),
        (3, "critical", S, "critical"),
    ],
    "escalation_beyond_recent_alert_fires": [
        (0, "warning", F, "warning"),
        (1, "ok", R, "warning"),
        (2, "warning", S, "warning"),
        (3, "critical", F, "critical"),
        (4, "ok", R, "critical"),
    ],
    "held_back_episode_fires_when_cooldown_ends": [
        (0, "warning", F, "warning"),
        (1, "ok", R, "warning"),
        (2, "warning", S, "warning"),
        (5.9, "warning", S, "warning"),
        (6, "warning", F, "warning"),
        (7, "warning", N, "warning"),
        (8, "ok", R, "warning"),
    ],
    "new_episode_after_cooldown": [
        (0, "warning", F, "warning"),
        (1, "ok", R, "warning"),
        (7, "warning", F, "warning"),
    ],
}


def run_case(
    tracker: AlertTracker, steps: list[tuple[float, str, ActionKind, str | None]]
) -> list[tuple[ActionKind, str | None]]:
    return [
        (a.kind, a.severity)
        for a in (tracker.observe("m:data_drift", lvl, hours(h)) for h, lvl, *_ in steps)  # type: ignore[arg-type]
    ]


@pytest.mark.unit
@pytest.mark.parametrize("steps", TRACKER_CASES.values(), ids=TRACKER_CASES.keys())
def test_tracker_episodes(steps: list[tuple[float, str, ActionKind, str | None]]) -> None:
    assert run_case(AlertTracker(), steps) == [(kind, sev) for _, _, kind, sev in steps]


@pytest.mark.unit
@pytest.mark.parametrize("steps", TRACKER_CASES.values(), ids=TRACKER_CASES.keys())
def test_tracker_state_survives_json_round_trip(
    steps: list[tuple[float, str, ActionKind, str | None]],
) -> None:
    """Persisting and reloading the state after every window changes no decision."""
    tracker = AlertTracker()
    got = []
    for h, level, _, _ in steps:
        got.append(tracker.observe("m:data_drift", level, hours(h)).kind)  # type: ignore[arg-type]
        tracker = AlertTracker.from_dict(json.loads(json.dumps(tracker.to_dict())))
    assert got == [kind for _, _, kind, _ in steps]


@pytest.mark.unit
def test_tracker_keys_are_independent_and_decide_does_not_record() -> None:
    tracker = AlertTracker(dt.timedelta(hours=2))
    assert tracker.observe("a:data_drift", "warning", T0).kind is F
    assert tracker.decide("b:fairness", "critical", T0).kind is F
    assert tracker.decide("b:fairness", "critical", T0).kind is F  # still nothing recorded
    assert tracker.observe("b:fairness", "critical", T0).kind is F
    assert tracker.open_episodes() == {"a:data_drift": "warning", "b:fairness": "critical"}
    assert tracker.observe("a:data_drift", "ok", hours(1)).kind is R
    assert tracker.open_episodes() == {"b:fairness": "critical"}
    assert tracker.prune(hours(1.5)) == 0  # a is closed but still cooling down
    assert tracker.to_dict()["keys"].keys() == {"a:data_drift", "b:fairness"}
    assert tracker.prune(hours(2)) == 1  # a's cool-down is over; b is open, so it stays
    assert tracker.to_dict()["keys"].keys() == {"b:fairness"}
    assert tracker.observe("a:data_drift", "warning", hours(2)).kind is F


@pytest.mark.unit
def test_tracker_action_carries_episode_start_and_previous_severity() -> None:
    tracker = AlertTracker()
    tracker.observe("k", "warning", hours(1))
    escalation = tracker.observe("k", "critical", hours(3))
    assert (escalation.reason, escalation.previous_severity) == ("escalation", "warning")
    resolve = tracker.observe("k", "ok", hours(5))
    assert resolve.episode_started_at == hours(1)
    assert resolve.reason == "cleared"


@pytest.mark.unit
def test_zero_cooldown_alerts_every_episode() -> None:
    tracker = AlertTracker(dt.timedelta(0))
    levels: list[Level] = ["warning", "ok", "warning", "ok"]
    kinds = [tracker.observe("k", lvl, hours(i)).kind for i, lvl in enumerate(levels)]
    assert kinds == [F, R, F, R]


@pytest.mark.unit
def test_cooldown_from_settings_overrides_stored_one() -> None:
    tracker = AlertTracker(dt.timedelta(hours=6))
    tracker.observe("k", "warning", T0)
    tracker.observe("k", "ok", hours(1))
    restored = build_tracker(AlertSettings(cooldown_hours=1), tracker.to_dict())
    assert restored.cooldown == dt.timedelta(hours=1)
    assert restored.observe("k", "warning", hours(2)).kind is F


BAD_STATES = {
    "wrong_version": {"version": 99, "cooldown_s": 1, "keys": {}},
    "no_keys": {"version": 1, "cooldown_s": 1},
    "bad_level": {"version": 1, "cooldown_s": 1, "keys": {"k": {"level": "meh"}}},
    "open_without_start": {
        "version": 1,
        "cooldown_s": 1,
        "keys": {"k": {"level": "warning", "sent": "warning", "last_fired": {}}},
    },
    "naive_time": {
        "version": 1,
        "cooldown_s": 1,
        "keys": {"k": {"level": "ok", "last_fired": {"warning": "2026-03-01T00:00:00"}}},
    },
    "bad_time": {
        "version": 1,
        "cooldown_s": 1,
        "keys": {"k": {"level": "ok", "last_fired": {"warning": "yesterday"}}},
    },
    "negative_cooldown": {"version": 1, "cooldown_s": -5, "keys": {}},
}


@pytest.mark.unit
@pytest.mark.parametrize("state", BAD_STATES.values(), ids=BAD_STATES.keys())
def test_malformed_state_is_refused(state: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        AlertTracker.from_dict(state)


@pytest.mark.unit
def test_naive_times_and_unknown_levels_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        AlertTracker().observe("k", "warning", dt.datetime(2026, 3, 1))
    with pytest.raises(InvalidInputError, match="level"):
        AlertTracker().observe("k", "red", T0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        make_alert(at=dt.datetime(2026, 3, 1))


# -- formats (pure) -----------------------------------------------------------------------
def resolution() -> Resolution:
    tracker = AlertTracker()
    tracker.observe("taiwan:data_drift", "warning", hours(0))
    action = tracker.observe("taiwan:data_drift", "ok", hours(27.5))
    cleared = make_alert(
        hours(27.5), summary="No feature drifts any more.", details={"max_psi": 0.08}
    )
    res = notification_for(action, cleared)
    assert isinstance(res, Resolution)
    return res


@pytest.mark.unit
def test_resolution_says_what_cleared_and_when() -> None:
    res = resolution()
    assert subject(res) == "[creditops] RESOLVED taiwan: Data drift"
    body = text_body(res)
    assert "cleared at 2026-03-03 09:30 UTC" in body
    assert "started 2026-03-02 06:00 UTC" in body
    assert "lasted 1 d 3 h 30 min" in body
    assert "No feature drifts any more." in body and "max_psi: 0.08" in body
    assert generic_payload(res)["status"] == "resolved"
    assert generic_payload(res)["resolved_at"] == "2026-03-03T09:30:00Z"


@pytest.mark.unit
def test_text_and_html_bodies() -> None:
    alert = make_alert(
        title="Drift <script>alert(1)</script>", severity="critical", escalated_from="warning"
    )
    text, html = text_body(alert), html_body(alert)
    assert "Critical, escalated from warning" in text
    assert "drifted_features.LIMIT_BAL: 0.3127" in text
    assert "Report: http://reports.local/taiwan/drift/2026-03-01.html" in text
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "drifted_features.PAY_0" in html and "0.2841" in html
    assert 'href="http://reports.local/taiwan/drift/2026-03-01.html"' in html


@pytest.mark.unit
def test_slack_payload_shape_and_limits() -> None:
    many = {f"feature_{i:02d}": 0.3 + i / 100 for i in range(30)}
    alert = make_alert(title="x" * 400, details=many)
    payload = slack_payload(alert)
    assert set(payload) == {"text", "blocks"}
    assert "taiwan" in payload["text"] and "Warning" in payload["text"]
    blocks = payload["blocks"]
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150
    assert blocks[1]["type"] == "section" and blocks[1]["text"]["type"] == "mrkdwn"
    field_sections = [b for b in blocks if "fields" in b]
    assert field_sections and all(len(b["fields"]) <= 10 for b in field_sections)
    shown = [f["text"] for b in field_sections for f in b["fields"]]
    # 25 detail lines at most: 24 features and one that counts the 6 left out
    assert sum(t.startswith("*feature_") for t in shown) == 24
    assert any(t.startswith("*…*") and "6 more" in t for t in shown)
    assert blocks[-1] == {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Open report"},
                "url": "http://reports.local/taiwan/drift/2026-03-01.html",
            }
        ],
    }


@pytest.mark.unit
def test_teams_payload_is_an_adaptive_card_message() -> None:
    payload = teams_payload(make_alert(report_url=None))
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["color"] == "warning"
    facts = {f["title"]: f["value"] for f in card["body"][-1]["facts"]}
    assert facts["Model"] == "taiwan" and facts["drifted_features.LIMIT_BAL"] == "0.3127"
    assert "actions" not in card  # no report, no button
    res_card = teams_payload(resolution())["attachments"][0]["content"]
    assert res_card["body"][0]["color"] == "good"
    assert res_card["actions"][0]["type"] == "Action.OpenUrl"


@pytest.mark.unit
def test_generic_payload_is_strict_json_for_numpy_nan_and_times() -> None:
    details = {"psi": np.float64(0.31), "n": np.int64(7), "auc": math.nan, "when": T0, "s": {1, 2}}
    payload = generic_payload(make_alert(details=details))
    text = json.dumps(payload, allow_nan=False)
    back = json.loads(text)["details"]
    assert back == {
        "psi": 0.31,
        "n": 7,
        "auc": None,
        "when": T0.isoformat().replace("+00:00", "Z"),
        "s": [1, 2],
    }
    assert detail_lines({"a": {"b": {"c": 1.23456789}}, "e": {}}) == [
        ("a.b.c", "1.235"),
        ("e", "{}"),
    ]


# -- real SMTP server ---------------------------------------------------------------------
@dataclass
class Sink:
    """aiosmtpd handler that keeps every envelope."""

    envelopes: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(e.content, policy=default_policy) for e in self.envelopes]


@dataclass
class SmtpServer:
    port: int
    sink: Sink


USER, PASSWORD = "alerts", "s3cr3t-Pa55"


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


@contextmanager
def smtp_server(**smtp_kwargs: Any) -> Iterator[SmtpServer]:
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname=HOST, port=port, **smtp_kwargs)
    controller.start()
    try:
        yield SmtpServer(port, sink)
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def smtp_auth() -> Iterator[SmtpServer]:
    with smtp_server(
        authenticator=authenticator, auth_require_tls=False, auth_required=True
    ) as server:
        yield server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the client trusts it as its CA file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "creditops test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def email_settings(port: int, **overrides: Any) -> AlertSettings:
    values: dict[str, Any] = {
        "host": HOST,
        "port": port,
        "use_tls": False,
        "from_addr": "creditops@bank.test",
        "to_addrs": "risk@bank.test, mlops@bank.test",
        "timeout_s": 5,
    }
    values.update(overrides)
    return AlertSettings(channels=["email"], email=EmailSettings(**values))


def assert_alert_email(msg: EmailMessage, subject_line: str) -> None:
    assert msg["Subject"] == subject_line
    assert msg["From"] == "creditops@bank.test"
    assert msg["To"] == "risk@bank.test, mlops@bank.test"
    assert msg["X-Creditops-Alert-Key"] == "taiwan:data_drift"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    plain, rich = text.get_content(), html.get_content()
    for needle in ("LIMIT_BAL", "0.3127", "PAY_0", "2 of 23 features drifted"):
        assert needle in plain and needle in rich


@pytest.mark.integration
def test_email_is_received_with_text_and_html_parts(smtp: SmtpServer) -> None:
    (result,) = build_dispatcher(email_settings(smtp.port)).dispatch(make_alert())
    assert (result.channel, result.ok, result.error) == ("email", True, None)
    (envelope,) = smtp.sink.envelopes
    assert envelope.mail_from == "creditops@bank.test"
    assert envelope.rcpt_tos == ["risk@bank.test", "mlops@bank.test"]
    assert_alert_email(smtp.sink.messages()[0], "[creditops] WARNING taiwan: Data drift")


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_auth_success_and_refusal(smtp_auth: SmtpServer) -> None:
    good = email_settings(smtp_auth.port, username=USER, password=PASSWORD)
    assert [r.ok for r in build_dispatcher(good).dispatch(make_alert())] == [True]
    assert len(smtp_auth.sink.envelopes) == 1

    bad = email_settings(smtp_auth.port, username=USER, password="wrong-Pa55")
    (result,) = build_dispatcher(bad).dispatch(make_alert())
    assert not result.ok and result.error is not None
    assert "authentication failed (535)" in result.error
    assert "wrong-Pa55" not in result.error
    anonymous = email_settings(smtp_auth.port)  # no AUTH against a server that requires it
    (result,) = build_dispatcher(anonymous).dispatch(make_alert())
    assert not result.ok and "530" in (result.error or "")
    assert len(smtp_auth.sink.envelopes) == 1  # neither failure delivered anything


@pytest.mark.integration
def test_starttls_with_auth_and_private_ca(certificate: tuple[Path, Path]) -> None:
    cert_file, key_file = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    with smtp_server(
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    ) as server:
        settings = email_settings(
            server.port, use_tls=True, username=USER, password=PASSWORD, ca_file=cert_file
        )
        (result,) = build_dispatcher(settings).dispatch(make_alert())
        assert (result.ok, result.error) == (True, None)
        assert len(server.sink.envelopes) == 1
        untrusted = email_settings(server.port, use_tls=True, username=USER, password=PASSWORD)
        (result,) = build_dispatcher(untrusted).dispatch(make_alert())
        assert not result.ok and "CERTIFICATE_VERIFY_FAILED" in (result.error or "")
        assert len(server.sink.envelopes) == 1


# -- real HTTP server ---------------------------------------------------------------------
@dataclass
class Hook:
    """A webhook receiver: records every request; answers with ``statuses`` in order
    (then 200), after sleeping ``delay_s``."""

    port: int
    statuses: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def bodies(self) -> list[Any]:
        return [r["json"] for r in self.requests]


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(raw)}
                )
                status = state.statuses.pop(0) if state.statuses else 200
            time.sleep(state.delay_s)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:  # the client gave up (timeout tests)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, state.port), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.integration
@pytest.mark.parametrize("flavor", ["slack", "teams", "generic"])
def test_webhook_receives_the_payload(hook: Hook, flavor: str) -> None:
    sender = WebhookSender(hook.url(), flavor, retry=RetryPolicy(backoff_s=0.01))  # type: ignore[arg-type]
    (result,) = AlertDispatcher([sender]).dispatch(make_alert())
    assert (result.channel, result.ok, result.attempts) == (
        "webhook" if flavor == "generic" else flavor,
        True,
        1,
    )
    (request,) = hook.requests
    assert request["headers"]["Content-Type"] == "application/json"
    body = request["json"]
    if flavor == "slack":
        assert body == json.loads(json.dumps(slack_payload(make_alert())))
        assert body["blocks"][0]["type"] == "header" and "Data drift" in body["text"]
    elif flavor == "teams":
        assert body["type"] == "message"
        assert body["attachments"][0]["content"]["type"] == "AdaptiveCard"
    else:
        assert body["status"] == "firing" and body["key"] == "taiwan:data_drift"
        assert body["details"]["drifted_features"] == {"LIMIT_BAL": 0.3127, "PAY_0": 0.2841}


@pytest.mark.integration
def test_webhook_retries_5xx_and_delivers_once(hook: Hook) -> None:
    hook.statuses = [500, 503]
    sender = WebhookSender(hook.url(), "slack", retry=RetryPolicy(backoff_s=0.01))
    (result,) = AlertDispatcher([sender]).dispatch(make_alert())
    assert (result.ok, result.attempts) == (True, 3)
    assert len(hook.requests) == 3
    assert hook.bodies()[0] == hook.bodies()[1] == hook.bodies()[2]


RETRY_CASES = {
    "4xx_is_not_retried": ([400], 5, 1, "HTTP 400 after 1 attempt(s)"),
    "attempts_are_bounded": ([502] * 10, 4, 4, "HTTP 502 after 4 attempt(s)"),
}


@pytest.mark.integration
@pytest.mark.parametrize(
    ("statuses", "max_attempts", "requests", "error"), RETRY_CASES.values(), ids=RETRY_CASES.keys()
)
def test_webhook_failures(
    hook: Hook, statuses: list[int], max_attempts: int, requests: int, error: str
) -> None:
    hook.statuses = statuses
    sender = WebhookSender(
        hook.url("/services/T000/B000/SECRET"),
        "slack",
        retry=RetryPolicy(max_attempts=max_attempts, backoff_s=0.01),
    )
    (result,) = AlertDispatcher([sender]).dispatch(make_alert())
    assert not result.ok and result.error == f"webhook {HOST}: {error}"
    assert "SECRET" not in result.error
    assert len(hook.requests) == requests


@pytest.mark.integration
def test_webhook_retries_are_bounded_in_time(hook: Hook) -> None:
    hook.delay_s = 1.0
    sender = WebhookSender(
        hook.url(),
        retry=RetryPolicy(timeout_s=0.2, max_attempts=10, backoff_s=0.05, max_total_s=0.6),
    )
    start = time.monotonic()
    (result,) = AlertDispatcher([sender]).dispatch(make_alert())
    assert time.monotonic() - start < 1.2
    assert not result.ok and "ReadTimeout" in (result.error or "")
    assert 1 < result.attempts < 10


def _unreachable_email() -> EmailSender:
    """An SMTP sender to a port nobody listens on."""
    return EmailSender(
        EmailSettings(
            host=HOST,
            port=free_port(),
            from_addr="a@b.test",
            to_addrs=["c@d.test"],
            use_tls=False,
            timeout_s=2,
        )
    )


@pytest.mark.integration
def test_failing_channels_do_not_stop_the_others(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    senders: list[AlertSender] = [
        _unreachable_email(),
        WebhookSender(
            f"http://{HOST}:{free_port()}/nobody",
            retry=RetryPolicy(max_attempts=2, backoff_s=0.01),
        ),
        WebhookSender(hook.url(), "slack"),
        LogSender(),
    ]
    with caplog.at_level(logging.WARNING, logger=ALERT_LOGGER):
        results = AlertDispatcher(senders).dispatch(make_alert())
    assert [(r.channel, r.ok) for r in results] == [
        ("email", False),
        ("webhook", False),
        ("slack", True),
        ("log", True),
    ]
    assert "ConnectionRefusedError" in (results[0].error or "")
    assert results[1].attempts == 2 and "ConnectError" in (results[1].error or "")
    assert len(hook.requests) == 1
    logged = [r for r in caplog.records if r.name == ALERT_LOGGER]
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING
    assert "[creditops] WARNING taiwan: Data drift" in logged[0].getMessage()


# -- tracker + real channels --------------------------------------------------------------
@pytest.mark.integration
def test_drift_episode_end_to_end(smtp: SmtpServer, hook: Hook) -> None:
    """Hourly windows, state persisted as JSON between them as the worker does: one alert,
    one escalation, one resolution, nothing during the cool-down, then a new episode."""
    settings = AlertSettings(
        channels="email,slack",
        slack_webhook_url=hook.url(),
        email=email_settings(smtp.port).email,
    )
    dispatcher = build_dispatcher(settings)
    levels = ["ok", "warning", "warning", "warning", "critical", "critical", "warning", "ok",
              "warning", "warning", "ok"]  # fmt: skip
    state: dict[str, Any] = {}
    for i, level in enumerate([*levels, "warning"]):
        tracker = build_tracker(settings, state)
        hour = i if i < len(levels) else 24
        outcome = track_and_notify(tracker, dispatcher, make_alert(hours(hour)), level)  # type: ignore[arg-type]
        assert outcome.recorded and all(r.ok for r in outcome.results)
        state = json.loads(json.dumps(tracker.to_dict()))
    expected = [
        "[creditops] WARNING taiwan: Data drift",
        "[creditops] CRITICAL taiwan: Data drift",
        "[creditops] RESOLVED taiwan: Data drift",
        "[creditops] WARNING taiwan: Data drift",
    ]
    assert [m["Subject"] for m in smtp.sink.messages()] == expected
    assert_alert_email(smtp.sink.messages()[0], expected[0])
    assert "escalated from warning" in smtp.sink.messages()[1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    resolved = smtp.sink.messages()[2].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert (
        "cleared at 2026-03-02 13:00 UTC" in resolved and "started 2026-03-02 07:00 UTC" in resolved
    )
    assert [b["blocks"][0]["text"]["text"] for b in hook.bodies()] == expected


@pytest.mark.integration
def test_undelivered_alert_is_not_recorded_and_is_retried(smtp: SmtpServer) -> None:
    down = AlertDispatcher([_unreachable_email()])
    tracker = AlertTracker()
    first = track_and_notify(tracker, down, make_alert(hours(0)), "warning")
    assert first.action.kind is F and not first.recorded
    assert tracker.open_episodes() == {}
    up = build_dispatcher(email_settings(smtp.port))
    second = track_and_notify(tracker, up, make_alert(hours(1)), "warning")
    assert second.action.kind is F and second.recorded and len(smtp.sink.envelopes) == 1
    third = track_and_notify(tracker, up, make_alert(hours(2)), "warning")
    assert third.action.kind is N and third.results == [] and len(smtp.sink.envelopes) == 1


# -- test alerts and settings -------------------------------------------------------------
@pytest.mark.integration
def test_send_test_alert(smtp: SmtpServer, hook: Hook) -> None:
    settings = AlertSettings(
        channels=["log", "webhook"],
        webhook_url=hook.url(),
        webhook_headers={"Authorization": "Bearer hook-token"},
        email=email_settings(smtp.port).email,
    )
    results = send_test_alert(settings, None)
    assert [(r.channel, r.ok) for r in results] == [("log", True), ("webhook", True)]
    (request,) = hook.requests
    assert request["headers"]["Authorization"] == "Bearer hook-token"
    assert request["json"]["kind"] == "test" and request["json"]["status"] == "firing"
    # e-mail is configured but not selected: an explicit test still reaches it
    (result,) = send_test_alert(settings, "email")
    assert (
        result.ok
        and smtp.sink.messages()[0]["Subject"] == "[creditops] WARNING creditops: Test alert"
    )
    with pytest.raises(ConfigError, match="slack"):
        send_test_alert(settings, "slack")
    with pytest.raises(InvalidInputError, match="pager"):
        send_test_alert(settings, "pager")
    with pytest.raises(ConfigError, match="disabled"):
        send_test_alert(settings.model_copy(update={"enabled": False}), None)


SETTINGS_ERRORS = {
    "placeholder_changeme": (
        {"email": {"host": HOST, "username": "u", "password": "changeme"}},
        "placeholder",
    ),
    "placeholder_password": (
        {"email": {"host": HOST, "username": "u", "password": " Password "}},
        "placeholder",
    ),
    "placeholder_template": (
        {"email": {"host": HOST, "username": "u", "password": "<smtp password>"}},
        "placeholder",
    ),
    "empty_password": (
        {"email": {"host": HOST, "username": "u", "password": "  "}},
        "placeholder",
    ),
    "username_without_password": ({"email": {"host": HOST, "username": "u"}}, "both username"),
    "tls_and_ssl": ({"email": {"use_tls": True, "use_ssl": True}}, "exclude each other"),
    "clear_text_auth": (
        {
            "email": {
                "host": "smtp.bank.test",
                "use_tls": False,
                "username": "u",
                "password": "Xy7-long",
            }
        },
        "clear text",
    ),
    "bad_address": ({"email": {"to_addrs": "risk-team"}}, "not an e-mail address"),
    "selected_not_configured": ({"channels": ["log", "email", "teams"]}, "['email', 'teams']"),
    "unknown_channel": ({"channels": "log,pager"}, "pager"),
    "bad_url": ({"slack_webhook_url": "ftp://hooks.slack.test/x"}, "http"),
}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("values", "message"), SETTINGS_ERRORS.values(), ids=SETTINGS_ERRORS.keys()
)
def test_settings_refuse_bad_configuration(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AlertSettings(**values)


@pytest.mark.unit
def test_settings_accept_env_strings_and_hide_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    class Root(BaseSettings):  # the shape of creditops.settings.Settings
        model_config = SettingsConfigDict(env_prefix="CREDITOPS_", env_nested_delimiter="__")
        alerts: AlertSettings = AlertSettings()

    env = {
        "CREDITOPS_ALERTS__CHANNELS": "log, Slack,email",
        "CREDITOPS_ALERTS__SLACK_WEBHOOK_URL": "https://hooks.slack.test/services/T/B/tok3n",
        "CREDITOPS_ALERTS__EMAIL__HOST": HOST,
        "CREDITOPS_ALERTS__EMAIL__USE_TLS": "false",
        "CREDITOPS_ALERTS__EMAIL__USERNAME": "alerts",
        "CREDITOPS_ALERTS__EMAIL__PASSWORD": "Real-pa55word!",
        "CREDITOPS_ALERTS__EMAIL__TO_ADDRS": '["risk@bank.test"]',
        "CREDITOPS_ALERTS__COOLDOWN_HOURS": "2",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    alerts = Root().alerts
    assert alerts.channels == ["log", "slack", "email"]
    assert alerts.email.to_addrs == ["risk@bank.test"]
    assert alerts.cooldown == dt.timedelta(hours=2)
    assert "tok3n" not in repr(alerts) and "Real-pa55word" not in repr(alerts)
    assert [s.channel for s in build_dispatcher(alerts).senders] == ["log", "slack", "email"]
    assert build_dispatcher(alerts.model_copy(update={"enabled": False})).senders == []
