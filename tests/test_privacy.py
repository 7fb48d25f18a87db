"""Privacy by default: private database files, the retention purge on a simulated clock, and the
MYDATA / FORGET keywords a patient sends, driven through the app as a patient would."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from console_helpers import make_user, served, session_cookie
from fakes import wait_for
from pg import db_rows, dump_all
from test_cli import write_config

from bot.app import CareBridge
from bot.auth import SESSION_COOKIE, Auth
from bot.cli import main
from bot.config import Config
from bot.messages import Inbound
from bot.store import SqliteStore, open_store
from bot.web import create_app

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
PHONE = "+15550009876"


class Clock:
    """Every reading one second later; `jump` moves it on by days."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def jump(self, days: float) -> None:
        self.now += timedelta(days=days)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_config: Config, clock: Clock) -> Iterator[CareBridge]:
    bridge = CareBridge(tmp_config, clock=clock)
    yield bridge
    bridge.close()


_ids = count()


def send(app: CareBridge, text: str, address: str = PHONE) -> str:
    handled = app.handle(Inbound("sms", address, text, app.clock(), f"SM{next(_ids)}"))
    return "\n".join(m.text for m in handled.replies)


def screening(app: CareBridge, address: str = PHONE) -> None:
    """Language, consent, then a screening that records a temperature and ends in a level."""
    for text in ("hi", "1", "yes", "1", "0", "34", "fever and cough", "39.5", "97"):
        send(app, text, address)
    for _ in range(4):
        send(app, "no", address)
    send(app, "0", address)


def table_counts(db: Config) -> dict[str, int]:
    return {
        table: db_rows(db, f"SELECT count(*) FROM {table}")[0][0]
        for table in ("contacts", "inbox", "transcript", "outbox", "readings", "sessions")
    }


def texts(db: Config, table: str) -> list[str]:
    return [r[0] for r in db_rows(db, f"SELECT text FROM {table} ORDER BY id")]


def states(db: Config) -> list[str]:
    return [r[0] for r in db_rows(db, "SELECT state FROM sessions ORDER BY id")]


# --- files --------------------------------------------------------------------------------------


