"""Conversations on the live channels (voice calls, USSD sessions), where the provider waits
for the answer: one request handles the patient's input in its transaction as any message,
then claims from the outbox exactly the rows to say and marks them sent (docs/channels.md,
"Voice and USSD"). Channel-neutral: the web layer renders the rows. Imports bot and nlu.types.

Every method runs on the store's owner thread (`CareBridge.owner.run`), so no dispatcher
claim falls between the commit of the replies and their claim in the embedded setup.
"""

from __future__ import annotations

import re
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import cast

from bot import engine
from bot.app import CareBridge
from bot.flow import Library
from bot.messages import Inbound, Outbound
from bot.phones import PHONE_CHANNELS
from bot.session import Contact
from bot.store import Lane, OutboxRow
from bot.store.live import LiveOutbox
from nlu.types import Expectation

Prompt = Callable[[str], str]  # a channel text in the patient's language
CALL_START = ""  # the inbound text of a call answered / a USSD dial with nothing keyed yet
STRAY_REPLY = "live-reply"  # channels.voice.LIVE_REPLY: a reply a dispatcher took by mistake


@dataclass(frozen=True)
class Said:
    """What one request of a call or USSD session says: outbox rows, already marked sent."""

    contact_id: int | None
    rows: tuple[Outbound, ...]
    language: str
    expecting: Expectation | None  # the question now open; None: the conversation is over
    emergency: bool  # a red flag or an emergency outcome is among the rows
    repeated: bool = False  # a provider retry: the rows said the first time, again


class Live:
    """The live conversation service of one channel ("voice" or "ussd")."""

    def __init__(self, bridge: CareBridge, channel: str) -> None:
        self.bridge = bridge
        self.channel = channel
        self.store = bridge.store
        self.outbox = cast(LiveOutbox, bridge.store)

    def expecting(self, address: str) -> Expectation | None:
        """The question the patient's conversation waits on (how to read their keys)."""
        contact = self.store.find_contact(self.channel, address)
        if contact is None:
            return None
        return engine.expectation(
            self.bridge.library, self.store.current_session(self._contact(contact))
        )

    def begin(
        self, address: str, provider_id: str, resume: Prompt, placed_by: str | None = None
    ) -> Said:
        """A call is answered or a USSD code dialled: say what waits for the patient (the
        rows an outbound call was placed for, `placed_by` its CallSid; a check-in question; a
        clinician's reply); else, when a conversation stopped midway (a dropped call, a USSD
        time-out), `resume` and the question it stopped at; else start a conversation as a
        first message would."""
        done = self.outbox.said_in(provider_id)
        contact = self._known(address)
        if done and contact is not None:  # the provider asked again: say the same again
            return self._said(contact, done, repeated=True)
        if contact is not None:
            placed = self.outbox.said_in(placed_by) if placed_by else []
            rows = self.outbox.claim_live(
                contact.id, self.channel, provider_id, self.bridge.clock(), adopt=STRAY_REPLY
            )
            if placed or rows:
                return self._said(contact, placed + rows)
            session = self.store.current_session(contact)
            last = self.outbox.last_said(contact.id, self.channel)
            if engine.expectation(self.bridge.library, session) is not None and last:
                texts = [resume(contact.language)]
                return self._queue_and_claim(contact, address, provider_id, texts, last)
        return self.answer(address, CALL_START, provider_id)

    def answer(
        self,
        address: str,
        text: str,
        provider_id: str,
        on_emergency: Prompt | None = None,
    ) -> Said:
        """The patient keyed or said `text`: handle it as any message, then claim what it
        produced (and anything else waiting); `on_emergency` adds a channel line (the offer to
        connect the call) after an emergency reply, recorded like the rest."""
        now = self.bridge.clock()
        handled = self.bridge.handle(Inbound(self.channel, address, text, now, provider_id))
        contact = self.store.find_contact(self.channel, address)
        if contact is None:  # an opted-out or forgotten number: nothing to say
            return Said(None, (), "en", None, False)
        if handled.duplicate:
            return self._said(contact, self.outbox.said_in(provider_id), repeated=True)
        if on_emergency is not None and any(
            r.lane is Lane.EMERGENCY
            for i in handled.outbox_ids
            if (r := self.store.get_outbox(i)) is not None
        ):
            language = self._contact(contact).language
            self._enqueue(contact, address, [on_emergency(language)], self.bridge.clock())
        rows = self.outbox.claim_live(
            contact.id, self.channel, provider_id, self.bridge.clock(), adopt=STRAY_REPLY
        )
        return self._said(contact, rows)

    def repeat(self, address: str, provider_id: str) -> Said:
        """`*`: say the last prompt again (recorded as said again)."""
        contact = self.store.find_contact(self.channel, address)
        if contact is None:
            return self.answer(address, CALL_START, provider_id)
        done = self.outbox.said_in(provider_id)
        if done:
            return self._said(contact, done, repeated=True)
        last = self.outbox.last_said(contact.id, self.channel)
        return self._queue_and_claim(contact, address, provider_id, [], last)

    def say(self, address: str, provider_id: str, text: Prompt) -> Said:
        """Say one channel line (connecting the call, goodbye), recorded like any reply."""
        contact = self.store.find_contact(self.channel, address)
        if contact is None:
            return Said(None, (), "en", None, False)
        done = self.outbox.said_in(provider_id)
        if done:
            return self._said(contact, done, repeated=True)
        language = self._contact(contact).language
        return self._queue_and_claim(contact, address, provider_id, [text(language)], [])

    # --- helpers ------------------------------------------------------------------------

    def _known(self, address: str) -> Contact | None:
        """The contact of this number on this channel. A first call or dial from a number
        that has a contact on another phone channel is linked to it (one person): their
        language carries over, and a conversation left open there continues here."""
        contact = self.store.find_contact(self.channel, address)
        if contact is not None:
            return contact
        others = [
            other
            for channel in sorted(PHONE_CHANNELS)
            if channel != self.channel
            and (other := self.store.find_contact(channel, address)) is not None
        ]
        if not others:
            return None
        now = self.bridge.clock()
        with self.store.transaction():
            contact = self.store.get_or_create_contact(self.channel, address, now)
            for other in others:
                self.store.link_contacts(contact.id, other.id, now)
            chosen = next((o for o in others if o.language_set), None)
            if chosen is not None and not contact.language_set:
                self.store.update_contact(contact.id, language=chosen.language, now=now)
        return self.store.find_contact(self.channel, address)

    def _queue_and_claim(
        self,
        contact: Contact,
        address: str,
        provider_id: str,
        texts: list[str],
        again: list[OutboxRow],
    ) -> Said:
        now = self.bridge.clock()
        with self.store.transaction():
            self._enqueue(contact, address, texts, now)
            for row in again:  # said again: a new row, so the ledger shows it was heard twice
                copy = replace(row.outbound, kind="reply", meta={**row.outbound.meta, "again": "1"})
                self.store.enqueue(copy, now, lane=row.lane)
            rows = self.outbox.claim_live(contact.id, self.channel, provider_id, now)
        return self._said(contact, rows)

    def _enqueue(self, contact: Contact, address: str, texts: list[str], now: datetime) -> None:
        session = self.store.current_session(contact)
        for text in texts:
            line = Outbound(self.channel, address, text, (), contact.id, meta={"line": "1"})
            self.store.enqueue(line, now)
            if session.id is not None:
                self.store.add_transcript(contact.id, session.id, "out", text, self.channel, now)

    def _contact(self, contact: Contact) -> Contact:
        return self.store.get_contact(contact.id) or contact

    def _said(self, contact: Contact, rows: list[OutboxRow], *, repeated: bool = False) -> Said:
        fresh = self._contact(contact)
        session = self.store.current_session(fresh)
        return Said(
            fresh.id,
            tuple(r.outbound for r in rows),
            fresh.language,
            engine.expectation(self.bridge.library, session),
            any(r.lane is Lane.EMERGENCY for r in rows),
            repeated,
        )


