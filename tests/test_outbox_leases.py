"""The outbox as a work queue (issue 12): leases a crash cannot freeze, the emergency lane,
the order hold that keeps a failing row from silencing a contact, a retry budget longer than
an outage, and a provider's Retry-After honoured for the whole channel."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from bot.config import DeliveryConfig
from bot.dispatch import DeliveryPolicy, Dispatcher, RetryPolicy
from bot.errors import TransientChannelError
from bot.messages import Outbound
from bot.session import Contact
from bot.store import Lane, OutboxStatus, SqlStore
from channels.base import CollectingChannel

ROOT = Path(__file__).resolve().parent.parent

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=15)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def store(any_store: SqlStore) -> SqlStore:
    """Once per engine (tests/pg.py): SQLite and PostgreSQL."""
    return any_store


@pytest.fixture
def contact(store: SqlStore) -> Contact:
    return store.get_or_create_contact("sms", "+15550001", T0)


def sms(contact: Contact, text: str, kind: str = "reply") -> Outbound:
    return Outbound("sms", f"+1555{contact.id:07d}", text, contact_id=contact.id, kind=kind)


def test_a_crashed_dispatchers_rows_are_claimed_again_when_their_lease_runs_out(
    store: SqlStore, contact: Contact
) -> None:
    stuck = store.enqueue(sms(contact, "one"), T0)
    (claimed,) = store.claim_outbox(T0, 10, "sms", lease=LEASE)
    assert claimed.status is OutboxStatus.SENDING
    # the dispatcher dies here: nothing records an outcome
    assert store.claim_outbox(at(14), 10, "sms", lease=LEASE) == []  # the lease still holds
    (again,) = store.claim_outbox(at(15), 10, "sms", lease=LEASE)
    assert (again.id, again.attempts) == (stuck, 2)
    store.mark_sent(stuck, "SM1", at(16))
    row = store.get_outbox(stuck)
    assert row is not None and row.status is OutboxStatus.SENT


def test_a_row_in_flight_holds_the_contacts_next_message_but_not_their_emergency_reply(
    store: SqlStore, contact: Contact
) -> None:
    first = store.enqueue(sms(contact, "question 1"), T0)
    assert [r.id for r in store.claim_outbox(T0, 10, "sms", urgent=False)] == [first]
    second = store.enqueue(sms(contact, "question 2"), T0)
    emergency = store.enqueue(sms(contact, "Call 112 now"), at(1), lane=Lane.EMERGENCY)
    assert store.claim_outbox(at(1), 10, "sms", urgent=False) == []  # in order: waits
    assert [r.id for r in store.claim_outbox(at(1), 10, "sms", urgent=True)] == [emergency]
    store.mark_sent(first, "SM1", at(2))
    assert [r.id for r in store.claim_outbox(at(2), 10, "sms", urgent=False)] == [second]


def test_the_emergency_lane_is_claimed_before_older_ordinary_rows(
    store: SqlStore, contact: Contact
) -> None:
    others = [store.get_or_create_contact("sms", f"+1555000{n:03d}", T0) for n in range(100)]
    ordinary = [store.enqueue(sms(c, "reply"), T0) for c in others]
    emergency = store.enqueue(sms(contact, "Call 112 now"), at(5), lane=Lane.EMERGENCY)
    (first,) = store.claim_outbox(at(5), 1, "sms")  # one row: the emergency one
    assert first.id == emergency
    claimed = store.claim_outbox(at(5), 2, "sms")
    assert [r.id for r in claimed] == ordinary[:2]


def test_a_failing_row_holds_the_contacts_later_rows_only_for_the_order_hold(
    store: SqlStore, contact: Contact
) -> None:
    hold = timedelta(seconds=20)
    failing = store.enqueue(sms(contact, "first"), T0)
    later = store.enqueue(sms(contact, "second"), at(1))
    store.claim_outbox(T0, 10, "sms", order_hold=hold)
    store.mark_retry(failing, "500", at(600))  # backing off for ten minutes
    assert store.claim_outbox(at(19), 10, "sms", order_hold=hold) == []
    assert [r.id for r in store.claim_outbox(at(21), 10, "sms", order_hold=hold)] == [later]


def test_an_unhandled_inbound_message_is_pending_until_processed(store: SqlStore) -> None:
    from bot.messages import Inbound

    inbound = Inbound("sms", "+15550001", "hi", T0, "SM-in-1")
    inbox_id = store.record_inbound(inbound)
    assert inbox_id is not None
    assert store.pending_inbound("sms", "SM-in-1") == inbox_id
    store.mark_inbound_processed(inbox_id, T0)
    assert store.pending_inbound("sms", "SM-in-1") is None
    assert store.pending_inbound("sms", "SM-unknown") is None


class _LowestJitter(random.Random):
    """Jitter that always draws its lowest value: the shortest a backoff can be."""

    def uniform(self, a: float, b: float) -> float:
        return a


def test_the_configured_retry_budget_outlasts_a_long_provider_outage() -> None:
    """A reply is given up only after `max_attempts`; at the shortest jitter the shipped
    settings (config.yaml, and the defaults) keep retrying for well over 10 minutes, so a
    60 s outage (the fault suite's) never costs a reply."""
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))["delivery"]
    for config in (DeliveryConfig(), DeliveryConfig(**shipped)):
        policy = RetryPolicy(config.retry_base_s, config.retry_cap_s, config.max_attempts)
        rng = _LowestJitter()
        budget = sum(policy.delay(n, None, rng) for n in range(1, policy.max_attempts))
        assert budget >= 600, f"replies are given up after {budget:.0f} s of an outage"


