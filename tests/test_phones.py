"""Phone numbers: E.164 with libphonenumber wherever an address enters, a clear error naming a
bad number, Telegram chat ids left alone, and the migration that merges one number written
two ways into one contact without losing its history."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from pg import SQLITE_ONLY, db_rows

from bot import scheduler
from bot.app import CareBridge, Interpreter, default_interpreter
from bot.cli import main
from bot.config import Config, load_config
from bot.enrollment import EnrollmentError, EnrollRequest
from bot.errors import ConfigError
from bot.flow import Library
from bot.messages import Inbound, Outbound
from bot.phones import PhoneError, normalise
from bot.store import CheckinKind, SqliteStore
from bot.store.migrations import MIGRATIONS

T0 = datetime(2024, 5, 1, 4, 30, tzinfo=UTC)  # 10:00 in India
_ids = count()


@pytest.fixture(scope="module")
def interpreter() -> Interpreter:
    return default_interpreter(load_config(env={}))


@pytest.fixture
def app(tmp_config: Config, lib: Library, interpreter: Interpreter) -> Iterator[CareBridge]:
    bridge = CareBridge(tmp_config, clock=lambda: T0, library=lib, interpreter=interpreter)
    yield bridge
    bridge.close()


def send(app: CareBridge, address: str, text: str, channel: str = "sms") -> list[str]:
    handled = app.handle(Inbound(channel, address, text, T0, f"SM{next(_ids)}"))
    return [m.text for m in handled.replies]


# --- normalising ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("09800000031", "IN", "+919800000031"),
        ("+91 98000 00031", "IN", "+919800000031"),
        ("whatsapp:+919800000031", "IN", "+919800000031"),
        ("0712 345678", "KE", "+254712345678"),
        ("+254712345678", "IN", "+254712345678"),  # a number with its code ignores the region
    ],
)
def test_numbers_become_e164(raw: str, region: str, e164: str) -> None:
    assert normalise(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("98000", "'98000' is not a valid number in IN"),
        ("+91ABC", "'+91ABC' has letters in it"),
        ("", "'' is not a phone number"),
    ],
)
def test_bad_numbers_are_refused_by_name(raw: str, why: str) -> None:
    with pytest.raises(PhoneError) as info:
        normalise(raw, "IN")
    assert why in str(info.value)


def test_a_bad_default_region_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"phones": {"default_region": "India"}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"phones\.default_region: .*'India' is not a region"):
        load_config(path, env={})


# --- where addresses enter ----------------------------------------------------------------------


def request(address: str, channel: str = "sms") -> EnrollRequest:
    return EnrollRequest(channel, address, ("diabetes",), "09:00", "Asia/Kolkata")


def test_enroll_refuses_a_bad_number_naming_it(app: CareBridge) -> None:
    for bad in ("98000", "+91ABC"):
        with pytest.raises(EnrollmentError) as info:
            scheduler.enroll(app, request(bad), T0)
        assert info.value.problems[0].startswith(f"--address: phone number {bad!r}")
    assert app.store.find_contact("sms", "98000") is None


def test_a_national_number_and_the_providers_e164_are_one_patient(app: CareBridge) -> None:
    done = scheduler.enroll(app, request("09800000031"), T0)
    contact = app.store.contact_row(done.contact_id)
    assert contact is not None and contact.address == "+919800000031"
    # Twilio writes From as E.164; the reply reaches the enrolled patient's conversation
    reply = send(app, "+919800000031", "yes")[0]  # the service's consent, then check-ins'
    assert "Do you agree to get check-in messages" in reply
    assert app.store.find_contact("sms", "+919800000031") is not None
    assert app.store.find_contact("sms", "09800000031") is None
    assert db_rows(app.config, "SELECT count(*) FROM contacts") == [(1,)]


def test_telegram_chat_ids_are_not_phone_numbers(app: CareBridge) -> None:
    done = scheduler.enroll(app, request("98000", channel="telegram"), T0)
    contact = app.store.contact_row(done.contact_id)
    assert contact is not None and (contact.channel, contact.address) == ("telegram", "98000")


def test_the_enroll_command_prints_one_clear_error(tmp_config: Config, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    data = yaml.safe_load((Path(__file__).parent.parent / "config.yaml").read_text("utf-8"))
    path.write_text(yaml.safe_dump({**data, "storage": {"url": tmp_config.storage.url}}), "utf-8")
    args = ["--config", str(path), "patients", "enroll", "--channel", "sms"]
    result = CliRunner().invoke(main, [*args, "--address", "98000", "--conditions", "diabetes"])
    assert result.exit_code == 1
    assert "--address: phone number '98000' is not a valid number in IN" in result.output
    ok = CliRunner().invoke(main, [*args, "--address", "09800000031", "--conditions", "diabetes"])
    assert ok.exit_code == 0, ok.output
    assert isinstance(main, click.Group)


# --- the migration: one number written two ways becomes one contact ----------------------------


def _counts(path: Path, contact_id: int) -> dict[str, int]:
    tables = ("sessions", "transcript", "outbox", "escalations", "readings", "enrollments")
    with sqlite3.connect(path) as db:
        return {
            t: db.execute(
                f"SELECT count(*) FROM {t} WHERE contact_id = ?", (contact_id,)
            ).fetchone()[0]
            for t in (*tables, "checkins", "consents")
        }


# Migration 8 merges rows only on SQLite: a PostgreSQL database is created at a later schema,
# with migrations 1-12 run on empty tables (docs/storage.md, "Migrations").
@SQLITE_ONLY
def test_the_phone_merge_migration_keeps_every_row_of_both_contacts(
    tmp_config: Config, tmp_path: Path, lib: Library, interpreter: Interpreter
) -> None:
    path = tmp_path / "old.db"
    before = tuple(m for m in MIGRATIONS if m.name != "phone_merge")
    old = CareBridge(
        tmp_config,
        store=SqliteStore(path, migrations=before),
        clock=lambda: T0,
        library=lib,
        interpreter=interpreter,
    )
    store = old.store
    # Enrolled by a coordinator as 09800000031 (the old version stored it as typed) ...
    national = store.get_or_create_contact("sms", "09800000031", T0)
    store.update_contact(national.id, consent_care=True, now=T0)
    store.save_enrollment(
        national.id,
        status="invited",
        conditions=("diabetes",),
        checkin_time="09:00",
        timezone="Asia/Kolkata",
        team=None,
        baselines={},
        now=T0,
    )
    store.add_checkin(national.id, CheckinKind.ENROLLMENT, "enrollment", T0, T0, T0)
    store.enqueue(Outbound("sms", "09800000031", "Do you agree?", contact_id=national.id), T0)
    store.add_transcript(national.id, None, "out", "Do you agree?", "sms", T0)
    store.open_escalation(national.id, None, "consultation", "missed", None, (), {}, T0)
    # ... while the patient's own messages came from Twilio as +919800000031.
    for text in ("hi", "1", "yes", "AGENT"):
        send(old, "+919800000031", text)
    e164 = store.find_contact("sms", "+919800000031")
    assert e164 is not None and e164.id != national.id
    store.add_reading(e164.id, None, "glucose_mg_dl", 180.0, "mg/dL", T0 + timedelta(hours=1))
    send(old, "+919800000031", "hello", channel="whatsapp")
    send(old, "98000", "hi", channel="telegram")  # a chat id, not a phone number
    want = {
        k: a + b for (k, a), b in zip(
            _counts(path, national.id).items(), _counts(path, e164.id).values(), strict=True
        )
    }  # fmt: skip
    old.close()

    merged = SqliteStore(path)  # migrates
    survivor = merged.find_contact("sms", "+919800000031")
    assert survivor is not None and survivor.id == national.id  # the oldest stays
    assert merged.find_contact("sms", "09800000031") is None
    assert merged.get_contact(e164.id) is None
    got = _counts(path, survivor.id)
    assert got["escalations"] == want["escalations"] == 2
    assert got == {**want, "enrollments": 1}  # one enrollment per contact
    assert [t.status for t in merged.escalations(contact_id=survivor.id) if t.is_open] == [
        "waiting"
    ]
    assert "AGENT" in [t.text for t in merged.transcript(survivor.id)]
    assert {r.outbound.address for r in merged.outbox(contact_id=survivor.id)} == {
        "+919800000031"
    }  # the queued question goes to a number Twilio accepts
    whatsapp = merged.find_contact("whatsapp", "+919800000031")
    assert whatsapp is not None
    assert [c.id for c in merged.linked_contacts(survivor.id)] == [whatsapp.id]  # one person
    assert merged.find_contact("telegram", "98000") is not None
    merged.close()


def test_the_merge_keeps_an_opt_out_and_leaves_numbers_it_cannot_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    before = tuple(m for m in MIGRATIONS if m.name != "phone_merge")
    old = SqliteStore(path, migrations=before)
    national = old.get_or_create_contact("sms", "09800000031", T0)
    old.update_contact(national.id, opted_out=True, now=T0)  # said STOP on the old number
    e164 = old.get_or_create_contact("sms", "+919800000031", T0 + timedelta(days=1))
    old.update_contact(e164.id, consent_care=True, now=T0 + timedelta(days=1))
    old.close()
    merged = SqliteStore(path)
    row = merged.contact_row(national.id)
    assert row is not None and row.address == "+919800000031"
    assert (row.opted_out, row.consent_care) == (True, True)  # STOP stands; the later consent
    merged.close()

    alone = tmp_path / "national-only.db"
    old = SqliteStore(alone, migrations=before)
    old.get_or_create_contact("sms", "09800000032", T0)
    old.close()
    merged = SqliteStore(alone)  # no international number tells the region: left as it is
    assert merged.find_contact("sms", "09800000032") is not None
    merged.close()
