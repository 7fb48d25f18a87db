"""Twilio Voice (IVR): verify and parse call webhooks, speak replies as TwiML (`<Say>` inside a
`<Gather>` for keys and speech, `<Dial>` to connect an emergency), place outbound calls.
Imports the `twilio` library, `bot.messages`, `bot.errors` and the rest of `channels`.

A call is a conversation on the `voice` channel whose address is the patient's E.164 number.
What a call says is always a list of outbox rows the web layer claimed for this request
(docs/channels.md, "Voice and USSD"): this module only turns them into speech.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twilio.base.exceptions import TwilioException  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]
from twilio.twiml.voice_response import VoiceResponse  # type: ignore[import-untyped]

from bot.errors import ChannelError, ConfigError, PermanentChannelError
from bot.messages import Outbound
from channels.render import keyed_answer
from channels.twilio import _AiohttpTwilioClient, verify_twilio_signature

log = logging.getLogger(__name__)

REPEAT = "*"  # keyed alone: say the last prompt again
SKIP = "**"  # keyed alone: "I do not know" on a question that allows it

# What the channel itself says around the flow's texts, per language ({n}: a key, {choice}:
# an option, {number}: the number a call is connected to). Kept here, beside the keys they
# describe; the flows' own texts come from flows/*.yaml.
PROMPTS: dict[str, dict[str, str]] = {
    "press": {
        "en": "For {choice}, press {n}.",
        "hi": "{choice} के लिए {n} दबाएं।",
        "es": "Para {choice}, marque {n}.",
    },
    "yes_no": {
        "en": "For yes, press 1. For no, press 2.",
        "hi": "हाँ के लिए 1 दबाएं। नहीं के लिए 2 दबाएं।",
        "es": "Para sí, marque 1. Para no, marque 2.",
    },
    "number": {
        "en": "Key the number, then press the hash key. For a decimal point, press star.",
        "hi": "नंबर दबाएं, फिर हैश दबाएं। दशमलव के लिए स्टार दबाएं।",
        "es": "Marque el número y después la tecla numeral. "
        "Para el punto decimal, marque asterisco.",
    },
    "bp": {
        "en": "Key the top number, then star, then the bottom number, then the hash key.",
        "hi": "ऊपर वाला नंबर, फिर स्टार, फिर नीचे वाला नंबर, फिर हैश दबाएं।",
        "es": "Marque el número de arriba, asterisco, el de abajo y la tecla numeral.",
    },
    "multi": {
        "en": "Press the numbers of all that apply, then the hash key. For none, press 0.",
        "hi": "जो भी लागू हों उनके नंबर दबाएं, फिर हैश दबाएं। कोई नहीं, तो 0 दबाएं।",
        "es": "Marque los números de todas las que tenga y después numeral. Si ninguna, marque 0.",
    },
    "multi_long": {
        "en": "Press star between two numbers.",
        "hi": "दो नंबरों के बीच स्टार दबाएं।",
        "es": "Marque asterisco entre dos números.",
    },
    "text": {
        "en": "Please say your answer after the tone.",
        "hi": "कृपया अपना जवाब बोलें।",
        "es": "Por favor, diga su respuesta.",
    },
    "unknown": {
        "en": "If you do not know, press star twice, then hash.",
        "hi": "अगर आपको नहीं पता, तो दो बार स्टार, फिर हैश दबाएं।",
        "es": "Si no sabe, marque dos veces asterisco y después numeral.",
    },
    "repeat": {
        "en": "To hear this again, press star.",
        "hi": "फिर से सुनने के लिए स्टार दबाएं।",
        "es": "Para escuchar de nuevo, marque asterisco.",
    },
    "resume": {
        "en": "Welcome back. We are continuing where we stopped.",
        "hi": "फिर से स्वागत है। हम वहीं से आगे बढ़ रहे हैं जहाँ रुके थे।",
        "es": "Hola de nuevo. Seguimos donde nos quedamos.",
    },
    "connect_offer": {
        "en": "To be connected to {number} now, press 1.",
        "hi": "अभी {number} से जुड़ने के लिए 1 दबाएं।",
        "es": "Para que le comuniquemos ahora con el {number}, marque 1.",
    },
    "connecting": {
        "en": "Connecting you to {number} now.",
        "hi": "अब आपको {number} से जोड़ा जा रहा है।",
        "es": "Le estamos comunicando con el {number}.",
    },
    "declined": {
        "en": "If you need help, call {number} now. Goodbye.",
        "hi": "मदद चाहिए तो अभी {number} पर कॉल करें। नमस्ते।",
        "es": "Si necesita ayuda, llame ahora al {number}. Adiós.",
    },
    "nothing_new": {
        "en": "Thank you. There is nothing new for you right now; our team has your messages.",
        "hi": "धन्यवाद। अभी आपके लिए कुछ नया नहीं है; हमारी टीम के पास आपके संदेश हैं।",
        "es": "Gracias. Por ahora no hay nada nuevo para usted; nuestro equipo tiene sus mensajes.",
    },
    "goodbye": {
        "en": "We did not hear an answer. Call again when you are ready; we will continue "
        "where we stopped. Goodbye.",
        "hi": "हमें कोई जवाब नहीं मिला। जब तैयार हों, फिर कॉल करें; हम वहीं से आगे बढ़ेंगे। नमस्ते।",
        "es": "No escuchamos respuesta. Llame de nuevo cuando pueda; seguiremos donde nos "
        "quedamos. Adiós.",
    },
}


def prompt(key: str, language: str, **values: str) -> str:
    """A channel prompt in `language` (English when there is none in it)."""
    texts = PROMPTS[key]
    return texts.get(language, texts["en"]).format(**values)


@dataclass(frozen=True)
class SpeechVoice:
    """How `<Say>` speaks one language, and which language `<Gather>` listens for."""

    language: str  # BCP-47 as Twilio takes it: en-US, hi-IN, es-US
    voice: str | None = None  # e.g. Polly.Aditi; None: Twilio's default for the language


@dataclass(frozen=True)
class Question:
    """What the call waits for after the prompt (from the engine's expectation)."""

    type: str  # bool | number | choice | multi | text | bp
    options: int = 0
    allow_unknown: bool = False
    languages: tuple[str, ...] = ()  # choosing a language: each option's language code


@dataclass(frozen=True)
class CallTurn:
    """One verified request of a call: who, which call, and what was keyed or said."""

    call_sid: str
    address: str  # the patient's number (From on a call in, To on a call we placed)
    outbound: bool  # a call we placed (Direction outbound-api)
    digits: str | None
    speech: str | None
    status: str  # CallStatus: ringing, in-progress, completed, ...


def parse_voice_webhook(
    form: Mapping[str, str], signature: str | None, url: str, auth_token: str
) -> CallTurn:
    """Verify (X-Twilio-Signature, as for SMS) and parse a Voice webhook."""
    verify_twilio_signature(form, signature, url, auth_token)
    sid = form.get("CallSid")
    outbound = (form.get("Direction") or "").startswith("outbound")
    address = form.get("To") if outbound else form.get("From")
    if not sid or not address:
        raise ChannelError("Twilio voice webhook lacks CallSid or From/To", code="malformed")
    digits = form.get("Digits")
    speech = (form.get("SpeechResult") or "").strip() or None
    return CallTurn(
        sid,
        address.strip(),
        outbound,
        digits if digits else None,
        speech,
        (form.get("CallStatus") or "").lower(),
    )


def answer_text(turn: CallTurn, question: Question | None) -> str | None:
    """What the patient answered, as text for the NLU: keys made readable (`1*2` -> `1 2` on
    a multi-select, `38*5` -> `38.5`, `**` -> `skip`), or what speech recognition heard.
    None: nothing was keyed or said."""
    if turn.digits:
        kind, count = (question.type, question.options) if question else (None, 0)
        return keyed_answer(turn.digits, kind, count, separator="*")
    return turn.speech


def spoken(text: str) -> str:
    """A text as it can be read aloud: pictographs dropped, markup stars and underscores
    removed, `°` read as degrees, a slash and line breaks as pauses."""
    text = text.replace("°C", " degrees Celsius").replace("°F", " degrees Fahrenheit")
    text = text.replace("°", " degrees ")
    text = re.sub(r"\s*/\s*", ", ", text)  # doctor/nurse, "English / हिंदी": a pause
    kept = "".join(
        ch for ch in text if unicodedata.category(ch) not in ("So", "Cs", "Co") and ch not in "*_~`"
    )
    kept = re.sub(r"\s*\n+\s*", " ", kept)
    return re.sub(r"[ \t]{2,}", " ", kept).strip()


Line = str | tuple[str, str]
"""A line to say: text in the patient's language, or (text, language) in another one."""


def key_hints(msg: Outbound, question: Question | None, language: str) -> list[Line]:
    """The key instructions after a question: one line per choice, or how to key a number.
    Choosing a language, each option is said in that language (`Question.languages`)."""
    lines: list[Line] = []
    by_language = question.languages if question is not None else ()
    if msg.choices and len(by_language) == len(msg.choices):
        lines = [
            (prompt("press", lang, choice=spoken(c), n=str(i)), lang)
            for i, (c, lang) in enumerate(zip(msg.choices, by_language, strict=True), 1)
        ]
    elif msg.choices:
        lines = [
            prompt("press", language, choice=spoken(c), n=str(i))
            for i, c in enumerate(msg.choices, 1)
        ]
    if question is None:
        return lines
    if question.type == "bool" and not msg.choices:
        lines.append(prompt("yes_no", language))
    elif question.type == "number":
        lines.append(prompt("number", language))
    elif question.type == "bp":
        lines.append(prompt("bp", language))
    elif question.type == "multi":
        lines.append(prompt("multi", language))
        if question.options > 9:
            lines.append(prompt("multi_long", language))
    elif question.type == "text":
        lines.append(prompt("text", language))
    if question.allow_unknown:
        lines.append(prompt("unknown", language))
    lines.append(prompt("repeat", language))
    return lines


def speech_for(
    rows: Sequence[Outbound],
    question: Question | None,
    language: str,
    speak: Callable[[str, str], str] | None = None,
) -> list[Line]:
    """The lines a response says for these outbox rows: each row's text (through `speak`, the
    flows' `spoken:` variants, then `spoken`), and after the last row its key hints."""
    lines: list[Line] = []
    for i, row in enumerate(rows):
        text = speak(row.text, language) if speak is not None else row.text
        if text.strip():
            lines.append(spoken(text))
        if i == len(rows) - 1:
            lines.extend(key_hints(row, question, language))
    return lines


Voices = Mapping[str, SpeechVoice]


def _say_all(parent: Any, lines: Sequence[Line], voice: SpeechVoice, voices: Voices) -> None:
    for line in lines:
        text, other = (line, None) if isinstance(line, str) else line
        chosen = voices.get(other, voice) if other is not None else voice
        if chosen.voice:
            parent.say(text, voice=chosen.voice, language=chosen.language)
        else:
            parent.say(text, language=chosen.language)


def gather_twiml(
    lines: Sequence[Line],
    voice: SpeechVoice,
    action: str,
    no_input: str,
    *,
    question: Question | None,
    speech: bool = True,
    timeout_s: int = 6,
    voices: Voices | None = None,
) -> str:
    """Say `lines` inside a `<Gather>` that posts the keys (or speech) to `action`; when the
    caller gives nothing, `<Redirect>` to `no_input`. A yes/no or a short choice ends on one
    key (unless "I do not know" is allowed: `**`); numbers and multi-selects end on `#`."""
    response = VoiceResponse()
    one_key = (
        question is not None
        and not question.allow_unknown  # "**" for "I do not know" takes two keys
        and (question.type == "bool" or (question.type == "choice" and question.options <= 9))
    )
    options: dict[str, Any] = {
        "input": "dtmf speech" if speech and question is not None else "dtmf",
        "action": action,
        "method": "POST",
        "finish_on_key": "#",
        "timeout": timeout_s,
        "action_on_empty_result": False,
    }
    if one_key:
        options["num_digits"] = 1
    if "speech" in options["input"]:
        options.update(language=voice.language, speech_timeout="auto")
    gather = response.gather(**options)
    _say_all(gather, lines, voice, voices or {})
    response.redirect(no_input, method="POST")
    return str(response)


def offer_twiml(lines: Sequence[Line], voice: SpeechVoice, action: str, timeout_s: int = 6) -> str:
    """An emergency: say `lines` (the emergency message and the offer to connect) and wait for
    one key (1: connect) posted to `action`; silence posts there too, with no Digits."""
    response = VoiceResponse()
    gather = response.gather(
        input="dtmf", action=action, method="POST", num_digits=1, timeout=timeout_s
    )
    _say_all(gather, lines, voice, {})
    response.redirect(action, method="POST")
    return str(response)


def dial_twiml(lines: Sequence[Line], voice: SpeechVoice, number: str) -> str:
    """Say `lines` ("connecting you to ...") and connect the call to `number`."""
    response = VoiceResponse()
    _say_all(response, lines, voice, {})
    response.dial(number)
    return str(response)


def hangup_twiml(lines: Sequence[Line], voice: SpeechVoice) -> str:
    """Say `lines` and end the call (the conversation is over, or nobody answers)."""
    response = VoiceResponse()
    _say_all(response, lines, voice, {})
    response.hangup()
    return str(response)


class VoiceCaller:
    """The `voice` channel for the dispatcher: a queued message to a voice contact places one
    outbound call (`calls.create` with `url` back to the voice webhook); when it is answered,
    the webhook says that message. Messages queued for one number within `window_s` of a call
    ride on that call (a check-in's greeting and first question are one call, not two).

    A `reply` is never dialled: replies belong to a call in progress and are said by the
    webhook that produced them; one reaching the dispatcher (a worker claimed it between the
    webhook's commit and its claim) is given the call's placeholder id and left to the call.
    """

    name = "voice"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        webhook_url: str,
        *,
        api_base_url: str | None = None,
        status_callback_url: str | None = None,
        timeout: float = 10.0,
        window_s: float = 120.0,
    ) -> None:
        if not account_sid or not auth_token:
            raise ConfigError("set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in the environment")
        if not from_number:
            raise ConfigError("voice.from_number is not set in the config file")
        self._from = from_number
        self._url = webhook_url
        self._status_callback_url = status_callback_url
        self._http = _AiohttpTwilioClient(api_base_url, timeout)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        self._window_s = window_s
        self._recent: dict[str, tuple[str, float]] = {}  # number -> (CallSid, placed at)

    async def start(self) -> None:
        """Nothing to open: the HTTP session opens on first use."""

    async def stop(self) -> None:
        """Close the HTTP session."""
        await self._http.close()

    async def send(self, msg: Outbound) -> str:
        """Place a call for `msg` (or join the one just placed to that number); its CallSid."""
        if msg.kind == "reply":
            return LIVE_REPLY
        now = time.monotonic()
        recent = self._recent.get(msg.address)
        if recent is not None and now - recent[1] < self._window_s:
            return recent[0]
        params: dict[str, Any] = {"to": msg.address, "from_": self._from, "url": self._url}
        if self._status_callback_url:
            params["status_callback"] = self._status_callback_url
        try:
            call = await self._client.calls.create_async(**params)
        except ChannelError as exc:
            log.warning("twilio voice call failed: %s", exc)
            raise
        except TwilioException as exc:
            raise PermanentChannelError(f"twilio client error: {type(exc).__name__}") from exc
        sid = str(call.sid)
        self._recent = {a: v for a, v in self._recent.items() if now - v[1] < self._window_s}
        self._recent[msg.address] = (sid, now)
        log.info("twilio voice call placed %s", sid)
        return sid


