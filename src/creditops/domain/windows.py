"""Parsing of time windows given by people: ``24h``, ``7d``, ``30m`` or an ISO timestamp."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from creditops.errors import InvalidInputError

_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """The start of a window ending now; naive ISO times are taken as UTC."""
    now = now or datetime.now(UTC)
    text = value.strip()
    if text[-1:] in _UNITS and text[:-1].isdigit():
        return now - timedelta(**{_UNITS[text[-1]]: int(text[:-1])})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            f"since must be like 24h, 7d, 30m or an ISO time; got {value!r}", field="since"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