def test_a_new_database_and_its_folders_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "nested" / "carebridge.db"
    with SqliteStore(path) as store:
        store.add_audit(T0, None, None, "probe")  # a write: the WAL and SHM exist now
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
    assert modes == {"carebridge.db": 0o600, "carebridge.db-wal": 0o600, "carebridge.db-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700


def test_an_existing_world_readable_database_is_tightened_at_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SqliteStore(path).close()
    path.chmod(0o644)
    SqliteStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- retention ----------------------------------------------------------------------------------


def test_the_purge_redacts_exactly_the_text_older_than_the_policy(
    app: CareBridge, clock: Clock, tmp_config: Config
) -> None:
    assert tmp_config.retention.message_days == 90
    db = tmp_config
    screening(app)  # day 0: an old conversation
    for row in app.store.outbox():
        app.store.mark_sent(row.id, f"SM-out-{row.id}", clock())  # the dispatcher's work
    old_rows = {t: len(texts(db, t)) for t in ("inbox", "transcript", "outbox")}
    readings = app.store.readings(1)
    assert readings and old_rows["transcript"] > 10
    clock.jump(80)
    send(app, "MENU")  # day 80: a recent message
    levels = [s.triage for s in app.store.escalations()] + states(db)
    assert any('"triage":"self_care"' in level for level in levels)
    before = table_counts(db)
    clock.jump(11)  # day 91: the day-0 texts are past 90 days, the day-80 ones are not

    counts = app.privacy.sweep()

    assert (counts.inbox, counts.transcript) == (old_rows["inbox"], old_rows["transcript"])
    assert counts.outbox == old_rows["outbox"]
    for table in ("inbox", "transcript", "outbox"):
        rows = texts(db, table)
        assert rows[: old_rows[table]] == ["[redacted]"] * old_rows[table]
        assert "[redacted]" not in rows[old_rows[table] :] and rows[old_rows[table] :]
    assert table_counts(db) == before  # counts intact
    assert app.store.readings(1) == readings
    after_levels = [s.triage for s in app.store.escalations()] + states(db)
    assert after_levels == levels
    purges = [e for e in app.store.audit_log() if e.action == "retention_purge"]
    assert len(purges) == 1 and purges[0].detail["transcript"] == old_rows["transcript"]

    again = app.privacy.sweep()  # idempotent: nothing more, nothing audited
    assert again.total == 0
    assert len([e for e in app.store.audit_log() if e.action == "retention_purge"]) == 1


# --- MYDATA and FORGET --------------------------------------------------------------------------


def test_mydata_says_what_is_kept_and_for_how_long_then_carries_on(app: CareBridge) -> None:
    for text in ("hi", "1", "yes", "1"):
        send(app, text)
    reply = send(app, "MYDATA")
    assert "90 days" in reply and "FORGET" in reply
    assert PHONE not in reply and "fever" not in reply.lower()  # nothing is read back
    assert "any of these right now" in reply  # the open question is asked again
    assert [e.action for e in app.store.audit_log(contact_id=1)] == ["patient_mydata"]


def test_mydata_is_localized(app: CareBridge) -> None:
    send(app, "hola")  # a first message in Spanish sets the language
    reply = send(app, "MIS DATOS")
    assert "90 días" in reply and "OLVIDAR" in reply


def test_forget_asks_first_and_anything_but_yes_keeps_everything(
    app: CareBridge, tmp_config: Config
) -> None:
    for text in ("hi", "1", "yes", "1"):
        send(app, text)
    ask = send(app, "FORGET")
    assert "Reply YES to erase" in ask
    reply = send(app, "no")
    assert reply.startswith("Nothing was erased.")
    assert app.store.contact_row(1).address == PHONE  # type: ignore[union-attr]
    assert "FORGET" in texts(tmp_config, "transcript")


def test_forget_erases_texts_and_number_and_a_later_message_starts_afresh(
    app: CareBridge, tmp_config: Config, clock: Clock
) -> None:
    db = tmp_config
    screening(app)
    send(app, "I also have a rash on my arm")
    for row in app.store.outbox():
        app.store.mark_sent(row.id, f"SM-out-{row.id}", clock())
    before = table_counts(db)
    readings = [(r.concept, r.value) for r in app.store.readings(1)]

    assert "Reply YES" in send(app, "FORGET")
    done = send(app, "YES")

    assert "erased" in done and "112" in done  # confirmation, with the emergency number
    row = app.store.contact_row(1)
    assert row is not None and row.address == "forgotten-1" and row.opted_out
    assert set(texts(db, "transcript")[:-1]) == {"[erased]"}  # all but the confirmation
    assert set(texts(db, "inbox")) == {"[erased]"}
    grown = {"inbox": 2, "transcript": 4, "outbox": 2}  # FORGET, YES and their replies
    assert table_counts(db) == {k: v + grown.get(k, 0) for k, v in before.items()}
    assert [(r.concept, r.value) for r in app.store.readings(1)] == readings
    entry = next(e for e in app.store.audit_log(contact_id=1) if e.action == "forget_patient")
    assert entry.detail["source"] == "patient" and entry.detail["transcript"] > 10

    # The confirmation went out with the number; once sent, the sweep erases it too.
    last = app.store.outbox()[-1]
    assert last.outbound.address == PHONE
    app.store.mark_sent(last.id, "SM-last", clock())
    app.privacy.sweep()
    assert {r.outbound.address for r in app.store.outbox()} == {"forgotten-1"}

    # An attacker with the database file (SQLite) or a dump (PostgreSQL) finds neither the
    # number nor what the patient wrote.
    if isinstance(app.store, SqliteStore):
        file = app.store.path
        db_rows(db, "PRAGMA wal_checkpoint(TRUNCATE)")
        raw = file.read_bytes() + Path(f"{file}-wal").read_bytes()
    else:
        raw = dump_all(app.store).encode()
    assert PHONE.encode() not in raw and b"rash on my arm" not in raw

    # Writing again is a new person: language and consent first, nothing carried over.
    reply = send(app, "hello")
    assert "Which language" in reply
    fresh = app.store.find_contact("sms", PHONE)
    assert fresh is not None and fresh.id != 1 and fresh.consent_care is None
    assert app.store.readings(fresh.id) == []


def test_a_red_flag_while_confirming_is_answered_and_nothing_is_erased(app: CareBridge) -> None:
    for text in ("hi", "1", "yes"):
        send(app, text)
    send(app, "FORGET")
    reply = send(app, "I have severe chest pain")
    assert "112" in reply
    assert app.store.contact_row(1).address == PHONE  # type: ignore[union-attr]


# --- the admin command --------------------------------------------------------------------------


def test_an_admin_erases_a_patient_on_request_from_the_command_line(
    tmp_config: Config, tmp_path: Path, clock: Clock
) -> None:
    bridge = CareBridge(tmp_config, clock=clock)
    for text in ("hi", "1", "yes", "my sister's number is +15550001111"):
        send(bridge, text)
    bridge.close()
    cfg = write_config(tmp_config, tmp_path)
    runner = CliRunner()

    refused = runner.invoke(main, ["--config", str(cfg), "patients", "forget", "1"], input="n\n")
    assert refused.exit_code == 1 and "9876" in refused.output  # masked address, then abort
    assert "+15550009876" not in refused.output
    missing = runner.invoke(main, ["--config", str(cfg), "patients", "forget", "99", "--yes"])
    assert missing.exit_code == 1 and "there is no patient 99" in missing.output

    done = runner.invoke(main, ["--config", str(cfg), "patients", "forget", "1"], input="y\n")
    assert done.exit_code == 0 and "patient 1 forgotten" in done.output

    with open_store(tmp_config.storage_url()) as store:
        assert store.contact_row(1).address == "forgotten-1"  # type: ignore[union-attr]
        entry = next(e for e in store.audit_log(contact_id=1) if e.action == "forget_patient")
        assert entry.detail["source"] == "cli" and entry.detail["requested_by"]
    assert "+15550001111" not in " ".join(texts(tmp_config, "inbox"))
    again = runner.invoke(main, ["--config", str(cfg), "patients", "forget", "1", "--yes"])
    assert again.exit_code == 1 and "forgotten already" in again.output


def test_purge_from_the_command_line_for_cron(tmp_config: Config, tmp_path: Path) -> None:
    bridge = CareBridge(tmp_config, clock=Clock())
    send(bridge, "hi")
    bridge.close()
    cfg = write_config(tmp_config, tmp_path)
    args = ["--config", str(cfg), "patients", "purge"]
    soon = CliRunner().invoke(main, [*args, "--at", "2024-05-01T00:00:00"])
    assert soon.output.strip() == "redacted inbox=0 transcript=0 outbox=0"
    late = CliRunner().invoke(main, [*args, "--at", "2024-06-01T00:00:00"])
    assert late.exit_code == 0 and "inbox=1 transcript=2" in late.output


# --- the console action -------------------------------------------------------------------------


def test_a_clinician_erases_a_patient_from_the_console_with_a_typed_confirmation(
    app: CareBridge, tmp_config: Config
) -> None:
    for text in ("hi", "1", "yes", "my name is Asha Rao"):
        send(app, text)
    auth = Auth(app.store, tmp_config.console, env={})
    clinician = make_user(app.store, "dr_erase", "clinician", "a long enough password")
    cookies = session_cookie(auth, clinician)
    login = auth.session_for(cookies[SESSION_COOKIE])
    assert login is not None
    web = create_app(tmp_config, bridge=app, env={}, senders={}, dispatch=False, schedule=False)
    with (
        served(web, lifespan="off") as url,
        httpx.Client(base_url=url, cookies=cookies, follow_redirects=False) as browser,
    ):
        page = browser.get("/console/patients/1")
        assert page.status_code == 200 and 'id="forget"' in page.text
        unconfirmed = browser.post("/console/patients/1/forget", data={"csrf": login.csrf})
        assert unconfirmed.status_code == 400 and "nothing was erased" in unconfirmed.text
        assert app.store.contact_row(1).address == PHONE  # type: ignore[union-attr]
        forged = browser.post("/console/patients/1/forget", data={"confirm": "ERASE"})
        assert forged.status_code == 403  # no CSRF token: nothing happens
        done = browser.post(
            "/console/patients/1/forget", data={"csrf": login.csrf, "confirm": "erase"}
        )
        assert done.status_code == 303
        after = browser.get("/console/patients/1")
        assert 'id="forgotten"' in after.text and 'id="forget"' not in after.text
    assert app.store.contact_row(1).address == "forgotten-1"  # type: ignore[union-attr]
    assert "Asha Rao" not in " ".join(texts(tmp_config, "transcript"))
    entry = next(e for e in app.store.audit_log(contact_id=1) if e.action == "forget_patient")
    assert (entry.username, entry.detail["source"]) == ("dr_erase", "console")


def test_forget_in_hindi_works_after_stop_too(app: CareBridge) -> None:
    for text in ("नमस्ते", "हाँ"):
        send(app, text)
    send(app, "STOP")
    ask = send(app, "भूल जाओ")
    assert "हाँ (1)" in ask
    assert "मिटा दिए गए" in send(app, "1")
    assert app.store.contact_row(1).address == "forgotten-1"  # type: ignore[union-attr]


def test_the_web_app_scheduler_runs_the_purge(tmp_config: Config) -> None:
    early = CareBridge(tmp_config, clock=Clock())
    send(early, "hi")
    early.close()
    late = Clock()
    late.jump(120)
    bridge = CareBridge(tmp_config, clock=late)
    web = create_app(tmp_config, bridge=bridge, env={}, senders={}, dispatch=False)
    with served(web):  # the first sweep runs at start-up
        wait_for(lambda: texts(tmp_config, "inbox") == ["[redacted]"], timeout=20)
    with open_store(tmp_config.storage_url()) as store:
        assert [e.action for e in store.audit_log()].count("retention_purge") == 1
