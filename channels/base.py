"""What every channel adapter offers the app and the dispatcher: the `Channel` protocol,
the `SignatureError` raised for unauthenticated webhooks, and an in-memory `CollectingChannel`.
Imports only the standard library, `bot.messages` and `bot.errors`.

Errors a `send` may raise (all from `bot.errors`):

    ChannelError
    ├── SignatureError          a webhook's signature or secret is missing or wrong (answer 403)
    ├── TransientChannelError   retry later: 429 (`retry_after` when the provider says), 5xx,
    │                           timeouts, connection errors
    └── PermanentChannelError   do not retry: `code` is the provider's error code;
                                `opt_out=True` when the contact can no longer be reached
                                (Twilio 21610, Telegram 403 "bot was blocked by the user")
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Protocol, runtime_checkable

from bot.errors import ChannelError
from bot.messages import Outbound


class SignatureError(ChannelError):
    """A webhook failed authentication: missing or forged signature, or a wrong secret."""


@runtime_checkable
class Channel(Protocol):
    """One provider adapter; `send` delivers exactly one provider message per call."""

    name: str  # "sms" | "whatsapp" | "telegram" | ...: equals `Outbound.channel`

    async def start(self) -> None:
        """Open connections; call once before the first `send`."""

    async def stop(self) -> None:
        """Close connections; the channel cannot send afterwards."""

    async def send(self, msg: Outbound) -> str:
        """Send `msg` and return the provider's message id, or raise a `ChannelError`."""


class CollectingChannel:
    """A `Channel` that keeps what it is asked to send: a test double and the simulator's sink.

    Queue exceptions with `fail_next(exc)`; the next `send` raises the oldest one.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[Outbound] = []
        self._failures: deque[ChannelError] = deque()
        self._ids = itertools.count(1)

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        """Nothing to close."""

    def fail_next(self, *errors: ChannelError) -> None:
        """Make the next `len(errors)` sends raise these errors, in order."""
        self._failures.extend(errors)

    async def send(self, msg: Outbound) -> str:
        """Record `msg` and return an id like `sms-1`."""
        if self._failures:
            raise self._failures.popleft()
        self.sent.append(msg)
        return f"{self.name}-{next(self._ids)}"
