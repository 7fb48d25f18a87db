"""How an `Outbound` looks on each channel, and SMS arithmetic (GSM-7 vs UCS-2, segments).
Pure functions, no I/O; imports only the standard library and `bot.messages`.

    sms       plain text, typographic quotes/dashes made GSM-7, choices as `1. Yes` lines
    whatsapp  a trailing question in *bold*, a blank line, then `1. Yes` lines
    telegram  the text as is; choices become numbered buttons ("1. Fever", callback data "1",
              "2", ...); a multi-select adds "None" (data "0") and "Done" (docs/channels.md)
    other     (cli, web, ...) text and `1. Yes` lines, nothing changed
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from bot.messages import Outbound

# GSM 03.38 default alphabet (ESC excluded) and its extension table (each costs 2 septets).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

# Characters with a GSM-7 stand-in; SMS rendering replaces them so one curly quote does not
# turn a 160-character segment into a 70-character one.
_GSM7_STAND_INS = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
    "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\t": " ",
    "\u200b": "", "\u00ad": "", "\ufeff": "",
}  # fmt: skip
_SMS_TABLE = str.maketrans(_GSM7_STAND_INS)

# Advice for the flow linter, beyond the stand-ins above.
_LINT_HINTS = {"°": "write 'degrees' (38 degrees C)", "•": "use '-'", "✓": "use 'yes'"}

SMS_SINGLE = {"gsm7": 160, "ucs2": 70}  # units in a message of one segment
SMS_PART = {"gsm7": 153, "ucs2": 67}  # units per segment of a concatenated message
WHATSAPP_MAX_CHARS = 1600  # Twilio rejects longer bodies (error 21617)
TELEGRAM_MAX_CHARS = 4096  # Bot API limit for sendMessage text

Encoding = Literal["gsm7", "ucs2"]


@dataclass(frozen=True)
class Button:
    """A Telegram inline button: the label shown and the callback data sent back."""

    label: str
    data: str


@dataclass(frozen=True)
class Rendered:
    """One provider message as the patient will see it."""

    channel: str
    text: str
    buttons: tuple[Button, ...] = ()
    multi: bool = False  # a multi-select: the last two buttons are None and Done


NONE_DATA = "0"  # the None button sends what a patient would type for "none of these"
DONE_EMPTY = (
    "done"  # Done pressed with nothing ticked: not an answer, so the question is asked again
)


def select_multi(none_label: str, done_label: str) -> dict[str, str]:
    """`Outbound.meta` for a multi-select question, with its None and Done button labels."""
    return {"select": "multi", "none": none_label, "done": done_label}


def render(msg: Outbound, channel: str | None = None) -> Rendered:
    """Render `msg` for `channel` (default: `msg.channel`) as one provider message."""
    channel = channel or msg.channel
    if channel == "telegram":
        buttons = [Button(f"{i}. {c}", str(i)) for i, c in enumerate(msg.choices, 1)]
        multi = bool(msg.choices) and msg.meta.get("select") == "multi"
        if multi:
            buttons.append(Button(msg.meta.get("none") or "None", NONE_DATA))
            buttons.append(Button(msg.meta.get("done") or "Done", DONE_EMPTY))
        return Rendered(channel, msg.text.strip(), tuple(buttons), multi)
    if channel == "sms":
        text = to_gsm7_friendly(msg.text).strip()
        choices = [to_gsm7_friendly(c).strip() for c in msg.choices]
        return Rendered(channel, _with_numbered(text, choices, "\n"))
    if channel == "whatsapp":
        text = _bold_question(msg.text.strip()) if msg.choices else msg.text.strip()
        return Rendered(channel, _with_numbered(text, list(msg.choices), "\n\n"))
    return Rendered(channel, _with_numbered(msg.text.strip(), list(msg.choices), "\n"))


def _with_numbered(text: str, choices: list[str], gap: str) -> str:
    if not choices:
        return text
    lines = "\n".join(f"{i}. {c}" for i, c in enumerate(choices, 1))
    return f"{text}{gap}{lines}" if text else lines


def _bold_question(text: str) -> str:
    """Bold the last line when it is a plain question (WhatsApp renders *x* as bold)."""
    head, sep, last = text.rpartition("\n")
    if not last.endswith("?") or any(mark in last for mark in "*_~`") or len(last) > 200:
        return text
    return f"{head}{sep}*{last}*"


def to_gsm7_friendly(text: str) -> str:
    """Replace typographic quotes, dashes, ellipses and odd spaces with GSM-7 equivalents."""
    return text.translate(_SMS_TABLE)


def is_gsm7(text: str) -> bool:
    """True if every character of `text` is in the GSM-7 alphabet or its extension."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def encoding(text: str) -> Encoding:
    """The encoding an SMS carrying `text` needs: "gsm7" or "ucs2"."""
    return "gsm7" if is_gsm7(text) else "ucs2"


def _unit_costs(text: str, enc: Encoding) -> list[int]:
    if enc == "gsm7":  # extension characters are ESC + char
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]  # UTF-16 surrogate pairs


def segments(text: str) -> int:
    """Number of SMS segments `text` takes (GSM-7: 160 or 153 each; UCS-2: 70 or 67 each)."""
    enc = encoding(text)
    costs = _unit_costs(text, enc)
    if sum(costs) <= SMS_SINGLE[enc]:
        return 1
    count, used = 1, 0
    for cost in costs:  # a two-unit character is never split across segments
        if used + cost > SMS_PART[enc]:
            count, used = count + 1, 0
        used += cost
    return count


