"""The browser simulator's channel (`web`): sending only acknowledges, since the outbox row the
dispatcher marks `sent` is the message; the page reads its history (the patient's messages and
the sent replies) back through bot.web. Also how one message looks in the page for each style.
Imports bot.messages and channels.render.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from bot.messages import Outbound
from channels.render import render

STYLES = ("sms", "whatsapp", "telegram")
_BOLD = re.compile(r"\*([^*\n]+)\*")  # WhatsApp's *bold*


def text_parts(text: str, style: str) -> list[dict[str, Any]]:
    """The text as runs of plain and bold text: WhatsApp shows `*x*` as bold x (other
    channels show the characters as they are)."""
    if style != "whatsapp":
        return [{"text": text, "bold": False}]
    parts: list[dict[str, Any]] = []
    at = 0
    for match in _BOLD.finditer(text):
        if match.start() > at:
            parts.append({"text": text[at : match.start()], "bold": False})
        parts.append({"text": match.group(1), "bold": True})
        at = match.end()
    if at < len(text) or not parts:
        parts.append({"text": text[at:], "bold": False})
    return parts


def bot_message(key: str, outbound: Outbound, style: str) -> dict[str, Any]:
    """A sent message as `style` would show it (SMS/WhatsApp: numbered; Telegram: buttons)."""
    shown = render(outbound, style if style in STYLES else "sms")
    return {
        "key": key,
        "from": "bot",
        "text": shown.text,
        "parts": text_parts(shown.text, style),
        "buttons": [{"label": b.label, "data": b.data} for b in shown.buttons],
    }


def patient_message(key: str, text: str, reply_to: str | None = None) -> dict[str, Any]:
    """One of the patient's own messages; `reply_to`: the key of the bot's message before it
    (the page shows the label of a button pressed on that message instead of its data)."""
    return {
        "key": key,
        "from": "me",
        "text": text,
        "parts": [{"text": text, "bold": False}],
        "buttons": [],
        "reply_to": reply_to,
    }


class SimulatorChannel:
    """Delivers to the browser page: nothing to send anywhere, so every send succeeds."""

    name = "web"

    def __init__(self) -> None:
        self._seq = itertools.count(1)

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        """Nothing to close."""

    async def send(self, msg: Outbound) -> str:
        """Accept the message (the page fetches sent outbox rows); returns an id like `web-12`."""
        return f"web-{next(self._seq)}"
