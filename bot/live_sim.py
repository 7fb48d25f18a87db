"""A call or a USSD session driven by hand, for the simulators (`carebridge chat --channel
voice|ussd` and the browser simulator's "Voice call" and "USSD" styles): the webhooks' own
steps (bot.web.voice_turn, ussd_step) with the state a provider would keep. Imports bot, channels.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

from bot.config import Config
from bot.live import Live
from channels.ussd import Pages, UssdRequest
from channels.voice import CallTurn, script

KEYS = frozenset("0123456789*#")
USSD_CODE = "*384#"


def _sid() -> str:
    return f"sim-{secrets.token_hex(8)}"  # never a provider's id: no other call's rows match


@dataclass
class SimCall:
    """One simulated phone call: `dial`, then `press` keys (or words: speech) until it ends.
    Each step returns the script lines (BOT:, KEYS:/SAYS:, WAIT:, DIAL:, HANG UP)."""

    live: Live
    config: Config
    address: str
    sid: str = ""
    n: int = 0
    step: str = ""
    quiet: int = 0
    open: bool = False

    def dial(self) -> list[str]:
        self.sid, self.n, self.step, self.quiet, self.open = _sid(), 0, "", 0, True
        turn = CallTurn(self.sid, self.address, False, None, None, "in-progress")
        return ["--- call ---", *self._turn(turn)]

    def press(self, text: str) -> list[str]:
        keyed = set(text) <= KEYS
        turn = CallTurn(
            self.sid,
            self.address,
            False,
            text.rstrip("#") if keyed else None,
            None if keyed else text,
            "in-progress",
        )
        return [f"KEYS: {text}" if keyed else f"SAYS: {text}", *self._turn(turn)]

    def _turn(self, turn: CallTurn) -> list[str]:
        from bot.web import voice_turn

        xml = voice_turn(self.live, self.config, turn, self.step, self.n, self.quiet)
        gather = ElementTree.fromstring(xml).find("Gather")
        if gather is None:
            self.open = False
        else:
            query = parse_qs(urlsplit(gather.get("action", "")).query)
            self.n = int(query.get("turn", ["0"])[0])
            self.step = query.get("step", [""])[0]
        return script(xml)


@dataclass
class SimUssd:
    """One simulated USSD session: `dial`, then `press` replies; each step returns the
    `CON ...`/`END ...` answer the aggregator would get."""

    live: Live
    config: Config
    address: str
    pages: Pages
    sid: str = ""
    keyed: list[str] = field(default_factory=list)
    open: bool = False

    def dial(self) -> str:
        self.sid, self.keyed, self.open = _sid(), [], True
        return self._step()

    def press(self, text: str) -> str:
        self.keyed.append(text)
        return self._step()

    def _step(self) -> str:
        from bot.web import ussd_step

        req = UssdRequest(self.sid, USSD_CODE, self.address, "*".join(self.keyed))
        answer = ussd_step(self.live, self.config, req, self.pages)
        self.open = answer.startswith("CON ")
        return answer
