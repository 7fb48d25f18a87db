"""The SQLite store: migrations, WAL, transactions, dedupe, outbox and job queues, threads."""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.errors import ConfigError, StoreError
from bot.messages import Inbound, Outbound
from bot.session import Contact, Frame, Session, SessionStatus
from bot.store import (
    EscalationStatus,
    JobStatus,
    OutboxStatus,
    SqliteStore,
    Store,
    open_store,
)
from bot.store.migrations import MIGRATIONS

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "carebridge.db"


@pytest.fixture
def store(any_store: Store) -> Store:
    """Once per engine (tests/pg.py): SQLite and PostgreSQL."""
    return any_store


@pytest.fixture
def sqlite_store(db_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(db_path) as s:
        yield s


@pytest.fixture
def contact(store: Store) -> Contact:
    return store.get_or_create_contact("sms", "+15550001", T0)


def sms(contact: Contact, text: str = "Do you have a fever?") -> Outbound:
    return Outbound("sms", "+15550001", text, choices=("Yes", "No"), contact_id=contact.id)


def inbound(provider_id: str, text: str = "yes") -> Inbound:
    return Inbound("sms", "+15550001", text, T0, provider_id)


# -- opening, migrations, pragmas -----------------------------------------------


def test_sqlite_store_satisfies_the_protocol(store: Store) -> None:
    typed: Store = store  # mypy checks the structural match
    assert typed is store


def test_migrations_apply_once_and_are_idempotent_across_reopen(db_path: Path) -> None:
    SqliteStore(db_path).close()
    with SqliteStore(db_path) as s:
        versions = [r["version"] for r in s.db.query("SELECT version FROM schema_migrations")]
        assert versions == sorted(m.version for m in MIGRATIONS)
        assert {"contacts", "inbox", "sessions", "outbox", "jobs"} <= set(s.db.table_names())


def test_a_database_newer_than_the_code_is_refused(db_path: Path) -> None:
    with SqliteStore(db_path) as s:
        s.db.execute("INSERT INTO schema_migrations VALUES (999, 'future', '2099-01-01')")
    with pytest.raises(StoreError, match=r"schema version 999.*upgrade carebridge"):
        SqliteStore(db_path)


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.db"
    not_a_db.write_text("this is not SQLite, " * 100)
    with pytest.raises(StoreError, match=r"cannot open the database .*notes\.db"):
        SqliteStore(not_a_db)


def test_a_url_is_refused_as_a_file_path_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL URL handed to the SQLite store once made folders named `postgresql:`."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="not a SQLite file path: postgresql://"):
        SqliteStore("postgresql://carebridge@127.0.0.1:5432/carebridge")
    assert list(tmp_path.iterdir()) == []


def test_wal_and_pragmas_are_on(sqlite_store: Store) -> None:
    store = sqlite_store

    def pragma(name: str) -> object:
        return store.db.execute(f"PRAGMA {name}").fetchone()[0]

    assert store.db.journal_mode == "wal"
    assert pragma("synchronous") == 1  # NORMAL
    assert pragma("busy_timeout") == 5000
    assert pragma("foreign_keys") == 1


def test_open_store_creates_the_parent_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///data/carebridge.db")
    relative.close()
    assert (tmp_path / "data" / "carebridge.db").exists()
    absolute = open_store(f"sqlite:///{tmp_path}/deep/er/x.db")
    absolute.close()
    assert (tmp_path / "deep" / "er" / "x.db").exists()


def test_open_store_names_the_setting_for_bad_urls_and_unreachable_servers() -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match=r"^storage\.url: cannot connect to PostgreSQL") as info:
        open_store(f"postgresql://bot:secret@127.0.0.1:{port}/carebridge")
    assert "secret" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"^storage\.url: not a valid PostgreSQL URL") as info:
        open_store("postgresql://bot:secret@db/carebridge?nosuchoption=1")
    assert "secret" not in str(info.value)
    with pytest.raises(ConfigError, match=r"^storage\.url: write the PostgreSQL URL as"):
        open_store("postgresql+psycopg2://bot:secret@db/carebridge")
    with pytest.raises(ConfigError, match=r"^storage\.url: expected sqlite:///") as info:
        open_store("mysql://bot:secret@db/carebridge")
    assert "secret" not in str(info.value)
    for url in ("carebridge.db", "sqlite:///", "sqlite:///:memory:"):
        with pytest.raises(ConfigError, match=r"^storage\.url"):
            open_store(url)


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.get_or_create_contact("sms", "+15550009", datetime(2024, 5, 1, 9, 0))


