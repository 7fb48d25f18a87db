"""Channel-neutral inbound and outbound messages. Imports only the standard library.

`Inbound` is the one boundary every channel's text crosses on its way to the NLU: it caps the
text at `MAX_TEXT_CHARS` and replaces what cannot be stored (lone surrogates) there, once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

MAX_TEXT_CHARS = 1600
"""The most of one patient message that is read and kept (Twilio's limit for a concatenated
SMS; docs/channels.md). Longer texts (a long Telegram message, a forged body) are cut here,
before the NLU, so no message costs more than this to interpret."""

_SURROGATE = re.compile("[\ud800-\udfff]")  # a JSON "\\ud800" alone: not encodable as UTF-8


def clean_text(text: str, limit: int | None = None) -> str:
    """`text` with lone surrogates replaced by U+FFFD and cut at `limit` characters."""
    text = _SURROGATE.sub("\ufffd", text)
    return text[:limit] if limit is not None else text


@dataclass(frozen=True)
class Inbound:
    """One message from a patient, as parsed by a channel adapter.

    `text` is cut at MAX_TEXT_CHARS (`truncated` tells); every string is storable UTF-8.
    """

    channel: str  # "sms" | "whatsapp" | "telegram" | "cli" | "web"
    address: str  # phone number or chat id on that channel
    text: str
    received_at: datetime
    provider_id: str  # the provider's message id: the dedupe key with `channel`
    language_hint: str | None = None  # e.g. Telegram's language_code
    truncated: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        cut = len(self.text) > MAX_TEXT_CHARS
        object.__setattr__(self, "text", clean_text(self.text, MAX_TEXT_CHARS))
        object.__setattr__(self, "truncated", self.truncated or cut)
        object.__setattr__(self, "address", clean_text(self.address))
        object.__setattr__(self, "provider_id", clean_text(self.provider_id))
        if self.language_hint is not None:
            object.__setattr__(self, "language_hint", clean_text(self.language_hint))


@dataclass(frozen=True)
class Outbound:
    """One message to a patient; `choices` are rendered per channel (buttons or numbers)."""

    channel: str
    address: str
    text: str
    choices: tuple[str, ...] = ()
    contact_id: int | None = None
    kind: str = "reply"  # reply | reminder | broadcast | clinician
    meta: dict[str, str] = field(default_factory=dict)
