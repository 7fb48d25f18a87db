"""USSD through a fake aggregator session (Africa's Talking style: cumulative `text`, a new
`sessionId` per dial, `CON`/`END` answers): a COVID screening and a check-in in en/hi/es,
screens within 182 characters with "98 More"/"00 Back" pages, a time-out resumed on the next
dial, red flags, and the aggregator's authentication.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from live_helpers import USSD_SECRET, LiveServer, UssdPhone, live_config

from bot.config import Config
from bot.store import OutboxStatus
from channels.ussd import BACK_KEY, MORE_KEY, USSD_MAX_CHARS
from channels.voice import PROMPTS

LANG_KEY = {"en": "1", "hi": "2", "es": "3"}
# consent, COVID-19 check, no warning signs, age, fever and cough (# between numbers),
# 38.5 (# is the decimal point on USSD), SpO2 97, four noes, no long-term condition
COVID_KEYS = ["1", "1", "0", "34", "1#2", "38#5", "97", "2", "2", "2", "2", "0"]
MILD = {"en": "symptoms look mild", "hi": "लक्षण हल्के", "es": "síntomas parecen leves"}
THANKS = {"en": "Thank you", "hi": "धन्यवाद", "es": "Gracias"}


@pytest.fixture(scope="module")
def server(config: Config, module_store_url: str) -> Iterator[LiveServer]:
    with LiveServer(live_config(config, module_store_url)) as live:
        yield live


def number(i: int) -> str:
    return f"+2547110000{i:02d}"


def screens_fit(phone: UssdPhone) -> None:
    assert len(phone.screen) <= USSD_MAX_CHARS, phone.screen


@pytest.mark.parametrize("lang", ["en", "hi", "es"])
def test_a_covid_screening_over_ussd(server: LiveServer, lang: str) -> None:
    phone = UssdPhone(server.client(), number(int(LANG_KEY[lang])))
    first = phone.dial()
    assert phone.open and "1. English" in first and "3. Español" in first
    for keys in [LANG_KEY[lang], *COVID_KEYS]:
        phone.key(keys)
        screens_fit(phone)
    assert not phone.open and MILD[lang] in phone.screen  # END with the outcome
    contact = server.bridge.store.find_contact("ussd", phone.number)
    assert contact is not None and contact.language == lang
    session = server.bridge.store.current_session(contact)
    assert session.triage == "self_care"
    assert session.answers["temperature_c"] == 38.5 and session.answers["cough"] is True
    rows = server.bridge.store.outbox(contact.id)
    assert {r.status for r in rows} == {OutboxStatus.SENT}  # every screen came from the outbox


@pytest.mark.parametrize("lang", ["en", "hi", "es"])
def test_a_check_in_over_ussd_waits_for_the_next_dial(server: LiveServer, lang: str) -> None:
    """USSD cannot push: the scheduled check-in waits in the outbox and is the first screen
    of the patient's next dial."""
    bridge = server.bridge
    now = bridge.clock()
    address = number(10 + int(LANG_KEY[lang]))
    contact = bridge.store.get_or_create_contact("ussd", address, now, language=lang)
    bridge.store.update_contact(contact.id, consent_care=True, now=now)
    started = bridge.start_checkin(contact.id, "hypertension_checkin", now)
    assert started.outbox_ids
    assert {r.status for r in bridge.store.outbox(contact.id)} == {OutboxStatus.QUEUED}
    phone = UssdPhone(server.client(), address)
    phone.dial()
    assert phone.open and "1." in phone.screen
    for keys in ["0", "135#85", "0", "1"]:  # no warning sign, 135/85, no symptom, meds taken
        phone.key(keys)
        screens_fit(phone)
    assert not phone.open and THANKS[lang] in phone.screen
    session = bridge.store.current_session(contact)
    assert session.answers["systolic_bp"] == 135 and session.answers["diastolic_bp"] == 85
    assert {r.status for r in bridge.store.outbox(contact.id)} == {OutboxStatus.SENT}


def test_long_lists_page_with_more_and_back(server: LiveServer) -> None:
    phone = UssdPhone(server.client(), number(30))
    phone.dial()
    for keys in ["1", "1", "1", "0", "34"]:  # ... to the eleven symptoms
        phone.key(keys)
    seen = [phone.screen]
    while f"{MORE_KEY}." in phone.screen:
        phone.key(MORE_KEY)
        screens_fit(phone)
        seen.append(phone.screen)
    listed = "\n".join(seen)
    assert "1. Fever or feeling hot" in listed and "11. Vomiting" in listed
    assert len(seen) >= 2 and f"{BACK_KEY}." in seen[-1]
    phone.key(BACK_KEY)
    assert phone.screen == seen[-2]
    phone.key("1#2")  # fever and cough, keyed from any page
    contact = server.bridge.store.find_contact("ussd", phone.number)
    assert contact is not None
    answers = server.bridge.store.current_session(contact).answers
    assert answers["fever"] is True and answers["cough"] is True


def test_a_timed_out_session_resumes_on_the_next_dial(server: LiveServer) -> None:
    phone = UssdPhone(server.client(), number(40))
    phone.dial()
    for keys in ["3", "1", "1", "0"]:
        asked = phone.key(keys)  # Spanish ... the age question; then the session times out
    again = phone.dial()  # a new sessionId, empty text
    assert phone.open and again.startswith(PROMPTS["resume"]["es"])
    assert asked.split("\n")[0] in again
    phone.key("34")
    contact = server.bridge.store.find_contact("ussd", phone.number)
    assert contact is not None
    assert server.bridge.store.current_session(contact).answers["age_years"] == 34


def test_a_keyed_red_flag_gives_the_emergency_number(server: LiveServer) -> None:
    phone = UssdPhone(server.client(), number(50))
    phone.dial()
    for keys in ["1", "1", "1"]:
        phone.key(keys)
    phone.key("2")  # chest pain
    assert "112" in phone.screen


def test_the_aggregator_must_authenticate(server: LiveServer) -> None:
    form = {"sessionId": "s1", "serviceCode": "*384#", "phoneNumber": number(60), "text": ""}
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/webhooks/ussd", data=form).status_code == 403
        wrong = {"X-Carebridge-Ussd-Secret": "guess"}
        assert client.post("/webhooks/ussd", data=form, headers=wrong).status_code == 403
        ok = client.post(f"/webhooks/ussd?key={USSD_SECRET}", data=form)
        assert ok.status_code == 200 and ok.text.startswith("CON ")
        bad = client.post(f"/webhooks/ussd?key={USSD_SECRET}", data={"text": "1"})
        assert bad.status_code == 400


def test_ussd_is_refused_when_no_secret_or_network_is_configured(
    config: Config, store_url: str
) -> None:
    cfg = live_config(config, store_url)
    with LiveServer(cfg, env={}) as bare, httpx.Client(base_url=bare.url) as client:
        form = {"sessionId": "s1", "phoneNumber": number(61), "text": ""}
        assert client.post("/webhooks/ussd", data=form).status_code == 403
        assert bare.bridge.store.find_contact("ussd", number(61)) is None