# -- inbox ------------------------------------------------------------------------


def test_a_duplicate_inbound_returns_none_and_stores_nothing(store: Store) -> None:
    first = store.record_inbound(inbound("SM1"), raw="Body=yes")
    assert first is not None
    assert store.record_inbound(inbound("SM1")) is None
    assert store.record_inbound(Inbound("whatsapp", "+15550001", "yes", T0, "SM1")) is not None
    pending = store.unprocessed_inbound()
    assert [row.inbound.provider_id for row in pending] == ["SM1", "SM1"]
    assert pending[0].raw == "Body=yes"
    assert pending[0].inbound == inbound("SM1")

    store.mark_inbound_processed(first, at(1))
    assert [row.inbound.channel for row in store.unprocessed_inbound()] == ["whatsapp"]


# -- transactions -----------------------------------------------------------------


def test_rollback_leaves_nothing(store: Store, contact: Contact, store_url: str) -> None:
    session = Session(contact=contact, flow="covid_screening", node="ask_fever")
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        store.save_session(session, T0)
        store.enqueue(sms(contact), T0)
        store.record_inbound(inbound("SM1"))
        raise RuntimeError("boom")
    with closing(open_store(store_url)) as other:
        assert other.outbox() == []
        assert other.current_session(contact).id is None
        assert other.record_inbound(inbound("SM1")) is not None


def test_commit_makes_all_writes_visible_to_another_connection(
    store: Store, contact: Contact, store_url: str
) -> None:
    with store.transaction():
        store.save_session(Session(contact=contact, flow="covid_screening"), T0)
        store.enqueue(sms(contact), T0)
        with store.transaction():  # nested: a savepoint, not a second BEGIN
            store.add_transcript(contact.id, None, "out", "Hello", "sms", T0)
    with closing(open_store(store_url)) as other:
        assert len(other.outbox()) == 1
        assert other.current_session(contact).flow == "covid_screening"
        assert len(other.transcript(contact.id)) == 1


def test_another_thread_waits_for_the_transaction_instead_of_joining_it(
    store: Store, contact: Contact
) -> None:
    inside = threading.Event()

    def other_thread() -> None:
        inside.wait(5)
        store.enqueue(sms(contact, "from the dispatcher thread"), T0)

    worker = threading.Thread(target=other_thread)
    worker.start()
    with pytest.raises(RuntimeError), store.transaction():
        store.enqueue(sms(contact, "rolled back"), T0)
        inside.set()
        worker.join(0.2)  # the other thread is blocked on the store's lock meanwhile
        raise RuntimeError("boom")
    worker.join(5)
    assert [row.outbound.text for row in store.outbox()] == ["from the dispatcher thread"]


# -- contacts and sessions ----------------------------------------------------------


def test_contacts_are_created_once_and_updated(store: Store) -> None:
    assert store.find_contact("telegram", "42") is None
    first = store.get_or_create_contact("telegram", "42", T0, language="fr")
    assert store.find_contact("telegram", "42") == first
    again = store.get_or_create_contact("telegram", "42", at(5), language="es")
    assert again == first
    assert first.language == "fr"
    assert store.contact_address(first.id) == ("telegram", "42")
    assert store.get_contact(999) is None
    with pytest.raises(KeyError):
        store.contact_address(999)

    store.update_contact(first.id, opted_out=True, consent_care=True, now=at(10))
    store.update_contact(first.id, opted_out=True, now=at(20))  # no change: keeps the time
    store.touch_inbound(first.id, at(15))
    row = store.contact_row(first.id)
    assert row is not None
    assert (row.opted_out, row.opted_out_at, row.consent_care_at) == (True, at(10), at(10))
    assert (row.last_inbound_at, row.created_at, row.consent_broadcast) == (at(15), T0, None)
    assert store.get_contact(first.id) == Contact(
        first.id, "telegram", "fr", opted_out=True, consent_care=True, language_set=True
    )

    store.update_contact(first.id, opted_out=False, language="sw", now=at(30))
    row = store.contact_row(first.id)
    assert row is not None
    assert (row.opted_out, row.opted_out_at, row.language) == (False, None, "sw")


