"""The menu's "Talk to a person" hands the conversation over exactly as the AGENT keyword does:
a ticket, the bot stepping back, and the patient's next message for the clinician."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count

import pytest

from bot.app import CareBridge, Interpreter, default_interpreter
from bot.config import Config, load_config
from bot.flow import Library
from bot.messages import Inbound
from bot.session import SessionStatus

PATIENT = "+15557654321"
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
_ids = count()


@pytest.fixture(scope="module")
def interpreter() -> Interpreter:
    return default_interpreter(load_config(env={}))


@pytest.fixture
def app(tmp_config: Config, lib: Library, interpreter: Interpreter) -> Iterator[CareBridge]:
    bridge = CareBridge(tmp_config, clock=lambda: T0, library=lib, interpreter=interpreter)
    yield bridge
    bridge.close()


def send(app: CareBridge, text: str) -> list[str]:
    handled = app.handle(Inbound("sms", PATIENT, text, T0, f"SM{next(_ids)}"))
    return [m.text for m in handled.replies]


def to_the_menu(app: CareBridge) -> None:
    send(app, "hi")  # the language menu
    send(app, "1")  # English
    menu = send(app, "yes")  # consent
    assert "What would you like to do?" in menu[-1]


@pytest.mark.parametrize("how", ["3", "Talk to a person", "AGENT"])
def test_talk_to_a_person_hands_over_and_the_next_message_reaches_the_clinician(
    app: CareBridge, how: str
) -> None:
    to_the_menu(app)
    reply = send(app, how)
    assert any("clinician" in r.lower() for r in reply)
    contact = app.store.find_contact("sms", PATIENT)
    assert contact is not None
    assert app.store.current_session(contact).status is SessionStatus.HANDED_OFF
    [ticket] = [t for t in app.store.escalations(contact_id=contact.id) if t.is_open]
    assert ticket.reason == "patient_request"

    # the next message is for the clinician: no menu, no "reply with the number"
    assert send(app, "my sugar has been high all week") == []
    assert app.store.current_session(contact).status is SessionStatus.HANDED_OFF
    assert app.store.transcript(contact.id)[-1].text == "my sugar has been high all week"
    assert [t.id for t in app.store.escalations(contact_id=contact.id) if t.is_open] == [ticket.id]


def test_red_flags_still_answer_after_the_menu_handover(app: CareBridge) -> None:
    to_the_menu(app)
    send(app, "3")
    reply = send(app, "now I have crushing chest pain")
    assert any("112" in r for r in reply)