LIVE_REPLY = "live-reply"
"""The provider id a dispatcher records for a reply it was not meant to have (see VoiceCaller)."""


def turn_id(call_sid: str, turn: int) -> str:
    """The provider id of one request of a call: the inbox dedupe key and the outbox rows'
    provider id, so a retried request says again exactly what it said the first time."""
    return f"{call_sid}:{turn}"


_UNSPEAKABLE = re.compile(
    r"https?://\S+|www\.\S+|[°*#_|<>≥≤~^=@]"
    r"|(?<=\d)\s*/|/\s*(?=\d)|\b[A-Za-z]{1,3}/[A-Za-z]{1,3}\b"  # 120/80, mg/dL, L/min
)


def unspeakable(text: str) -> list[str]:
    """What a text-to-speech voice reads badly, once each: URLs, pictographs (emoji), and the
    symbols ° / * # _ | < > ≥ ≤ ~ ^ = @ (units like mg/dL, readings like 120/80, 38 °C).
    A `/` between words ("doctor/nurse", "? / ...") is read as a pause and is not reported.
    A flow text with any of them needs a `spoken:` variant (`flows validate` warns)."""
    found = [m.group(0) for m in _UNSPEAKABLE.finditer(text)]
    found += [ch for ch in text if unicodedata.category(ch) == "So"]
    return list(dict.fromkeys(found))


def script(twiml: str) -> list[str]:
    """A TwiML answer as a script, for the simulator: what is said (`BOT:`), what the call
    waits for (`WAIT:`), and a connection (`DIAL:`) or the end (`HANG UP`)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(twiml)
    lines: list[str] = []
    for verb in root:
        if verb.tag == "Gather":
            lines.extend(f"BOT: {s.text}" for s in verb.iter("Say"))
            ending = "one key" if verb.get("numDigits") == "1" else "keys ending with #"
            speech = " or speech" if "speech" in (verb.get("input") or "") else ""
            lines.append(f"WAIT: {ending}{speech} (silence: the prompt again)")
        elif verb.tag == "Say":
            lines.append(f"BOT: {verb.text}")
        elif verb.tag == "Dial":
            lines.append(f"DIAL: {(verb.text or '').strip()}")
        elif verb.tag == "Hangup":
            lines.append("HANG UP")
    return lines
