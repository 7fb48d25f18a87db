"""The composition root end to end: real SQLite, real interpreter, one transaction a message."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from bot import engine
from bot.app import CareBridge
from bot.config import Config
from bot.messages import Inbound
from bot.session import Contact, SessionStatus
from bot.store import OutboxStatus


class Clock:
    """A controllable clock: every reading is one second later."""

    def __init__(self) -> None:
        self.now = datetime(2020, 4, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def app(tmp_config: Config) -> Iterator[CareBridge]:
    """The bot on each engine in turn (tests/pg.py): SQLite and PostgreSQL."""
    bridge = CareBridge(tmp_config, clock=Clock())
    yield bridge
    bridge.close()


_ids = count()


def send(app: CareBridge, text: str, address: str = "+15550001", pid: str | None = None) -> str:
    """Patient sends `text`; returns the bot's replies joined (empty if none)."""
    inbound = Inbound("sms", address, text, app.clock(), pid or f"SM{next(_ids)}")
    handled = app.handle(inbound)
    return "\n---\n".join(m.text for m in handled.replies)


def into_screening(app: CareBridge, address: str = "+15550001") -> None:
    assert "Which language" in send(app, "hi", address)  # first contact: the language menu
    send(app, "1", address)  # English
    send(app, "yes", address)  # consent
    reply = send(app, "1", address)  # menu: COVID-19 check
    assert "any of these right now" in reply


def test_typed_red_flag_mid_screening_gets_the_emergency_number_and_an_escalation(
    app: CareBridge,
) -> None:
    into_screening(app)
    send(app, "0")  # no warning signs
    reply = send(app, "my father can't breathe properly and his lips are blue")
    assert "112" in reply
    [ticket] = app.store.escalations()
    assert ticket.level == "emergency_ambulance"
    assert set(ticket.red_flags) >= {"severe_dyspnea", "cyanosis"}


def test_negated_red_flag_does_not_interrupt(app: CareBridge) -> None:
    into_screening(app)
    reply = send(app, "I have no chest pain")
    assert "112" not in reply
    assert app.store.escalations() == []


def test_a_replayed_message_gets_no_second_reply(app: CareBridge) -> None:
    first = send(app, "hi", pid="SM-same")
    again = send(app, "hi", pid="SM-same")
    assert first and again == ""
    assert len(app.store.outbox()) == 1


def test_killing_the_process_resumes_at_the_same_question(tmp_config: Config) -> None:
    clock = Clock()
    first = CareBridge(tmp_config, clock=clock)
    into_screening(first)
    send(first, "0")
    contact = first.store.get_or_create_contact("sms", "+15550001", clock())
    node_before = first.store.current_session(contact).node
    first.close()  # the process dies here
    second = CareBridge(tmp_config, clock=clock)
    try:
        session = second.store.current_session(contact)
        assert session.node == node_before == "ask_age"
        assert session.status is SessionStatus.ACTIVE
        assert "symptoms" in send(second, "45")
    finally:
        second.close()


def test_a_whole_screening_by_text_ends_in_a_triage_level(app: CareBridge) -> None:
    into_screening(app)
    for text in ["0", "45", "fever and cough", "101.3F", "97", "no", "no", "no", "no", "0"]:
        reply = send(app, text)
    contact = app.store.get_or_create_contact("sms", "+15550001", app.clock())
    session = app.store.current_session(contact)
    assert session.status is SessionStatus.COMPLETED
    assert session.triage == "self_care"
    assert session.answers["temperature_c"] == 38.5
    assert "stay home away from others" in reply.lower()
    readings = app.store.readings(contact.id, "temperature_c")
    assert [r.value for r in readings] == [38.5]


def test_every_reply_is_queued_in_the_outbox_with_the_transcript(app: CareBridge) -> None:
    send(app, "hi")
    rows = app.store.outbox()
    assert [r.status for r in rows] == [OutboxStatus.QUEUED]
    contact = app.store.get_or_create_contact("sms", "+15550001", app.clock())
    assert [t.direction for t in app.store.transcript(contact.id)] == ["in", "out"]


def test_logs_carry_ids_never_message_text_or_phone_numbers(
    app: CareBridge, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    into_screening(app, "+15557654321")
    send(app, "my father can't breathe properly and his lips are blue", "+15557654321")
    assert caplog.records, "expected some log lines (escalation, triage)"
    logged = caplog.text
    assert "+15557654321" not in logged and "5557654321" not in logged
    assert "breathe" not in logged and "lips" not in logged


def test_a_conversation_left_on_sms_continues_on_whatsapp(app: CareBridge) -> None:
    into_screening(app, "+15550007777")
    send(app, "0", "+15550007777")  # now asked for the age, on SMS
    inbound = Inbound("whatsapp", "+15550007777", "45", app.clock(), "WA-1")
    handled = app.handle(inbound)  # the same number on WhatsApp answers the open question
    assert "symptoms" in handled.replies[0].text
    sms = app.store.find_contact("sms", "+15550007777")
    assert sms is not None
    assert engine_expectation_concept(app, sms) is None  # moved, not duplicated


def engine_expectation_concept(app: CareBridge, contact: Contact) -> str | None:
    exp = engine.expectation(app.library, app.store.current_session(contact))
    return None if exp is None else exp.concept


def test_the_language_is_remembered_across_channels(app: CareBridge) -> None:
    sms = app.store.get_or_create_contact("sms", "+15550008888", app.clock())
    app.store.update_contact(sms.id, language="es", now=app.clock())
    wa = app.store.get_or_create_contact("whatsapp", "+15550008888", app.clock())
    assert wa.language == "es"


def test_a_hinglish_red_flag_interrupts_with_the_emergency_instruction_in_hindi(
    app: CareBridge,
) -> None:
    send(app, "hi", "+15550009191")
    send(app, "2", "+15550009191")  # हिन्दी
    send(app, "1", "+15550009191")  # consent
    assert "कितनी है" in send(app, "1", "+15550009191") + send(app, "0", "+15550009191")
    reply = send(app, "papa ko saans nahi aa rahi, hoth neele ho gaye", "+15550009191")
    hindi = app.library.interrupts.messages["red_flag"]["hi"].format(emergency_number="112")
    assert reply.startswith(hindi) and "112" in reply
    [ticket] = app.store.escalations()
    assert ticket.level == "emergency_ambulance"
    assert {"severe_dyspnea", "cyanosis"} <= set(ticket.red_flags)


def test_a_first_message_in_spanish_or_hinglish_skips_the_language_menu(app: CareBridge) -> None:
    reply = send(app, "hola, tengo fiebre y tos", "+15550006001")
    assert "¿Acepta continuar?" in reply and "fever" not in reply  # labels in Spanish too
    assert "सहमत" in send(app, "mujhe bukhar hai", "+15550006002")
    assert "Which language" in send(app, "hi", "+15550006003")


def test_a_message_a_crash_left_recorded_but_unhandled_is_handled_once_on_recovery(
    app: CareBridge,
) -> None:
    inbound = Inbound("sms", "+15550077", "hi", app.clock(), "SM-crash-1")
    assert app.store.record_inbound(inbound) is not None  # the crash came right after this
    assert app.recover_inbound() == 1
    contact = app.store.find_contact("sms", "+15550077")
    assert contact is not None
    [reply] = app.store.outbox(contact_id=contact.id)
    assert "Which language" in reply.outbound.text
    assert app.store.unprocessed_inbound() == []
    assert app.recover_inbound() == 0  # exactly once
    assert app.handle(inbound).duplicate  # the provider's late retry changes nothing
    assert len(app.store.outbox(contact_id=contact.id)) == 1
