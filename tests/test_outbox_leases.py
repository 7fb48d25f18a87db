"""The outbox as a work queue (issue 12): leases a crash cannot freeze, the emergency lane,
and the order hold that keeps a failing row from silencing a contact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.messages import Outbound
from bot.session import Contact
from bot.store import Lane, OutboxStatus, SqliteStore

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=15)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def store(any_store: SqliteStore) -> SqliteStore:
    """Once per engine (tests/pg.py): SQLite and PostgreSQL."""
    return any_store


@pytest.fixture
def contact(store: SqliteStore) -> Contact:
    return store.get_or_create_contact("sms", "+15550001", T0)


def sms(contact: Contact, text: str, kind: str = "reply") -> Outbound:
    return Outbound("sms", f"+1555{contact.id:07d}", text, contact_id=contact.id, kind=kind)


def test_a_crashed_dispatchers_rows_are_claimed_again_when_their_lease_runs_out(
    store: SqliteStore, contact: Contact
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
    store: SqliteStore, contact: Contact
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
    store: SqliteStore, contact: Contact
) -> None:
    others = [store.get_or_create_contact("sms", f"+1555000{n:03d}", T0) for n in range(100)]
    ordinary = [store.enqueue(sms(c, "reply"), T0) for c in others]
    emergency = store.enqueue(sms(contact, "Call 112 now"), at(5), lane=Lane.EMERGENCY)
    (first,) = store.claim_outbox(at(5), 1, "sms")  # one row: the emergency one
    assert first.id == emergency
    claimed = store.claim_outbox(at(5), 2, "sms")
    assert [r.id for r in claimed] == ordinary[:2]


def test_a_failing_row_holds_the_contacts_later_rows_only_for_the_order_hold(
    store: SqliteStore, contact: Contact
) -> None:
    hold = timedelta(seconds=20)
    failing = store.enqueue(sms(contact, "first"), T0)
    later = store.enqueue(sms(contact, "second"), at(1))
    store.claim_outbox(T0, 10, "sms", order_hold=hold)
    store.mark_retry(failing, "500", at(600))  # backing off for ten minutes
    assert store.claim_outbox(at(19), 10, "sms", order_hold=hold) == []
    assert [r.id for r in store.claim_outbox(at(21), 10, "sms", order_hold=hold)] == [later]


def test_an_unhandled_inbound_message_is_pending_until_processed(store: SqliteStore) -> None:
    from bot.messages import Inbound

    inbound = Inbound("sms", "+15550001", "hi", T0, "SM-in-1")
    inbox_id = store.record_inbound(inbound)
    assert inbox_id is not None
    assert store.pending_inbound("sms", "SM-in-1") == inbox_id
    store.mark_inbound_processed(inbox_id, T0)
    assert store.pending_inbound("sms", "SM-in-1") is None
    assert store.pending_inbound("sms", "SM-unknown") is None
