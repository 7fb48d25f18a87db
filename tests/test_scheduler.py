"""bot.scheduler: sweeps are idempotent claims over rows. Several schedulers, missed ticks and
crashes neither lose nor duplicate a check-in; quiet hours defer and never drop; follow-ups
decided by flows repeat; APScheduler only ticks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from checkin_helpers import Clock, Patient, ist, local_hm, reminders, run_until

from bot import scheduler
from bot.app import CareBridge
from bot.config import Config
from bot.enrollment import EnrollRequest
from bot.scheduler import Sweeper, SweepScheduler, missed_streak
from bot.store import CheckinKind, CheckinRow, CheckinStatus, JobStatus


@pytest.fixture
def app(tmp_config: Config) -> Iterator[CareBridge]:
    bridge = CareBridge(tmp_config, clock=Clock(ist(1, 8, 30)))
    yield bridge
    bridge.close()


def enrolled(
    app: CareBridge, *, at: str = "09:00", conditions: tuple[str, ...] = ("diabetes",)
) -> Patient:
    """A patient enrolled by a coordinator who has agreed (no broadcasts)."""
    req = EnrollRequest(
        "sms",
        "+919800000001",
        conditions,
        at,
        "Asia/Kolkata",
        glucose_unit="mg/dL",
        peak_flow_best=400.0,
        team="Clinic A",
    )
    scheduler.enroll(app, req, app.clock())
    patient = Patient(app)
    assert "check-in messages" in patient.say("yes")  # consent to the service, then check-ins
    patient.say("yes")
    assert "you are enrolled" in patient.say("no")
    app.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    scheduler.sweep(app, app.clock(), strict=True)  # activates the enrollment
    return patient


def checkins_sent(app: CareBridge, patient: Patient) -> list[str]:
    """Local times of the check-in conversations the bot started (not nudges)."""
    return [
        local_hm(r.created_at)
        for r in reminders(app, patient.contact_id)
        if "check-in:" in r.outbound.text
    ]


def answer_diabetes(patient: Patient, glucose: str = "110") -> str:
    for text in ("0", glucose, "0", "no"):
        patient.say(text)
    return patient.say("yes")


# --- the missed-check-in count (pure) ---------------------------------------------------------


def row(day: int, status: CheckinStatus, flow: str = "a", kind: str = "scheduled") -> CheckinRow:
    due = ist(day, 9)
    return CheckinRow(1, 1, CheckinKind(kind), flow, None, due, due, status, None, due, None, None)


def test_missed_in_a_row_counts_check_in_times_not_flows() -> None:
    m, a = CheckinStatus.MISSED, CheckinStatus.ANSWERED
    assert missed_streak([row(1, a), row(2, m), row(3, m), row(3, m, "b")]) == 2
    assert missed_streak([row(1, m), row(2, CheckinStatus.LATE), row(3, m)]) == 1
    assert missed_streak([row(1, m), row(2, m), row(3, CheckinStatus.OPEN)]) == 2
    assert missed_streak([row(1, m), row(2, m, kind="follow_up")]) == 1
    assert missed_streak([row(1, m), row(2, CheckinStatus.CANCELLED)]) == 1
    assert missed_streak([]) == 0


# --- exactly once -----------------------------------------------------------------------------


def test_two_schedulers_on_one_database_send_each_check_in_once(
    app: CareBridge, tmp_config: Config
) -> None:
    patient = enrolled(app)
    other = CareBridge(tmp_config, clock=app.clock)
    try:
        both = (Sweeper(app, strict=True), Sweeper(other, strict=True))
        run_until(app, ist(3, 12), sweepers=both)
    finally:
        other.close()
    assert checkins_sent(app, patient) == ["04-01 09:00", "04-02 09:00", "04-03 09:00"]
    assert len(app.store.jobs(patient.contact_id, kind="checkin")) == 3


def test_a_missed_tick_sends_late_but_once(app: CareBridge) -> None:
    patient = enrolled(app)
    run_until(app, ist(2, 8, 0))
    app.clock.set(ist(2, 11, 2))  # type: ignore[attr-defined]  # the scheduler was down 3 hours
    run_until(app, ist(2, 12))
    assert checkins_sent(app, patient) == ["04-01 09:00", "04-02 11:05"]


def test_after_a_long_outage_only_the_latest_occurrence_counts(app: CareBridge) -> None:
    patient = enrolled(app)
    run_until(app, ist(2, 8, 0))
    app.clock.set(ist(4, 16))  # type: ignore[attr-defined]  # down for 56 hours
    reports = run_until(app, ist(5, 10))
    assert sum(r.skipped for r in reports) == 1  # 4 April 09:00 is 7 h late: skipped
    assert checkins_sent(app, patient) == ["04-01 09:00", "04-05 09:00"]


def test_a_worker_that_dies_mid_job_loses_nothing(app: CareBridge, tmp_config: Config) -> None:
    patient = enrolled(app, at="10:00")
    contact_id = patient.contact_id
    app.clock.set(ist(1, 10))  # type: ignore[attr-defined]
    sweeper = Sweeper(app, strict=True)
    sweeper.materialize(app.clock(), scheduler.SweepReport())
    [claimed] = app.store.claim_due_jobs(app.clock(), 10, "worker-that-dies")
    app.close()  # the process dies before finishing the job
    revived = CareBridge(tmp_config, clock=app.clock)
    try:
        run_until(revived, ist(1, 10, 5))
        assert reminders(revived, contact_id)[1:] == []  # still claimed by the dead one
        reports = run_until(revived, ist(1, 10, 15))
        assert sum(r.requeued for r in reports) == 1
        assert checkins_sent(revived, Patient(revived)) == ["04-01 10:10"]  # stuck_after: 10m
        [job] = revived.store.jobs(contact_id, kind="checkin")
        assert (job.id, job.status) == (claimed.id, JobStatus.DONE)
    finally:
        revived.close()


# --- quiet hours ------------------------------------------------------------------------------


def test_a_check_in_time_inside_quiet_hours_waits_for_the_morning(app: CareBridge) -> None:
    patient = enrolled(app, at="22:00")
    run_until(app, ist(3, 9))
    assert checkins_sent(app, patient) == ["04-02 08:00", "04-03 08:00"]


def test_an_urgent_follow_up_goes_out_in_quiet_hours_and_a_routine_one_waits(
    app: CareBridge,
) -> None:
    patient = enrolled(app, at="20:30")
    run_until(app, ist(1, 20, 45))
    app.clock.set(ist(1, 20, 50))  # type: ignore[attr-defined]
    reply = answer_diabetes(patient, "60")  # low, at 20:50:50: re-check due at 21:05:50
    assert "check again in 15 minutes" in reply
    run_until(app, ist(1, 21, 30))
    assert checkins_sent(app, patient)[-1] == "04-01 21:10"  # the tick after: in quiet hours
    # A routine follow-up due at night (the patient has long gone quiet) waits for 08:00.
    contact_id = patient.contact_id
    app.store.schedule_job(contact_id, "follow_up", "covid_screening", ist(1, 23), {}, "x")
    run_until(app, ist(2, 8, 30))
    latest = app.store.checkins(contact_id, kind="follow_up")[0]
    assert local_hm(latest.not_before) == "04-02 08:00"


# --- follow-ups decided by flows --------------------------------------------------------------


def test_a_daily_follow_up_repeats_the_given_number_of_times(app: CareBridge) -> None:
    patient = enrolled(app, at="09:00")
    app.store.schedule_job(
        patient.contact_id,
        "follow_up",
        "covid_screening",
        ist(1, 12),
        {"every_s": 86400.0, "times": 3},
        dedupe_key="follow_up:test",
    )
    run_until(app, ist(5, 13))
    rows = app.store.checkins(patient.contact_id, kind="follow_up")
    assert sorted(local_hm(c.due_at) for c in rows) == ["04-01 12:00", "04-02 12:00", "04-03 12:00"]
    assert all(j.status is JobStatus.DONE for j in app.store.jobs(kind="follow_up"))


def test_the_asthma_yellow_zone_is_checked_again_in_24_hours(app: CareBridge) -> None:
    patient = enrolled(app, at="09:00", conditions=("asthma",))
    run_until(app, ist(2, 9, 5))
    for text in ("0", "65", "1", "2"):  # yellow zone, woken at night, reliever twice
        patient.say(text)
    assert "again in 24 hours" in patient.say("yes")
    run_until(app, ist(3, 10))
    kinds = [(c.kind, local_hm(c.due_at)) for c in app.store.checkins(patient.contact_id)]
    assert (CheckinKind.FOLLOW_UP, "04-03 09:05") in kinds  # 24 h after the answer


def test_several_conditions_take_turns(app: CareBridge) -> None:
    patient = enrolled(app, conditions=("diabetes", "hypertension"))
    run_until(app, ist(1, 9, 0))
    assert checkins_sent(app, patient) == ["04-01 09:00"]  # one conversation at a time
    answer_diabetes(patient)
    run_until(app, ist(1, 9, 5))
    sent = [r.outbound.text for r in reminders(app, patient.contact_id)]
    assert sent[-1].startswith("Blood pressure check-in")


def test_an_opted_out_patient_gets_nothing(app: CareBridge) -> None:
    patient = enrolled(app)
    patient.say("STOP")
    reports = run_until(app, ist(3, 10))
    assert checkins_sent(app, patient) == []
    assert sum(r.paused for r in reports) == 1


def test_missing_three_in_a_row_alerts_a_clinician_once(app: CareBridge) -> None:
    patient = enrolled(app)
    run_until(app, ist(4, 20))
    [ticket] = app.store.escalations()
    assert (ticket.level, ticket.reason, ticket.summary["missed_checkins"]) == (
        "consultation",
        "missed_checkins",
        3,
    )
    run_until(app, ist(6, 20))  # two more missed: not yet a multiple of three
    assert len(app.store.escalations()) == 1 and app.store.escalations()[0].appended == 0
    assert patient.contact_id == ticket.contact_id


# --- APScheduler as the metronome -------------------------------------------------------------


def test_apscheduler_only_ticks_the_sweep(app: CareBridge) -> None:
    enrolled(app)
    ticked = threading.Event()
    seen: list[scheduler.SweepReport] = []

    def done(report: scheduler.SweepReport) -> None:
        seen.append(report)
        ticked.set()

    app.clock.set(ist(2, 9, 1))  # type: ignore[attr-defined]
    metronome = SweepScheduler(app, interval_s=3600, on_sweep=done)
    metronome.start()
    try:
        assert ticked.wait(10)
    finally:
        metronome.shutdown()
    assert not metronome.running
    assert seen[0].started == 1 and seen[0].materialized == 1


def test_a_failing_tick_never_stops_the_scheduler(app: CareBridge) -> None:
    def broken() -> datetime:
        raise RuntimeError("clock broke")

    metronome = SweepScheduler(app, clock=lambda: datetime(2020, 4, 1, tzinfo=UTC))
    metronome.clock = broken
    assert metronome.tick() is None
