"""Parsing of time windows given by people: ``24h``, ``7d``, ``30m``, ``2w`` or an ISO time.

Every value that is not one of these, or that lies outside what the stores can hold, is an
:class:`~creditops.errors.InvalidInputError` naming the field: never an overflow later,
when the window reaches a database or ``astimezone``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import overload

from creditops.errors import InvalidInputError

_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses.
_DURATION = re.compile(r"([0-9]{1,7})([mhdw])")
MAX_WINDOW = timedelta(days=36_600)  # about a century: longer than any decision log
MIN_YEAR, MAX_YEAR = 1900, 9998  # what every store and datetime arithmetic handle


def parse_since(value: str, *, now: datetime | None = None, field: str = "since") -> datetime:
    """The start of a window ending ``now``: a duration back from it, or an ISO time
    (naive times are taken as UTC)."""
    now = now or datetime.now(UTC)
    text = value.strip()
    duration = _DURATION.fullmatch(text)
    if duration:
        span = timedelta(**{_UNITS[duration[2]]: int(duration[1])})
        if span > MAX_WINDOW:
            raise InvalidInputError(
                f"{field} must reach back at most {MAX_WINDOW.days} days; got {value!r}",
                field=field,
            )
        return now - span
    return parse_time(text, field=field)


def parse_time(value: str, *, field: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime between the years 1900 and 9998."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInputError(
            f"{field} must be like 24h, 7d, 30m, 2w or an ISO time; got {value!r}", field=field
        ) from None
    return aware_utc(parsed, field=field)


def aware_utc(value: datetime, *, field: str) -> datetime:
    """``value`` in UTC (naive = UTC), refused outside the years 1900-9998."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise InvalidInputError(
            f"{field} must be a time between the years {MIN_YEAR} and {MAX_YEAR}", field=field
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInputError(f"{field} is out of range", field=field) from None


@overload
def utc_text(value: datetime) -> str: ...
@overload
def utc_text(value: None) -> None: ...
def utc_text(value: datetime | None) -> str | None:
    """``value`` as RFC 3339 in UTC with a ``Z`` (naive = UTC), the one time format the
    CLI, the API and the reports print; None stays None. Microseconds are kept when set,
    so two events in one second still order."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