def test_a_session_survives_a_process_restart(store_url: str) -> None:
    with closing(open_store(store_url)) as first_process:
        contact = first_process.get_or_create_contact("sms", "+15550001", T0)
        assert first_process.current_session(contact) == Session(contact=contact)
        session = Session(
            contact=contact,
            flow="covid_screening",
            node="ask_symptoms",
            status=SessionStatus.ACTIVE,
            answers={"fever": True, "temperature": 38.5, "symptoms": ("cough", "fatigue")},
            stack=(Frame("menu", "after_screening"),),
            pending_options=("loss_of_smell",),
            red_flags=("lips_blue",),
        )
        saved = first_process.save_session(session, T0)
        assert saved.id is not None
        assert (saved.started_at, saved.updated_at) == (T0, T0)
        saved = first_process.save_session(saved.evolve(node="ask_spo2", failures=1), at(3))

    with closing(open_store(store_url)) as second_process:
        restored = second_process.current_session(contact)
    assert restored == saved
    assert (restored.started_at, restored.updated_at) == (T0, at(3))
    assert restored.answers["symptoms"] == ("cough", "fatigue")


def test_a_new_session_row_becomes_the_current_one(store: Store, contact: Contact) -> None:
    old = store.save_session(Session(contact=contact, flow="covid_screening"), T0)
    new = store.save_session(Session(contact=contact, flow="diabetes_checkin"), at(60))
    assert new.id != old.id
    assert store.current_session(contact).flow == "diabetes_checkin"
    with pytest.raises(KeyError):
        store.save_session(old.evolve(id=999), at(61))


# -- transcript and readings --------------------------------------------------------


def test_transcript_is_oldest_first_and_limit_keeps_the_latest(
    store: Store, contact: Contact
) -> None:
    for minute, (direction, text) in enumerate([("in", "hi"), ("out", "Fever?"), ("in", "yes")]):
        store.add_transcript(contact.id, None, direction, text, "sms", at(minute))
    assert [e.text for e in store.transcript(contact.id)] == ["hi", "Fever?", "yes"]
    assert [e.text for e in store.transcript(contact.id, limit=2)] == ["Fever?", "yes"]
    with pytest.raises(ValueError, match="direction"):
        store.add_transcript(contact.id, None, "sideways", "?", "sms", T0)


def test_readings_are_newest_first(store: Store, contact: Contact) -> None:
    store.add_reading(contact.id, None, "temperature_c", 38.5, "Cel", at(0))
    store.add_reading(contact.id, None, "spo2", 93, "%", at(1))
    store.add_reading(contact.id, None, "temperature_c", 37.9, "Cel", at(2))
    assert [r.value for r in store.readings(contact.id, "temperature_c")] == [37.9, 38.5]
    assert [r.concept for r in store.readings(contact.id, limit=2)] == ["temperature_c", "spo2"]


# -- escalations ------------------------------------------------------------------


def test_a_second_escalation_is_folded_into_the_open_ticket(store: Store, contact: Contact) -> None:
    first = store.open_escalation(
        contact.id,
        None,
        "consultation_24",
        "triage",
        "covid_screening",
        ("fever_high",),
        {"fever": True},
        T0,
    )
    again = store.open_escalation(
        contact.id,
        None,
        "emergency_ambulance",
        "red_flag",
        None,
        ("lips_blue", "fever_high"),
        {"spo2": 88},
        at(5),
    )
    lower = store.open_escalation(
        contact.id, None, "consultation", "patient_request", None, (), {}, at(6)
    )
    assert first == again == lower
    ticket = store.get_escalation(first)
    assert ticket is not None
    assert (ticket.level, ticket.reason, ticket.status) == (
        "emergency_ambulance",
        "red_flag",
        EscalationStatus.WAITING,
    )
    assert ticket.red_flags == ("fever_high", "lips_blue")
    assert ticket.summary == {"fever": True, "spo2": 88}
    assert (ticket.opened_at, ticket.updated_at, ticket.appended) == (T0, at(6), 2)

    store.set_escalation_status(first, "claimed", at(7), by="dr_okafor")
    assert (
        store.open_escalation(contact.id, None, "emergency", "flow", None, (), {}, at(8)) == first
    )
    store.set_escalation_status(first, "closed", at(9))
    reopened = store.open_escalation(contact.id, None, "self_care", "flow", None, (), {}, at(10))
    assert reopened != first
    assert [e.id for e in store.escalations("waiting")] == [reopened]
    closed = store.escalations("closed")
    assert (closed[0].claimed_by, closed[0].claimed_at, closed[0].closed_at) == (
        "dr_okafor",
        at(7),
        at(9),
    )
    with pytest.raises(ValueError, match="level"):
        store.open_escalation(contact.id, None, "urgent", "flow", None, (), {}, T0)


# -- outbox -----------------------------------------------------------------------


