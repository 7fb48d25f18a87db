"""USSD through an aggregator's session protocol (Africa's Talking style): parse the form,
authenticate the aggregator, lay replies out as screens of at most 182 characters with
"98 More" / "00 Back" pages, answer `CON ...` (wait for a key) or `END ...` (close).
Imports the standard library, `bot.messages`, `bot.errors` and the rest of `channels`.

The aggregator POSTs `sessionId`, `serviceCode`, `phoneNumber` and `text`: everything keyed
in this USSD session so far, joined by `*` ("" on the dial, "1", "1*2", ...). A screen is
always the outbox rows the web layer claimed for this request (docs/channels.md).
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.errors import ChannelError
from bot.messages import Outbound
from channels.base import SignatureError
from channels.render import _BOUNDARY, _chunks, split_text

USSD_MAX_CHARS = 182  # GSM 03.90 USSD string of 7-bit characters
MORE_KEY = "98"
BACK_KEY = "00"  # not "0": a multi-select takes 0 for "none of these"
SECRET_HEADER = "X-Carebridge-Ussd-Secret"

LABELS: dict[str, dict[str, str]] = {
    "more": {"en": "More", "hi": "आगे", "es": "Más"},
    "back": {"en": "Back", "hi": "पीछे", "es": "Atrás"},
    "yes": {"en": "Yes", "hi": "हाँ", "es": "Sí"},
    "no": {"en": "No", "hi": "नहीं", "es": "No"},
    "unknown": {"en": "Don't know", "hi": "पता नहीं", "es": "No sé"},
}
UNKNOWN_KEYS = "##"  # "I do not know" (channels.render.keyed_answer with separator "#")


def key_lines(question_type: str | None, allow_unknown: bool, language: str) -> list[str]:
    """Lines a screen adds for keys the flow text cannot show on a keypad: `1. Yes` / `2. No`
    under a yes/no question, `##. Don't know` where not knowing is an answer."""
    lines = []
    if question_type == "bool":
        lines = [f"1. {_label('yes', language)}", f"2. {_label('no', language)}"]
    if allow_unknown:
        lines.append(f"{UNKNOWN_KEYS}. {_label('unknown', language)}")
    return lines


@dataclass(frozen=True)
class UssdRequest:
    """One request of a USSD session."""

    session_id: str
    service_code: str
    address: str  # the patient's number, E.164 as the aggregator sends it
    text: str  # cumulative keys of this session, `*`-separated

    @property
    def steps(self) -> tuple[str, ...]:
        """What was keyed at each screen so far ("" on the dial: no steps)."""
        return tuple(self.text.split("*")) if self.text else ()

    @property
    def latest(self) -> str | None:
        """What was keyed at the screen just shown; None on the dial."""
        return self.steps[-1] if self.steps else None


def parse_ussd(form: Mapping[str, str]) -> UssdRequest:
    """The request's fields, or `ChannelError("malformed")` when one is missing."""
    session_id, number = form.get("sessionId", "").strip(), form.get("phoneNumber", "").strip()
    if not session_id or not number or len(session_id) > 128:
        raise ChannelError("USSD request lacks sessionId or phoneNumber", code="malformed")
    return UssdRequest(
        session_id, form.get("serviceCode", "").strip(), number, form.get("text", "").strip()
    )


def verify_ussd(
    given_secret: str | None,
    secret: str,
    client_ip: str | None,
    networks: Sequence[str],
) -> None:
    """Authenticate the aggregator (it signs nothing): the shared secret must match when one is
    configured, and the caller's address must be in `networks` when any are configured. With
    neither configured, nothing is accepted (`SignatureError("ussd_unconfigured")`)."""
    if not secret and not networks:
        raise SignatureError(
            "no USSD_SHARED_SECRET and no ussd.allowed_networks", code="ussd_unconfigured"
        )
    if secret and not hmac.compare_digest((given_secret or "").encode(), secret.encode()):
        raise SignatureError("USSD shared secret missing or wrong", code="secret_invalid")
    if networks:
        try:
            ip = ipaddress.ip_address(client_ip or "")
        except ValueError:
            raise SignatureError("USSD caller address unknown", code="address_refused") from None
        if not any(ip in ipaddress.ip_network(n, strict=False) for n in networks):
            raise SignatureError("USSD caller not in ussd.allowed_networks", code="address_refused")


def _label(key: str, language: str) -> str:
    return LABELS[key].get(language, LABELS[key]["en"])


def footer(language: str, *, more: bool, back: bool) -> str:
    """The navigation lines of a page ("98. More", "0. Back")."""
    lines = []
    if more:
        lines.append(f"{MORE_KEY}. {_label('more', language)}")
    if back:
        lines.append(f"{BACK_KEY}. {_label('back', language)}")
    return "\n".join(lines)


def content_limit(language: str, limit: int = USSD_MAX_CHARS) -> int:
    """Characters a page has for content when it carries both navigation lines."""
    return limit - len(footer(language, more=True, back=True)) - 1


