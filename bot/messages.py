"""Channel-neutral inbound and outbound messages. Imports only the standard library."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Inbound:
    """One message from a patient, as parsed by a channel adapter."""

    channel: str  # "sms" | "whatsapp" | "telegram" | "cli" | "web"
    address: str  # phone number or chat id on that channel
    text: str
    received_at: datetime
    provider_id: str  # the provider's message id: the dedupe key with `channel`
    language_hint: str | None = None  # e.g. Telegram's language_code


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
