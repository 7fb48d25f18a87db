"""The embedded store: one SQLite file in WAL mode, schema via sqlite-utils, writes in SQL.

Imports the standard library, sqlite_utils, bot.messages, bot.session, bot.errors, bot.store.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from sqlite_utils import Database

from bot.errors import StoreError
from bot.messages import Inbound, Outbound
from bot.session import Contact, Session
from bot.store.api import ApiSql
from bot.store.base import (
    BULK_KINDS,
    FINAL_ESCALATION_STATUSES,
    FINAL_OUTBOX_STATUSES,
    TRIAGE_LEVELS,
    AuditRow,
    AuthSessionRow,
    CheckinKind,
    CheckinRow,
    CheckinStatus,
    ContactRow,
    EnrollmentRow,
    EnrollmentStatus,
    EscalationRow,
    EscalationStatus,
    InboxRow,
    JobRow,
    JobStatus,
    Lane,
    NewSchedule,
    NoteRow,
    OutboxRow,
    OutboxStatus,
    ReadingRow,
    Role,
    ScheduleRow,
    ScheduleStatus,
    SessionMark,
    TranscriptEntry,
    UserRow,
)
from bot.store.broadcasts import BroadcastSql, record_consents
from bot.store.codec import _dt, _flag, _json, _ts
from bot.store.dashboards import DashSql
from bot.store.io import IoSql
from bot.store.live import LiveSql
from bot.store.migrations import MIGRATION_LOCK, MIGRATIONS, Migration, ledger_sql
from bot.store.privacy import PrivacySql
from bot.store.sql import NO_LIMIT, SQLITE, Connection, Dialect, Row
from bot.store.work import WorkSql

log = logging.getLogger(__name__)

_MIN_SQLITE = (3, 37, 0)
_PRAGMAS = (
    "PRAGMA busy_timeout=5000",  # first, so switching to WAL waits for other writers
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA secure_delete=ON",  # erased and redacted text is overwritten, not left in free pages
)

# Outbox statuses only move up this ranking; the final ones share the top rank.
_RANK = {
    OutboxStatus.QUEUED: 0,
    OutboxStatus.SENDING: 1,
    OutboxStatus.SENT: 2,
    OutboxStatus.DELIVERED: 3,
    OutboxStatus.FAILED: 3,
    OutboxStatus.UNDELIVERED: 3,
    OutboxStatus.CANCELLED: 1,  # a send in flight when cancelled still moves on to sent
}
_OPEN_ESCALATION = (EscalationStatus.WAITING, EscalationStatus.CLAIMED)


def _dt_req(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _checked(value: str, allowed: Any, what: str) -> str:
    if value not in {str(a) for a in allowed}:
        choices = ", ".join(str(a) for a in allowed)
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")
    return value


def _private_file(path: Path) -> None:
    """Create the missing folders of `path` as 0700 and the file as 0600 before SQLite opens
    it (SQLite gives its -wal and -shm files the database file's mode); tighten an existing
    file that others may read."""
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with suppress(FileNotFoundError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)
                log.warning("store: %s was readable by others; now 0600", file.name)


class SqlStore(BroadcastSql, PrivacySql, IoSql, ApiSql, DashSql, LiveSql, WorkSql):
    """`Store` in SQL written once (docs/storage.md, "One SQL, two engines"): every query
    method lives here and in its mixins; an engine subclass (`SqliteStore`, `PostgresStore`)
    supplies the connection, the transactions and its `dialect`.

    The broadcast methods live in bot.store.broadcasts (the `BroadcastSql` mixin), the
    privacy ones in bot.store.privacy (`PrivacySql`).
    """

    dialect: Dialect = SQLITE

    # -- plumbing: what an engine provides ---------------------------------------

    def _connection(self) -> AbstractContextManager[Connection]:
        """Hold this thread's connection for the block (an engine guards it its own way)."""
        raise NotImplementedError

    def _describe(self) -> str:
        """The database, for error messages (never a password)."""
        raise NotImplementedError

    def _schema(self, conn: Connection) -> Any:
        """What a migration function receives (see bot.store.migrations)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection(s) (idempotent)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing: shared -------------------------------------------------------

    def _migrate(self, migrations: tuple[Migration, ...]) -> None:
        """Apply the missing migrations in one transaction; refuse a newer schema."""
        known = max((m.version for m in migrations), default=0)
        with self._atomic("migrate") as conn:
            # Two processes starting together: the second waits, then finds it all applied.
            self.dialect.advisory_lock(conn, MIGRATION_LOCK)
            conn.execute(ledger_sql(self.dialect))
            applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            newest = max(applied, default=0)
            if newest > known:
                raise StoreError(
                    f"the database {self._describe()} has schema version {newest}, but this "
                    f"version of carebridge knows only up to {known}: upgrade carebridge, or set "
                    "storage.url to another database"
                )
            schema = self._schema(conn)
            for migration in sorted(migrations, key=lambda m: m.version):
                if migration.version in applied:
                    continue
                try:
                    migration.apply(schema)
                except self.dialect.driver_errors() as exc:
                    raise StoreError(
                        f"cannot migrate the database {self._describe()} to version "
                        f"{migration.version} ({migration.name}): {exc}"
                    ) from exc
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, _ts(datetime.now(UTC))),
                )
                log.info("store: applied migration %d (%s)", migration.version, migration.name)

    @contextmanager
    def _atomic(self, op: str) -> Iterator[Connection]:
        """Run the block in one write transaction, or join the one this thread has open.

        One store call inside a `transaction()` joins it as is (no savepoint per call: it
        cost 2 statements per call and the message transaction makes ~17 calls); an error
        propagates and the transaction block rolls everything back. Only a nested
        `transaction()` opens a savepoint."""
        with self._connection() as conn:
            if conn.in_transaction:
                with self._translated(op):
                    yield conn
                return
            with self._begun(conn, op):
                yield conn

    @contextmanager
    def _savepoint(self, op: str) -> Iterator[None]:
        """A `transaction()`: a new write transaction, or a savepoint that rolls back on its
        own when one is already open."""
        with self._connection() as conn:
            if not conn.in_transaction:
                with self._begun(conn, op):
                    yield
                return
            conn.execute("SAVEPOINT store_op")
            try:
                with self._translated(op):
                    yield
            except BaseException:
                if conn.in_transaction:  # an error may have ended the whole transaction
                    conn.execute("ROLLBACK TO SAVEPOINT store_op")
                    conn.execute("RELEASE SAVEPOINT store_op")
                raise
            conn.execute("RELEASE SAVEPOINT store_op")

    @contextmanager
    def _begun(self, conn: Connection, op: str) -> Iterator[Connection]:
        """BEGIN (IMMEDIATE on SQLite) ... COMMIT, rolled back on an exception."""
        with self._translated(op):
            conn.execute(self.dialect.begin)
        try:
            with self._translated(op):
                yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            with self._translated(op):
                conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    @contextmanager
    def _translated(self, op: str) -> Iterator[None]:
        """Turn a driver error into StoreError naming the operation (never the values)."""
        try:
            yield
        except self.dialect.driver_errors() as exc:
            raise StoreError(f"store.{op}: {exc}") from exc

    def _rows(self, sql: str, params: Any = ()) -> list[Row]:
        with self._connection() as conn, self._translated("read"):
            return self._write_rows(conn, sql, params)

    def _write_rows(self, conn: Connection, sql: str, params: Any = ()) -> list[Row]:
        if isinstance(conn, sqlite3.Connection):
            cursor = conn.cursor()
            cursor.row_factory = sqlite3.Row
            return cursor.execute(sql, params).fetchall()
        return list(conn.execute(sql, params).fetchall())

    def _require(self, conn: Connection, table: str, row_id: int) -> Row:
        """The row, locked until the transaction ends (PostgreSQL) for a read-modify-write."""
        sql = f'SELECT * FROM "{table}" WHERE id = ?{self.dialect.for_update}'
        rows = self._write_rows(conn, sql, (row_id,))
        if not rows:
            raise KeyError(f"no {table} row with id {row_id}")
        return rows[0]

    # -- transactions -----------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; nested blocks become savepoints."""
        with self._savepoint("transaction"):
            yield

    def check_writable(self) -> None:
        """Commit one tiny real write (the readiness probe): a row is added to the migration
        ledger and removed again in one transaction, so the commit must reach the disk;
        nothing is left behind."""
        with self._atomic("check_writable") as conn:
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at)"
                " VALUES (-1, 'readiness probe', '')"
            )
            conn.execute("DELETE FROM schema_migrations WHERE version = -1")

    # -- inbox ----------------------------------------------------------------

    def record_inbound(self, inbound: Inbound, raw: str | None = None) -> int | None:
        """Persist an inbound message; None if (channel, provider_id) was seen before."""
        with self._atomic("record_inbound") as conn:
            row = conn.execute(
                "INSERT INTO inbox (channel, provider_id, address, text, language_hint,"
                " received_at, raw) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (channel, provider_id) DO NOTHING RETURNING id",
                (
                    inbound.channel,
                    inbound.provider_id,
                    inbound.address,
                    inbound.text,
                    inbound.language_hint,
                    _ts(inbound.received_at),
                    raw,
                ),
            ).fetchone()
        if row is None:
            log.info("store: duplicate inbound %s/%s", inbound.channel, inbound.provider_id)
            return None
        return int(row[0])

    def mark_inbound_processed(self, inbox_id: int, now: datetime) -> None:
        """Record that the bot has handled this inbound message."""
        with self._atomic("mark_inbound_processed") as conn:
            cursor = conn.execute(
                "UPDATE inbox SET processed_at = coalesce(processed_at, ?) WHERE id = ?",
                (_ts(now), inbox_id),
            )
            if cursor.rowcount == 0:
                raise KeyError(f"no inbox row with id {inbox_id}")

    def pending_inbound(self, channel: str, provider_id: str) -> int | None:
        """The id of this inbound message if it was recorded but not handled, else None."""
        rows = self._rows(
            "SELECT id FROM inbox WHERE channel = ? AND provider_id = ? AND processed_at IS NULL",
            (channel, provider_id),
        )
        return int(rows[0]["id"]) if rows else None

    def unprocessed_inbound(self) -> list[InboxRow]:
        """Inbound messages recorded but not handled (crash recovery), oldest first."""
        rows = self._rows("SELECT * FROM inbox WHERE processed_at IS NULL ORDER BY received_at, id")
        return [
            InboxRow(
                id=r["id"],
                inbound=Inbound(
                    channel=r["channel"],
                    address=r["address"],
                    text=r["text"],
                    received_at=_dt_req(r["received_at"]),
                    provider_id=r["provider_id"],
                    language_hint=r["language_hint"],
                ),
                raw=r["raw"],
                processed_at=None,
            )
            for r in rows
        ]

    # -- contacts -------------------------------------------------------------

    def get_or_create_contact(
        self, channel: str, address: str, now: datetime, language: str | None = None
    ) -> Contact:
        """The contact for this address on this channel, created on first contact."""
        sql = "SELECT * FROM contacts WHERE channel = ? AND address = ?"
        rows = self._rows(sql, (channel, address))
        if not rows:
            with self._atomic("get_or_create_contact") as conn:
                conn.execute(
                    "INSERT INTO contacts (channel, address, language, language_set,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (channel, address) DO NOTHING",
                    (
                        channel,
                        address,
                        language or "en",
                        int(language is not None),
                        _ts(now),
                        _ts(now),
                    ),
                )
                if language is None:  # the same person on another channel: their language
                    conn.execute(
                        "UPDATE contacts SET (language, language_set) = (SELECT o.language,"
                        " o.language_set FROM contacts o WHERE o.person_id = contacts.person_id"
                        " AND o.id <> contacts.id AND o.language_set = 1"
                        " ORDER BY o.updated_at DESC LIMIT 1)"
                        " WHERE channel = ? AND address = ? AND EXISTS (SELECT 1 FROM contacts o"
                        " WHERE o.person_id = contacts.person_id AND o.id <> contacts.id"
                        " AND o.language_set = 1)",
                        (channel, address),
                    )
                rows = self._write_rows(conn, sql, (channel, address))
        return _contact_row(rows[0]).to_contact()

    def get_contact(self, contact_id: int) -> Contact | None:
        """The engine's view of a contact, or None."""
        row = self.contact_row(contact_id)
        return None if row is None else row.to_contact()

    def find_contact(self, channel: str, address: str) -> Contact | None:
        """The contact for this address on this channel, or None (never creates one)."""
        rows = self._rows(
            "SELECT * FROM contacts WHERE channel = ? AND address = ?", (channel, address)
        )
        return _contact_row(rows[0]).to_contact() if rows else None

    def linked_contacts(self, contact_id: int) -> list[Contact]:
        """The person's other contacts (same person_id), most recently active first."""
        rows = self._rows(
            "SELECT o.* FROM contacts c JOIN contacts o ON o.person_id = c.person_id"
            " AND o.id <> c.id WHERE c.id = ?"
            " ORDER BY coalesce(o.last_inbound_at, o.updated_at) DESC",
            (contact_id,),
        )
        return [_contact_row(r).to_contact() for r in rows]

    def contact_row(self, contact_id: int) -> ContactRow | None:
        """Everything stored about a contact, or None."""
        rows = self._rows("SELECT * FROM contacts WHERE id = ?", (contact_id,))
        return _contact_row(rows[0]) if rows else None

    def contact_address(self, contact_id: int) -> tuple[str, str]:
        """(channel, address) of a contact; KeyError if there is no such contact."""
        rows = self._rows("SELECT channel, address FROM contacts WHERE id = ?", (contact_id,))
        if not rows:
            raise KeyError(f"no contacts row with id {contact_id}")
        return rows[0]["channel"], rows[0]["address"]

    def update_contact(
        self,
        contact_id: int,
        *,
        opted_out: bool | None = None,
        language: str | None = None,
        consent_care: bool | None = None,
        consent_broadcast: bool | None = None,
        now: datetime,
        source: str | None = None,
    ) -> None:
        """Change the given contact-level facts (None leaves a fact as it is); each change of
        consent or opt-out is appended to the consent record with `source`."""
        at = _ts(now)
        with self._atomic("update_contact") as conn:
            current = self._require(conn, "contacts", contact_id)
            changes: dict[str, Any] = {}
            if opted_out is not None and bool(current["opted_out"]) != opted_out:
                changes["opted_out"] = int(opted_out)
                changes["opted_out_at"] = at if opted_out else None
            if language is not None and language != current["language"]:
                changes["language"] = language
            if language is not None and not current["language_set"]:
                changes["language_set"] = 1
            if consent_care is not None and _flag(current["consent_care"]) != consent_care:
                changes["consent_care"] = int(consent_care)
                changes["consent_care_at"] = at
            if consent_broadcast is not None and (
                _flag(current["consent_broadcast"]) != consent_broadcast
            ):
                changes["consent_broadcast"] = int(consent_broadcast)
                changes["consent_broadcast_at"] = at
            if not changes:
                return
            changes["updated_at"] = at
            assignments = ", ".join(f"{column} = ?" for column in changes)
            conn.execute(
                f"UPDATE contacts SET {assignments} WHERE id = ?", (*changes.values(), contact_id)
            )
            record_consents(conn, contact_id, changes, source, at)

    def touch_inbound(self, contact_id: int, now: datetime) -> None:
        """Record when the contact last wrote to us."""
        with self._atomic("touch_inbound") as conn:
            cursor = conn.execute(
                "UPDATE contacts SET last_inbound_at = greatest(coalesce(last_inbound_at, ''), ?)"
                " WHERE id = ?",
                (_ts(now), contact_id),
            )
            if cursor.rowcount == 0:
                raise KeyError(f"no contacts row with id {contact_id}")

    # -- sessions -------------------------------------------------------------

    def current_session(self, contact: Contact) -> Session:
        """The contact's latest session, or a fresh one that is not stored yet."""
        rows = self._rows(
            "SELECT id, state, started_at, updated_at FROM sessions"
            " WHERE contact_id = ? ORDER BY id DESC LIMIT 1",
            (contact.id,),
        )
        if not rows:
            return Session(contact=contact)
        row = rows[0]
        return Session.from_state(
            contact,
            json.loads(row["state"]),
            id=row["id"],
            started_at=_dt(row["started_at"]),
            updated_at=_dt(row["updated_at"]),
        )

    def save_session(self, session: Session, now: datetime) -> Session:
        """Insert (id is None) or update a session; returns it with id and timestamps set."""
        state = session.to_state()
        values = (session.flow, session.node, str(session.status), _json(state), _ts(now))
        with self._atomic("save_session") as conn:
            if session.id is None:
                started = session.started_at or now
                row = conn.execute(
                    "INSERT INTO sessions (flow, node, status, state, updated_at, contact_id,"
                    " started_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (*values, session.contact.id, _ts(started)),
                ).fetchone()
                return session.evolve(id=int(row[0]), started_at=started, updated_at=now)
            row = conn.execute(
                "UPDATE sessions SET flow = ?, node = ?, status = ?, state = ?, updated_at = ?"
                " WHERE id = ? RETURNING started_at",
                (*values, session.id),
            ).fetchone()
            if row is None:
                raise KeyError(f"no sessions row with id {session.id}")
            return session.evolve(started_at=_dt(row[0]), updated_at=now)

    # -- transcript -----------------------------------------------------------

    def add_transcript(
        self,
        contact_id: int,
        session_id: int | None,
        direction: str,
        text: str,
        channel: str,
        at: datetime,
        author: str | None = None,
    ) -> int:
        """Append one line ("in" or "out"; `author`: the clinician who wrote it)."""
        _checked(direction, ("in", "out"), "direction")
        with self._atomic("add_transcript") as conn:
            row = conn.execute(
                "INSERT INTO transcript (contact_id, session_id, direction, text, channel, at,"
                " author) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (contact_id, session_id, direction, text, channel, _ts(at), author),
            ).fetchone()
        return int(row[0])

    def transcript(self, contact_id: int, limit: int | None = None) -> list[TranscriptEntry]:
        """A contact's transcript, oldest first; with `limit`, only the latest entries."""
        rows = self._rows(
            "SELECT * FROM transcript WHERE contact_id = ? ORDER BY at DESC, id DESC LIMIT ?",
            (contact_id, NO_LIMIT if limit is None else limit),
        )
        return [
            TranscriptEntry(
                id=r["id"],
                contact_id=r["contact_id"],
                session_id=r["session_id"],
                direction=r["direction"],
                text=r["text"],
                channel=r["channel"],
                at=_dt_req(r["at"]),
                author=r["author"],
            )
            for r in reversed(rows)
        ]

    # -- escalations ----------------------------------------------------------

    def open_escalation(
        self,
        contact_id: int,
        session_id: int | None,
        level: str,
        reason: str,
        flow: str | None,
        red_flags: tuple[str, ...],
        summary: dict[str, Any],
        now: datetime,
    ) -> int:
        """Open a ticket, or fold this one into the contact's open ticket; returns its id.

        Folding keeps the more urgent level (with the reason and flow that set it), merges
        red flags in order of first appearance and updates the summary with the new keys.
        """
        _checked(level, TRIAGE_LEVELS, "level")
        at = _ts(now)
        with self._atomic("open_escalation") as conn:
            open_rows = self._write_rows(
                conn,
                "SELECT * FROM escalations WHERE contact_id = ? AND status IN (?, ?)",
                (contact_id, *_OPEN_ESCALATION),
            )
            if not open_rows:
                row = conn.execute(
                    "INSERT INTO escalations (contact_id, session_id, level, reason, flow,"
                    " red_flags, summary, status, opened_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        contact_id,
                        session_id,
                        level,
                        reason,
                        flow,
                        _json(list(dict.fromkeys(red_flags))),
                        _json(summary),
                        EscalationStatus.WAITING,
                        at,
                        at,
                    ),
                ).fetchone()
                log.info("store: escalation %d opened for contact %d", row[0], contact_id)
                return int(row[0])
            current = open_rows[0]
            raised = TRIAGE_LEVELS.index(level) > TRIAGE_LEVELS.index(current["level"])
            flags = dict.fromkeys([*json.loads(current["red_flags"]), *red_flags])
            conn.execute(
                "UPDATE escalations SET level = ?, reason = ?, flow = ?, red_flags = ?,"
                " summary = ?, session_id = coalesce(?, session_id), updated_at = ?,"
                " appended = appended + 1 WHERE id = ?",
                (
                    level if raised else current["level"],
                    reason if raised else current["reason"],
                    flow if raised else current["flow"],
                    _json(list(flags)),
                    _json({**json.loads(current["summary"]), **summary}),
                    session_id,
                    at,
                    current["id"],
                ),
            )
            log.info("store: escalation %d appended for contact %d", current["id"], contact_id)
            return int(current["id"])

    def escalations(
        self, status: str | None = None, contact_id: int | None = None
    ) -> list[EscalationRow]:
        """Tickets, optionally with one status and/or of one contact, in the order opened."""
        checked = None if status is None else _checked(status, EscalationStatus, "status")
        rows = self._filtered("escalations", status=checked, contact_id=contact_id)
        return [_escalation_row(r) for r in rows]

    def _filtered(self, table: str, **equal: Any) -> list[Row]:
        """Rows of `table` whose columns equal the given values (None: any), by id."""
        given = {column: value for column, value in equal.items() if value is not None}
        where = " AND ".join([f'"{column}" = ?' for column in given] or ["1 = 1"])
        return self._rows(
            f'SELECT * FROM "{table}" WHERE {where} ORDER BY id', tuple(given.values())
        )

    def get_escalation(self, escalation_id: int) -> EscalationRow | None:
        """One ticket, or None."""
        rows = self._rows("SELECT * FROM escalations WHERE id = ?", (escalation_id,))
        return _escalation_row(rows[0]) if rows else None

    def set_escalation_status(
        self, escalation_id: int, status: str, now: datetime, by: str | None = None
    ) -> None:
        """Claim (by a clinician) or close a ticket; a final status never changes."""
        new = EscalationStatus(_checked(status, EscalationStatus, "status"))
        at = _ts(now)
        with self._atomic("set_escalation_status") as conn:
            current = self._require(conn, "escalations", escalation_id)
            if current["status"] in FINAL_ESCALATION_STATUSES:
                return
            conn.execute(
                "UPDATE escalations SET status = ?, updated_at = ?,"
                " claimed_by = CASE WHEN ? = 1 THEN ? ELSE claimed_by END,"
                " claimed_at = CASE WHEN ? = 1 THEN ? ELSE claimed_at END,"
                " closed_at = CASE WHEN ? = 1 THEN ? ELSE closed_at END WHERE id = ?",
                (
                    new,
                    at,
                    new == EscalationStatus.CLAIMED,
                    by,
                    new == EscalationStatus.CLAIMED,
                    at,
                    new in FINAL_ESCALATION_STATUSES,
                    at,
                    escalation_id,
                ),
            )

    def plan_escalation(
        self, escalation_id: int, priority: str, deadline_at: datetime, now: datetime
    ) -> None:
        """Set a ticket's priority and claim deadline."""
        with self._atomic("plan_escalation") as conn:
            self._require(conn, "escalations", escalation_id)
            conn.execute(
                "UPDATE escalations SET priority = ?, deadline_at = ?, updated_at = ? WHERE id = ?",
                (priority, _ts(deadline_at), _ts(now), escalation_id),
            )

    def claim_escalation(
        self,
        escalation_id: int,
        user_id: int,
        username: str,
        now: datetime,
        *,
        take_over: bool = False,
    ) -> bool:
        """waiting -> claimed by this user (or, with `take_over`, from another user).

        False if the ticket is final, or claimed by someone else and not `take_over`.
        """
        claimable = "status = 'waiting' OR (status = 'claimed' AND (assignee_id = ? OR ? = 1))"
        with self._atomic("claim_escalation") as conn:
            self._require(conn, "escalations", escalation_id)
            cursor = conn.execute(
                "UPDATE escalations SET status = 'claimed', assignee_id = ?, claimed_by = ?,"
                " claimed_at = CASE WHEN assignee_id = ? THEN coalesce(claimed_at, ?) ELSE ? END,"
                f" updated_at = ? WHERE id = ? AND ({claimable})",
                (
                    user_id,
                    username,
                    user_id,
                    _ts(now),
                    _ts(now),
                    _ts(now),
                    escalation_id,
                    user_id,
                    int(take_over),
                ),
            )
        return cursor.rowcount == 1

    def release_escalation(self, escalation_id: int, user_id: int, now: datetime) -> bool:
        """claimed by this user -> waiting (back in the queue); False otherwise."""
        with self._atomic("release_escalation") as conn:
            self._require(conn, "escalations", escalation_id)
            cursor = conn.execute(
                "UPDATE escalations SET status = 'waiting', assignee_id = NULL, claimed_by = NULL,"
                " claimed_at = NULL, updated_at = ?"
                " WHERE id = ? AND status = 'claimed' AND assignee_id = ?",
                (_ts(now), escalation_id, user_id),
            )
        return cursor.rowcount == 1

    def finish_escalation(self, escalation_id: int, status: str, now: datetime) -> bool:
        """An open ticket -> a final status (resolved, returned_to_bot, closed); False if final."""
        _checked(status, FINAL_ESCALATION_STATUSES, "status")
        at = _ts(now)
        with self._atomic("finish_escalation") as conn:
            self._require(conn, "escalations", escalation_id)
            cursor = conn.execute(
                "UPDATE escalations SET status = ?, closed_at = ?, updated_at = ?,"
                " resolved_at = CASE WHEN ? = 'resolved' THEN ? ELSE resolved_at END"
                " WHERE id = ? AND status IN ('waiting', 'claimed')",
                (status, at, at, status, at, escalation_id),
            )
        return cursor.rowcount == 1

    def note_first_response(self, escalation_id: int, now: datetime) -> None:
        """Record the first clinician reply (later calls change nothing)."""
        with self._atomic("note_first_response") as conn:
            self._require(conn, "escalations", escalation_id)
            conn.execute(
                "UPDATE escalations SET first_response_at = coalesce(first_response_at, ?),"
                " updated_at = ? WHERE id = ?",
                (_ts(now), _ts(now), escalation_id),
            )

    def announce_escalation(self, escalation_id: int, now: datetime, quiet_since: datetime) -> bool:
        """Mark a waiting ticket announced unless it was announced after `quiet_since`.

        True for exactly one caller per announcement, so a sweep may run on every node.
        """
        with self._atomic("announce_escalation") as conn:
            cursor = conn.execute(
                "UPDATE escalations SET announced_at = ?, announcements = announcements + 1"
                " WHERE id = ? AND status = 'waiting'"
                " AND (announced_at IS NULL OR announced_at <= ?)",
                (_ts(now), escalation_id, _ts(quiet_since)),
            )
        return cursor.rowcount == 1

    def raise_escalation(self, escalation_id: int, now: datetime) -> bool:
        """Mark a waiting ticket as past its deadline (raised in the queue); True the first time."""
        with self._atomic("raise_escalation") as conn:
            cursor = conn.execute(
                "UPDATE escalations SET raised_at = ?"
                " WHERE id = ? AND status = 'waiting' AND raised_at IS NULL",
                (_ts(now), escalation_id),
            )
        return cursor.rowcount == 1

    def add_ticket_note(self, escalation_id: int, user_id: int, text: str, now: datetime) -> int:
        """Add an internal note to a ticket."""
        with self._atomic("add_ticket_note") as conn:
            row = conn.execute(
                "INSERT INTO ticket_notes (escalation_id, user_id, text, at) VALUES (?, ?, ?, ?)"
                " RETURNING id",
                (escalation_id, user_id, text, _ts(now)),
            ).fetchone()
        return int(row[0])

    def ticket_notes(self, escalation_id: int) -> list[NoteRow]:
        """A ticket's notes, oldest first."""
        rows = self._rows(
            "SELECT n.*, u.username FROM ticket_notes n JOIN users u ON u.id = n.user_id"
            " WHERE n.escalation_id = ? ORDER BY n.id",
            (escalation_id,),
        )
        return [
            NoteRow(
                id=r["id"],
                escalation_id=r["escalation_id"],
                user_id=r["user_id"],
                username=r["username"],
                text=r["text"],
                at=_dt_req(r["at"]),
            )
            for r in rows
        ]

    # -- console users, log-ins and the audit log -----------------------------

    def add_user(
        self,
        username: str,
        password_hash: str,
        role: str,
        now: datetime,
        *,
        must_change_password: bool = True,
    ) -> int | None:
        """Create a console user; None if the username is taken."""
        _checked(role, Role, "role")
        with self._atomic("add_user") as conn:
            row = conn.execute(
                "INSERT INTO users (username, password_hash, role, must_change_password,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (username) DO NOTHING RETURNING id",
                (username, password_hash, role, int(must_change_password), _ts(now), _ts(now)),
            ).fetchone()
        return None if row is None else int(row[0])

    def get_user(self, user_id: int) -> UserRow | None:
        """One user, or None."""
        rows = self._rows("SELECT * FROM users WHERE id = ?", (user_id,))
        return _user_row(rows[0]) if rows else None

    def find_user(self, username: str) -> UserRow | None:
        """The user with this username, or None."""
        rows = self._rows("SELECT * FROM users WHERE username = ?", (username,))
        return _user_row(rows[0]) if rows else None

    def users(self) -> list[UserRow]:
        """Every console user, by username."""
        return [_user_row(r) for r in self._rows("SELECT * FROM users ORDER BY username")]

    def set_user_password(
        self, user_id: int, password_hash: str, now: datetime, *, must_change_password: bool
    ) -> None:
        """Replace a user's password hash (and unlock the account)."""
        with self._atomic("set_user_password") as conn:
            self._require(conn, "users", user_id)
            conn.execute(
                "UPDATE users SET password_hash = ?, must_change_password = ?, failed_logins = 0,"
                " locked_until = NULL, updated_at = ? WHERE id = ?",
                (password_hash, int(must_change_password), _ts(now), user_id),
            )

    def set_user_disabled(self, user_id: int, disabled: bool, now: datetime) -> None:
        """Disable (no log-in) or enable a user."""
        with self._atomic("set_user_disabled") as conn:
            self._require(conn, "users", user_id)
            conn.execute(
                "UPDATE users SET disabled = ?, updated_at = ? WHERE id = ?",
                (int(disabled), _ts(now), user_id),
            )

    def record_login(
        self, user_id: int, now: datetime, *, ok: bool, lock_until: datetime | None = None
    ) -> None:
        """A log-in attempt: success resets the failure count; a failure counts (and may lock)."""
        with self._atomic("record_login") as conn:
            self._require(conn, "users", user_id)
            if ok:
                conn.execute(
                    "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = ?"
                    " WHERE id = ?",
                    (_ts(now), user_id),
                )
            elif lock_until is not None:
                conn.execute(
                    "UPDATE users SET failed_logins = 0, locked_until = ? WHERE id = ?",
                    (_ts(lock_until), user_id),
                )
            else:
                conn.execute(
                    "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?", (user_id,)
                )

    def create_auth_session(
        self, user_id: int, token_hash: str, csrf_token: str, now: datetime, expires_at: datetime
    ) -> int:
        """Record a new log-in."""
        with self._atomic("create_auth_session") as conn:
            row = conn.execute(
                "INSERT INTO auth_sessions (user_id, token_hash, csrf_token, created_at,"
                " expires_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (user_id, token_hash, csrf_token, _ts(now), _ts(expires_at), _ts(now)),
            ).fetchone()
        return int(row[0])

    def get_auth_session(self, token_hash: str) -> AuthSessionRow | None:
        """The log-in with this token hash (expired or revoked ones too), or None."""
        rows = self._rows("SELECT * FROM auth_sessions WHERE token_hash = ?", (token_hash,))
        if not rows:
            return None
        r = rows[0]
        return AuthSessionRow(
            id=r["id"],
            user_id=r["user_id"],
            token_hash=r["token_hash"],
            csrf_token=r["csrf_token"],
            created_at=_dt_req(r["created_at"]),
            expires_at=_dt_req(r["expires_at"]),
            last_seen_at=_dt_req(r["last_seen_at"]),
            revoked_at=_dt(r["revoked_at"]),
        )

    def touch_auth_session(self, session_id: int, now: datetime) -> None:
        """Record activity on a log-in (for the idle timeout)."""
        with self._atomic("touch_auth_session") as conn:
            conn.execute(
                "UPDATE auth_sessions SET last_seen_at = greatest(last_seen_at, ?) WHERE id = ?",
                (_ts(now), session_id),
            )

    def revoke_auth_sessions(
        self, now: datetime, *, session_id: int | None = None, user_id: int | None = None
    ) -> int:
        """End one log-in, or every log-in of a user; returns how many were ended."""
        if (session_id is None) == (user_id is None):
            raise ValueError("give exactly one of session_id and user_id")
        column, value = ("id", session_id) if session_id is not None else ("user_id", user_id)
        with self._atomic("revoke_auth_sessions") as conn:
            cursor = conn.execute(
                f"UPDATE auth_sessions SET revoked_at = ? WHERE {column} = ?"
                " AND revoked_at IS NULL",
                (_ts(now), value),
            )
        return cursor.rowcount

    def add_audit(
        self,
        now: datetime,
        user_id: int | None,
        username: str | None,
        action: str,
        *,
        contact_id: int | None = None,
        escalation_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Append one entry to the audit log (which can never be changed or deleted)."""
        with self._atomic("add_audit") as conn:
            row = conn.execute(
                "INSERT INTO audit_log (at, user_id, username, action, contact_id, escalation_id,"
                " detail) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    _ts(now),
                    user_id,
                    username,
                    action,
                    contact_id,
                    escalation_id,
                    _json(detail or {}),
                ),
            ).fetchone()
        return int(row[0])

    def audit_log(
        self,
        *,
        contact_id: int | None = None,
        user_id: int | None = None,
        limit: int = 200,
    ) -> list[AuditRow]:
        """Audit entries, newest first, optionally about one contact or by one user."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if contact_id is not None:
            where.append("contact_id = ?")
            params.append(contact_id)
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        rows = self._rows(
            f"SELECT * FROM audit_log WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [
            AuditRow(
                id=r["id"],
                at=_dt_req(r["at"]),
                user_id=r["user_id"],
                username=r["username"],
                action=r["action"],
                contact_id=r["contact_id"],
                escalation_id=r["escalation_id"],
                detail=json.loads(r["detail"]),
            )
            for r in rows
        ]

    # -- outbox ---------------------------------------------------------------

    def enqueue(
        self,
        outbound: Outbound,
        now: datetime,
        not_before: datetime | None = None,
        *,
        lane: Lane | None = None,
    ) -> int:
        """Queue a message for the dispatcher; returns the outbox id."""
        if lane is None:
            lane = Lane.BULK if outbound.kind in BULK_KINDS else Lane.CONVERSATION
        with self._atomic("enqueue") as conn:
            row = conn.execute(
                "INSERT INTO outbox (contact_id, channel, address, text, choices, kind, meta,"
                " status, attempts, next_attempt_at, created_at, priority)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?) RETURNING id",
                (
                    outbound.contact_id,
                    outbound.channel,
                    outbound.address,
                    outbound.text,
                    _json(list(outbound.choices)),
                    outbound.kind,
                    _json(outbound.meta),
                    OutboxStatus.QUEUED,
                    _ts(not_before or now),
                    _ts(now),
                    int(lane),
                ),
            ).fetchone()
        return int(row[0])

    def claim_outbox(
        self,
        now: datetime,
        limit: int,
        channel: str | None = None,
        *,
        lease: timedelta = timedelta(seconds=15),
        urgent: bool | None = None,
        order_hold: timedelta = timedelta(seconds=20),
    ) -> list[OutboxRow]:
        """Atomically lease up to `limit` due rows: the emergency lane, then conversation
        messages, then bulk ones (broadcasts); then earliest due, then oldest; in order per
        contact. `urgent`: True claims only the emergency lane, False all but it.

        A claimed row is `sending` with `next_attempt_at` = the end of its lease; a row whose
        lease ran out (its dispatcher crashed or stalled) goes back to `queued` here, due at
        once, and is claimed again (at-least-once delivery). A row is not claimed while an
        earlier row to the same contact of the same or a more urgent lane is in flight or
        waiting for a retry, unless that row is older than `order_hold` (a failing row holds
        the contact's later ones only that long); due rows of one contact are claimed together
        and the dispatcher sends them in id order.
        With a channel, the claim walks the (status, channel, priority, next_attempt_at) index
        and stops after `limit` rows, so a million queued broadcast rows cost a claim nothing.
        """
        if limit <= 0:
            return []
        on_channel = "channel = ? AND " if channel is not None else ""
        channel_args: tuple[Any, ...] = (channel,) if channel is not None else ()
        lane = {None: "", True: "priority < 0 AND ", False: "priority >= 0 AND "}[urgent]
        stamp = _ts(now)
        with self._atomic("claim_outbox") as conn:
            expired = conn.execute(
                f"UPDATE outbox SET status = ? WHERE status = ? AND {on_channel}"
                "next_attempt_at <= ?",
                (OutboxStatus.QUEUED, OutboxStatus.SENDING, *channel_args, stamp),
            ).rowcount
            rows = self._write_rows(
                conn,
                # (a materialized CTE: PostgreSQL may re-run an IN (... LIMIT) subquery)
                f"WITH picked AS MATERIALIZED (SELECT id FROM outbox WHERE status = ?"
                f" AND {on_channel}{lane}"
                "next_attempt_at <= ?"
                # a contact's messages go in order: never overtake an earlier one still pending
                " AND (contact_id IS NULL OR NOT EXISTS (SELECT 1 FROM outbox AS older"
                " WHERE older.contact_id = outbox.contact_id AND older.id < outbox.id"
                " AND older.status IN (?, ?) AND older.priority <= outbox.priority"
                # ... unless it has been pending longer than the order hold
                " AND older.created_at > ?"
                # held back by a row in flight or waiting to be retried; a due one is claimed
                # in this same statement (the dispatcher sends one contact's rows in id order)
                " AND (older.status = ? OR (older.attempts > 0 AND older.next_attempt_at > ?))))"
                f" ORDER BY priority, next_attempt_at, id LIMIT ?{self.dialect.skip_locked})"
                " UPDATE outbox SET status = ?, attempts = attempts + 1, claimed_at = ?,"
                " next_attempt_at = ? WHERE id IN (SELECT id FROM picked)"
                # re-checked on the locked row: a concurrent claimer (PostgreSQL) may have won
                " AND status = ? RETURNING *",
                (
                    OutboxStatus.QUEUED,
                    *channel_args,
                    stamp,
                    OutboxStatus.QUEUED,
                    OutboxStatus.SENDING,
                    _ts(now - order_hold),
                    OutboxStatus.SENDING,
                    stamp,
                    limit,
                    OutboxStatus.SENDING,
                    stamp,
                    _ts(now + lease),
                    OutboxStatus.QUEUED,
                ),
            )
        if expired:
            log.warning("store: %d outbox leases ran out; those rows are claimed again", expired)
        return sorted((_outbox_row(r) for r in rows), key=lambda r: r.id)

    def mark_sent(self, outbox_id: int, provider_id: str | None, now: datetime) -> None:
        """The provider accepted the message (a later final status is kept)."""
        with self._atomic("mark_sent") as conn:
            self._require(conn, "outbox", outbox_id)
            conn.execute(
                "UPDATE outbox SET provider_id = coalesce(?, provider_id),"
                " sent_at = coalesce(sent_at, ?), error = NULL,"
                # cancelled: the kill switch came while the send was in flight; it went
                " finished_at = CASE WHEN status = ? THEN NULL ELSE finished_at END,"
                " status = CASE WHEN status IN (?, ?, ?) THEN ? ELSE status END WHERE id = ?",
                (
                    provider_id,
                    _ts(now),
                    OutboxStatus.CANCELLED,
                    OutboxStatus.QUEUED,
                    OutboxStatus.SENDING,
                    OutboxStatus.CANCELLED,
                    OutboxStatus.SENT,
                    outbox_id,
                ),
            )

    def mark_retry(self, outbox_id: int, error: str, next_attempt_at: datetime) -> None:
        """A transient failure: back to queued, due again at `next_attempt_at`."""
        with self._atomic("mark_retry") as conn:
            self._require(conn, "outbox", outbox_id)
            conn.execute(
                "UPDATE outbox SET status = ?, error = ?, next_attempt_at = ?"
                " WHERE id = ? AND status IN (?, ?)",
                (
                    OutboxStatus.QUEUED,
                    error,
                    _ts(next_attempt_at),
                    outbox_id,
                    OutboxStatus.QUEUED,
                    OutboxStatus.SENDING,
                ),
            )

    def release_outbox(self, outbox_id: int, now: datetime) -> None:
        """Hand a claimed row back unsent (not counted as an attempt): queued, due `now`."""
        with self._atomic("release_outbox") as conn:
            conn.execute(
                "UPDATE outbox SET status = ?, next_attempt_at = ?,"
                " attempts = greatest(0, attempts - 1) WHERE id = ? AND status = ?",
                (OutboxStatus.QUEUED, _ts(now), outbox_id, OutboxStatus.SENDING),
            )

    def mark_failed(
        self,
        outbox_id: int,
        status: str,
        error: str,
        now: datetime,
        error_code: str | None = None,
    ) -> None:
        """A permanent failure: final status `failed` or `undelivered` (a final one is kept)."""
        _checked(status, (OutboxStatus.FAILED, OutboxStatus.UNDELIVERED), "status")
        with self._atomic("mark_failed") as conn:
            current = self._require(conn, "outbox", outbox_id)
            if current["status"] in FINAL_OUTBOX_STATUSES:
                return
            conn.execute(
                "UPDATE outbox SET status = ?, error = ?, error_code = coalesce(?, error_code),"
                " finished_at = ? WHERE id = ?",
                (status, error, error_code, _ts(now), outbox_id),
            )

    def update_status_by_provider_id(
        self, provider_id: str, status: str, now: datetime, error_code: str | None = None
    ) -> int | None:
        """Apply a provider status callback (never backwards); the row's id, or None."""
        new = OutboxStatus(_checked(status, OutboxStatus, "status"))
        with self._atomic("update_status_by_provider_id") as conn:
            rows = self._write_rows(
                conn,
                "SELECT id, status FROM outbox WHERE provider_id = ? ORDER BY id DESC LIMIT 1",
                (provider_id,),
            )
            if not rows:
                return None
            outbox_id, current = int(rows[0]["id"]), OutboxStatus(rows[0]["status"])
            if _RANK[new] > _RANK[current]:
                final = new in FINAL_OUTBOX_STATUSES
                conn.execute(
                    "UPDATE outbox SET status = ?, error_code = coalesce(?, error_code),"
                    " sent_at = coalesce(sent_at, ?),"
                    " finished_at = CASE WHEN ? = 1 THEN ? ELSE finished_at END WHERE id = ?",
                    (new, error_code, _ts(now), final, _ts(now), outbox_id),
                )
            elif error_code is not None and current == new:
                conn.execute(
                    "UPDATE outbox SET error_code = ? WHERE id = ?", (error_code, outbox_id)
                )
            return outbox_id

    def get_outbox(self, outbox_id: int) -> OutboxRow | None:
        """One outbox row, or None."""
        rows = self._rows("SELECT * FROM outbox WHERE id = ?", (outbox_id,))
        return _outbox_row(rows[0]) if rows else None

    def outbox(self, contact_id: int | None = None, status: str | None = None) -> list[OutboxRow]:
        """Outbox rows, optionally for one contact and/or one status, oldest first."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if contact_id is not None:
            where.append("contact_id = ?")
            params.append(contact_id)
        if status is not None:
            where.append("status = ?")
            params.append(_checked(status, OutboxStatus, "status"))
        rows = self._rows(
            f"SELECT * FROM outbox WHERE {' AND '.join(where)} ORDER BY id", tuple(params)
        )
        return [_outbox_row(r) for r in rows]

    def hold_outbox(self, outbox_id: int) -> None:
        """Park a claimed row as `held` until `release_held` (WhatsApp outside the window)."""
        with self._atomic("hold_outbox") as conn:
            self._require(conn, "outbox", outbox_id)
            conn.execute(
                "UPDATE outbox SET status = ? WHERE id = ? AND status IN (?, ?)",
                (OutboxStatus.HELD, outbox_id, OutboxStatus.QUEUED, OutboxStatus.SENDING),
            )

    def release_held(self, contact_id: int, now: datetime) -> int:
        """The patient wrote: their held messages are due now; returns how many."""
        with self._atomic("release_held") as conn:
            cursor = conn.execute(
                "UPDATE outbox SET status = ?, next_attempt_at = ?"
                " WHERE contact_id = ? AND status = ?",
                (OutboxStatus.QUEUED, _ts(now), contact_id, OutboxStatus.HELD),
            )
        return cursor.rowcount

    # -- readings -------------------------------------------------------------

    def add_reading(
        self,
        contact_id: int,
        session_id: int | None,
        concept: str,
        value: float,
        unit: str | None,
        at: datetime,
    ) -> int:
        """Record one measurement."""
        with self._atomic("add_reading") as conn:
            row = conn.execute(
                "INSERT INTO readings (contact_id, session_id, concept, value, unit, at)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (contact_id, session_id, concept, float(value), unit, _ts(at)),
            ).fetchone()
        return int(row[0])

    def readings(
        self, contact_id: int, concept: str | None = None, limit: int | None = None
    ) -> list[ReadingRow]:
        """A contact's measurements, newest first."""
        where = "contact_id = ?"
        params: list[Any] = [contact_id]
        if concept is not None:
            where += " AND concept = ?"
            params.append(concept)
        params.append(NO_LIMIT if limit is None else limit)
        rows = self._rows(
            f"SELECT * FROM readings WHERE {where} ORDER BY at DESC, id DESC LIMIT ?",
            tuple(params),
        )
        return [
            ReadingRow(
                id=r["id"],
                contact_id=r["contact_id"],
                session_id=r["session_id"],
                concept=r["concept"],
                value=r["value"],
                unit=r["unit"],
                at=_dt_req(r["at"]),
            )
            for r in rows
        ]

    # -- jobs -----------------------------------------------------------------

    def schedule_job(
        self,
        contact_id: int | None,
        kind: str,
        flow: str | None,
        due_at: datetime,
        payload: dict[str, Any],
        dedupe_key: str | None = None,
    ) -> int | None:
        """Schedule a job; None if a job with this `dedupe_key` already exists (in any status)."""
        with self._atomic("schedule_job") as conn:
            row = conn.execute(
                "INSERT INTO jobs (contact_id, kind, flow, due_at, payload, dedupe_key, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
                (
                    contact_id,
                    kind,
                    flow,
                    _ts(due_at),
                    _json(payload),
                    dedupe_key,
                    JobStatus.PENDING,
                ),
            ).fetchone()
        return None if row is None else int(row[0])

    def claim_due_jobs(self, now: datetime, limit: int, worker: str) -> list[JobRow]:
        """Atomically move up to `limit` due pending jobs to running; earliest due first."""
        if limit <= 0:
            return []
        with self._atomic("claim_due_jobs") as conn:
            rows = self._write_rows(
                conn,
                "WITH picked AS MATERIALIZED (SELECT id FROM jobs WHERE status = ?"
                f" AND due_at <= ? ORDER BY due_at, id LIMIT ?{self.dialect.skip_locked})"
                " UPDATE jobs SET status = ?, worker = ?, claimed_at = ?"
                " WHERE id IN (SELECT id FROM picked) AND status = ? RETURNING *",
                (
                    JobStatus.PENDING,
                    _ts(now),
                    limit,
                    JobStatus.RUNNING,
                    worker,
                    _ts(now),
                    JobStatus.PENDING,
                ),
            )
        return sorted((_job_row(r) for r in rows), key=lambda j: (j.due_at, j.id))

    def finish_job(self, job_id: int, status: str, now: datetime) -> None:
        """Record a job's end: `done`, `failed` or `cancelled` (a pending job may be cancelled)."""
        _checked(status, (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED), "status")
        with self._atomic("finish_job") as conn:
            self._require(conn, "jobs", job_id)
            conn.execute(
                "UPDATE jobs SET status = ?, finished_at = ? WHERE id = ? AND status IN (?, ?)",
                (status, _ts(now), job_id, JobStatus.PENDING, JobStatus.RUNNING),
            )

    # -- check-ins (issue 5) ----------------------------------------------------

    def save_enrollment(
        self,
        contact_id: int,
        *,
        status: str,
        conditions: tuple[str, ...],
        checkin_time: str,
        timezone: str,
        team: str | None,
        baselines: dict[str, Any],
        now: datetime,
        session_id: int | None = None,
        enrolled_by: str | None = None,
    ) -> EnrollmentRow:
        """Create or replace the contact's enrollment (one per contact)."""
        new = EnrollmentStatus(_checked(status, EnrollmentStatus, "status"))
        at = _ts(now)
        with self._atomic("save_enrollment") as conn:
            rows = self._write_rows(
                conn,
                "INSERT INTO enrollments (contact_id, status, conditions, checkin_time, timezone,"
                " team, baselines, session_id, enrolled_by, created_at, updated_at,"
                " activated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (contact_id) DO UPDATE SET status = excluded.status,"
                " conditions = excluded.conditions, checkin_time = excluded.checkin_time,"
                " timezone = excluded.timezone, team = excluded.team,"
                " baselines = excluded.baselines,"
                " session_id = coalesce(excluded.session_id, enrollments.session_id),"
                " enrolled_by = coalesce(excluded.enrolled_by, enrollments.enrolled_by),"
                " updated_at = excluded.updated_at,"
                " activated_at = coalesce(enrollments.activated_at, excluded.activated_at)"
                " RETURNING *",
                (
                    contact_id,
                    new,
                    _json(list(conditions)),
                    checkin_time,
                    timezone,
                    team,
                    _json(baselines),
                    session_id,
                    enrolled_by,
                    at,
                    at,
                    at if new == EnrollmentStatus.ACTIVE else None,
                ),
            )
        return _enrollment_row(rows[0])

    def get_enrollment(self, contact_id: int) -> EnrollmentRow | None:
        """The contact's enrollment, or None."""
        rows = self._rows("SELECT * FROM enrollments WHERE contact_id = ?", (contact_id,))
        return _enrollment_row(rows[0]) if rows else None

    def enrollments(
        self, status: str | None = None, team: str | None = None
    ) -> list[EnrollmentRow]:
        """Enrollments, optionally with one status and/or team, oldest first."""
        checked = None if status is None else _checked(status, EnrollmentStatus, "status")
        rows = self._filtered("enrollments", status=checked, team=team)
        return [_enrollment_row(r) for r in rows]

    def enrollments_to_sync(self) -> list[EnrollmentRow]:
        """Enrollments whose status no longer matches the contact: invited or paused with
        consent (and not opted out), or active without consent or opted out."""
        rows = self._rows(
            "SELECT e.* FROM enrollments e JOIN contacts c ON c.id = e.contact_id WHERE"
            " (e.status IN (?, ?) AND c.consent_care = 1 AND c.opted_out = 0)"
            " OR (e.status = ? AND (c.opted_out = 1 OR coalesce(c.consent_care, 0) = 0))"
            " ORDER BY e.id",
            (EnrollmentStatus.INVITED, EnrollmentStatus.PAUSED, EnrollmentStatus.ACTIVE),
        )
        return [_enrollment_row(r) for r in rows]

    def set_enrollment_status(self, contact_id: int, status: str, now: datetime) -> None:
        """Change an enrollment's status (active also records activated_at the first time)."""
        new = EnrollmentStatus(_checked(status, EnrollmentStatus, "status"))
        with self._atomic("set_enrollment_status") as conn:
            cursor = conn.execute(
                "UPDATE enrollments SET status = ?, updated_at = ?, activated_at ="
                " coalesce(activated_at, CASE WHEN ? = 1 THEN ? END) WHERE contact_id = ?",
                (new, _ts(now), new == EnrollmentStatus.ACTIVE, _ts(now), contact_id),
            )
            if cursor.rowcount == 0:
                raise KeyError(f"no enrollment for contact {contact_id}")

    def replace_schedules(
        self, contact_id: int, schedules: list[NewSchedule], now: datetime
    ) -> list[int]:
        """End the contact's active schedules and add these; returns the new ids."""
        at = _ts(now)
        ids = []
        with self._atomic("replace_schedules") as conn:
            conn.execute(
                "UPDATE schedules SET status = ?, updated_at = ?"
                " WHERE contact_id = ? AND status = ?",
                (ScheduleStatus.ENDED, at, contact_id, ScheduleStatus.ACTIVE),
            )
            for s in schedules:
                status = ScheduleStatus.ACTIVE if s.next_due_at else ScheduleStatus.ENDED
                row = conn.execute(
                    "INSERT INTO schedules (contact_id, flow, label, rule, timezone, next_due_at,"
                    " status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " RETURNING id",
                    (
                        contact_id,
                        s.flow,
                        s.label,
                        _json(s.rule),
                        s.timezone,
                        _ts(s.next_due_at) if s.next_due_at else None,
                        status,
                        at,
                        at,
                    ),
                ).fetchone()
                ids.append(int(row[0]))
        return ids

    def schedules(
        self, contact_id: int | None = None, status: str | None = "active"
    ) -> list[ScheduleRow]:
        """Schedules (active ones by default), optionally of one contact, by id."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if contact_id is not None:
            where.append("contact_id = ?")
            params.append(contact_id)
        if status is not None:
            where.append("status = ?")
            params.append(_checked(status, ScheduleStatus, "status"))
        rows = self._rows(
            f"SELECT * FROM schedules WHERE {' AND '.join(where)} ORDER BY id", tuple(params)
        )
        return [_schedule_row(r) for r in rows]

    def due_schedules(self, now: datetime, limit: int) -> list[ScheduleRow]:
        """Active schedules whose next occurrence is due, earliest first."""
        rows = self._rows(
            "SELECT * FROM schedules WHERE status = ? AND next_due_at <= ?"
            " ORDER BY next_due_at, id LIMIT ?",
            (ScheduleStatus.ACTIVE, _ts(now), limit),
        )
        return [_schedule_row(r) for r in rows]

    def advance_schedule(
        self, schedule_id: int, expected: datetime, next_due_at: datetime | None, now: datetime
    ) -> bool:
        """Move a schedule to its next occurrence (None ends it) if it still is at `expected`;
        False when another sweep moved it first."""
        with self._atomic("advance_schedule") as conn:
            cursor = conn.execute(
                "UPDATE schedules SET next_due_at = ?, updated_at = ?,"
                " status = CASE WHEN ? = 1 THEN ? ELSE status END"
                " WHERE id = ? AND status = ? AND next_due_at = ?",
                (
                    _ts(next_due_at) if next_due_at else None,
                    _ts(now),
                    int(next_due_at is None),
                    ScheduleStatus.ENDED,
                    schedule_id,
                    ScheduleStatus.ACTIVE,
                    _ts(expected),
                ),
            )
        return cursor.rowcount == 1

    def add_checkin(
        self,
        contact_id: int,
        kind: str,
        flow: str,
        due_at: datetime,
        not_before: datetime,
        now: datetime,
        schedule_id: int | None = None,
    ) -> int | None:
        """Queue a check-in occurrence; None if this (contact, kind, flow, due_at) exists."""
        _checked(kind, CheckinKind, "kind")
        with self._atomic("add_checkin") as conn:
            row = conn.execute(
                "INSERT INTO checkins (contact_id, kind, flow, schedule_id, due_at, not_before,"
                " status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (contact_id, kind, flow, due_at) DO NOTHING RETURNING id",
                (
                    contact_id,
                    kind,
                    flow,
                    schedule_id,
                    _ts(due_at),
                    _ts(not_before),
                    CheckinStatus.QUEUED,
                    _ts(now),
                ),
            ).fetchone()
        return None if row is None else int(row[0])

    def checkins(
        self,
        contact_id: int | None = None,
        status: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
    ) -> list[CheckinRow]:
        """Check-in occurrences, latest due first (then latest id)."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if contact_id is not None:
            where.append("contact_id = ?")
            params.append(contact_id)
        if status is not None:
            where.append("status = ?")
            params.append(_checked(status, CheckinStatus, "status"))
        if kind is not None:
            where.append("kind = ?")
            params.append(_checked(kind, CheckinKind, "kind"))
        params.append(NO_LIMIT if limit is None else limit)
        rows = self._rows(
            f"SELECT * FROM checkins WHERE {' AND '.join(where)}"
            " ORDER BY due_at DESC, id DESC LIMIT ?",
            tuple(params),
        )
        return [_checkin_row(r) for r in rows]

    def contacts_with_checkins(self, statuses: tuple[str, ...]) -> list[int]:
        """Contacts with at least one check-in in one of these statuses."""
        for status in statuses:
            _checked(status, CheckinStatus, "status")
        marks = ", ".join("?" for _ in statuses) or "NULL"
        rows = self._rows(
            f"SELECT DISTINCT contact_id FROM checkins WHERE status IN ({marks})"
            " ORDER BY contact_id",
            tuple(statuses),
        )
        return [int(r["contact_id"]) for r in rows]

    def claim_checkin(self, checkin_id: int, now: datetime) -> bool:
        """Claim a queued check-in (queued -> open); False if another sweep claimed it."""
        with self._atomic("claim_checkin") as conn:
            cursor = conn.execute(
                "UPDATE checkins SET status = ?, started_at = ? WHERE id = ? AND status = ?",
                (CheckinStatus.OPEN, _ts(now), checkin_id, CheckinStatus.QUEUED),
            )
        return cursor.rowcount == 1

    def set_checkin_session(self, checkin_id: int, session_id: int) -> None:
        """Record the conversation an open check-in is carried out in."""
        with self._atomic("set_checkin_session") as conn:
            cursor = conn.execute(
                "UPDATE checkins SET session_id = ? WHERE id = ?", (session_id, checkin_id)
            )
            if cursor.rowcount == 0:
                raise KeyError(f"no checkins row with id {checkin_id}")

    def resolve_checkin(
        self, checkin_id: int, status: str, now: datetime, *, expected: str
    ) -> bool:
        """Move a check-in from `expected` to `status`; False if it was not in `expected`."""
        _checked(status, CheckinStatus, "status")
        _checked(expected, CheckinStatus, "expected")
        with self._atomic("resolve_checkin") as conn:
            cursor = conn.execute(
                "UPDATE checkins SET status = ?, resolved_at = ? WHERE id = ? AND status = ?",
                (status, _ts(now), checkin_id, expected),
            )
        return cursor.rowcount == 1

    def jobs(
        self, contact_id: int | None = None, kind: str | None = None, status: str | None = None
    ) -> list[JobRow]:
        """Jobs, optionally of one contact, kind and/or status, earliest due first."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if contact_id is not None:
            where.append("contact_id = ?")
            params.append(contact_id)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if status is not None:
            where.append("status = ?")
            params.append(_checked(status, JobStatus, "status"))
        rows = self._rows(
            f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY due_at, id", tuple(params)
        )
        return [_job_row(r) for r in rows]

    def requeue_stuck_jobs(self, now: datetime, older_than: timedelta) -> int:
        """Put jobs left `running` (a worker died) for longer than `older_than` back to pending.

        Safe because a job's effects and its `finish_job` commit in one transaction: a job
        still running after a crash has no effects yet.
        """
        with self._atomic("requeue_stuck_jobs") as conn:
            cursor = conn.execute(
                "UPDATE jobs SET status = ?, worker = NULL, claimed_at = NULL"
                " WHERE status = ? AND claimed_at <= ?",
                (JobStatus.PENDING, JobStatus.RUNNING, _ts(now - older_than)),
            )
        if cursor.rowcount:
            log.warning("store: requeued %d jobs stuck in running", cursor.rowcount)
        return cursor.rowcount

    def session_mark(self, session_id: int) -> SessionMark | None:
        """A session's lifecycle columns, or None."""
        rows = self._rows(f"SELECT {_MARK_COLUMNS} FROM sessions s WHERE s.id = ?", (session_id,))
        return _session_mark(rows[0]) if rows else None

    def get_session(self, session_id: int) -> Session | None:
        """One stored session with its contact, or None."""
        rows = self._rows(
            "SELECT id, contact_id, state, started_at, updated_at FROM sessions WHERE id = ?",
            (session_id,),
        )
        if not rows:
            return None
        contact = self.get_contact(rows[0]["contact_id"])
        if contact is None:
            return None
        return Session.from_state(
            contact,
            json.loads(rows[0]["state"]),
            id=rows[0]["id"],
            started_at=_dt(rows[0]["started_at"]),
            updated_at=_dt(rows[0]["updated_at"]),
        )

    def idle_sessions(self, before: datetime, limit: int) -> list[SessionMark]:
        """Each contact's latest session if it is active and unchanged since `before`."""
        rows = self._rows(
            f"SELECT {_MARK_COLUMNS} FROM sessions s WHERE s.status = ? AND s.updated_at <= ?"
            " AND s.id = (SELECT max(id) FROM sessions WHERE contact_id = s.contact_id)"
            " ORDER BY s.updated_at, s.id LIMIT ?",
            ("active", _ts(before), limit),
        )
        return [_session_mark(r) for r in rows]

    def unreviewed_sessions(self, since: datetime, limit: int) -> list[SessionMark]:
        """Sessions that ended (completed, handed off) since `since` and were not reviewed
        after their last change, oldest first."""
        rows = self._rows(
            f"SELECT {_MARK_COLUMNS} FROM sessions s WHERE s.status IN (?, ?)"
            " AND s.updated_at >= ? AND (s.reviewed_at IS NULL OR s.reviewed_at < s.updated_at)"
            " ORDER BY s.updated_at, s.id LIMIT ?",
            ("completed", "handed_off", _ts(since), limit),
        )
        return [_session_mark(r) for r in rows]

    def mark_session_nudged(self, session_id: int, last_activity: datetime, now: datetime) -> bool:
        """Record the one nudge of this silence: only if the session is still active, unchanged
        since `last_activity` and not nudged after it. False otherwise."""
        with self._atomic("mark_session_nudged") as conn:
            cursor = conn.execute(
                "UPDATE sessions SET nudged_at = ? WHERE id = ? AND status = ?"
                " AND updated_at = ? AND (nudged_at IS NULL OR nudged_at < updated_at)",
                (_ts(now), session_id, "active", _ts(last_activity)),
            )
        return cursor.rowcount == 1

    def expire_session(self, session_id: int, last_activity: datetime, now: datetime) -> bool:
        """Mark an active session unchanged since `last_activity` as expired (answers kept)."""
        with self._atomic("expire_session") as conn:
            cursor = conn.execute(
                "UPDATE sessions SET status = ?, state = "
                + self.dialect.json_set("state", "status")
                + ","
                " expired_at = ? WHERE id = ? AND status = ? AND updated_at = ?",
                ("expired", "expired", _ts(now), session_id, "active", _ts(last_activity)),
            )
        return cursor.rowcount == 1

    def mark_session_reviewed(self, session_id: int, updated_at: datetime) -> bool:
        """Claim the review of a session that ended, as of its `updated_at`; False if another
        sweep reviewed that version already (a later change makes it due for review again)."""
        with self._atomic("mark_session_reviewed") as conn:
            cursor = conn.execute(
                "UPDATE sessions SET reviewed_at = ? WHERE id = ? AND updated_at = ?"
                " AND (reviewed_at IS NULL OR reviewed_at < updated_at)",
                (_ts(updated_at), session_id, _ts(updated_at)),
            )
        return cursor.rowcount == 1


class SqliteStore(SqlStore):
    """`Store` on one SQLite file. Thread-safe: one connection guarded by a re-entrant lock."""

    def __init__(self, path: str | Path, *, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StoreError(
                f"carebridge needs SQLite {'.'.join(map(str, _MIN_SQLITE))} or newer (STRICT "
                f"tables, RETURNING); this Python uses SQLite {sqlite3.sqlite_version}"
            )
        try:
            _private_file(self.path)  # health data: 0700 folders, 0600 files (WAL/SHM follow)
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc
        try:
            # For DDL, migrations and introspection only: writes go through SQL (docs/storage.md).
            self.db = Database(self._conn, execute_plugins=False)
            for pragma in _PRAGMAS:
                self._conn.execute(pragma)
            for name, pick in (("greatest", max), ("least", min)):  # as PostgreSQL's
                self._conn.create_function(name, -1, _ignoring_nulls(pick), deterministic=True)
            self.db.enable_wal()
            if self.db.journal_mode != "wal":
                log.warning("store: %s cannot use WAL; readers will block writers", self.path)
            self._migrate(migrations)
        except sqlite3.Error as exc:  # e.g. the file is not a database
            self._conn.close()
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with self._lock:
            yield self._conn

    def _describe(self) -> str:
        return str(self.path)

    def _schema(self, conn: Connection) -> Any:
        return self.db

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()


def _ignoring_nulls(pick: Callable[..., Any]) -> Callable[..., Any]:
    """SQLite's greatest()/least(): PostgreSQL's, which skip NULL arguments."""

    def chosen(*values: Any) -> Any:
        given = [v for v in values if v is not None]
        return pick(given) if given else None

    return chosen


def _contact_row(r: Row) -> ContactRow:
    return ContactRow(
        id=r["id"],
        channel=r["channel"],
        address=r["address"],
        language=r["language"],
        opted_out=bool(r["opted_out"]),
        consent_care=_flag(r["consent_care"]),
        consent_broadcast=_flag(r["consent_broadcast"]),
        created_at=_dt_req(r["created_at"]),
        updated_at=_dt_req(r["updated_at"]),
        opted_out_at=_dt(r["opted_out_at"]),
        consent_care_at=_dt(r["consent_care_at"]),
        consent_broadcast_at=_dt(r["consent_broadcast_at"]),
        last_inbound_at=_dt(r["last_inbound_at"]),
        person_id=r["person_id"],
        region=r["region"],
        timezone=r["timezone"],
        preferred=bool(r["preferred"]),
        language_set=bool(r["language_set"]),
        test=bool(r["test"]),
    )


def _escalation_row(r: Row) -> EscalationRow:
    return EscalationRow(
        id=r["id"],
        contact_id=r["contact_id"],
        session_id=r["session_id"],
        level=r["level"],
        reason=r["reason"],
        flow=r["flow"],
        red_flags=tuple(json.loads(r["red_flags"])),
        summary=json.loads(r["summary"]),
        status=EscalationStatus(r["status"]),
        opened_at=_dt_req(r["opened_at"]),
        updated_at=_dt_req(r["updated_at"]),
        appended=r["appended"],
        claimed_by=r["claimed_by"],
        claimed_at=_dt(r["claimed_at"]),
        closed_at=_dt(r["closed_at"]),
        priority=r["priority"],
        deadline_at=_dt(r["deadline_at"]),
        assignee_id=r["assignee_id"],
        first_response_at=_dt(r["first_response_at"]),
        resolved_at=_dt(r["resolved_at"]),
        announced_at=_dt(r["announced_at"]),
        announcements=r["announcements"],
        raised_at=_dt(r["raised_at"]),
    )


def _user_row(r: Row) -> UserRow:
    return UserRow(
        id=r["id"],
        username=r["username"],
        password_hash=r["password_hash"],
        role=Role(r["role"]),
        disabled=bool(r["disabled"]),
        must_change_password=bool(r["must_change_password"]),
        failed_logins=r["failed_logins"],
        locked_until=_dt(r["locked_until"]),
        last_login_at=_dt(r["last_login_at"]),
        created_at=_dt_req(r["created_at"]),
        updated_at=_dt_req(r["updated_at"]),
        totp_secret=r["totp_secret"],
    )


def _outbox_row(r: Row) -> OutboxRow:
    return OutboxRow(
        id=r["id"],
        outbound=Outbound(
            channel=r["channel"],
            address=r["address"],
            text=r["text"],
            choices=tuple(json.loads(r["choices"])),
            contact_id=r["contact_id"],
            kind=r["kind"],
            meta=json.loads(r["meta"]),
        ),
        status=OutboxStatus(r["status"]),
        attempts=r["attempts"],
        next_attempt_at=_dt_req(r["next_attempt_at"]),
        created_at=_dt_req(r["created_at"]),
        claimed_at=_dt(r["claimed_at"]),
        sent_at=_dt(r["sent_at"]),
        finished_at=_dt(r["finished_at"]),
        provider_id=r["provider_id"],
        error=r["error"],
        error_code=r["error_code"],
        lane=Lane(r["priority"]),
    )


def _job_row(r: Row) -> JobRow:
    return JobRow(
        id=r["id"],
        contact_id=r["contact_id"],
        kind=r["kind"],
        flow=r["flow"],
        due_at=_dt_req(r["due_at"]),
        payload=json.loads(r["payload"]),
        dedupe_key=r["dedupe_key"],
        status=JobStatus(r["status"]),
        worker=r["worker"],
        claimed_at=_dt(r["claimed_at"]),
        finished_at=_dt(r["finished_at"]),
    )


# -- check-ins (issue 5) ------------------------------------------------------------------

_MARK_COLUMNS = (
    "s.id, s.contact_id, s.flow, s.status, s.started_at, s.updated_at, s.nudged_at,"
    " s.expired_at, s.reviewed_at"
)


def _enrollment_row(r: Row) -> EnrollmentRow:
    return EnrollmentRow(
        id=r["id"],
        contact_id=r["contact_id"],
        status=EnrollmentStatus(r["status"]),
        conditions=tuple(json.loads(r["conditions"])),
        checkin_time=r["checkin_time"],
        timezone=r["timezone"],
        team=r["team"],
        baselines=json.loads(r["baselines"]),
        session_id=r["session_id"],
        enrolled_by=r["enrolled_by"],
        created_at=_dt_req(r["created_at"]),
        updated_at=_dt_req(r["updated_at"]),
        activated_at=_dt(r["activated_at"]),
    )


def _schedule_row(r: Row) -> ScheduleRow:
    return ScheduleRow(
        id=r["id"],
        contact_id=r["contact_id"],
        flow=r["flow"],
        label=r["label"],
        rule=json.loads(r["rule"]),
        timezone=r["timezone"],
        next_due_at=_dt(r["next_due_at"]),
        status=ScheduleStatus(r["status"]),
        created_at=_dt_req(r["created_at"]),
        updated_at=_dt(r["updated_at"]),
    )


def _checkin_row(r: Row) -> CheckinRow:
    return CheckinRow(
        id=r["id"],
        contact_id=r["contact_id"],
        kind=CheckinKind(r["kind"]),
        flow=r["flow"],
        schedule_id=r["schedule_id"],
        due_at=_dt_req(r["due_at"]),
        not_before=_dt_req(r["not_before"]),
        status=CheckinStatus(r["status"]),
        session_id=r["session_id"],
        created_at=_dt_req(r["created_at"]),
        started_at=_dt(r["started_at"]),
        resolved_at=_dt(r["resolved_at"]),
    )


def _session_mark(r: Row) -> SessionMark:
    return SessionMark(
        id=r["id"],
        contact_id=r["contact_id"],
        flow=r["flow"],
        status=r["status"],
        started_at=_dt_req(r["started_at"]),
        updated_at=_dt_req(r["updated_at"]),
        nudged_at=_dt(r["nudged_at"]),
        expired_at=_dt(r["expired_at"]),
        reviewed_at=_dt(r["reviewed_at"]),
    )
