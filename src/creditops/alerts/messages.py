"""Alert message formats: the e-mail subject and bodies (plain text and HTML) and the webhook
payloads (Slack, Microsoft Teams, generic JSON) of a
:data:`~creditops.alerts.episodes.Notification`. Pure: no network I/O, no clock.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from creditops.alerts.episodes import Notification, Resolution
from creditops.domain.windows import utc_text

MAX_DETAIL_LINES = 25


def _jsonable(value: Any) -> Any:
    """A JSON-safe copy: mappings, sequences, ISO times; NaN/inf become None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return utc_text(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _fmt_value(value: Any) -> str:
    value = _jsonable(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_fmt_value(v) for v in value)
    if value is None:
        return "n/a"
    return str(value)


def detail_lines(
    details: Mapping[str, Any], limit: int = MAX_DETAIL_LINES
) -> list[tuple[str, str]]:
    """Flatten details to ``(label, value)`` pairs; nested mappings give ``outer.inner``."""
    lines: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            lines.append((prefix, _fmt_value(value)))

    walk("", details)
    if len(lines) > limit:
        hidden = len(lines) - limit + 1
        lines = [*lines[: limit - 1], ("…", f"{hidden} more")]
    return lines


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M %Z").strip()


def _duration(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{mins} min"]
    return " ".join(p for p in parts if p) if minutes else "less than a minute"


def subject(n: Notification) -> str:
    """One-line subject, e.g. ``[creditops] CRITICAL taiwan: Data drift``."""
    if isinstance(n, Resolution):
        return f"[creditops] RESOLVED {n.model}: {n.title}"
    return f"[creditops] {n.severity.upper()} {n.model}: {n.title}"


def headline(n: Notification) -> str:
    """The first sentence of every message."""
    if isinstance(n, Resolution):
        return (
            f"Resolved: {n.title} on model {n.model} cleared at {_when(n.resolved_at)} "
            f"(started {_when(n.started_at)}, lasted {_duration(n.resolved_at - n.started_at)})."
        )
    escalated = f", escalated from {n.escalated_from}" if n.escalated_from else ""
    return f"{n.severity.capitalize()}{escalated}: {n.title} on model {n.model} at {_when(n.at)}."


def _facts(n: Notification) -> list[tuple[str, str]]:
    base = [("Model", n.model), ("Check", n.kind), ("Key", n.key)]
    if isinstance(n, Resolution):
        base += [("Started", _when(n.started_at)), ("Cleared", _when(n.resolved_at))]
    else:
        base += [("Severity", n.severity), ("Observed", _when(n.at))]
    return base + detail_lines(n.details)


def text_body(n: Notification) -> str:
    """Plain-text email body."""
    lines = [headline(n), "", n.summary, ""]
    lines += [f"{label}: {value}" for label, value in _facts(n)]
    if n.report_url:
        lines += ["", f"Report: {n.report_url}"]
    return "\n".join(lines) + "\n"


def html_body(n: Notification) -> str:
    """HTML email body (every value escaped)."""
    e = html.escape
    color = "#2e7d32" if isinstance(n, Resolution) else _COLORS[n.severity]
    rows = "".join(
        f"<tr><th align='left' style='padding:2px 12px 2px 0'>{e(label)}</th>"
        f"<td>{e(value)}</td></tr>"
        for label, value in _facts(n)
    )
    link = f'<p><a href="{e(n.report_url)}">Open the report</a></p>' if n.report_url else ""
    return (
        "<html><body style='font-family:sans-serif'>"
        f"<h2 style='color:{color}'>{e(headline(n))}</h2>"
        f"<p>{e(n.summary)}</p><table>{rows}</table>{link}</body></html>"
    )


_COLORS = {"info": "#1565c0", "warning": "#ef6c00", "critical": "#c62828"}
_SLACK_HEADER_MAX = 150
_SLACK_TEXT_MAX = 3000
_SLACK_FIELDS_MAX = 10


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(n: Notification) -> dict[str, Any]:
    """Slack incoming-webhook JSON: a ``text`` fallback plus Block Kit ``blocks``."""
    icon = (
        ":white_check_mark:"
        if isinstance(n, Resolution)
        else (":rotating_light:" if n.severity == "critical" else ":warning:")
    )
    facts = _facts(n)
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(subject(n), _SLACK_HEADER_MAX)},
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _clip(f"{icon} {headline(n)}\n{n.summary}", _SLACK_TEXT_MAX),
            },
        },
    ]
    for start in range(0, len(facts), _SLACK_FIELDS_MAX):
        chunk = facts[start : start + _SLACK_FIELDS_MAX]
        fields = [{"type": "mrkdwn", "text": _clip(f"*{k}*\n{v}", 2000)} for k, v in chunk]
        blocks.append({"type": "section", "fields": fields})
    if n.report_url:
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": "Open report"},
            "url": n.report_url,
        }
        blocks.append({"type": "actions", "elements": [button]})
    return {"text": _clip(f"{icon} {headline(n)}", _SLACK_TEXT_MAX), "blocks": blocks}


def teams_payload(n: Notification) -> dict[str, Any]:
    """Microsoft Teams webhook JSON: a message with one Adaptive Card (1.4) attachment, the
    shape both Teams Workflows webhooks and the older incoming-webhook connectors accept."""
    color = (
        "good"
        if isinstance(n, Resolution)
        else ("attention" if n.severity == "critical" else "warning")
    )
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": subject(n),
            "weight": "bolder",
            "size": "medium",
            "color": color,
            "wrap": True,
        },
        {"type": "TextBlock", "text": headline(n), "wrap": True},
        {"type": "TextBlock", "text": n.summary, "wrap": True, "isSubtle": True},
        {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _facts(n)]},
    ]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if n.report_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open report", "url": n.report_url}]
    attachment = {
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": card,
    }
    return {"type": "message", "attachments": [attachment]}


def generic_payload(n: Notification) -> dict[str, Any]:
    """Plain JSON for any other receiver: every field, ``status`` firing or resolved."""
    common = {
        "key": n.key,
        "model": n.model,
        "kind": n.kind,
        "severity": n.severity,
        "title": n.title,
        "summary": n.summary,
        "message": headline(n),
        "details": _jsonable(n.details),
        "report_url": n.report_url,
    }
    if isinstance(n, Resolution):
        return {
            "status": "resolved",
            **common,
            "started_at": utc_text(n.started_at),
            "resolved_at": utc_text(n.resolved_at),
        }
    return {
        "status": "firing",
        **common,
        "at": utc_text(n.at),
        "escalated_from": n.escalated_from,
    }