def lint_sms_text(text: str) -> list[str]:
    """Characters that needlessly force UCS-2 (70 instead of 160 characters per SMS).

    Texts whose letters are outside GSM-7 anyway (Hindi, Greek accents, ...) are UCS-2
    whatever else they contain, so they get no findings.
    """
    first_seen: dict[str, int] = {}
    for index, ch in enumerate(text):
        if not is_gsm7(ch):
            first_seen.setdefault(ch, index)
    if any(unicodedata.category(ch)[0] in "LM" for ch in first_seen):
        return []
    problems = []
    for ch, index in first_seen.items():
        name = unicodedata.name(ch, "unnamed character")
        stand_in = _GSM7_STAND_INS.get(ch)
        hint = _LINT_HINTS.get(ch) or (f"use {stand_in!r}" if stand_in else "remove it")
        problems.append(
            f"column {index + 1}: {ch!r} (U+{ord(ch):04X} {name}) forces UCS-2 "
            f"(70 characters per SMS instead of 160); {hint}"
        )
    return problems


_BOUNDARY = re.compile(r"(?<=[.!?।…])[ \t]+|\s*\n\s*")
_WORD = re.compile(r"\S+\s*")


def split_text(text: str, fits: Callable[[str], bool]) -> list[str]:
    """Split `text` into parts that each satisfy `fits`, at sentence, then word, boundaries."""
    text = text.strip()
    if fits(text):
        return [text]
    parts: list[str] = []
    current = ""
    for chunk in _chunks(text, _BOUNDARY):
        if fits((current + chunk).strip()):
            current += chunk
            continue
        if current.strip():
            parts.append(current.strip())
        current = ""
        if fits(chunk.strip()):
            current = chunk
        else:  # one sentence too long: split it at words, then characters
            pieces = _pack(_WORD.findall(chunk), fits) or [""]
            parts.extend(pieces[:-1])
            current = pieces[-1] + " "
    if current.strip():
        parts.append(current.strip())
    return parts


def _chunks(text: str, boundary: re.Pattern[str]) -> list[str]:
    """`text` cut after each boundary; each chunk keeps its trailing separator."""
    chunks, start = [], 0
    for match in boundary.finditer(text):
        chunks.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        chunks.append(text[start:])
    return chunks


def _pack(pieces: list[str], fits: Callable[[str], bool]) -> list[str]:
    parts: list[str] = []
    current = ""
    for piece in pieces:
        if fits((current + piece).strip()):
            current += piece
            continue
        if current.strip():
            parts.append(current.strip())
        current = ""
        while piece.strip() and not fits(piece.strip()):  # a single over-long word
            cut = len(piece) - 1
            while cut > 1 and not fits(piece[:cut]):
                cut -= 1
            parts.append(piece[:cut])
            piece = piece[cut:]
        current = piece
    if current.strip():
        parts.append(current.strip())
    return parts


def sms_fits(max_segments: int) -> Callable[[str], bool]:
    """A `fits` predicate: the text takes at most `max_segments` SMS segments."""
    return lambda text: segments(text) <= max_segments


def _chars_fit(limit: int) -> Callable[[str], bool]:
    return lambda text: len(text.encode("utf-16-le")) // 2 <= limit


def split_outbound(msg: Outbound, *, max_segments: int = 3) -> list[Outbound]:
    """Split a long reply into several messages, each fitting its channel.

    SMS parts fit `max_segments` segments once rendered; WhatsApp and Telegram parts fit
    the provider's length limit. The question's sentence stays with the choices in the last
    part; each part's `meta["part"]` is "i/n" when there is more than one.
    """
    channel = msg.channel
    fits = (
        sms_fits(max_segments)
        if channel == "sms"
        else _chars_fit(TELEGRAM_MAX_CHARS if channel == "telegram" else WHATSAPP_MAX_CHARS)
    )

    def fits_as(text: str, choices: tuple[str, ...]) -> bool:
        return fits(render(replace(msg, text=text, choices=choices), channel).text)

    if fits_as(msg.text, msg.choices):
        return [msg]
    chunks = _chunks(msg.text.strip(), _BOUNDARY)
    # The last part: the choices plus as many trailing sentences as still fit.
    tail = ""
    while chunks and fits_as(chunks[-1] + tail, msg.choices):
        tail = chunks.pop() + tail
    head = "".join(chunks).strip()
    texts = split_text(head, lambda t: fits_as(t, ())) if head else []
    last = replace(msg, text=tail.strip(), choices=msg.choices)
    parts = [replace(msg, text=t, choices=()) for t in texts]
    if tail.strip() or msg.choices:
        parts.append(last)
    total = len(parts)
    return [replace(p, meta={**p.meta, "part": f"{i}/{total}"}) for i, p in enumerate(parts, 1)]


# --- keypads (voice and USSD) -----------------------------------------------------------------


def keyed_answer(keys: str, question_type: str | None, options: int = 0, *, separator: str) -> str:
    """Keys pressed on a phone keypad as the text a patient would have typed.

    `separator` is the key that joins numbers (`*` on a call, `#` on USSD, where `*` already
    separates the steps): twice alone means "I do not know" (`skip`); in a number it is the
    decimal point (`38*5` -> `38.5`), in a blood pressure the slash (`120*80` -> `120/80`),
    in a multi-select a gap between option numbers (`1*10` -> `1 10`); a multi-select of at
    most nine options may also be keyed as one run of digits (`127` -> `1 2 7`).
    """
    keys = "".join(keys.split())
    if keys == separator * 2:
        return "skip"
    if question_type == "number":
        return keys.replace(separator, ".")
    if question_type == "bp":
        return keys.replace(separator, "/")
    if question_type == "multi":
        parts = [p for p in keys.split(separator) if p]
        if len(parts) == 1 and options <= 9 and parts[0].isdigit():
            parts = list(parts[0])
        return " ".join(parts)
    return " ".join(p for p in keys.split(separator) if p)
