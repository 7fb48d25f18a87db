"""bot.trends (pure) and the trend rule applied by the app: three blood-pressure check-ins in a
row at >= 140/90 raise `consultation`, once, with a summary a clinician reads on a phone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from bot import trends
from bot.app import CareBridge
from bot.config import Config
from bot.messages import Inbound
from bot.scheduler import sweep

T0 = datetime(2020, 4, 1, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class R:
    concept: str
    value: float
    at: datetime
    session_id: int | None


def bp(n: int, systolic: float, diastolic: float) -> list[R]:
    at = T0 + timedelta(days=n)
    return [R("systolic_bp", systolic, at, n), R("diastolic_bp", diastolic, at, n)]


# --- pure -------------------------------------------------------------------------------------


def test_pairs_become_one_reading_per_check_in_oldest_first() -> None:
    series = trends.blood_pressures([*bp(2, 158, 96), *bp(0, 142, 90), *bp(1, 151, 94)])
    assert [str(b) for b in series] == ["142/90", "151/94", "158/96"]


@pytest.mark.parametrize(
    ("systolic", "diastolic", "raised"),
    [(140, 80, True), (139, 89, False), (120, 90, True), (139.9, 89.9, False)],
)
def test_raised_means_140_systolic_or_90_diastolic(
    systolic: float, diastolic: float, raised: bool
) -> None:
    [reading] = trends.blood_pressures(bp(0, systolic, diastolic))
    assert reading.raised is raised


def test_three_in_a_row_alert_two_do_not() -> None:
    two = trends.blood_pressures([*bp(0, 120, 80), *bp(1, 145, 85), *bp(2, 130, 95)])
    assert trends.raised_streak(two) == 2 and not trends.trend_alert(two)
    three = trends.blood_pressures([*bp(0, 145, 85), *bp(1, 130, 95), *bp(2, 150, 92)])
    assert trends.raised_streak(three) == 3 and trends.trend_alert(three)


def test_a_normal_reading_breaks_the_run() -> None:
    series = trends.blood_pressures(
        [*bp(0, 150, 95), *bp(1, 150, 95), *bp(2, 128, 82), *bp(3, 150, 95)]
    )
    assert trends.raised_streak(series) == 1


def test_each_answer_is_a_reading_even_in_one_conversation() -> None:
    remeasured = [
        R("systolic_bp", 185, T0, 7),
        R("diastolic_bp", 100, T0, 7),
        R("systolic_bp", 150, T0 + timedelta(minutes=5), 7),
        R("diastolic_bp", 92, T0 + timedelta(minutes=5), 7),
    ]
    assert [str(b) for b in trends.blood_pressures(remeasured)] == ["185/100", "150/92"]


def test_summary_lines_are_compact_and_oldest_first() -> None:
    rows = [
        *bp(0, 142, 90),
        *bp(1, 151, 94),
        *bp(2, 158, 96),
        R("glucose_mg_dl", 110, T0, 0),
        R("glucose_mg_dl", 59.0, T0 + timedelta(days=1), 1),
        R("temperature_c", 37.5, T0, 0),
    ]
    assert trends.summary_lines(rows) == [
        "BP last 3: 142/90, 151/94, 158/96",
        "Glucose last 2 (mg/dL): 110, 59",
        "Temp last 1 (C): 37.5",
    ]


def test_summary_keeps_the_last_five() -> None:
    rows = [r for n in range(8) for r in bp(n, 130 + n, 80)]
    [line] = trends.summary_lines(rows)
    assert line == "BP last 5: 133/80, 134/80, 135/80, 136/80, 137/80"


def test_nothing_measured_nothing_said() -> None:
    assert trends.summary_lines([]) == []


# --- applied by the app -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def app(tmp_config: Config) -> Iterator[CareBridge]:
    bridge = CareBridge(tmp_config, clock=Clock())
    yield bridge
    bridge.close()


_ids = count()


def say(app: CareBridge, text: str) -> str:
    app.clock.now += timedelta(seconds=20)  # type: ignore[attr-defined]
    handled = app.handle(Inbound("sms", "+15550001", text, app.clock(), f"T{next(_ids)}"))
    return "\n".join(m.text for m in handled.replies)


def run_bp_checkin(app: CareBridge, reading: str) -> str:
    app.clock.now += timedelta(days=1)  # type: ignore[attr-defined]
    for text in ("hello", "2", "1", "0", reading, "0"):
        reply = say(app, text)
    if "pregnant" in reply.lower():
        reply = say(app, "no")
    return say(app, "yes")  # medicines taken


@pytest.fixture
def consented(app: CareBridge) -> CareBridge:
    assert "Which language" in say(app, "hi")  # first contact: the language menu
    assert "Do you agree" in say(app, "1")  # English, then the consent question
    say(app, "yes")
    return app


def test_three_raised_check_ins_open_one_consultation_with_the_trend(
    consented: CareBridge,
) -> None:
    app = consented
    for reading in ("138/84", "142/90", "151/94"):
        run_bp_checkin(app, reading)
        sweep(app, app.clock(), strict=True)
    assert app.store.escalations() == []
    run_bp_checkin(app, "158/96")
    report = sweep(app, app.clock(), strict=True)
    assert report.escalated == 1
    [ticket] = app.store.escalations()
    assert (ticket.level, ticket.reason, ticket.flow) == (
        "consultation",
        "bp_trend",
        "hypertension_checkin",
    )
    assert "BP last 4: 138/84, 142/90, 151/94, 158/96" in ticket.summary["trends"]
    assert ticket.summary["trend_rule"] == "3 check-ins in a row at or above 140/90"
    # idempotent: the same conversation never raises it twice, by sweep or by the app
    assert sweep(app, app.clock(), strict=True).escalated == 0
    contact = app.store.find_contact("sms", "+15550001")
    assert contact is not None
    session = app.store.current_session(contact)
    assert app.apply_trend_rule(session, app.clock()) is None
    assert app.store.get_escalation(ticket.id).appended == 0  # type: ignore[union-attr]


def test_every_escalation_summary_carries_the_trend_lines(consented: CareBridge) -> None:
    app = consented
    run_bp_checkin(app, "142/90")
    run_bp_checkin(app, "185/100")  # crisis range: consultation_24, escalated by the flow
    [ticket] = app.store.escalations()
    assert ticket.reason == "triage"
    assert ticket.summary["trends"] == ["BP last 2: 142/90, 185/100"]