def test_outbox_claim_retry_and_final_status(store: Store, contact: Contact) -> None:
    other = store.get_or_create_contact("sms", "+15550002", T0)
    first = store.enqueue(sms(contact, "one"), T0)
    later = store.enqueue(sms(other, "reminder"), T0, not_before=at(60))
    second = store.enqueue(sms(other, "two"), T0)

    claimed = store.claim_outbox(at(1), limit=10)
    assert [r.id for r in claimed] == [first, second]
    assert claimed[0].outbound == sms(contact, "one")
    assert {(r.status, r.attempts) for r in claimed} == {(OutboxStatus.SENDING, 1)}
    assert store.claim_outbox(at(1), limit=10) == []  # nothing is claimed twice

    store.mark_retry(first, "HTTP 503", next_attempt_at=at(2))
    store.mark_failed(second, "failed", "invalid number", at(1), error_code="21211")
    assert store.claim_outbox(at(1), limit=10) == []  # not due yet
    (retry,) = store.claim_outbox(at(2), limit=10)
    assert (retry.id, retry.attempts, retry.error) == (first, 2, "HTTP 503")
    store.mark_sent(first, "SM-out-1", at(2))

    store.mark_retry(second, "late retry", next_attempt_at=at(3))  # final: ignored
    store.mark_sent(second, "SM-out-2", at(3))  # final: status kept
    row = store.get_outbox(second)
    assert row is not None
    assert (row.status, row.error_code, row.finished_at) == (OutboxStatus.FAILED, "21211", at(1))

    assert [r.id for r in store.claim_outbox(at(60), limit=10)] == [later]
    assert [r.id for r in store.outbox(status="sent")] == [first]
    assert [r.id for r in store.outbox(contact_id=other.id)] == [later, second]
    with pytest.raises(ValueError, match="status"):
        store.mark_failed(first, "sent", "not a failure", at(4))
    with pytest.raises(KeyError):
        store.mark_sent(999, None, at(4))


def test_status_callbacks_by_provider_id_never_go_backwards(store: Store, contact: Contact) -> None:
    outbox_id = store.enqueue(sms(contact), T0)
    store.claim_outbox(T0, limit=1)
    store.mark_sent(outbox_id, "SM123", at(1))

    def status() -> OutboxStatus:
        row = store.get_outbox(outbox_id)
        assert row is not None
        return row.status

    assert store.update_status_by_provider_id("SM-unknown", "delivered", at(2)) is None
    assert store.update_status_by_provider_id("SM123", "sent", at(2)) == outbox_id
    assert status() == OutboxStatus.SENT
    assert store.update_status_by_provider_id("SM123", "delivered", at(3)) == outbox_id
    assert status() == OutboxStatus.DELIVERED
    for late in ("sent", "queued", "undelivered", "failed"):
        store.update_status_by_provider_id("SM123", late, at(4), error_code="30003")
        assert status() == OutboxStatus.DELIVERED
    row = store.get_outbox(outbox_id)
    assert row is not None
    assert (row.sent_at, row.finished_at, row.error_code) == (at(1), at(3), None)

    failed_id = store.enqueue(sms(contact), T0)
    store.claim_outbox(T0, limit=1)
    store.mark_sent(failed_id, "SM124", at(1))
    store.update_status_by_provider_id("SM124", "undelivered", at(2), error_code="63016")
    row = store.get_outbox(failed_id)
    assert row is not None
    assert (row.status, row.error_code) == (OutboxStatus.UNDELIVERED, "63016")


def test_two_stores_claiming_from_two_threads_never_share_a_row(
    store_url: str, store: Store, contact: Contact
) -> None:
    people = [store.get_or_create_contact("sms", f"+1555010{n:02d}", T0) for n in range(30)]
    with store.transaction():
        ids = {store.enqueue(sms(people[n % 30], f"message {n}"), T0) for n in range(300)}
    start = threading.Barrier(2)
    claimed: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def dispatcher(name: str) -> None:
        try:
            with closing(open_store(store_url)) as own:
                start.wait(5)
                mine: list[int] = []
                while batch := own.claim_outbox(at(1), limit=7):
                    mine.extend(row.id for row in batch)
                    for row in batch:
                        own.mark_sent(row.id, f"SM-{row.id}", at(1))
                claimed[name] = mine
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=dispatcher, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert not set(claimed["a"]) & set(claimed["b"])
    assert sorted(claimed["a"] + claimed["b"]) == sorted(ids)
    assert {r.attempts for r in store.outbox()} == {1}


# -- jobs -------------------------------------------------------------------------


