"""Calls over Twilio Voice, driven as Twilio drives them: signed webhooks with `Digits` or
`SpeechResult` to `carebridge serve` on loopback, every TwiML answer parsed as XML. A COVID
screening in en/hi/es, red flags (keyed and spoken) at any point with the offer to connect,
repeats, silence, a dropped call that resumes, and what is said being what the outbox holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fakes.twilio_server import signed_request
from live_helpers import PUBLIC, TOKEN, Caller, LiveServer, live_config

from bot.config import Config
from bot.live import spoken_variant
from bot.store import OutboxStatus
from channels.voice import PROMPTS, spoken

LANG_KEY = {"en": "1", "hi": "2", "es": "3"}
# After the language menu: consent, menu (COVID-19 check), no warning signs, age, fever and
# cough (keyed with * between), 38.5 (* is the decimal point), SpO2 97, four noes, no
# long-term condition.
COVID_KEYS = ["1", "1", "0", "34", "1*2", "38*5", "97", "2", "2", "2", "2", "0"]
RED_FLAG_SPEECH = {"en": "I can't breathe", "hi": "मुझे सांस नहीं आ रही", "es": "no puedo respirar"}
MILD = {"en": "symptoms look mild", "hi": "लक्षण हल्के", "es": "síntomas parecen leves"}


@pytest.fixture(scope="module")
def server(config: Config, module_store_url: str) -> Iterator[LiveServer]:
    """One server for the module: every test calls from its own numbers."""
    with LiveServer(live_config(config, module_store_url)) as live:
        yield live


def number(i: int = 0) -> str:
    return f"+9198000001{i:02d}"


def _template(text: str) -> re.Pattern[str]:
    parts = re.split(r"\{\w+\}", text)
    return re.compile(".+".join(re.escape(p) for p in parts) + "$")


HINTS = [_template(t) for texts in PROMPTS.values() for t in texts.values()]


def is_hint(line: str) -> bool:
    """A key instruction the channel adds ("For Cough, press 2."), not a flow text."""
    return any(h.match(line) for h in HINTS)


def test_a_covid_screening_over_voice_in_each_language(server: LiveServer) -> None:
    voices = server.config.voice.voices
    for i, lang in enumerate(("en", "hi", "es")):
        caller = Caller(server.client(), number(i))
        first = caller.dial()
        # the language menu: each option in its own language and voice
        options = {s.text: s.attrib["language"] for s in first.says[1:4]}
        assert options == {
            "For English, press 1.": voices["en"].language,
            "हिन्दी के लिए 2 दबाएं।": voices["hi"].language,
            "Para Español, marque 3.": voices["es"].language,
        }
        caller.press(LANG_KEY[lang])
        for keys in COVID_KEYS:
            twiml = caller.press(keys)
            assert {s.attrib["language"] for s in twiml.says} == {voices[lang].language}
            assert {s.attrib.get("voice") for s in twiml.says} == {voices[lang].voice}
        assert MILD[lang] in twiml.text, caller.script
        assert twiml.hangup and twiml.gather is None
        contact = server.bridge.store.find_contact("voice", number(i))
        assert contact is not None and contact.language == lang
        session = server.bridge.store.current_session(contact)
        assert session.answers["temperature_c"] == 38.5
        assert session.answers["fever"] is True and session.answers["cough"] is True
        assert session.answers["age_years"] == 34
        assert server.bridge.store.find_contact("voice", number(i)) is not None
        # what was said is exactly what the outbox holds, every row marked sent
        rows = server.bridge.store.outbox(contact.id)
        assert rows and {r.status for r in rows} == {OutboxStatus.SENT}
        flow_lines = [
            line
            for line in "\n".join(
                s.removeprefix("BOT: ") for s in caller.script if s.startswith("BOT")
            ).split("\n")
            if line and not is_hint(line)
        ]
        library = server.bridge.library
        said = [  # the language menu was said before the language was chosen: in English
            spoken(spoken_variant(library, r.outbound.text, "en" if i == 0 else lang))
            for i, r in enumerate(rows)
        ]
        assert flow_lines == said


def test_keys_a_voice_does_not_read_out(server: LiveServer) -> None:
    """A yes/no ends on one key; numbers and multi-selects on #; `**` is "I do not know"."""
    caller = Caller(server.client(), number(10))
    caller.dial()
    consent = caller.press("1")
    assert consent.gather is not None and consent.gather.attrib.get("numDigits") == "1"
    caller.press("1")
    caller.press("1")
    age = caller.press("0")
    assert age.gather is not None and "numDigits" not in age.gather.attrib
    assert age.gather.attrib["finishOnKey"] == "#"
    assert "press star twice" in age.text
    caller.press("**")  # age: do not know
    contact = server.bridge.store.find_contact("voice", number(10))
    assert contact is not None
    session = server.bridge.store.current_session(contact)
    assert "age_years" not in session.answers or session.answers["age_years"] is None
    assert "any of these symptoms" in caller.last.text if caller.last else False


@pytest.mark.parametrize("lang", ["en", "hi", "es"])
def test_a_keyed_red_flag_says_the_emergency_number_and_offers_to_connect(
    server: LiveServer, lang: str
) -> None:
    address = number(20 + int(LANG_KEY[lang]))
    caller = Caller(server.client(), address)
    caller.dial()
    caller.press(LANG_KEY[lang])
    caller.press("1")  # consent
    caller.press("1")  # COVID-19 check
    twiml = caller.press("1")  # severe difficulty breathing
    assert "112" in twiml.text
    gather = twiml.gather
    assert gather is not None and gather.attrib["numDigits"] == "1"
    assert "step=connect" in gather.attrib["action"]
    assert twiml.says[-1].text == PROMPTS["connect_offer"][lang].format(number="112")
    connected = caller.press("1")
    assert connected.dial == "112"
    assert PROMPTS["connecting"][lang].format(number="112") in connected.text
    contact = server.bridge.store.find_contact("voice", address)
    assert contact is not None
    said = [r.outbound.text for r in server.bridge.store.outbox(contact.id)]
    assert said[-2] == PROMPTS["connect_offer"][lang].format(number="112")  # recorded
    assert said[-1] == PROMPTS["connecting"][lang].format(number="112")


