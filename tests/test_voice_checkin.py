"""Outbound check-in calls: the check-in of a patient who chose voice is queued in the outbox
like any message; the dispatcher places the call with the real twilio client
(`calls.create` over HTTP to the fake Twilio) and, when the call is answered, the voice
webhook says that message and the check-in goes on by keypad, in en/hi/es.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes import wait_for
from fakes.twilio_server import FakeTwilio
from live_helpers import ACCOUNT, PUBLIC, SERVICE, TOKEN, Caller, LiveServer, live_config

from bot.config import Config
from bot.store import OutboxStatus
from channels.voice import VoiceCaller

THANKS = {"en": "Thank you", "hi": "धन्यवाद", "es": "Gracias"}
BP_WORDS = {"en": "135 over 85", "hi": "135 बटा 85", "es": "135 sobre 85"}  # spoken: variant


@pytest.fixture(scope="module")
def stack(config: Config, module_store_url: str) -> Iterator[tuple[LiveServer, FakeTwilio]]:
    with FakeTwilio(account_sid=ACCOUNT, auth_token=TOKEN) as twilio:
        caller = VoiceCaller(
            ACCOUNT,
            TOKEN,
            SERVICE,
            PUBLIC + "/webhooks/twilio/voice",
            api_base_url=twilio.api_base_url,
            status_callback_url=PUBLIC + "/webhooks/twilio/voice",
        )
        cfg = live_config(config, module_store_url, from_number=SERVICE)
        with LiveServer(cfg, senders={"voice": caller}, dispatch=True) as server:
            yield server, twilio


@pytest.mark.parametrize("lang", ["en", "hi", "es"])
def test_a_check_in_call_is_placed_through_the_outbox_and_answered_by_keys(
    stack: tuple[LiveServer, FakeTwilio], lang: str
) -> None:
    server, twilio = stack
    bridge = server.bridge
    address = {"en": "+919800000201", "hi": "+919800000202", "es": "+919800000203"}[lang]
    now = bridge.clock()
    contact = bridge.store.get_or_create_contact("voice", address, now, language=lang)
    bridge.store.update_contact(contact.id, consent_care=True, now=now)
    started = bridge.start_checkin(contact.id, "hypertension_checkin", now)
    assert started.outbox_ids

    wait_for(lambda: any(c["to"] == address for c in twilio.calls))
    call = next(c for c in twilio.calls if c["to"] == address)
    assert call["_form"]["Url"] == PUBLIC + "/webhooks/twilio/voice"
    assert call["_form"]["From"] == SERVICE
    assert len([c for c in twilio.calls if c["to"] == address]) == 1  # one call, not per row
    wait_for(lambda: all(r.status == OutboxStatus.SENT for r in bridge.store.outbox(contact.id)))
    assert {r.provider_id for r in bridge.store.outbox(contact.id)} == {call["sid"]}

    phone = Caller(server.client(), address, call_sid=call["sid"], outbound=True)
    answered = phone.dial(call["_form"]["Url"])  # the patient picks up
    first = bridge.store.outbox(contact.id)[-1].outbound.text.split("\n")[-1]
    assert first in answered.text  # the question the call was placed for
    assert answered.says[0].attrib["language"] == server.config.voice.voices[lang].language
    asked_bp = phone.press("0")  # no warning sign
    assert BP_WORDS[lang] in asked_bp.text  # the `spoken:` variant, not "135/85"
    phone.press("135*85")
    phone.press("0")  # no symptom
    done = phone.press("1")  # medicines taken
    assert THANKS[lang] in done.text and done.hangup
    session = bridge.store.current_session(contact)
    assert session.answers["systolic_bp"] == 135 and session.answers["diastolic_bp"] == 85
    assert {r.status for r in bridge.store.outbox(contact.id)} == {OutboxStatus.SENT}
    phone.status(call["_form"]["StatusCallback"], "completed")  # the patient hangs up
    placed = [r for r in bridge.store.outbox(contact.id) if r.provider_id == call["sid"]]
    assert placed and {r.status for r in placed} == {OutboxStatus.DELIVERED}


def test_an_unanswered_check_in_call_is_recorded_undelivered(
    stack: tuple[LiveServer, FakeTwilio],
) -> None:
    server, twilio = stack
    bridge = server.bridge
    address = "+919800000299"
    now = bridge.clock()
    contact = bridge.store.get_or_create_contact("voice", address, now, language="en")
    bridge.store.update_contact(contact.id, consent_care=True, now=now)
    bridge.start_checkin(contact.id, "hypertension_checkin", now)
    wait_for(lambda: any(c["to"] == address for c in twilio.calls))
    call = next(c for c in twilio.calls if c["to"] == address)
    assert call["_form"]["StatusCallback"] == PUBLIC + "/webhooks/twilio/voice"
    wait_for(lambda: all(r.status == OutboxStatus.SENT for r in bridge.store.outbox(contact.id)))
    phone = Caller(server.client(), address, call_sid=call["sid"], outbound=True)
    phone.status(call["_form"]["StatusCallback"], "no-answer")
    rows = bridge.store.outbox(contact.id)
    assert {(r.status, r.error_code) for r in rows} == {(OutboxStatus.UNDELIVERED, "no-answer")}


@pytest.mark.parametrize("lang", ["en", "hi", "es"])
def test_a_red_flag_keyed_in_a_check_in_call_offers_to_connect(
    stack: tuple[LiveServer, FakeTwilio], lang: str
) -> None:
    server, twilio = stack
    bridge = server.bridge
    address = {"en": "+919800000211", "hi": "+919800000212", "es": "+919800000213"}[lang]
    now = bridge.clock()
    contact = bridge.store.get_or_create_contact("voice", address, now, language=lang)
    bridge.store.update_contact(contact.id, consent_care=True, now=now)
    bridge.start_checkin(contact.id, "hypertension_checkin", now)
    wait_for(lambda: any(c["to"] == address for c in twilio.calls))
    call = next(c for c in twilio.calls if c["to"] == address)
    wait_for(lambda: all(r.status == OutboxStatus.SENT for r in bridge.store.outbox(contact.id)))
    phone = Caller(server.client(), address, call_sid=call["sid"], outbound=True)
    phone.dial(call["_form"]["Url"])
    warned = phone.press("1")  # chest pain, the first warning sign
    assert "112" in warned.text
    assert warned.gather is not None and "step=connect" in warned.gather.attrib["action"]
    connected = phone.press("1")
    assert connected.dial == "112"