# --- `spoken:` variants ----------------------------------------------------------------------

_Pattern = tuple[re.Pattern[str], str]
_INDEX: dict[int, tuple[Library, dict[str, list[_Pattern]]]] = {}
_INDEX_LOCK = threading.Lock()


def spoken_variant(lib: Library, text: str, language: str) -> str:
    """`text` with every flow text in it that has a `spoken:` variant replaced by that variant
    (placeholders such as a reading the patient gave carried over); otherwise unchanged."""
    for pattern, spoken in _patterns(lib).get(language, ()):
        text = pattern.sub(_filler(spoken), text)
    return text


def _filler(spoken: str) -> Callable[[re.Match[str]], str]:
    return lambda match: spoken.format_map(_Values(match.groupdict()))


def _patterns(lib: Library) -> dict[str, list[_Pattern]]:
    with _INDEX_LOCK:
        cached = _INDEX.get(id(lib))
        if cached is not None and cached[0] is lib:
            return cached[1]
        index: dict[str, list[_Pattern]] = {}
        fill = _Values(lib.placeholders)
        for flow in lib.flows.values():
            for language, pairs in flow.spoken.items():
                for written, spoken in pairs.items():
                    index.setdefault(language, []).append(
                        (_template_pattern(written.format_map(fill)), spoken.format_map(fill))
                    )
        for patterns in index.values():  # the longest first: a text inside another waits
            patterns.sort(key=lambda p: -len(p[0].pattern))
        _INDEX[id(lib)] = (lib, index)
        return index


def _template_pattern(template: str) -> re.Pattern[str]:
    """A written text as a pattern: whitespace as any whitespace, `{name}` as a group."""
    parts: list[str] = []
    seen: set[str] = set()
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(r"\s+".join(re.escape(w) for w in literal.split(" ")))
        if name is not None:
            parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
            seen.add(name)
    return re.compile("".join(parts))


class _Values(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
