"""Shared by the broadcast tests: a clock moved by hand, coordinators, subscribers on each
channel, the service wired as bot.app wires it, and a dispatcher with in-memory channels."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from bot.app import build_broadcasts
from bot.broadcasts.service import Broadcasts, Draft
from bot.config import Config
from bot.dispatch import Dispatcher
from bot.store import BroadcastRow, OutboxRow, SqlStore
from channels.base import CollectingChannel

# 16:00 UTC: 21:30 in Kolkata and 01:00 in Tokyo (quiet), 12:00 in New York (not quiet).
T0 = datetime(2024, 5, 1, 16, 0, tzinfo=UTC)
TEMPLATES = {"advice": {"en": "HXadvice_en", "hi": "HXadvice_hi"}}
TEXT = "Free COVID-19 testing at the town hall until Friday, 9 to 5."


class Clock:
    """Reads the same instant until the test moves it."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def configured(config: Config, *, languages: list[str] | None = None, **broadcast: Any) -> Config:
    """`config` with WhatsApp templates (and other broadcast settings) for tests."""
    settings = {"whatsapp_templates": TEMPLATES, **broadcast}
    update: dict[str, Any] = {"broadcast": config.broadcast.model_copy(update=settings)}
    if languages:
        update["languages"] = languages
    return config.model_copy(update=update)


def coordinators(store: SqlStore) -> None:
    """alice and bob coordinate; carol is a clinician."""
    for name, role in (("alice", "coordinator"), ("bob", "coordinator"), ("carol", "clinician")):
        store.add_user(name, "argon2-hash", role, T0, must_change_password=False)


def service(store: SqlStore, config: Config, clock: Clock, **broadcast: Any) -> Broadcasts:
    """The service as bot.app wires it, with WhatsApp templates configured."""
    return build_broadcasts(configured(config, **broadcast), store, clock)


def subscriber(
    store: SqlStore,
    channel: str,
    address: str,
    *,
    language: str = "en",
    consent: bool | None = True,
    timezone: str | None = None,
) -> int:
    """A contact who agreed to broadcasts (unless `consent` says otherwise)."""
    contact = store.get_or_create_contact(channel, address, T0, language)
    if consent is not None:
        store.update_contact(contact.id, consent_broadcast=consent, now=T0)
    if timezone:
        store.set_contact_facts(contact.id, T0, timezone=timezone)
    return contact.id


def approved(svc: Broadcasts, text: str = TEXT, **draft: Any) -> BroadcastRow:
    """A broadcast created by alice and approved by bob."""
    row = svc.create(Draft(name="advice", texts={"en": text}, **draft), by="alice")
    return svc.approve(row.id, by="bob")


def started(svc: Broadcasts, text: str = TEXT, **draft: Any) -> BroadcastRow:
    """Approved, started and fanned out into the outbox."""
    row = approved(svc, text, **draft)
    svc.send(row.id, by="alice")
    svc.fan_out(row.id)
    return svc.get(row.id)


def rows_of(store: SqlStore, broadcast_id: int) -> list[OutboxRow]:
    return [r for r in store.outbox() if r.outbound.meta.get("broadcast") == str(broadcast_id)]


def recipients(store: SqlStore, broadcast_id: int) -> set[int | None]:
    return {r.outbound.contact_id for r in rows_of(store, broadcast_id)}


def channels() -> dict[str, CollectingChannel]:
    return {name: CollectingChannel(name) for name in ("sms", "whatsapp", "telegram")}


def dispatch(store: SqlStore, clock: Clock, senders: dict[str, CollectingChannel]) -> int:
    """Sweep the outbox until nothing is due; returns how many rows were attempted."""
    rates = dict.fromkeys(senders, 1000.0)
    dispatcher = Dispatcher(store, dict(senders), rates=rates, clock=clock)

    async def drain() -> int:
        total = 0
        while attempted := await dispatcher.run_once():
            total += attempted
        return total

    return asyncio.run(drain())
