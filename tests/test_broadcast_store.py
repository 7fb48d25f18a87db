"""The store side of broadcasts (migration 4): people across channels, the consent record,
outbox priority and the claim index, cancelled rows, concurrent fan-outs; and the JOIN keyword."""

from __future__ import annotations

import threading
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from broadcast_helpers import T0, Clock, approved, coordinators, rows_of, service, subscriber

from bot.app import CareBridge
from bot.config import Config
from bot.errors import StoreError
from bot.flow import Library
from bot.messages import Inbound, Outbound
from bot.store import (
    BroadcastStatus,
    ConsentPurpose,
    OutboxStatus,
    SqliteStore,
    SqlStore,
    open_store,
)
from bot.store.migrations import MIGRATIONS
from nlu.types import Expectation, Intent, Understanding


@pytest.fixture
def store(any_store: SqlStore) -> SqlStore:
    """Once per engine (tests/pg.py): SQLite and PostgreSQL."""
    coordinators(any_store)
    return any_store


def reply(contact_id: int, address: str = "+15550000001") -> Outbound:
    return Outbound("sms", address, "Your result is ready.", contact_id=contact_id)


def bulk(contact_id: int, address: str = "+15550000001") -> Outbound:
    return Outbound("sms", address, "Advice for everyone.", contact_id=contact_id, kind="broadcast")


# -- migration 4: people and the consent record ---------------------------------------------------


def test_migration_links_phone_numbers_and_seeds_the_consent_record(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    before = tuple(m for m in MIGRATIONS if m.version < 4)
    sms, whatsapp, telegram = 1, 2, 3
    with SqliteStore(path, migrations=before) as old:  # rows as the code before 4 wrote them
        at = T0.isoformat()
        for n, channel in ((sms, "sms"), (whatsapp, "whatsapp"), (telegram, "telegram")):
            old.db.execute(
                "INSERT INTO contacts (id, channel, address, created_at, updated_at,"
                " consent_broadcast, consent_broadcast_at, opted_out, opted_out_at)"
                " VALUES (?, ?, '+15550000001', ?, ?, ?, ?, ?, ?)",  # telegram: a chat id
                (n, channel, at, at, *((1, at, 1, at) if n == sms else (None, None, 0, None))),
            )
        old.db.conn.commit()
    with SqliteStore(path) as new:
        person = {i: new.contact_row(i) for i in (sms, whatsapp, telegram)}
        assert {i: row.person_id for i, row in person.items() if row} == {
            sms: sms,
            whatsapp: sms,
            telegram: telegram,
        }
        assert [(c.purpose, c.granted, c.source) for c in new.consents(sms)] == [
            (ConsentPurpose.BROADCAST, True, "migration"),
            (ConsentPurpose.CONTACT, False, "migration"),
        ]
        later = new.get_or_create_contact("whatsapp", "+15550000002", T0).id
        first = new.get_or_create_contact("sms", "+15550000002", T0).id  # joins that person
        assert [new.contact_row(i).person_id for i in (later, first)] == [later, later]  # type: ignore[union-attr]


def test_every_consent_change_is_recorded_with_its_source_and_never_rewritten(
    store: SqlStore,
) -> None:
    who = store.get_or_create_contact("sms", "+15550000001", T0).id
    store.update_contact(who, consent_broadcast=True, now=T0, source="keyword")
    store.update_contact(who, consent_broadcast=True, now=T0 + timedelta(minutes=1))  # no change
    store.update_contact(who, opted_out=True, now=T0 + timedelta(minutes=2))
    store.update_contact(who, opted_out=False, consent_care=True, now=T0 + timedelta(minutes=3))
    record = [(c.purpose, c.granted, c.source, c.at - T0) for c in store.consents(who)]
    assert record == [
        (ConsentPurpose.BROADCAST, True, "keyword", timedelta(0)),
        (ConsentPurpose.CONTACT, False, None, timedelta(minutes=2)),
        (ConsentPurpose.CARE, True, None, timedelta(minutes=3)),
        (ConsentPurpose.CONTACT, True, None, timedelta(minutes=3)),
    ]
    with pytest.raises(StoreError, match="append-only"), store._atomic("test") as conn:
        conn.execute("DELETE FROM consents")


# -- the outbox: priority, the claim index, cancelled rows ------------------------------------


def test_conversation_messages_go_before_broadcasts_and_are_never_held_behind_one(
    store: SqlStore,
) -> None:
    who = store.get_or_create_contact("sms", "+15550000001", T0).id
    other = store.get_or_create_contact("sms", "+15550000002", T0).id
    first_bulk = store.enqueue(bulk(who), T0)
    second_bulk = store.enqueue(bulk(who), T0)
    other_bulk = store.enqueue(bulk(other, "+15550000002"), T0)
    answer = store.enqueue(reply(who), T0 + timedelta(seconds=5))
    claimed = store.claim_outbox(T0 + timedelta(seconds=5), 2, "sms")
    assert [r.id for r in claimed] == [first_bulk, answer]  # the reply does not wait its turn
    store.mark_retry(first_bulk, "429", T0 + timedelta(minutes=1))
    store.mark_sent(answer, "SM1", T0)
    # The broadcast behind the retried one still waits for it (same priority, same contact).
    assert [r.id for r in store.claim_outbox(T0 + timedelta(seconds=6), 9, "sms")] == [other_bulk]
    assert second_bulk not in [r.id for r in store.outbox(status="sending")]


def test_the_claim_walks_an_index_instead_of_sorting_the_backlog(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "plan.db")  # SQLite's planner (PostgreSQL plans on statistics)
    plan = store.db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE status = 'queued' AND channel = 'sms'"
        " AND next_attempt_at <= 'z' ORDER BY priority, next_attempt_at, id LIMIT 5"
    ).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "outbox_status_channel_priority_next_attempt_at" in details
    assert "TEMP B-TREE" not in details
    store.close()


