"""Alerts: the notification model, episode tracking (de-duplication and cool-down) and the
message formats. Pure: no network I/O, no clock (callers pass ``now``).

Episodes. A *key* (e.g. ``"taiwan:data_drift"``) is observed once per monitoring window at a
level ``ok`` / ``warning`` / ``critical``. An episode starts when the key leaves ``ok`` and
ends when it returns to ``ok``. :class:`AlertTracker` turns the stream of observations into
at most one notification per episode and severity:

* ``FIRE`` when an episode starts, or when it escalates above the severity already sent
  (warning -> critical). Windows that stay at (or fall back to) a severity already sent say
  nothing: one drift episode sends one alert.
* ``RESOLVE`` when an episode that sent an alert returns to ``ok``; the resolution message
  says what cleared and when. An episode that never sent anything clears silently.
* ``SUPPRESSED`` instead of ``FIRE`` during the cool-down: an alert of severity ``s`` is held
  back while the same key sent an alert of severity ``s`` or higher less than ``cooldown``
  ago, so a metric flapping around its threshold does not page anyone every window. A held
  back episode that is still open when the cool-down runs out fires then, so a real,
  lasting problem is never hidden by an earlier resolution.
* ``NONE`` otherwise.

:meth:`AlertTracker.decide` computes the action without changing the state and
:meth:`AlertTracker.observe` computes and records it; a caller that could not deliver a
notification can skip ``observe`` so that the next window decides (and tries) again.
The state is a small JSON-safe dict (:meth:`AlertTracker.to_dict`) for the worker to persist.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, get_args

from creditops.errors import InvalidInputError

AlertKind = Literal["data_drift", "prediction_drift", "performance_drift", "fairness", "test"]
Severity = Literal["warning", "critical"]
Level = Literal["ok", "warning", "critical"]

LEVELS: tuple[str, ...] = get_args(Level)
SEVERITIES: tuple[str, ...] = get_args(Severity)
KINDS: tuple[str, ...] = get_args(AlertKind)
_RANK = {"ok": 0, "warning": 1, "critical": 2}
DEFAULT_COOLDOWN = timedelta(hours=6)
STATE_VERSION = 1
MAX_DETAIL_LINES = 25


def _require_aware(at: datetime, name: str) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInputError(f"{name} must be timezone-aware (got {at.isoformat()}).")


@dataclass(frozen=True)
class Alert:
    """One alert about one key; ``details`` are shown as a list of facts."""

    key: str
    model: str
    kind: AlertKind
    severity: Severity
    title: str
    summary: str
    at: datetime
    details: Mapping[str, Any] = field(default_factory=dict)
    report_url: str | None = None
    escalated_from: Severity | None = None

    def __post_init__(self) -> None:
        _require_aware(self.at, "Alert.at")
        if self.kind not in KINDS:
            raise InvalidInputError(f"Unknown alert kind {self.kind!r}.", field="kind")
        if self.severity not in SEVERITIES:
            raise InvalidInputError(f"Unknown severity {self.severity!r}.", field="severity")


@dataclass(frozen=True)
class Resolution:
    """An episode that sent an alert is over; ``details`` describe the state that cleared it."""

    key: str
    model: str
    kind: AlertKind
    severity: Severity
    title: str
    summary: str
    started_at: datetime
    resolved_at: datetime
    details: Mapping[str, Any] = field(default_factory=dict)
    report_url: str | None = None

    def __post_init__(self) -> None:
        _require_aware(self.started_at, "Resolution.started_at")
        _require_aware(self.resolved_at, "Resolution.resolved_at")


Notification = Alert | Resolution


class ActionKind(StrEnum):
    NONE = "none"
    FIRE = "fire"
    RESOLVE = "resolve"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True)
class Action:
    """What to do about one observation.

    ``severity`` is the severity to send (FIRE), held back (SUPPRESSED) or the highest one
    sent in the episode (RESOLVE, NONE while ongoing); ``previous_severity`` the highest one
    sent in the episode before this observation. ``reason`` is one of ``new_episode``,
    ``escalation``, ``cooldown_expired``, ``cooldown``, ``cleared``, ``ongoing``, ``quiet``.
    """

    kind: ActionKind
    key: str
    level: Level
    at: datetime
    reason: str
    severity: Severity | None = None
    previous_severity: Severity | None = None
    episode_started_at: datetime | None = None

    @property
    def notifies(self) -> bool:
        return self.kind in (ActionKind.FIRE, ActionKind.RESOLVE)


@dataclass(frozen=True)
class _KeyState:
    level: Level = "ok"
    episode_started_at: datetime | None = None
    sent: Severity | None = None  # highest severity sent in the open episode
    last_fired: Mapping[str, datetime] = field(default_factory=dict)


class AlertTracker:
    """De-duplication and cool-down over alert episodes, one state per key (not thread-safe)."""

    def __init__(self, cooldown: timedelta = DEFAULT_COOLDOWN) -> None:
        if cooldown < timedelta(0):
            raise InvalidInputError("The alert cool-down cannot be negative.", field="cooldown")
        self.cooldown = cooldown
        self._states: dict[str, _KeyState] = {}

    def decide(self, key: str, level: Level, now: datetime) -> Action:
        """The action for this observation; the state is not changed."""
        return self._transition(key, level, now)[0]

    def observe(self, key: str, level: Level, now: datetime) -> Action:
        """The action for this observation, recorded in the state."""
        action, state = self._transition(key, level, now)
        if state == _KeyState():
            self._states.pop(key, None)
        else:
            self._states[key] = state
        return action

    def open_episodes(self) -> dict[str, Level]:
        """Keys currently away from ``ok`` and their level."""
        return {k: s.level for k, s in self._states.items() if s.level != "ok"}

    def prune(self, now: datetime) -> int:
        """Forget closed keys whose cool-downs have all run out; returns how many."""
        _require_aware(now, "now")
        stale = [
            key
            for key, state in self._states.items()
            if state.level == "ok"
            and all(now - at >= self.cooldown for at in state.last_fired.values())
        ]
        for key in stale:
            del self._states[key]
        return len(stale)

    def _cooling(self, state: _KeyState, severity: Severity, now: datetime) -> bool:
        """Did this key send ``severity`` or higher less than ``cooldown`` ago?"""
        return any(
            _RANK[sev] >= _RANK[severity] and now - at < self.cooldown
            for sev, at in state.last_fired.items()
        )

    def _transition(self, key: str, level: Level, now: datetime) -> tuple[Action, _KeyState]:
        _require_aware(now, "now")
        if level not in _RANK:
            raise InvalidInputError(f"Unknown alert level {level!r}.", field="level")
        state = self._states.get(key, _KeyState())
        is_open = state.level != "ok"
        started = state.episode_started_at if is_open else (None if level == "ok" else now)

        def act(kind: ActionKind, reason: str, severity: Severity | None = None) -> Action:
            return Action(kind, key, level, now, reason, severity, state.sent, started)

        if level == "ok":
            closed = replace(state, level="ok", episode_started_at=None, sent=None)
            if state.sent is None:  # nothing open, or an episode held back entirely: silence
                return act(ActionKind.NONE, "cleared" if is_open else "quiet"), closed
            return act(ActionKind.RESOLVE, "cleared", state.sent), closed

        severity: Severity = "critical" if level == "critical" else "warning"
        opened = replace(state, level=level, episode_started_at=started)
        if state.sent is not None and _RANK[severity] <= _RANK[state.sent]:
            return act(ActionKind.NONE, "ongoing", state.sent), opened
        if not is_open:
            reason = "new_episode"
        else:
            reason = "escalation" if state.sent is not None else "cooldown_expired"
        if self._cooling(state, severity, now):
            return act(ActionKind.SUPPRESSED, "cooldown", severity), opened
        fired = replace(opened, sent=severity, last_fired={**state.last_fired, severity: now})
        return act(ActionKind.FIRE, reason, severity), fired

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state (ISO-8601 times)."""
        keys: dict[str, Any] = {}
        for key, s in sorted(self._states.items()):
            keys[key] = {
                "level": s.level,
                "episode_started_at": _iso(s.episode_started_at),
                "sent": s.sent,
                "last_fired": {sev: at.isoformat() for sev, at in sorted(s.last_fired.items())},
            }
        return {
            "version": STATE_VERSION,
            "cooldown_s": self.cooldown.total_seconds(),
            "keys": keys,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], cooldown: timedelta | None = None) -> AlertTracker:
        """Rebuild a tracker; ``cooldown`` (e.g. from current settings) overrides the stored one.

        Raises :class:`InvalidInputError` when the data is not a state this version wrote.
        """
        try:
            if data.get("version") != STATE_VERSION:
                raise InvalidInputError(f"Unsupported alert state version {data.get('version')!r}.")
            stored = timedelta(seconds=float(data["cooldown_s"]))
            tracker = cls(cooldown if cooldown is not None else stored)
            for key, raw in dict(data["keys"]).items():
                tracker._states[str(key)] = _state_from_dict(raw)
        except InvalidInputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInputError(f"Malformed alert state: {exc!r}.") from exc
        return tracker


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _parse_time(value: Any) -> datetime:
    at = datetime.fromisoformat(str(value))
    _require_aware(at, "stored time")
    return at


