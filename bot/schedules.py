"""Pure time arithmetic for check-ins: when a recurring rule is next due in a patient's time
zone, quiet hours, and the schedule plan an enrollment implies (daily, weekly, campaigns).

Imports only the standard library (zoneinfo for IANA time zones). No clock: `now` comes in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CONDITION_FLOWS: dict[str, str] = {
    "diabetes": "diabetes_checkin",
    "hypertension": "hypertension_checkin",
    "asthma": "asthma_checkin",
    "copd": "copd_checkin",
    "heart_failure": "heart_failure_checkin",
    "pregnancy": "pregnancy_checkin",
}
"""The check-in flow for each condition a patient can be enrolled for."""

CONDITION_CONCEPTS: dict[str, str] = {
    "diabetes": "diabetes",
    "hypertension": "hypertension",
    "asthma": "asthma",
    "copd": "copd",
    "heart_failure": "heart_failure",
    "pregnancy": "pregnant",
}
"""The bool concept (data/concepts.yaml) the enrollment flow records each condition under."""

DEFAULT_CADENCE: dict[str, str] = {
    "diabetes": "daily",
    "hypertension": "daily",
    "asthma": "daily",
    "copd": "daily",
    "heart_failure": "daily",
    "pregnancy": "weekly",
}
LAST_MONTH_DAYS = 28  # pregnancy: daily check-ins from this many days before the due date
POST_TERM_DAYS = 14  # ... until this many days after it (42 weeks)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$")
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_CLOCK = re.compile(r"^\s*([01]?\d|2[0-3])[:.h]([0-5]\d)\s*$")


def parse_duration(value: str | float | timedelta) -> timedelta:
    """A duration like 15m, 2h, 1d or 1w, or a number of seconds (ValueError otherwise)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    m = _DURATION.match(value)
    if m is None:
        raise ValueError(f"not a duration: {value!r} (use e.g. 15m, 2h, 1d)")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def parse_clock(value: str | time) -> time:
    """A 24-hour wall-clock time "HH:MM" (ValueError otherwise)."""
    if isinstance(value, time):
        return value
    m = _CLOCK.match(value)
    if m is None:
        raise ValueError(f"not a time of day: {value!r} (use 24-hour HH:MM, e.g. 09:00)")
    return time(int(m.group(1)), int(m.group(2)))


def format_clock(at: time) -> str:
    """A time of day as HH:MM."""
    return f"{at.hour:02d}:{at.minute:02d}"


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (ValueError naming it when unknown)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as Asia/Kolkata or UTC)"
        ) from None


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock `at` on `day` in `tz`.

    A time skipped by a daylight-saving change (02:30 on a spring-forward night) is moved
    forward by the gap; a repeated one (01:30 on a fall-back night) is its first occurrence.
    """
    return datetime.combine(day, at).replace(tzinfo=tz, fold=0).astimezone(UTC)


# --- quiet hours -------------------------------------------------------------------------


@dataclass(frozen=True)
class QuietHours:
    """A nightly window (local time) in which nothing non-urgent is sent; may wrap midnight."""

    start: time = time(21, 0)
    end: time = time(8, 0)

    def contains(self, at: time) -> bool:
        """Whether a local wall-clock time falls inside the window (start inclusive)."""
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= at < self.end
        return at >= self.start or at < self.end


def in_quiet_hours(when: datetime, tz: ZoneInfo, quiet: QuietHours | None) -> bool:
    """Whether the instant `when` is inside the patient's quiet hours."""
    if quiet is None:
        return False
    return quiet.contains(when.astimezone(tz).time().replace(tzinfo=None))


def defer_quiet(when: datetime, tz: ZoneInfo, quiet: QuietHours | None) -> datetime:
    """`when`, or the end of the quiet hours it falls in (never earlier, never dropped)."""
    if quiet is None or not in_quiet_hours(when, tz, quiet):
        return when.astimezone(UTC)
    local = when.astimezone(tz)
    day = local.date()
    if local.time().replace(tzinfo=None) >= quiet.end:  # evening side of a wrapping window
        day += timedelta(days=1)
    end = local_instant(day, quiet.end, tz)
    return end if end > when else when.astimezone(UTC)


