"""The pure engine, driven with hand-built understandings (no store, no interpreter)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot import engine
from bot.events import (
    AnswerRecorded,
    ContactChanged,
    EscalationOpened,
    FollowUpScheduled,
    MsgCreated,
    RedFlagRaised,
    TriageDecided,
)
from bot.flow import Library
from bot.messages import Inbound
from bot.session import Contact, Session, SessionStatus
from nlu.types import Answer, AnswerStatus, Entity, Intent, Understanding

NOW = datetime(2020, 4, 1, 9, 0, tzinfo=UTC)


def u(
    text: str = "x",
    value: Any = None,
    status: AnswerStatus = AnswerStatus.OK,
    *,
    red_flags: tuple[str, ...] = (),
    intent: str = "inform",
    entities: tuple[Entity, ...] = (),
    answer: bool = True,
) -> Understanding:
    return Understanding(
        text,
        "en",
        Intent(intent, 0.9),
        entities=entities,
        red_flags=red_flags,
        answer=Answer(status, value) if answer else None,
    )


def say(lib: Library, session: Session, text: str, und: Understanding) -> engine.Sprint:
    inbound = Inbound("sms", "+15550001", text, NOW, f"m-{text}")
    return engine.resume(lib, session, inbound, und, NOW)


def consented() -> Session:
    return Session(contact=Contact(id=1, channel="sms", consent_care=True))


def screening(lib: Library) -> Session:
    """A consented patient at the first question of the COVID-19 screening."""
    sprint = engine.start(lib, consented(), "covid_screening", NOW)
    assert engine.expectation(lib, sprint.session) is not None
    return sprint.session


def replies(sprint: engine.Sprint) -> list[str]:
    return [e.text for e in sprint.events if isinstance(e, MsgCreated)]


def test_first_contact_chooses_a_language_then_consents_then_gets_the_menu(
    lib: Library,
) -> None:
    new = Session(contact=Contact(id=1, channel="sms"))
    menu = say(lib, new, "hi", u("hi", answer=False, intent="greet"))
    assert menu.session.flow == "language"
    assert "Which language" in replies(menu)[0] and "Idioma" in " ".join(
        e.choices[2] for e in menu.events if isinstance(e, MsgCreated)
    ).replace("Español", "Idioma")
    first = say(lib, menu.session, "3", u("3", "es"))
    assert ContactChanged("language", "es") in first.events
    assert first.session.flow == "consent"
    assert "112" in replies(first)[0] and "emergencia" in replies(first)[0].lower()
    first = say(
        lib,
        new.evolve(contact=Contact(id=1, channel="sms", language_set=True)),
        "hi",
        u("hi", answer=False, intent="greet"),
    )
    assert first.session.flow == "consent"
    assert "not for emergencies" in replies(first)[0]
    assert "112" in replies(first)[0]
    second = say(lib, first.session, "yes", u("yes", True))
    assert ContactChanged("consent_care", True) in second.events
    assert second.session.flow == "menu"
    assert second.session.contact.consent_care is True


def test_red_flag_in_free_text_interrupts_with_the_emergency_number_and_escalates(
    lib: Library,
) -> None:
    session = screening(lib)
    sprint = say(lib, session, "lips blue", u(red_flags=("severe_dyspnea", "cyanosis")))
    [reply] = replies(sprint)
    assert "112" in reply
    assert RedFlagRaised(("severe_dyspnea", "cyanosis")) in sprint.events
    escalations = [e for e in sprint.events if isinstance(e, EscalationOpened)]
    assert escalations and escalations[0].level == "emergency_ambulance"
    assert sprint.session.status is SessionStatus.COMPLETED
    assert sprint.session.triage == "emergency_ambulance"


def test_suicidal_thoughts_also_give_the_crisis_line(lib: Library) -> None:
    sprint = say(lib, screening(lib), "x", u(red_flags=("suicidal_thoughts",)))
    assert "14416" in replies(sprint)[0]


def test_a_red_flag_chosen_from_a_menu_interrupts_at_once(lib: Library) -> None:
    session = screening(lib)
    exp = engine.expectation(lib, session)
    assert exp is not None and exp.options[0].value == "severe_dyspnea"
    sprint = say(lib, session, "1", u("1", ("severe_dyspnea",)))
    assert any(isinstance(e, RedFlagRaised) for e in sprint.events)
    assert "112" in replies(sprint)[0]


def test_not_understood_is_reasked_and_a_human_offered_after_three(lib: Library) -> None:
    session = screening(lib)
    for attempt in range(1, 4):
        sprint = say(lib, session, "???", u("???", status=AnswerStatus.INVALID))
        session = sprint.session
        [reply] = replies(sprint)
        assert ("AGENT" in reply) is (attempt == 3)
        assert session.node == "ask_warning_signs"


def test_stop_opts_out_and_then_silence_until_start(lib: Library) -> None:
    sprint = say(lib, screening(lib), "STOP", u("STOP", answer=False))
    assert ContactChanged("opted_out", True) in sprint.events
    session = sprint.session
    assert replies(say(lib, session, "hello", u("hello", answer=False))) == []
    back = say(lib, session, "START", u("START", answer=False))
    assert ContactChanged("opted_out", False) in back.events
    assert replies(back)


def test_agent_hands_off_and_the_bot_steps_back_but_red_flags_still_work(lib: Library) -> None:
    sprint = say(lib, screening(lib), "agent", u("agent", answer=False))
    assert any(
        isinstance(e, EscalationOpened) and e.reason == "patient_request" for e in sprint.events
    )
    session = sprint.session
    assert session.status is SessionStatus.HANDED_OFF
    assert replies(say(lib, session, "2", u("2", True))) == []
    urgent = say(lib, session, "chest", u(red_flags=("chest_pain",)))
    assert "112" in replies(urgent)[0]


def test_free_text_prefills_answers_and_the_flow_skips_them(lib: Library) -> None:
    found = (
        Entity("fever", True, 0, 5, "test"),
        Entity("cough", True, 10, 15, "test"),
        Entity("symptom_onset_days", 3.0, 22, 28, "test"),
    )
    sprint = say(lib, consented(), "fever and cough since 3 days", u(entities=found, answer=False))
    assert sprint.session.flow == "covid_screening"
    assert AnswerRecorded("fever", True, "prefill") in sprint.events
    session = sprint.session
    session = say(lib, session, "0", u("0", ())).session  # no warning signs
    session = say(lib, session, "40", u("40", 40.0)).session  # age
    exp = engine.expectation(lib, session)
    assert exp is not None and exp.concept == "sore_throat"  # fever and cough not asked again
    assert "fever" not in [o.value for o in exp.options]


def test_an_impossible_reading_in_free_text_is_not_prefilled_but_asked(lib: Library) -> None:
    found = (
        Entity("fever", True, 0, 5, "test"),
        Entity("age_years", 200.0, 10, 22, "test"),  # outside concepts.yaml's [0, 120]
        Entity("spo2_percent", float("inf"), 23, 30, "test"),
    )
    sprint = say(lib, consented(), "fever, 200 years old", u(entities=found, answer=False))
    recorded = {e.concept for e in sprint.events if isinstance(e, AnswerRecorded)}
    assert "fever" in recorded and "age_years" not in recorded and "spo2_percent" not in recorded
    session = say(lib, sprint.session, "0", u("0", ())).session  # no warning signs
    exp = engine.expectation(lib, session)
    assert exp is not None and exp.concept == "age_years"  # so the age is asked


def test_emergency_outcome_has_the_instruction_in_the_same_reply(lib: Library) -> None:
    session = screening(lib)
    session = say(lib, session, "0", u("0", ())).session
    session = say(lib, session, "30", u("30", 30.0)).session
    session = say(lib, session, "1", u("1", ("cough",))).session
    session = say(lib, session, "skip", u("skip", status=AnswerStatus.UNKNOWN)).session
    sprint = say(lib, session, "88", u("88", 88.0))  # SpO2
    [reply] = replies(sprint)
    assert "112" in reply
    assert TriageDecided("covid_screening", "emergency_ambulance", (1,)) in sprint.events or any(
        isinstance(e, TriageDecided) and e.level == "emergency_ambulance" for e in sprint.events
    )


def test_symptomatic_self_care_schedules_daily_rechecks(lib: Library) -> None:
    session = screening(lib)
    for text, value in [("0", ()), ("30", 30.0), ("2", ("cough",)), ("37", 37.0), ("98", 98.0)]:
        session = say(lib, session, text, u(text, value)).session
    while (exp := engine.expectation(lib, session)) is not None:
        value = () if exp.type == "multi" else False
        sprint = say(lib, session, "no", u("no", value))
        session = sprint.session
    assert session.triage == "self_care"
    follow = [e for e in sprint.events if isinstance(e, FollowUpScheduled)]
    assert follow and follow[0].flow == "covid_screening" and follow[0].times == 10


def test_same_inputs_give_the_same_events(lib: Library) -> None:
    a = say(lib, screening(lib), "1", u("1", ("chest_pain",)))
    b = say(lib, screening(lib), "1", u("1", ("chest_pain",)))
    assert a.events == b.events


def test_menu_starts_a_new_conversation_without_old_answers(lib: Library) -> None:
    session = screening(lib)
    session = say(lib, session, "0", u("0", ())).session
    session = say(lib, session, "30", u("30", 30.0)).session
    sprint = say(lib, session, "MENU", u("MENU", answer=False))
    assert sprint.session.flow == "menu" and sprint.session.answers == {}


def test_language_mid_question_comes_back_to_the_same_question(lib: Library) -> None:
    session = say(lib, screening(lib), "0", u("0", ())).session
    assert session.node == "ask_age"
    sprint = say(lib, session, "LANGUAGE", u("LANGUAGE", answer=False))
    assert sprint.session.flow == "language"
    back = say(lib, sprint.session, "1", u("1", "en"))
    assert (back.session.flow, back.session.node) == ("covid_screening", "ask_age")
    assert "How old are you?" in replies(back)[-1]


def test_a_reading_outside_a_conversation_starts_its_check_in(lib: Library) -> None:
    bp = (Entity("systolic_bp", 150.0, 3, 6, "t"), Entity("diastolic_bp", 95.0, 7, 9, "t"))
    sprint = say(lib, consented(), "bp 150/95", u("bp 150/95", entities=bp, answer=False))
    assert sprint.session.flow == "hypertension_checkin"
    assert sprint.session.answers["systolic_bp"] == 150.0
    neutral = say(lib, consented(), "hello", u("hello", answer=False, intent="greet"))
    assert neutral.session.flow == "menu"


def test_devanagari_or_a_telegram_language_skips_the_language_menu(lib: Library) -> None:
    new = Session(contact=Contact(id=1, channel="telegram"))
    hindi = engine.resume(
        lib, new, Inbound("sms", "+1", "नमस्ते", NOW, "d1"), u("नमस्ते", answer=False), NOW
    )
    assert ContactChanged("language", "hi") in hindi.events
    assert hindi.session.flow == "consent" and hindi.session.contact.language == "hi"
    spanish = engine.resume(
        lib,
        new,
        Inbound("telegram", "7", "hola", NOW, "t1", language_hint="es-MX"),
        u("hola", answer=False),
        NOW,
    )
    assert spanish.session.contact.language == "es" and spanish.session.flow == "consent"


def test_devanagari_keywords_are_recognised(lib: Library) -> None:
    session = screening(lib).evolve(
        contact=Contact(id=1, channel="sms", language="hi", consent_care=True, language_set=True)
    )
    sprint = say(lib, session, "रोको", u("रोको", answer=False))
    assert ContactChanged("opted_out", True) in sprint.events
    assert engine.keyword(lib, "भाषा", "hi") == "language"
    assert engine.keyword(lib, "  Stop! ", "en") == "stop"
