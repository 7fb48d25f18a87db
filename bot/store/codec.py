"""How the store writes values as text (on both engines): timestamps as fixed-width ISO-8601
UTC (so they sort as they compare) and JSON compactly; and how it reads them back and checks a
status or level against its allowed values. Imports only the standard library.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def _ts(when: datetime) -> str:
    """A timezone-aware datetime as fixed-width ISO-8601 UTC text (sorts as it compares)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("the store needs timezone-aware datetimes (UTC), got a naive one")
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _flag(value: int | None) -> bool | None:
    """A nullable 0/1 column as a nullable bool (unknown stays unknown)."""
    return None if value is None else bool(value)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _dt_req(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _checked(value: str, allowed: Any, what: str) -> str:
    if value not in {str(a) for a in allowed}:
        choices = ", ".join(str(a) for a in allowed)
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")
    return value
