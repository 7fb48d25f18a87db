"""Two weeks of daily diabetes check-ins for one patient in Kolkata, with a controllable clock,
the real store on a file, the real interpreter and `sweep(now)` every five minutes:
answered days, missed days, a low glucose with its 15-minute re-check (once by day, once in
quiet hours), nudges held back by quiet hours, a conversation resumed after it expired, a
process restart, a scheduler outage, two schedulers at once, and the missed-check-in
escalation. Every reminder is sent exactly once, at the right local time."""

from __future__ import annotations

from checkin_helpers import KOLKATA, Clock, Patient, ist, local_hm, reminders, tick_until

from bot import scheduler
from bot.app import CareBridge
from bot.config import Config
from bot.enrollment import EnrollRequest
from bot.scheduler import Sweeper
from bot.schedules import QuietHours, in_quiet_hours, parse_clock
from bot.store import CheckinKind, CheckinStatus, JobStatus

CHECKIN = "Diabetes check-in: a few short questions."
NUDGE = "Reminder: your check-in is waiting for you."
CONSENT = "Do you agree to continue?"


def run(app: CareBridge, until: object, **kw: tuple[Sweeper, ...]) -> None:
    for _ in tick_until(app, until, **kw):  # type: ignore[arg-type]
        pass


def answer(patient: Patient, glucose: str) -> str:
    """A whole check-in: no warning signs, the reading (mmol/L meter), no symptoms, no
    ketones, medicines taken; returns the advice."""
    for text in ("0", glucose, "0", "no"):
        patient.say(text)
    return patient.say("yes")


def kind_of(text: str) -> str:
    if text.startswith(CHECKIN):
        return "check-in"
    if text.startswith(NUDGE):
        return "nudge"
    if text.endswith(CONSENT):
        return "consent"
    return "other: " + text[:40]


