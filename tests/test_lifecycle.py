"""The session lifecycle: one nudge after a silence (never in quiet hours), expiry with the
answers kept, and "continue where you left off" when the patient writes again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

import pytest
from checkin_helpers import KOLKATA, Clock, Patient, ist, local_hm, reminders, run_until

from bot import engine
from bot.app import CareBridge
from bot.config import Config
from bot.flow import Library
from bot.lifecycle import Lifecycle, Step, next_step
from bot.messages import Inbound
from bot.schedules import QuietHours
from bot.session import Contact, Session, SessionStatus
from nlu.types import Answer, AnswerStatus, Intent, Understanding

POLICY = Lifecycle(timedelta(hours=2), timedelta(hours=10))
QUIET = QuietHours(time(21, 0), time(8, 0))

RESUME_EN = "Welcome back. Let us continue where you left off (or reply MENU)."
NUDGE_EN = "We have not heard back from you. When you are ready, please answer:"


# --- the policy (pure) ------------------------------------------------------------------------


def step(last: datetime, nudged: datetime | None, now: datetime, **kw: bool) -> Step:
    return next_step(last, nudged, now, KOLKATA, QUIET, POLICY, **kw)


def test_one_nudge_after_two_hours_then_expiry_ten_hours_later() -> None:
    last = ist(1, 9)
    assert step(last, None, ist(1, 10, 59)) is Step.WAIT
    assert step(last, None, ist(1, 11)) is Step.NUDGE
    assert step(last, ist(1, 11), ist(1, 20, 59)) is Step.WAIT
    assert step(last, ist(1, 11), ist(1, 21)) is Step.EXPIRE


def test_a_nudge_due_in_quiet_hours_waits_for_the_morning_and_is_not_dropped() -> None:
    last = ist(1, 20, 30)  # the nudge would be due at 22:30
    assert step(last, None, ist(1, 22, 30)) is Step.WAIT
    assert step(last, None, ist(2, 7, 59)) is Step.WAIT
    assert step(last, None, ist(2, 8)) is Step.NUDGE
    assert step(last, ist(2, 8), ist(2, 18)) is Step.EXPIRE


def test_a_nudge_from_before_the_last_answer_does_not_count() -> None:
    assert step(ist(1, 12), ist(1, 11), ist(1, 14)) is Step.NUDGE


def test_who_cannot_be_nudged_expires_on_the_same_clock() -> None:
    last = ist(1, 9)
    assert step(last, None, ist(1, 11), can_nudge=False) is Step.WAIT
    assert step(last, None, ist(1, 21), can_nudge=False) is Step.EXPIRE


def test_a_nudge_long_overdue_after_downtime_is_not_sent_late() -> None:
    assert step(ist(1, 9), None, ist(2, 9)) is Step.EXPIRE


# --- the engine: continue where you left off -------------------------------------------------


def understanding(text: str, answer: Answer | None) -> Understanding:
    return Understanding(text, "en", Intent("inform", 1.0), answer=answer)


def expired_at_bp(lib: Library) -> Session:
    session = Session(Contact(1, "sms", consent_care=True))
    session = engine.start(lib, session, "hypertension_checkin", ist(1, 9)).session
    inbound = Inbound("sms", "+1", "0", ist(1, 9, 1), "p1")
    session = engine.resume(
        lib, session, inbound, understanding("0", Answer(AnswerStatus.OK, ())), ist(1, 9, 1)
    ).session
    assert session.node == "ask_bp"
    return session.evolve(status=SessionStatus.EXPIRED)


def test_an_expired_conversation_still_expects_its_question(lib: Library) -> None:
    exp = engine.expectation(lib, expired_at_bp(lib))
    assert exp is not None and exp.concept == "systolic_bp"


def test_an_answer_after_expiry_carries_on_with_the_answers_kept(lib: Library) -> None:
    session = expired_at_bp(lib)
    u = understanding("150/95", Answer(AnswerStatus.OK, (150.0, 95.0)))
    sprint = engine.resume(
        lib, session, Inbound("sms", "+1", "150/95", ist(2, 9), "p2"), u, ist(2, 9)
    )
    assert sprint.session.status is SessionStatus.ACTIVE
    assert sprint.session.node == "ask_symptoms"
    assert sprint.session.answers["chest_pain"] is False  # from before the expiry
    assert sprint.session.answers["systolic_bp"] == 150.0
    assert "Welcome back" not in sprint.replies[0].text


def test_anything_else_after_expiry_offers_the_question_again(lib: Library) -> None:
    session = expired_at_bp(lib)
    u = understanding("hello", Answer(AnswerStatus.INVALID))
    sprint = engine.resume(
        lib, session, Inbound("sms", "+1", "hello", ist(2, 9), "p2"), u, ist(2, 9)
    )
    [reply] = sprint.replies
    assert reply.text.startswith(RESUME_EN)
    assert "measure your blood pressure" in reply.text
    assert sprint.session.status is SessionStatus.ACTIVE and sprint.session.node == "ask_bp"
    assert sprint.session.failures == 0


def test_an_expired_menu_is_just_the_menu_again(lib: Library) -> None:
    session = Session(Contact(1, "sms", consent_care=True))
    session = engine.start(lib, session, "menu", ist(1, 9)).session
    session = session.evolve(status=SessionStatus.EXPIRED)
    u = understanding("hello", Answer(AnswerStatus.INVALID))
    sprint = engine.resume(
        lib, session, Inbound("sms", "+1", "hello", ist(2, 9), "p2"), u, ist(2, 9)
    )
    assert sprint.replies[0].text == "What would you like to do?"


# --- the sweep on real conversations ----------------------------------------------------------


@pytest.fixture
def india(tmp_config: Config) -> Config:
    """A deployment in India: contacts who never said otherwise live in Asia/Kolkata."""
    checkins = tmp_config.checkins.model_copy(update={"default_timezone": "Asia/Kolkata"})
    return tmp_config.model_copy(update={"checkins": checkins})


@pytest.fixture
def app(india: Config) -> Iterator[CareBridge]:
    bridge = CareBridge(india, clock=Clock(ist(1, 9)))
    yield bridge
    bridge.close()


def into_screening(patient: Patient) -> None:
    assert "Which language" in patient.say("hi")  # first contact: the language menu
    assert "Do you agree" in patient.say("1")  # English, then the consent question
    patient.say("yes")
    patient.say("1")  # COVID-19 check
    patient.say("0")  # no warning signs: now asked the age


def test_a_silent_conversation_gets_one_nudge_then_expires_and_resumes(app: CareBridge) -> None:
    patient = Patient(app)
    into_screening(patient)
    run_until(app, ist(1, 12))
    [nudge] = reminders(app, patient.contact_id)
    assert local_hm(nudge.created_at) == "04-01 11:05"  # first tick after 2 h of silence
    assert nudge.outbound.text.startswith(NUDGE_EN)
    assert "How old" in nudge.outbound.text
    run_until(app, ist(1, 21, 0))
    assert len(reminders(app, patient.contact_id)) == 1  # one nudge, not one per sweep
    run_until(app, ist(1, 21, 5))  # ten hours after the nudge
    contact = app.store.find_contact("sms", patient.address)
    assert contact is not None
    assert app.store.current_session(contact).status is SessionStatus.EXPIRED
    reply = patient.say("hello again")
    assert reply.startswith(RESUME_EN) and "How old" in reply
    assert "symptoms" in patient.say("45").lower()
    session = app.store.current_session(contact)
    assert session.answers["age_years"] == 45 and session.answers["chest_pain"] is False


def test_an_answer_resets_the_silence(app: CareBridge) -> None:
    patient = Patient(app)
    into_screening(patient)
    app.clock.set(ist(1, 10, 30))  # type: ignore[attr-defined]
    patient.say("45")
    run_until(app, ist(1, 12, 25))
    assert reminders(app, patient.contact_id) == []
    run_until(app, ist(1, 12, 35))
    assert len(reminders(app, patient.contact_id)) == 1


def test_the_menu_waiting_for_a_choice_is_not_nudged(app: CareBridge) -> None:
    patient = Patient(app)
    assert "Which language" in patient.say("hi")  # first contact: the language menu
    assert "Do you agree" in patient.say("1")  # English, then the consent question
    assert "What would you like to do?" in patient.say("yes")  # now at the menu
    run_until(app, ist(2, 9))
    assert reminders(app, patient.contact_id) == []


def test_two_sweepers_nudge_once(app: CareBridge, india: Config) -> None:
    from bot.scheduler import Sweeper

    patient = Patient(app)
    into_screening(patient)
    other = CareBridge(india, clock=app.clock)
    try:
        run_until(
            app, ist(1, 12), sweepers=(Sweeper(app, strict=True), Sweeper(other, strict=True))
        )
    finally:
        other.close()
    assert len(reminders(app, patient.contact_id)) == 1


def test_nudges_follow_the_configured_times(tmp_config: Config) -> None:
    cfg = tmp_config.model_copy(
        update={
            "checkins": tmp_config.checkins.model_copy(
                update={"nudge_after": timedelta(minutes=30), "quiet_hours": None}
            )
        }
    )
    bridge = CareBridge(cfg, clock=Clock(datetime(2020, 4, 1, 20, 0, tzinfo=UTC)))
    try:
        patient = Patient(bridge)
        into_screening(patient)
        run_until(bridge, datetime(2020, 4, 1, 20, 40, tzinfo=UTC))
        [nudge] = reminders(bridge, patient.contact_id)
        assert nudge.created_at == datetime(2020, 4, 1, 20, 35, tzinfo=UTC)
    finally:
        bridge.close()
