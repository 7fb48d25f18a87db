"""The browser simulator's channel: replies leave through the outbox like any other channel and
wait here until the visitor's page fetches them. Imports bot.messages and channels.render.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

from bot.messages import Outbound
from channels.render import render

STYLES = ("sms", "whatsapp", "telegram")


@dataclass(frozen=True)
class SimMessage:
    seq: int
    outbound: Outbound

    def as_json(self, style: str) -> dict[str, object]:
        """The message as `style` would show it (SMS/WhatsApp: numbered; Telegram: buttons)."""
        shown = render(self.outbound, style if style in STYLES else "sms")
        return {
            "seq": self.seq,
            "text": shown.text,
            "buttons": [{"label": b.label, "data": b.data} for b in shown.buttons],
        }


class SimulatorChannel:
    """Keeps delivered messages per visitor (in memory; the outbox keeps the ledger)."""

    name = "web"

    def __init__(self, keep: int = 200) -> None:
        self._keep = keep
        self._seq = itertools.count(1)
        self._inbox: dict[str, list[SimMessage]] = defaultdict(list)

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        """Nothing to close."""

    async def send(self, msg: Outbound) -> str:
        """Deliver to the visitor's page; returns an id like `web-12`."""
        seq = next(self._seq)
        box = self._inbox[msg.address]
        box.append(SimMessage(seq, msg))
        del box[: -self._keep]
        return f"web-{seq}"

    def messages(self, address: str, after: int = 0) -> list[SimMessage]:
        """Messages for one visitor newer than `after`."""
        return [m for m in self._inbox.get(address, []) if m.seq > after]