def test_jobs_dedupe_claim_and_finish(store: Store, contact: Contact) -> None:
    key = f"followup:{contact.id}:covid_screening:2024-05-02"
    job = store.schedule_job(contact.id, "follow_up", "covid_screening", at(60), {"n": 1}, key)
    assert job is not None
    assert store.schedule_job(contact.id, "follow_up", "covid_screening", at(60), {}, key) is None
    early = store.schedule_job(contact.id, "reminder", None, at(30), {})
    cancelled = store.schedule_job(None, "broadcast", None, at(10), {"campaign": 7})
    assert cancelled is not None
    store.finish_job(cancelled, "cancelled", at(0))

    assert store.claim_due_jobs(at(20), limit=10, worker="w1") == []
    due = store.claim_due_jobs(at(60), limit=10, worker="w1")
    assert [j.id for j in due] == [early, job]
    assert due[1].payload == {"n": 1}
    assert {(j.status, j.worker, j.claimed_at) for j in due} == {(JobStatus.RUNNING, "w1", at(60))}
    assert store.claim_due_jobs(at(61), limit=10, worker="w2") == []

    store.finish_job(job, "done", at(61))
    store.finish_job(job, "failed", at(62))  # a finished job stays finished
    with pytest.raises(ValueError, match="status"):
        store.finish_job(job, "running", at(62))


def test_claim_keeps_a_contacts_messages_in_order_behind_a_retry(
    store: Store, contact: Contact
) -> None:
    now, hold = T0, timedelta(minutes=5)
    someone = store.get_or_create_contact("sms", "+15550002", T0)
    first = store.enqueue(sms(contact, "one"), now)
    other = store.enqueue(sms(someone, "other"), now)
    assert [r.id for r in store.claim_outbox(now, 10, order_hold=hold)] == [first, other]
    second = store.enqueue(sms(contact, "two"), now)
    store.mark_sent(other, "SM0", now)
    store.mark_retry(first, "500", now + timedelta(seconds=30))
    later = now + timedelta(seconds=1)
    assert store.claim_outbox(later, 10, order_hold=hold) == []  # "two" waits for "one"
    retry = now + timedelta(seconds=31)
    # both due: claimed together, and the dispatcher sends them in id order
    claimed = store.claim_outbox(retry, 10, order_hold=hold)
    assert [r.id for r in claimed] == [first, second]
    # (with the default order hold of 20 s, "two" would have gone at 21 s: see
    # tests/test_outbox_leases.py)


# -- one migration source, SQLite unchanged ---------------------------------------------

SCHEMA_V9 = Path(__file__).parent / "data" / "sqlite_schema_v9.sql"
UP_TO_9 = tuple(m for m in MIGRATIONS if m.version <= 9)


def sqlite_schema(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name"
        ).fetchall()
    return "".join(f"{sql};\n" for (sql,) in rows)


def test_sqlite_migrations_build_the_schema_the_sqlite_only_code_built(db_path: Path) -> None:
    """tests/data/sqlite_schema_v9.sql is the schema migrations 1-9 built before the store
    ran on two engines: a new SQLite database is still exactly that."""
    SqliteStore(db_path, migrations=UP_TO_9).close()
    assert sqlite_schema(db_path) == SCHEMA_V9.read_text()


def test_an_old_sqlite_database_upgrades_to_the_same_schema_keeping_its_rows(
    db_path: Path,
) -> None:
    SqliteStore(db_path, migrations=UP_TO_9[:3]).close()  # a database from before 4
    with closing(sqlite3.connect(db_path)) as conn, conn:  # rows as that version wrote them
        for address in ("09800000031", "+919800000031"):
            conn.execute(
                "INSERT INTO contacts (channel, address, language, opted_out, created_at,"
                " updated_at) VALUES ('sms', ?, 'hi', 0, '2024-05-01', '2024-05-01')",
                (address,),
            )
        conn.execute(
            "INSERT INTO outbox (contact_id, channel, address, text, kind, status,"
            " next_attempt_at, created_at) VALUES (2, 'sms', '+919800000031', 'hello', 'reply',"
            " 'sent', '2024-05-01', '2024-05-01')"
        )
    with SqliteStore(db_path, migrations=UP_TO_9) as new:
        merged = new.find_contact("sms", "+919800000031")  # migration 8 merged the two
        assert merged is not None and merged.id == 1 and merged.language == "hi"
        assert [(r.outbound.contact_id, r.outbound.text) for r in new.outbox()] == [(1, "hello")]
    assert sqlite_schema(db_path) == SCHEMA_V9.read_text()