def _state_from_dict(raw: Mapping[str, Any]) -> _KeyState:
    level, sent = raw["level"], raw.get("sent")
    if level not in _RANK or (sent is not None and sent not in SEVERITIES):
        raise ValueError(f"bad level {level!r} or severity {sent!r}")
    if (level == "ok") != (raw.get("episode_started_at") is None):
        raise ValueError("an open episode needs a start time, a closed one has none")
    if level == "ok" and sent is not None:
        raise ValueError("a closed episode cannot have sent an alert")
    started = raw.get("episode_started_at")
    fired = dict(raw.get("last_fired") or {})
    if any(sev not in SEVERITIES for sev in fired):
        raise ValueError(f"bad severities in last_fired: {sorted(fired)}")
    return _KeyState(
        level=level,
        episode_started_at=None if started is None else _parse_time(started),
        sent=sent,
        last_fired={sev: _parse_time(at) for sev, at in fired.items()},
    )


def notification_for(action: Action, current: Alert) -> Notification | None:
    """The message an action calls for; ``current`` describes the latest observation.

    FIRE: ``current`` with the action's severity (and ``escalated_from``). RESOLVE: a
    :class:`Resolution` whose details are those of ``current`` (the values that cleared).
    """
    if action.kind is ActionKind.FIRE and action.severity is not None:
        return replace(current, severity=action.severity, escalated_from=action.previous_severity)
    if action.kind is ActionKind.RESOLVE and action.severity is not None:
        return Resolution(
            key=current.key,
            model=current.model,
            kind=current.kind,
            severity=action.severity,
            title=current.title,
            summary=current.summary,
            started_at=action.episode_started_at or action.at,
            resolved_at=action.at,
            details=current.details,
            report_url=current.report_url,
        )
    return None


# -- formatting ---------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """A JSON-safe copy: mappings, sequences, ISO times; NaN/inf become None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _fmt_value(value: Any) -> str:
    value = jsonable(value)
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


_COLORS = {"warning": "#ef6c00", "critical": "#c62828"}
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
        "details": jsonable(n.details),
        "report_url": n.report_url,
    }
    if isinstance(n, Resolution):
        return {
            "status": "resolved",
            **common,
            "started_at": _iso(n.started_at),
            "resolved_at": _iso(n.resolved_at),
        }
    return {"status": "firing", **common, "at": _iso(n.at), "escalated_from": n.escalated_from}
