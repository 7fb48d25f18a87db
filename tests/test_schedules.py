"""bot.schedules: local-time recurrence in IANA zones (DST included), quiet hours, and the plan
an enrollment implies. Pure: every instant is given."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.schedules import (
    QuietHours,
    Rule,
    defer_quiet,
    in_quiet_hours,
    latest_due,
    local_instant,
    next_due,
    parse_clock,
    parse_duration,
    plan,
    zone,
)

KOLKATA = zone("Asia/Kolkata")
NEW_YORK = zone("America/New_York")
LONDON = zone("Europe/London")
QUIET = QuietHours(time(21, 0), time(8, 0))


def utc(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=UTC)


def local(tz: ZoneInfo, y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=tz)


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("90s", 90), (30, 30)],
)
def test_durations_read_like_people_write_them(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "soon", "2 hours", "-1h"])
def test_a_bad_duration_says_how_to_write_one(bad: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 15m"):
        parse_duration(bad)


def test_clock_times_are_24_hour() -> None:
    assert parse_clock("09:00") == time(9, 0)
    assert parse_clock("9:30") == time(9, 30)
    with pytest.raises(ValueError, match="HH:MM"):
        parse_clock("25:00")
    with pytest.raises(ValueError, match="HH:MM"):
        parse_clock("9am")


def test_an_unknown_zone_is_named() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        zone("Mars/Olympus")


# --- daily and weekly at a local time ---------------------------------------------------------


def test_daily_at_nine_in_kolkata_is_0330_utc() -> None:
    rule = Rule(time(9, 0))
    assert next_due(rule, KOLKATA, utc(2020, 4, 1, 0, 0)) == utc(2020, 4, 1, 3, 30)
    # strictly after: at the occurrence itself, the next one is tomorrow's
    assert next_due(rule, KOLKATA, utc(2020, 4, 1, 3, 30)) == utc(2020, 4, 2, 3, 30)


def test_a_local_date_that_is_yesterday_in_utc_is_handled() -> None:
    # 06:00 in Kolkata on 2 April is 00:30 UTC on 2 April; 02:00 local is 20:30 UTC the day before
    rule = Rule(time(2, 0))
    assert next_due(rule, KOLKATA, utc(2020, 4, 1, 19, 0)) == utc(2020, 4, 1, 20, 30)


def test_weekly_falls_on_the_enrollment_weekday() -> None:
    enrolled = date(2020, 4, 1)  # a Wednesday
    rule = Rule(time(9, 0), every_days=7, anchor=enrolled, start=enrolled)
    first = next_due(rule, KOLKATA, local(KOLKATA, 2020, 4, 1, 10, 0))
    assert first == local(KOLKATA, 2020, 4, 8, 9, 0)
    assert next_due(rule, KOLKATA, first) == local(KOLKATA, 2020, 4, 15, 9, 0)


def test_a_rule_waits_for_its_start_and_ends() -> None:
    rule = Rule(time(9, 0), start=date(2020, 5, 1), end=date(2020, 5, 2))
    first = next_due(rule, KOLKATA, utc(2020, 4, 1))
    assert first == local(KOLKATA, 2020, 5, 1, 9, 0)
    second = next_due(rule, KOLKATA, first)
    assert second == local(KOLKATA, 2020, 5, 2, 9, 0)
    assert next_due(rule, KOLKATA, second) is None


def test_rules_round_trip_through_json() -> None:
    rule = Rule(time(20, 30), 7, date(2020, 4, 1), date(2020, 4, 1), date(2020, 6, 1))
    assert Rule.from_json(rule.to_json()) == rule
    assert Rule.from_json({"at": "09:00"}) == Rule(time(9, 0))


# --- daylight saving --------------------------------------------------------------------------


def test_nine_am_stays_nine_am_across_the_spring_change_in_new_york() -> None:
    rule = Rule(time(9, 0))
    before = next_due(rule, NEW_YORK, utc(2021, 3, 13, 0, 0))
    assert before == utc(2021, 3, 13, 14, 0)  # EST, UTC-5
    after = next_due(rule, NEW_YORK, before)
    assert after == utc(2021, 3, 14, 13, 0)  # EDT, UTC-4: 23 hours later
    assert after.astimezone(NEW_YORK).hour == 9


def test_a_time_skipped_by_spring_forward_moves_forward_by_the_gap() -> None:
    # 02:30 does not exist in New York on 14 March 2021; it becomes 03:30 EDT
    assert local_instant(date(2021, 3, 14), time(2, 30), NEW_YORK) == utc(2021, 3, 14, 7, 30)


def test_a_repeated_time_in_autumn_is_its_first_occurrence() -> None:
    # 01:30 happens twice in London on 25 October 2020; the first is BST (UTC+1)
    assert local_instant(date(2020, 10, 25), time(1, 30), LONDON) == utc(2020, 10, 25, 0, 30)
    rule = Rule(time(1, 30))
    assert next_due(rule, LONDON, utc(2020, 10, 24, 12, 0)) == utc(2020, 10, 25, 0, 30)
    assert next_due(rule, LONDON, utc(2020, 10, 25, 0, 30)) == utc(2020, 10, 26, 1, 30)


# --- catching up after downtime ---------------------------------------------------------------


def test_catch_up_keeps_only_the_latest_past_occurrence() -> None:
    rule = Rule(time(9, 0))
    first = local(KOLKATA, 2020, 4, 1, 9, 0)
    due, nxt = latest_due(rule, KOLKATA, first, local(KOLKATA, 2020, 4, 3, 12, 0))
    assert due == local(KOLKATA, 2020, 4, 3, 9, 0)
    assert nxt == local(KOLKATA, 2020, 4, 4, 9, 0)


# --- quiet hours ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hh", "mm", "quiet"),
    [(20, 59, False), (21, 0, True), (23, 30, True), (0, 0, True), (7, 59, True), (8, 0, False)],
)
def test_quiet_hours_wrap_midnight(hh: int, mm: int, quiet: bool) -> None:
    assert QUIET.contains(time(hh, mm)) is quiet
    assert in_quiet_hours(local(KOLKATA, 2020, 4, 1, hh, mm), KOLKATA, QUIET) is quiet


def test_a_reminder_due_in_the_evening_waits_until_the_next_morning() -> None:
    late = local(KOLKATA, 2020, 4, 1, 22, 30)
    assert defer_quiet(late, KOLKATA, QUIET) == local(KOLKATA, 2020, 4, 2, 8, 0)


def test_a_reminder_due_before_dawn_waits_until_that_morning() -> None:
    early = local(KOLKATA, 2020, 4, 2, 5, 0)
    assert defer_quiet(early, KOLKATA, QUIET) == local(KOLKATA, 2020, 4, 2, 8, 0)


def test_a_reminder_outside_quiet_hours_is_unchanged_and_none_means_no_quiet_hours() -> None:
    noon = local(KOLKATA, 2020, 4, 1, 12, 0)
    assert defer_quiet(noon, KOLKATA, QUIET) == noon
    late = local(KOLKATA, 2020, 4, 1, 23, 0)
    assert defer_quiet(late, KOLKATA, None) == late


def test_quiet_hours_are_the_patients_not_the_servers() -> None:
    # 16:00 UTC is 21:30 in Kolkata (quiet) but 17:00 in London (not quiet)
    when = utc(2020, 4, 1, 16, 0)
    assert in_quiet_hours(when, KOLKATA, QUIET)
    assert not in_quiet_hours(when, LONDON, QUIET)


def test_a_window_that_does_not_wrap() -> None:
    siesta = QuietHours(time(13, 0), time(15, 0))
    assert defer_quiet(local(KOLKATA, 2020, 4, 1, 14, 0), KOLKATA, siesta) == local(
        KOLKATA, 2020, 4, 1, 15, 0
    )
    assert not siesta.contains(time(12, 0))


# --- the plan for an enrollment ---------------------------------------------------------------


def test_conditions_become_daily_check_ins_at_the_patients_time() -> None:
    planned = plan(["diabetes", "hypertension"], at=time(9, 0), enrolled_on=date(2020, 4, 1))
    assert [(p.flow, p.label) for p in planned] == [
        ("diabetes_checkin", "daily"),
        ("hypertension_checkin", "daily"),
    ]
    assert all(p.rule.every_days == 1 and p.rule.at == time(9, 0) for p in planned)


def test_cadence_can_make_a_condition_weekly_from_enrollment() -> None:
    [p] = plan(["copd"], at=time(9, 0), enrolled_on=date(2020, 4, 1), cadence={"copd": "weekly"})
    assert (p.rule.every_days, p.rule.anchor, p.label) == (7, date(2020, 4, 1), "weekly")


def test_pregnancy_is_weekly_then_daily_in_the_last_month() -> None:
    due = date(2020, 7, 1)
    weekly, daily = plan(["pregnancy"], at=time(9, 0), enrolled_on=date(2020, 4, 1), due_date=due)
    assert (weekly.rule.every_days, weekly.rule.end) == (7, date(2020, 6, 2))
    assert (daily.rule.every_days, daily.rule.start) == (1, date(2020, 6, 3))
    assert daily.rule.end == date(2020, 7, 15)
    assert daily.label == "daily in the last month"
    # the first daily occurrence is 28 days before the due date
    assert next_due(daily.rule, KOLKATA, utc(2020, 5, 1)) == local(KOLKATA, 2020, 6, 3, 9, 0)


def test_pregnancy_enrolled_in_the_last_month_is_daily_only() -> None:
    [daily] = plan(
        ["pregnancy"], at=time(9, 0), enrolled_on=date(2020, 6, 20), due_date=date(2020, 7, 1)
    )
    assert daily.rule.start == date(2020, 6, 20)


def test_pregnancy_without_a_due_date_is_weekly() -> None:
    [weekly] = plan(["pregnancy"], at=time(9, 0), enrolled_on=date(2020, 4, 1))
    assert weekly.rule.every_days == 7 and weekly.rule.end is None


def test_an_unknown_condition_is_named() -> None:
    with pytest.raises(ValueError, match="'gout'"):
        plan(["gout"], at=time(9, 0), enrolled_on=date(2020, 4, 1))