def units(rows: Sequence[Outbound]) -> list[str]:
    """The pieces a screen is made of, in order: each row's sentences, then the last row's
    choices as `1. Yes` lines. Pages break only between pieces."""
    return [piece for piece, _ in _pieces(rows)]


def _pieces(rows: Sequence[Outbound]) -> list[tuple[str, str]]:
    """Pieces with what joins each to the one before: a space inside a paragraph, else a
    line break."""
    pieces: list[tuple[str, str]] = []
    for row in rows:
        for paragraph in row.text.strip().split("\n"):
            chunks = [c.strip() for c in _chunks(paragraph.strip(), _BOUNDARY) if c.strip()]
            pieces.extend((c, " " if i else "\n") for i, c in enumerate(chunks))
    if rows:
        pieces.extend((f"{i}. {c.strip()}", "\n") for i, c in enumerate(rows[-1].choices, 1))
    return pieces


def too_long(pieces: Sequence[str], language: str, limit: int = USSD_MAX_CHARS) -> list[str]:
    """The pieces (a sentence, a choice) that cannot fit on one page with its navigation."""
    room = content_limit(language, limit)
    return [p for p in pieces if len(p) > room]


def paginate(
    rows: Sequence[Outbound],
    language: str,
    limit: int = USSD_MAX_CHARS,
    extra: Sequence[str] = (),
) -> list[str]:
    """The screens for these rows (and `extra` lines, `key_lines`), each at most `limit`
    characters with its navigation lines. A piece too long for a page is cut at words (the
    validator reports such texts)."""
    room = content_limit(language, limit)
    pages: list[str] = []
    current = ""
    for piece, gap in [*_pieces(rows), *((line, "\n") for line in extra)]:
        parts = split_text(piece, lambda t: len(t) <= room) if len(piece) > room else [piece]
        for part in parts:
            joined = f"{current}{gap}{part}" if current else part
            if len(joined) <= room:
                current = joined
                continue
            if current:
                pages.append(current)
            current = part
    pages.append(current)
    if len(pages) == 1 and len(pages[0]) <= limit:
        return pages
    last = len(pages) - 1
    return [
        f"{page}\n{footer(language, more=i < last, back=i > 0)}" for i, page in enumerate(pages)
    ]


def respond(screen: str, *, end: bool) -> str:
    """The aggregator's answer: `END <screen>` closes the session, `CON <screen>` waits."""
    return f"{'END' if end else 'CON'} {screen}"


class Pages:
    """Which page of a multi-page screen each USSD session is on (in memory; a session lives a
    few minutes). Lost pages (a restart, another server) only mean "98"/"0" reach the
    conversation as answers; the conversation itself is in the database."""

    def __init__(self, ttl_s: float = 600.0, max_sessions: int = 10_000) -> None:
        self._ttl = ttl_s
        self._max = max_sessions
        self._lock = threading.Lock()
        self._by_session: OrderedDict[str, tuple[tuple[str, ...], int, bool, float]] = OrderedDict()

    def show(self, session_id: str, pages: Sequence[str], end: bool) -> str:
        """Remember `pages` for the session and return the first screen's answer."""
        with self._lock:
            self._by_session[session_id] = (tuple(pages), 0, end, time.monotonic())
            self._by_session.move_to_end(session_id)
            while len(self._by_session) > self._max:
                self._by_session.popitem(last=False)
        return respond(pages[0], end=end and len(pages) == 1)

    def navigate(self, session_id: str, key: str | None) -> str | None:
        """The answer for a "98"/"0" that moves between pages of the current screen; None when
        `key` is not navigation there (it is an answer)."""
        with self._lock:
            state = self._by_session.get(session_id)
            if state is None or key not in (MORE_KEY, BACK_KEY):
                return None
            pages, index, end, at = state
            if time.monotonic() - at > self._ttl:
                del self._by_session[session_id]
                return None
            if key == MORE_KEY and index < len(pages) - 1:
                index += 1
            elif key == BACK_KEY and index > 0:
                index -= 1
            else:
                return None
            self._by_session[session_id] = (pages, index, end, time.monotonic())
        return respond(pages[index], end=end and index == len(pages) - 1)


def phone_screen(answer: str, width: int = 30) -> str:
    """An answer (`CON ...`/`END ...`) drawn as a basic phone's USSD screen, for the simulator:
    the text wrapped in a box, then whether the phone waits for keys or the session closed."""
    import textwrap

    kind, _, screen = answer.partition(" ")
    lines: list[str] = []
    for line in screen.split("\n"):
        lines.extend(textwrap.wrap(line, width) or [""])
    top = "┌" + "─" * (width + 2) + "┐"
    body = [f"│ {line.ljust(width)} │" for line in lines]
    bottom = "└" + "─" * (width + 2) + "┘"
    state = "[ reply: ____ ]  (CON: waiting for keys)" if kind == "CON" else "(END: session closed)"
    return "\n".join([top, *body, bottom, f"{len(screen)}/{USSD_MAX_CHARS} characters  {state}"])