def test_a_retry_after_pauses_the_whole_channel_until_the_time_it_names(
    store: SqlStore, contact: Contact
) -> None:
    other = store.get_or_create_contact("sms", "+15550002", T0)
    first = store.enqueue(sms(contact, "one"), T0)
    second = store.enqueue(sms(other, "two"), T0)
    channel, now = CollectingChannel("sms"), [T0]
    channel.fail_next(TransientChannelError("429", code="20429", retry_after=30))
    dispatcher = Dispatcher(store, {"sms": channel}, clock=lambda: now[0])

    async def scenario() -> None:
        assert await dispatcher.run_once() == 2
        assert channel.sent == []  # the second row was not sent to a provider that said wait
        held = store.get_outbox(second)
        assert held is not None and held.status is OutboxStatus.QUEUED
        assert held.attempts == 0 and held.next_attempt_at >= at(30)  # handed back, unsent
        now[0] = at(29)
        assert await dispatcher.run_once() == 0
        now[0] = at(31)
        await dispatcher.run_once()

    asyncio.run(scenario())
    assert sorted(m.text for m in channel.sent) == ["one", "two"]
    assert {r.status for r in map(store.get_outbox, (first, second)) if r} == {OutboxStatus.SENT}


class _FailsOn(CollectingChannel):
    """A provider that always refuses one text (a transient error) and takes the rest."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(name)
        self.text = text

    async def send(self, msg: Outbound) -> str:
        if msg.text == self.text:
            raise TransientChannelError("503", code="503")
        return await super().send(msg)


def test_a_failing_row_holds_the_next_reply_in_the_dispatcher_only_as_long_as_the_claim_does(
    store: SqlStore, contact: Contact
) -> None:
    """The dispatcher's hold (a row claimed together with an earlier one that then failed goes
    back unsent) measures what the claim measures: the failing row's age. Measured from its
    last failure instead, every retry renewed the hold while the claim had already let the
    next reply through, so the dispatcher claimed and handed it back in a tight loop that kept
    the store's thread busy and starved the webhooks (the 60 s outage fault test)."""
    failing = store.enqueue(sms(contact, "one"), T0)
    nxt = store.enqueue(sms(contact, "two"), T0)
    channel, now = _FailsOn("sms", "one"), [T0]
    dispatcher = Dispatcher(
        store,
        {"sms": channel},
        clock=lambda: now[0],
        rates={"sms": 100.0},  # the rate limiter runs on real time: never the wait here
        delivery=DeliveryPolicy(order_hold_s=20),
        policy=RetryPolicy(base_s=1, cap_s=2, max_attempts=100),  # "one" is due every sweep
    )

    async def sweep(seconds: float) -> int:
        now[0] = at(seconds)
        return await dispatcher.run_once()

    async def scenario() -> None:
        assert await sweep(0) == 2  # claimed together; "one" fails, so "two" goes back
        held = store.get_outbox(nxt)
        assert held is not None and held.status is OutboxStatus.QUEUED and held.attempts <= 1
        for second in range(3, 19, 3):  # "one" keeps failing; "two" waits its order hold
            await sweep(second)
            assert channel.sent == []
        for second in range(21, 40, 3):  # the hold is over: "two" goes at the next sweep
            await sweep(second)
        assert [m.text for m in channel.sent] == ["two"]

    asyncio.run(scenario())
    row = store.get_outbox(failing)
    assert row is not None and row.status is OutboxStatus.QUEUED and row.attempts > 3
