"""When monitoring says a model should be retrained: the retraining triggers, pure.

Each function looks at what monitoring observed and returns a :class:`Trigger` (kind,
reason, evidence) or None. What a trigger then starts (a job, or nothing because one is
running or the cool-down holds) is decided and recorded by ``services/retraining.py``.

* **drift**: the data-drift checks breached (level critical, dataset drift score above
  ``drift_score``, or drifted share above ``drift_share``) in every check for a sustained
  period (``drift_sustained_hours``; 0: the latest check alone). A check that had too few
  rows (insufficient_data) judged nothing and neither breaks nor extends the streak.
* **performance**: a monitored metric (AUC, accuracy, F1) of the labelled window more than
  ``max_drop`` below the version's validation figure. The warning band (3-5% by default)
  alerts through monitoring but never retrains.
* **new_data**: at least ``new_data_outcomes`` matured outcomes since the last training.
* **schedule**: a cron expression (UTC) whose next occurrence after the last scheduled run
  has passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from croniter import croniter

from creditops.domain.windows import utc_text
from creditops.errors import ConfigError
from creditops.monitoring.conditions import INSUFFICIENT

TriggerKind = Literal["drift", "performance", "schedule", "new_data", "manual"]


@dataclass(frozen=True)
class Trigger:
    kind: TriggerKind
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DriftObservation:
    """One stored data-drift check: when, its level, dataset score and drifted share."""

    at: datetime
    level: str
    drift_score: float | None
    drifted_share: float | None
    report_id: str = ""


@dataclass(frozen=True)
class DriftRule:
    sustained: timedelta = timedelta(hours=24)
    drift_score: float = 0.7
    drift_share: float = 0.3

    def breached(self, seen: DriftObservation) -> bool:
        return (
            seen.level == "critical"
            or (seen.drift_score or 0.0) > self.drift_score
            or (seen.drifted_share or 0.0) > self.drift_share
        )


def drift_trigger(
    history: Sequence[DriftObservation], now: datetime, rule: DriftRule
) -> Trigger | None:
    """Drift sustained over ``rule.sustained`` (``history`` newest first)."""
    judged = [seen for seen in history if seen.level != INSUFFICIENT]
    streak: list[DriftObservation] = []
    for seen in judged:
        if not rule.breached(seen):
            break
        streak.append(seen)
    if not streak:
        return None
    held = now - streak[-1].at
    if held < rule.sustained:
        return None
    latest = streak[0]
    return Trigger(
        "drift",
        f"data drift held in {len(streak)} consecutive checks over {_hours(held)} "
        f"(latest: score {latest.drift_score or 0:.2f}, "
        f"drifted share {latest.drifted_share or 0:.0%}, level {latest.level})",
        {
            "checks": len(streak),
            "since": utc_text(streak[-1].at),
            "drift_score": latest.drift_score,
            "drifted_share": latest.drifted_share,
            "level": latest.level,
            "reports": [seen.report_id for seen in streak[:20]],
        },
    )


def performance_trigger(result: Mapping[str, Any], max_drop: float) -> Trigger | None:
    """A monitored metric more than ``max_drop`` (relative) below validation."""
    if result.get("level") == INSUFFICIENT:
        return None
    drops = result.get("drop_vs_validation") or {}
    worse = {name: d for name, d in drops.items() if d is not None and d > max_drop}
    if not worse:
        return None
    listed = ", ".join(f"{name} {d:.1%}" for name, d in sorted(worse.items()))
    return Trigger(
        "performance",
        f"performance below validation by more than {max_drop:.0%}: {listed}",
        {
            "drop_vs_validation": dict(worse),
            "current": dict(result.get("current") or {}),
            "validation": dict(result.get("validation") or {}),
            "n_labelled": result.get("n_labelled"),
        },
    )


def new_data_trigger(matured: int, threshold: int, since: datetime) -> Trigger | None:
    if matured < threshold:
        return None
    return Trigger(
        "new_data",
        f"{matured} matured outcomes since the last training (threshold {threshold})",
        {"matured_outcomes": matured, "since": utc_text(since), "threshold": threshold},
    )


def check_cron(expression: str) -> str:
    if not croniter.is_valid(expression):
        raise ConfigError(f"not a cron expression: {expression!r}", field="schedule")
    return expression


def schedule_trigger(expression: str, last: datetime, now: datetime) -> Trigger | None:
    """The first occurrence of ``expression`` after ``last`` (the previous scheduled run,
    or when the schedule started), if it has passed: one trigger however many passed."""
    due: datetime = croniter(check_cron(expression), last).get_next(datetime)
    if due > now:
        return None
    return Trigger(
        "schedule",
        f"scheduled retraining ({expression}) due at {utc_text(due)}",
        {"schedule": expression, "due_at": utc_text(due)},
    )


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{delta.total_seconds() / 60:.0f} min"
