"""The outbox dispatcher with an in-memory channel: retries, backoff, pacing, final statuses."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from bot.dispatch import Dispatcher, RetryPolicy
from bot.errors import PermanentChannelError, TransientChannelError
from bot.messages import Outbound
from bot.store import Lane, OutboxStatus, SqlStore
from channels.base import CollectingChannel

T0 = datetime(2020, 4, 1, 9, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(any_store: SqlStore) -> SqlStore:
    """Once per engine (tests/pg.py): SQLite and PostgreSQL."""
    return any_store


def setup(store: SqlStore, channel: str = "sms", n: int = 1) -> list[int]:
    contact = store.get_or_create_contact(channel, "+15550001", T0)
    return [
        store.enqueue(Outbound(channel, "+15550001", f"m{i}", contact_id=contact.id), T0)
        for i in range(n)
    ]


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    policy, rng = RetryPolicy(base_s=2, cap_s=60), random.Random(7)
    delays = [policy.delay(n, None, rng) for n in range(1, 8)]
    assert all(1.0 <= d <= 2.0 for d in delays[:1])
    assert delays[-1] <= 60 and delays[-1] >= 30  # capped, at least half the cap
    assert policy.delay(1, 45.0, rng) == 45.0  # the provider's retry_after wins


def test_transient_errors_are_retried_later_then_sent(store: SqlStore) -> None:
    [row] = setup(store)
    sms, clock = CollectingChannel("sms"), Clock()
    sms.fail_next(TransientChannelError("429", code="429", retry_after=30))
    d = Dispatcher(store, {"sms": sms}, clock=clock, rng=random.Random(1))

    async def scenario() -> None:
        assert await d.run_once() == 1
        retry = store.get_outbox(row)
        assert retry is not None and retry.status == OutboxStatus.QUEUED
        assert retry.next_attempt_at >= T0 + timedelta(seconds=30)
        assert await d.run_once() == 0  # not due yet
        clock.now = retry.next_attempt_at
        assert await d.run_once() == 1

    asyncio.run(scenario())
    sent = store.get_outbox(row)
    assert sent is not None and (sent.status, sent.attempts) == (OutboxStatus.SENT, 2)
    assert [m.text for m in sms.sent] == ["m0"]


def test_permanent_opt_out_error_marks_the_contact_opted_out(store: SqlStore) -> None:
    [row] = setup(store)
    sms = CollectingChannel("sms")
    sms.fail_next(PermanentChannelError("unsubscribed", code="21610", opt_out=True))
    asyncio.run(Dispatcher(store, {"sms": sms}, clock=Clock()).run_once())
    failed = store.get_outbox(row)
    assert failed is not None and failed.status == OutboxStatus.FAILED
    contact = store.find_contact("sms", "+15550001")
    assert contact is not None and contact.opted_out


def test_whatsapp_outside_24_hours_is_sent_as_the_approved_template(store: SqlStore) -> None:
    setup(store, "whatsapp")
    wa, clock = CollectingChannel("whatsapp"), Clock()
    asyncio.run(Dispatcher(store, {"whatsapp": wa}, clock=clock).run_once())
    assert wa.sent[0].meta.get("template") == "1"  # the patient never wrote: no open window
    contact = store.find_contact("whatsapp", "+15550001")
    assert contact is not None
    store.touch_inbound(contact.id, T0)
    store.enqueue(Outbound("whatsapp", "+15550001", "in window", contact_id=contact.id), T0)
    clock.now = T0 + timedelta(hours=23)
    asyncio.run(Dispatcher(store, {"whatsapp": wa}, clock=clock).run_once())
    assert "template" not in wa.sent[1].meta


def test_63016_is_recorded_as_undelivered(store: SqlStore) -> None:
    [row] = setup(store, "whatsapp")
    wa = CollectingChannel("whatsapp")
    wa.fail_next(PermanentChannelError("outside window", code="63016"))
    asyncio.run(Dispatcher(store, {"whatsapp": wa}, clock=Clock()).run_once())
    got = store.get_outbox(row)
    assert got is not None and got.status == OutboxStatus.UNDELIVERED


def test_one_chat_is_paced_to_its_per_chat_rate(store: SqlStore) -> None:
    setup(store, "telegram", n=3)
    tg = CollectingChannel("telegram")
    d = Dispatcher(store, {"telegram": tg}, rates={"telegram": 30}, per_chat_rates={"telegram": 5})
    start = time.monotonic()

    async def drain() -> None:
        while await d.run_once():
            pass

    asyncio.run(drain())
    assert [m.text for m in tg.sent] == ["m0", "m1", "m2"]  # in order
    assert time.monotonic() - start >= 0.35  # two gaps of 1/5 s between three messages


def test_a_clinician_message_outside_the_window_waits_for_the_patients_reply(
    store: SqlStore,
) -> None:
    contact = store.get_or_create_contact("whatsapp", "+15550001", T0)
    words = Outbound(
        "whatsapp", "+15550001", "Your oxygen is low", contact_id=contact.id, kind="clinician"
    )
    row = store.enqueue(words, T0)
    wa, clock = CollectingChannel("whatsapp"), Clock()
    d = Dispatcher(store, {"whatsapp": wa}, clock=clock)

    async def drain() -> None:
        while await d.run_once():
            pass

    async def scenario() -> None:
        await drain()
        [notice] = wa.sent
        assert notice.kind == "notice" and notice.meta["template"] == "1"
        assert "oxygen" not in notice.text  # no health details in the template
        held = store.get_outbox(row)
        assert held is not None and held.status == OutboxStatus.HELD
        clock.now = T0 + timedelta(minutes=5)  # the patient replies: the window opens
        store.touch_inbound(contact.id, clock.now)
        assert store.release_held(contact.id, clock.now) == 1
        await drain()

    asyncio.run(scenario())
    notice = wa.sent[0]
    assert [m.text for m in wa.sent] == [notice.text, "Your oxygen is low"]
    assert "template" not in wa.sent[1].meta


def test_a_failure_hands_the_chats_later_rows_back_unsent_so_order_is_kept(
    store: SqlStore,
) -> None:
    first, second = setup(store, n=2)  # one contact, both due: claimed in one sweep
    sms, clock = CollectingChannel("sms"), Clock()
    sms.fail_next(TransientChannelError("503", code="503"))
    d = Dispatcher(store, {"sms": sms}, clock=clock, rng=random.Random(3))

    async def scenario() -> None:
        assert await d.run_once() == 2
        assert sms.sent == []  # "m1" did not overtake the failed "m0"
        held = store.get_outbox(second)
        assert held is not None and (held.status, held.attempts) == (OutboxStatus.QUEUED, 0)
        assert await d.run_once() == 0  # "m1" waits behind "m0"'s retry
        retry = store.get_outbox(first)
        assert retry is not None
        clock.now = retry.next_attempt_at
        assert await d.run_once() == 2

    asyncio.run(scenario())
    assert [m.text for m in sms.sent] == ["m0", "m1"]


def test_the_emergency_lane_goes_first_in_a_sweep(store: SqlStore) -> None:
    contact = store.get_or_create_contact("sms", "+15550009", T0)
    setup(store, n=3)
    urgent = Outbound("sms", "+15550009", "Call 112", contact_id=contact.id)
    store.enqueue(urgent, T0 + timedelta(seconds=1), lane=Lane.EMERGENCY)
    sms = CollectingChannel("sms")
    asyncio.run(Dispatcher(store, {"sms": sms}, clock=lambda: T0 + timedelta(seconds=2)).run_once())
    assert [m.text for m in sms.sent] == ["Call 112", "m0", "m1", "m2"]
