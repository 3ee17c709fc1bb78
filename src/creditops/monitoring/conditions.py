"""The conditions every monitoring check shares: levels (``ok`` / ``warning`` /
``critical``) from thresholds, the worst of several levels, and :class:`Hysteresis`, which
debounces a level across monitoring windows. Pure and serialisable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Final, Literal

from creditops.errors import ConfigError, InvalidInputError

Level = Literal["ok", "warning", "critical"]
LEVELS: tuple[Level, ...] = ("ok", "warning", "critical")
_RANK: dict[str, int] = {"ok": 0, "warning": 1, "critical": 2}


def level_of(
    value: float | None, warning: float, critical: float, *, critical_inclusive: bool = False
) -> Level:
    """``critical`` above ``critical`` (or at it, if inclusive), ``warning`` from ``warning``.

    None (not computed) is ``ok``: a check that could not run says so elsewhere.
    """
    if value is None or math.isnan(value):
        return "ok"
    if value > critical or (critical_inclusive and value >= critical):
        return "critical"
    return "warning" if value >= warning else "ok"


def worst(*levels: Level) -> Level:
    return max(levels, key=_RANK.__getitem__, default="ok")


# A check over fewer rows than its minimum sample size judges nothing: it reports this
# instead of a level, never alerts and never triggers retraining.
CheckLevel = Literal["ok", "warning", "critical", "insufficient_data"]
INSUFFICIENT: Final = "insufficient_data"


def overall(levels: Iterable[CheckLevel]) -> CheckLevel:
    """The worst level of the checks that could judge; ``insufficient_data`` when none
    could (and ``ok`` when there were no checks)."""
    given = list(levels)
    judged = [lv for lv in given if lv != INSUFFICIENT]
    if given and not judged:
        return INSUFFICIENT
    return worst(*judged)


def insufficient(kind: str, n: int, min_rows: int) -> dict[str, Any]:
    """The result of a check that had fewer rows than it needs to judge."""
    return {
        "kind": kind,
        "level": INSUFFICIENT,
        "n_current": n,
        "min_rows": min_rows,
        "message": f"{n} rows in the window; the check judges from {min_rows} rows on",
    }


@dataclass(frozen=True)
class Hysteresis:
    """The debounced level of one metric across monitoring windows (pure, serialisable).

    Feed each window's observed level to :meth:`update`, which returns the next state. A
    level (``warning`` or ``critical``) is raised when at least ``raise_after`` of the last
    ``raise_window`` observations are at or above it, and once raised it clears only when at
    least ``clear_after`` of the last ``clear_window`` observations are below it. A single
    noisy window therefore neither raises nor clears an alarm; by default a level is raised
    by 2 of the last 3 windows and cleared by 3 clean windows in a row. Clearing ``critical`` can
    leave ``warning`` standing; raising ``critical`` directly from ``ok`` is possible.
    """

    raise_after: int = 2
    raise_window: int = 3
    clear_after: int = 3
    clear_window: int = 3
    level: Level = "ok"
    history: tuple[Level, ...] = ()

    def __post_init__(self) -> None:
        for after, window in (
            (self.raise_after, self.raise_window),
            (self.clear_after, self.clear_window),
        ):
            if not 1 <= after <= window:
                raise ConfigError(
                    "hysteresis needs 1 <= N <= M (N of the last M windows); "
                    f"got {after} of {window}"
                )
        for value in (self.level, *self.history):
            if value not in _RANK:
                raise ConfigError(f"unknown level {value!r}; use one of {list(LEVELS)}")

    def update(self, observed: Level) -> Hysteresis:
        if observed not in _RANK:
            raise InvalidInputError(f"unknown level {observed!r}; use one of {list(LEVELS)}")
        keep = max(self.raise_window, self.clear_window)
        history = (*self.history, observed)[-keep:]
        raised = [_RANK[h] for h in history[-self.raise_window :]]
        cleared = [_RANK[h] for h in history[-self.clear_window :]]
        current = _RANK[self.level]
        new: Level = "ok"
        for name in ("critical", "warning"):
            rank = _RANK[name]
            if current >= rank:
                active = sum(r < rank for r in cleared) < self.clear_after
            else:
                active = sum(r >= rank for r in raised) >= self.raise_after
            if active:
                new = name
                break
        return replace(self, level=new, history=history)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["history"] = list(self.history)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hysteresis:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown hysteresis keys {sorted(unknown)}")
        values = dict(data)
        if "history" in values:
            values["history"] = tuple(values["history"])
        return cls(**values)