def test_cancelled_rows_are_never_claimed_and_a_send_in_flight_is_recorded(
    store: SqlStore,
) -> None:
    who = store.get_or_create_contact("sms", "+15550000001", T0).id
    waiting, in_flight = store.enqueue(bulk(who), T0), store.enqueue(bulk(who), T0)
    store.claim_outbox(T0, 1, "sms")
    store.mark_sent(waiting, "SM1", T0)
    store.claim_outbox(T0, 1, "sms")
    assert store.cancel_outbox(in_flight, "cancelled", T0)
    store.mark_retry(in_flight, "timeout", T0)  # ignored: cancelled stays cancelled
    assert store.claim_outbox(T0 + timedelta(hours=1), 9) == []
    store.mark_sent(in_flight, "SM2", T0)  # it had reached the provider after all
    row = store.get_outbox(in_flight)
    assert row is not None and (row.status, row.finished_at) == (OutboxStatus.SENT, None)
    assert store.update_status_by_provider_id("SM2", "delivered", T0) == in_flight


# -- fan-out ------------------------------------------------------------------------------------


def test_two_sweeps_fanning_out_at_once_enqueue_each_person_once(
    store_url: str, store: SqlStore, config: Config
) -> None:
    for n in range(60):
        subscriber(store, "sms", f"+1555060{n:04d}")
        if n % 3 == 0:
            subscriber(store, "whatsapp", f"+1555060{n:04d}")  # the same people
    svc = service(store, config, Clock(), batch_size=7)
    row = approved(svc, whatsapp_template="advice")
    svc.send(row.id, by="alice")
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def sweep() -> None:
        try:
            with closing(open_store(store_url)) as own:
                start.wait(5)
                service(own, config, Clock(), batch_size=7).fan_out(row.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    people = [r.outbound.contact_id for r in rows_of(store, row.id)]
    assert len(people) == len(set(people)) == 60
    done = svc.get(row.id)
    assert (done.status, done.enqueued) == (BroadcastStatus.SENT, 60)


# -- JOIN ---------------------------------------------------------------------------------------


class Literal:
    """An interpreter that understands nothing: keywords are the engine's business."""

    def interpret(
        self, text: str, expecting: Expectation | None, language: str = "en"
    ) -> Understanding:
        return Understanding(text=text, language=language, intent=Intent("none", 0.0))


def test_join_subscribes_stop_ends_it_and_join_after_stop_comes_back(
    tmp_config: Config, lib: Library
) -> None:
    bridge = CareBridge(tmp_config, library=lib, interpreter=Literal(), clock=Clock())
    try:

        def say(text: str, n: int) -> list[str]:
            handled = bridge.handle(Inbound("sms", "+15550000001", text, T0, f"m{n}"))
            return [e.text for e in handled.replies]

        (joined,) = say("join", 1)
        assert "health advice" in joined
        contact = bridge.store.find_contact("sms", "+15550000001")
        assert contact is not None
        row = bridge.store.contact_row(contact.id)
        assert row is not None and row.consent_broadcast is True
        say("STOP", 2)
        say("ADVICE", 3)  # after STOP: comes back and stays subscribed
        row = bridge.store.contact_row(contact.id)
        assert row is not None and (row.opted_out, row.consent_broadcast) == (False, True)
        record = [(c.purpose, c.granted) for c in bridge.store.consents(contact.id)]
        assert record == [
            (ConsentPurpose.BROADCAST, True),
            (ConsentPurpose.CONTACT, False),
            (ConsentPurpose.CONTACT, True),
        ]
    finally:
        bridge.close()
