"""Complaint routing in the engine (docs/routing.md): the flow is chosen by the complaint and
the person's conditions (stated, enrolled, earlier answers); chained flows keep the most
urgent level; a complaint no flow covers ends at least at a consultation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot import engine
from bot.flow import Library
from bot.messages import Inbound
from bot.session import Contact, Session
from nlu.interpreter import default_interpreter

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def first(lib: Library, text: str, lang: str = "en", **contact: object) -> engine.Sprint:
    """A consented contact writes `text` outside a conversation."""
    who = Contact(id=1, channel="sms", language=lang, consent_care=True, language_set=True)
    session = Session(contact=Contact(**{**who.__dict__, **contact}))  # type: ignore[arg-type]
    u = default_interpreter().interpret(text, None, lang)
    return engine.resume(lib, session, Inbound("sms", "p", text, NOW, "m1"), u, NOW)


def routed(
    lib: Library, text: str, lang: str = "en", known: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    return engine.route(lib, default_interpreter().interpret(text, None, lang), known)


def test_pregnancy_goes_to_the_pregnancy_danger_signs(lib: Library) -> None:
    """The issue's example is a WHO/FIGO danger sign: the emergency answer comes first; a plain
    headache in pregnancy is asked about once, and a "no" goes on to the pregnancy questions."""
    text = "hi I'm 7 months pregnant, bad headache and my vision is blurry"
    assert routed(lib, text)[0] == "pregnancy_checkin"
    sprint = first(lib, text)
    assert sprint.session.red_flags == ("pregnancy_headache_vision",)
    assert sprint.session.triage == "emergency_ambulance"
    assert "112" in sprint.replies[0].text
    text = "hi I'm 7 months pregnant and I have a headache"
    asked = first(lib, text)
    assert asked.session.confirm_flag == "pregnancy_headache_vision"
    no = Inbound("sms", "p", "2", NOW, "m2")
    expecting = engine.expectation(lib, asked.session)
    u = default_interpreter().interpret("2", expecting, "en")
    after = engine.resume(lib, asked.session, no, u, NOW)
    assert after.session.flow == "pregnancy_checkin"


def test_a_stated_condition_with_symptoms_goes_to_its_check_in(lib: Library) -> None:
    assert routed(lib, "I have heart failure and my ankles are swollen") == (
        "heart_failure_checkin",
    )
    assert routed(lib, "tengo epoc y más flema", "es") == ("copd_checkin",)
    assert routed(lib, "mujhe dama hai aur raat ko saans phoolti hai", "hi")[0] == "asthma_checkin"


def test_an_enrolled_condition_with_a_symptom_its_check_in_asks_about(lib: Library) -> None:
    sprint = first(lib, "my ankles are swollen", conditions=("heart_failure",))
    assert sprint.session.flow == "heart_failure_checkin"
    assert sprint.session.answers["heart_failure"] is True  # known, pre-filled
    assert routed(lib, "my ankles are swollen") == ("general_triage",)  # not enrolled


def test_earlier_answers_count_as_known_conditions(lib: Library) -> None:
    who = Contact(id=1, channel="sms", consent_care=True, language_set=True)
    before = Session(contact=who, answers={"pregnant": True})
    text = "I have a headache"
    u = default_interpreter().interpret(text, None, "en")
    sprint = engine.resume(lib, before, Inbound("sms", "p", text, NOW, "m"), u, NOW)
    assert sprint.session.flow == "pregnancy_checkin"


def test_fever_cough_breathing_go_to_the_screening_and_other_complaints_to_general(
    lib: Library,
) -> None:
    assert routed(lib, "fever and a dry cough") == ("covid_screening",)
    assert routed(lib, "my stomach hurts") == ("general_triage",)
    assert routed(lib, "me quemé la mano", "es") == ("general_triage",)
    # a stiff neck is not something the screening asks: the general triage comes first
    assert routed(lib, "stiff neck and fever") == ("general_triage", "covid_screening")


def test_a_baby_with_fever_goes_to_the_general_triage_not_the_screening(lib: Library) -> None:
    assert routed(lib, "my 2 month old baby has fever and is not feeding") == ("general_triage",)


def test_a_greeting_still_gets_the_menu(lib: Library) -> None:
    for text, lang in (("hi", "en"), ("hola", "es"), ("namaste", "hi")):
        assert routed(lib, text, lang) == ("menu",)


def test_a_complaint_typed_at_the_menu_is_routed(lib: Library) -> None:
    sprint = first(lib, "hi")
    assert sprint.session.flow == "menu"
    text = "my stomach hurts"
    u = default_interpreter().interpret(text, engine.expectation(lib, sprint.session), "en")
    after = engine.resume(lib, sprint.session, Inbound("sms", "p", text, NOW, "m2"), u, NOW)
    assert after.session.flow == "general_triage"


def test_an_unexplained_complaint_never_ends_at_self_care(lib: Library) -> None:
    from bot.simulate import simulate

    result = simulate(lib, "general_triage", {"age_years": 40})
    assert result.triage == "consultation" and result.escalated
    assert not any("no signs of COVID" in t.get("bot", "") for t in result.transcript)


def test_chained_flows_keep_the_most_urgent_level(lib: Library) -> None:
    """Pregnant with a cough: the pregnancy danger signs, then the screening; an emergency in
    the first is not lowered by the second."""
    assert routed(lib, "I am pregnant and have a cough") == ("pregnancy_checkin", "covid_screening")
    sprint = first(lib, "I am pregnant and have a cough")
    s = sprint.session
    for typed in ("0", "1"):  # no red flag; bleeding
        u = default_interpreter().interpret(typed, engine.expectation(lib, s), "en")
        s = engine.resume(lib, s, Inbound("sms", "p", typed, NOW, typed + "x"), u, NOW).session
    assert s.triage == "emergency"
    while (exp := engine.expectation(lib, s)) is not None:  # the screening follows
        typed = "0" if exp.type == "multi" else "no" if exp.type == "bool" else "skip"
        u = default_interpreter().interpret(typed, exp, "en")
        s = engine.resume(lib, s, Inbound("sms", "p", typed, NOW, f"{exp.concept}"), u, NOW).session
    assert s.triage == "emergency"


@pytest.mark.parametrize("text", ["I am pregnant and have a cough"])
def test_consent_and_language_menu_keep_the_routed_flows(lib: Library, text: str) -> None:
    who = Contact(id=1, channel="sms")  # first contact: language menu, then consent
    u = default_interpreter().interpret(text, None, "en")
    s = engine.resume(
        lib, Session(contact=who), Inbound("sms", "p", text, NOW, "a"), u, NOW
    ).session
    assert s.flow == "language"
    assert [f.flow for f in s.stack] == ["covid_screening", "pregnancy_checkin", "consent"]