def test_a_spoken_red_flag_at_any_point_of_the_screening(server: LiveServer) -> None:
    """At each question of the screening in turn, in each language: the emergency message
    with the number, and the offer to connect."""
    steps = [LANG_KEY["en"], *COVID_KEYS[:-1]]
    for point in range(1, len(steps) + 1):
        lang = ("en", "hi", "es")[point % 3]
        keys = [LANG_KEY[lang], *COVID_KEYS][:point]
        caller = Caller(server.client(), number(30 + point))
        caller.dial()
        for k in keys:
            caller.press(k)
        twiml = caller.speak(RED_FLAG_SPEECH[lang])
        assert "112" in twiml.text, (point, caller.script)
        assert twiml.gather is not None and "step=connect" in twiml.gather.attrib["action"]
        assert PROMPTS["connect_offer"][lang].format(number="112") in twiml.text
        declined = caller.silence()  # no key: the call ends, the clinician was alerted
        assert declined.dial is None and declined.hangup
        assert declined.text == PROMPTS["declined"][lang].format(number="112")


def test_a_dropped_call_resumes_where_it_stopped(server: LiveServer) -> None:
    for i, lang in enumerate(("en", "hi", "es")):
        first = Caller(server.client(), number(50 + i))
        first.dial()
        first.press(LANG_KEY[lang])
        for keys in COVID_KEYS[:4]:
            asked = first.press(keys)  # ... and the line drops at the symptoms question
        question = asked.says[0].text
        again = Caller(server.client(), number(50 + i))  # a new call, a new CallSid
        twiml = again.dial()
        assert twiml.says[0].text == PROMPTS["resume"][lang]
        assert twiml.says[1].text == question
        for keys in COVID_KEYS[4:]:
            twiml = again.press(keys)
        assert MILD[lang] in twiml.text and twiml.hangup


def test_star_repeats_and_silence_repeats_then_hangs_up(server: LiveServer) -> None:
    caller = Caller(server.client(), number(60))
    menu = caller.dial()
    again = caller.press("*")
    assert again.says[0].text == menu.says[0].text
    quiet = caller.silence()
    assert quiet.says[0].text == menu.says[0].text
    caller.silence()
    bye = caller.silence()
    assert bye.hangup and PROMPTS["goodbye"]["en"] in bye.text
    # the next call carries on at the same question
    back = Caller(server.client(), number(60)).dial()
    assert back.says[1].text == menu.says[0].text


def test_a_retried_webhook_says_the_same_again_and_is_handled_once(server: LiveServer) -> None:
    caller = Caller(server.client(), number(70))
    caller.dial()
    url = caller.last.gather.attrib["action"] if caller.last and caller.last.gather else ""
    params = {
        "AccountSid": "AC" + "0" * 32,
        "CallSid": caller.call_sid,
        "CallStatus": "in-progress",
        "Direction": "inbound",
        "From": number(70),
        "To": "+15550001111",
        "Digits": "1",
    }
    req = signed_request(url, params, TOKEN)
    path = url.removeprefix(PUBLIC)
    with server.client() as client:
        one = client.post(path, data=req.data, headers=req.headers)
        two = client.post(path, data=req.data, headers=req.headers)
    assert one.status_code == two.status_code == 200 and one.text == two.text
    contact = server.bridge.store.find_contact("voice", number(70))
    assert contact is not None
    ins = [e for e in server.bridge.store.transcript(contact.id) if e.direction == "in"]
    assert [e.text for e in ins] == ["", "1"]


def test_unsigned_or_forged_calls_are_refused(server: LiveServer) -> None:
    params = {"CallSid": "CA" + "1" * 32, "From": number(80), "To": "+15550001111"}
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/webhooks/twilio/voice", data=params).status_code == 403
        forged = signed_request(PUBLIC + "/webhooks/twilio/voice", params, "wrong-token")
        answer = client.post("/webhooks/twilio/voice", data=forged.data, headers=forged.headers)
        assert answer.status_code == 403
    assert server.bridge.store.find_contact("voice", number(80)) is None


def test_a_call_while_a_human_has_the_conversation_is_never_silent(server: LiveServer) -> None:
    caller = Caller(server.client(), number(90))
    caller.dial()
    caller.press("1")  # English
    caller.press("1")  # consent
    handed = caller.press("3")  # talk to a person
    assert handed.hangup and handed.says
    again = Caller(server.client(), number(90)).dial()
    assert again.hangup and again.text == PROMPTS["nothing_new"]["en"]


def test_a_patient_known_on_sms_is_one_person_and_keeps_their_language(
    server: LiveServer,
) -> None:
    store, now = server.bridge.store, server.bridge.clock()
    sms = store.get_or_create_contact("sms", number(95), now, language="hi")
    store.update_contact(sms.id, consent_care=True, now=now)
    twiml = Caller(server.client(), number(95)).dial()
    assert {s.attrib["language"] for s in twiml.says} == {"hi-IN"}  # no language menu
    assert "carebridge में आपका स्वागत है" in twiml.text  # consent is per channel, in Hindi
    voice = store.find_contact("voice", number(95))
    assert voice is not None and voice.language == "hi"
    assert [c.id for c in store.linked_contacts(voice.id)] == [sms.id]
