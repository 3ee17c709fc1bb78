"""Alert episodes: the notification model and episode tracking (de-duplication and
cool-down). Pure: no network I/O, no clock (callers pass ``now``).

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

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, get_args

from creditops.domain.windows import utc_text
from creditops.errors import InvalidInputError

AlertKind = Literal[
    "data_drift",
    "prediction_drift",
    "performance_drift",
    "fairness",
    "retraining",
    "deployment",
    "test",
]
# "info" is for event notifications sent directly (a retraining job started or passed);
# the episode tracker deals in warning and critical only.
Severity = Literal["info", "warning", "critical"]
Level = Literal["ok", "warning", "critical"]

LEVELS: tuple[str, ...] = get_args(Level)
SEVERITIES: tuple[str, ...] = get_args(Severity)
KINDS: tuple[str, ...] = get_args(AlertKind)
_RANK = {"ok": 0, "warning": 1, "critical": 2}
DEFAULT_COOLDOWN = timedelta(hours=6)
STATE_VERSION = 1


def _require_aware(at: datetime, name: str) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInputError(f"{name} must be timezone-aware (got {utc_text(at)}).")


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
                "episode_started_at": _iso_or_none(s.episode_started_at),
                "sent": s.sent,
                "last_fired": {sev: utc_text(at) for sev, at in sorted(s.last_fired.items())},
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


def _iso_or_none(at: datetime | None) -> str | None:
    """ISO-8601 text of ``at``; ``None`` stays ``None``."""
    return None if at is None else utc_text(at)


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