def test_two_weeks_of_daily_check_ins(tmp_config: Config) -> None:
    clock = Clock(ist(1, 10))
    app = CareBridge(tmp_config, clock=clock)
    request = EnrollRequest(
        "sms", "+919800000001", ("diabetes",), "20:30", "Asia/Kolkata", team="PHC Nagpur",
        glucose_unit="mmol/L",
    )  # fmt: skip
    done = scheduler.enroll(app, request, clock())
    patient = Patient(app, "+919800000001")
    patient.say("yes")  # consent to care messages
    patient.say("yes")  # consent to check-ins
    assert "you are enrolled" in patient.say("no")  # no broadcasts

    # Day 1: answered. Day 2: a low (3.3 mmol/L = 59 mg/dL), re-checked 15 minutes later.
    run(app, ist(1, 20, 31))
    answer(patient, "6.1")
    run(app, ist(2, 20, 32))
    assert "check again in 15 minutes" in answer(patient, "3.3")
    run(app, ist(2, 20, 52))
    assert "No urgent action" in answer(patient, "5.8")

    # Day 3: missed (nudged at 08:00, not at 22:30). Day 4: answered.
    run(app, ist(4, 20, 35))
    answer(patient, "6.4")

    # Day 5: one answer, then silence: nudged on day 6 at 08:00 with the pending question.
    run(app, ist(5, 20, 40))
    patient.say("0")
    run(app, ist(6, 12, 0))
    app.close()  # the process restarts between the nudge and the expiry
    app = CareBridge(tmp_config, clock=clock)
    patient = Patient(app, "+919800000001")
    run(app, ist(6, 19, 0))  # expired at 18:00: counted as missed for now
    back = patient.say("sorry, I was travelling")
    assert back.startswith("Welcome back") and "reading in mg/dL" in back
    for text in ("6.0", "0", "no"):  # continues where it stopped: the answers are kept
        patient.say(text)
    patient.say("yes")

    # Days 6, 7 and 8: missed. The third miss in a row alerts the clinician queue.
    run(app, ist(9, 17, 55))
    assert app.store.escalations() == []
    run(app, ist(9, 20, 31))
    answer(patient, "7.0")

    # Day 10: the scheduler is down from 20:20 to 20:48; the check-in goes out late, once.
    run(app, ist(10, 20, 20))
    clock.set(ist(10, 20, 48))
    run(app, ist(10, 20, 51))
    answer(patient, "6.6")

    # Day 11: a low at 20:51; its re-check is due at 21:07, in quiet hours, and still goes out.
    run(app, ist(11, 20, 51))
    assert "check again in 15 minutes" in answer(patient, "3.1")
    run(app, ist(11, 21, 12))
    answer(patient, "5.5")

    # Days 12 and 13: a second scheduler sweeps the same database at the same time.
    other = CareBridge(tmp_config, clock=clock)
    both = (Sweeper(app, strict=True), Sweeper(other, strict=True))
    run(app, ist(12, 20, 31), sweepers=both)
    answer(patient, "6.2")
    run(app, ist(13, 20, 31), sweepers=both)
    answer(patient, "5.9")
    other.close()

    # Day 14: answered; the fortnight ends.
    run(app, ist(14, 20, 31))
    answer(patient, "6.3")
    run(app, ist(14, 23, 0))

    # --- every reminder exactly once, at the right local time ------------------------------
    sent = [
        (local_hm(r.created_at), kind_of(r.outbound.text)) for r in reminders(app, done.contact_id)
    ]
    assert sent == [
        ("04-01 10:00", "consent"),
        ("04-01 20:30", "check-in"),
        ("04-02 20:30", "check-in"),
        ("04-02 20:50", "check-in"),  # the 15-minute re-check after the low
        ("04-03 20:30", "check-in"),
        ("04-04 08:00", "nudge"),  # due 22:30, quiet hours: the morning after
        ("04-04 20:30", "check-in"),
        ("04-05 20:30", "check-in"),
        ("04-06 08:00", "nudge"),
        ("04-06 20:30", "check-in"),
        ("04-07 08:00", "nudge"),
        ("04-07 20:30", "check-in"),
        ("04-08 08:00", "nudge"),
        ("04-08 20:30", "check-in"),
        ("04-09 08:00", "nudge"),
        ("04-09 20:30", "check-in"),
        ("04-10 20:50", "check-in"),  # after the outage
        ("04-11 20:30", "check-in"),
        ("04-11 21:10", "check-in"),  # the urgent re-check, in quiet hours
        ("04-12 20:30", "check-in"),
        ("04-13 20:30", "check-in"),
        ("04-14 20:30", "check-in"),
    ]
    quiet = QuietHours(parse_clock("21:00"), parse_clock("08:00"))
    in_quiet = [
        t
        for t, k in sent
        if in_quiet_hours(ist(int(t[3:5]), int(t[6:8]), int(t[9:])), KOLKATA, quiet)
    ]
    assert in_quiet == ["04-11 21:10"]
    nudge_6 = next(
        r for r in reminders(app, done.contact_id) if local_hm(r.created_at) == "04-06 08:00"
    )
    assert "reading in mg/dL" in nudge_6.outbound.text  # the question left unanswered
    assert len(app.store.outbox(contact_id=done.contact_id)) == len(set(
        (r.created_at, r.outbound.text) for r in app.store.outbox(contact_id=done.contact_id)
    ))  # fmt: skip

    # --- how each day went -------------------------------------------------------------------
    scheduled = {
        local_hm(c.due_at)[:5]: str(c.status)
        for c in app.store.checkins(done.contact_id, kind=CheckinKind.SCHEDULED)
    }
    assert scheduled == {
        "04-01": "answered", "04-02": "answered", "04-03": "missed", "04-04": "answered",
        "04-05": "late", "04-06": "missed", "04-07": "missed", "04-08": "missed",
        "04-09": "answered", "04-10": "answered", "04-11": "answered", "04-12": "answered",
        "04-13": "answered", "04-14": "answered",
    }  # fmt: skip
    follow_ups = app.store.checkins(done.contact_id, kind=CheckinKind.FOLLOW_UP)
    assert [(local_hm(c.due_at), c.status) for c in reversed(follow_ups)] == [
        ("04-02 20:47", CheckinStatus.ANSWERED),
        ("04-11 21:06", CheckinStatus.ANSWERED),
    ]

    # --- the missed-check-in escalation, raised once, when the third miss expired -------------
    [ticket] = app.store.escalations()
    assert (ticket.reason, ticket.level, ticket.flow) == (
        "missed_checkins",
        "consultation",
        "diabetes_checkin",
    )
    assert local_hm(ticket.opened_at) == "04-09 18:00"
    assert ticket.summary["missed_checkins"] == 3
    assert ticket.summary["trends"] == ["Glucose last 5 (mg/dL): 110, 59, 104, 115, 108"]

    # --- readings, jobs -----------------------------------------------------------------------
    glucose = [r.value for r in reversed(app.store.readings(done.contact_id, "glucose_mg_dl"))]
    assert glucose == [110, 59, 104, 115, 108, 126, 119, 56, 99, 112, 106, 113]
    jobs = app.store.jobs(done.contact_id)
    assert {j.status for j in jobs} == {JobStatus.DONE}
    assert sorted(j.kind for j in jobs).count("checkin") == 14
    app.close()