# --- recurring rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """Every `every_days` days at local time `at`, within [start, end] (local dates).

    Occurrences fall on `anchor + k * every_days` (weekly from enrollment: anchor = the
    enrollment day). Stored as JSON in the schedules table (`to_json` / `from_json`).
    """

    at: time
    every_days: int = 1
    anchor: date | None = None
    start: date | None = None
    end: date | None = None

    def __post_init__(self) -> None:
        if self.every_days < 1:
            raise ValueError("every_days must be 1 or more")

    def to_json(self) -> dict[str, Any]:
        return {
            "at": format_clock(self.at),
            "every_days": self.every_days,
            "anchor": self.anchor.isoformat() if self.anchor else None,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Rule:
        def day(key: str) -> date | None:
            value = raw.get(key)
            return date.fromisoformat(value) if value else None

        return cls(
            at=parse_clock(str(raw["at"])),
            every_days=int(raw.get("every_days", 1)),
            anchor=day("anchor"),
            start=day("start"),
            end=day("end"),
        )


def next_due(rule: Rule, tz: ZoneInfo, after: datetime) -> datetime | None:
    """The first occurrence of `rule` strictly after `after` (UTC), or None when it has ended."""
    day = after.astimezone(tz).date() - timedelta(days=1)
    if rule.start is not None and day < rule.start:
        day = rule.start
    anchor = rule.anchor or rule.start or day
    offset = (day - anchor).days % rule.every_days
    if offset:
        day += timedelta(days=rule.every_days - offset)
    step = timedelta(days=rule.every_days)
    while rule.end is None or day <= rule.end:
        due = local_instant(day, rule.at, tz)
        if due > after:
            return due
        day += step
    return None


def latest_due(
    rule: Rule, tz: ZoneInfo, first: datetime, now: datetime
) -> tuple[datetime, datetime | None]:
    """Catch up after downtime: from occurrence `first` (<= now), the latest occurrence that is
    not after `now`, and the one after it (None when the rule has ended)."""
    due, nxt = first, next_due(rule, tz, first)
    while nxt is not None and nxt <= now:
        due, nxt = nxt, next_due(rule, tz, nxt)
    return due, nxt


# --- the plan an enrollment implies -----------------------------------------------------------


@dataclass(frozen=True)
class PlannedSchedule:
    """One recurring check-in: which flow, on which rule, and a label people read."""

    flow: str
    rule: Rule
    label: str


def plan(
    conditions: Iterable[str],
    *,
    at: time,
    enrolled_on: date,
    due_date: date | None = None,
    cadence: Mapping[str, str] | None = None,
) -> list[PlannedSchedule]:
    """The check-ins for an enrollment: each condition daily or weekly (from the enrollment
    day) at the patient's time; pregnancy with a known due date becomes a campaign: weekly
    until the last month, then daily until two weeks after the due date."""
    cadence = {**DEFAULT_CADENCE, **(cadence or {})}
    out: list[PlannedSchedule] = []
    for condition in dict.fromkeys(conditions):
        flow = CONDITION_FLOWS.get(condition)
        if flow is None:
            raise ValueError(f"unknown condition {condition!r} (use {', '.join(CONDITION_FLOWS)})")
        how = cadence.get(condition, "daily")
        if how not in ("daily", "weekly"):
            raise ValueError(f"checkins.cadence.{condition}: use daily or weekly, not {how!r}")
        if condition == "pregnancy" and due_date is not None and how == "weekly":
            out.extend(_pregnancy(flow, at, enrolled_on, due_date))
        elif how == "weekly":
            out.append(PlannedSchedule(flow, Rule(at, 7, enrolled_on, enrolled_on), "weekly"))
        else:
            out.append(PlannedSchedule(flow, Rule(at, 1, start=enrolled_on), "daily"))
    return out


def _pregnancy(flow: str, at: time, enrolled_on: date, due: date) -> list[PlannedSchedule]:
    last_month = due - timedelta(days=LAST_MONTH_DAYS)
    out: list[PlannedSchedule] = []
    if enrolled_on < last_month:
        weekly_end = last_month - timedelta(days=1)
        out.append(
            PlannedSchedule(flow, Rule(at, 7, enrolled_on, enrolled_on, weekly_end), "weekly")
        )
    start = max(enrolled_on, last_month)
    end = due + timedelta(days=POST_TERM_DAYS)
    if start <= end:
        out.append(
            PlannedSchedule(flow, Rule(at, 1, start=start, end=end), "daily in the last month")
        )
    return out
