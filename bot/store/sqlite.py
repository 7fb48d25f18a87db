"""The embedded store: one SQLite file in WAL mode, schema via sqlite-utils, writes in SQL.

Imports the standard library, sqlite_utils, bot.messages, bot.session, bot.errors, bot.store.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from bot.errors import StoreError
from bot.messages import Inbound, Outbound
from bot.session import Contact, Session
from bot.store.base import (
    FINAL_OUTBOX_STATUSES,
    TRIAGE_LEVELS,
    ContactRow,
    EscalationRow,
    EscalationStatus,
    InboxRow,
    JobRow,
    JobStatus,
    OutboxRow,
    OutboxStatus,
    ReadingRow,
    TranscriptEntry,
)
from bot.store.migrations import MIGRATIONS, Migration

log = logging.getLogger(__name__)

_MIN_SQLITE = (3, 37, 0)
_PRAGMAS = (
    "PRAGMA busy_timeout=5000",  # first, so switching to WAL waits for other writers
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)

# Outbox statuses only move up this ranking; the final ones share the top rank.
_RANK = {
    OutboxStatus.QUEUED: 0,
    OutboxStatus.SENDING: 1,
    OutboxStatus.SENT: 2,
    OutboxStatus.DELIVERED: 3,
    OutboxStatus.FAILED: 3,
    OutboxStatus.UNDELIVERED: 3,
}
_OPEN_ESCALATION = (EscalationStatus.WAITING, EscalationStatus.CLAIMED)


def _ts(when: datetime) -> str:
    """A timezone-aware datetime as fixed-width ISO-8601 UTC text (sorts as it compares)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("the store needs timezone-aware datetimes (UTC), got a naive one")
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _dt_req(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _flag(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _checked(value: str, allowed: Any, what: str) -> str:
    if value not in {str(a) for a in allowed}:
        choices = ", ".join(str(a) for a in allowed)
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")
    return value


class SqliteStore:
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
            self.path.parent.mkdir(parents=True, exist_ok=True)
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

    # -- plumbing -------------------------------------------------------------

    def _migrate(self, migrations: tuple[Migration, ...]) -> None:
        """Apply the missing migrations in one transaction; refuse a newer schema."""
        known = max((m.version for m in migrations), default=0)
        with self._atomic("migrate") as conn:
            conn.execute(
                self.db.create_table_sql(
                    "schema_migrations",
                    {"version": int, "name": str, "applied_at": str},
                    pk="version",
                    not_null=("name", "applied_at"),
                    if_not_exists=True,
                    strict=True,
                )
            )
            applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            newest = max(applied, default=0)
            if newest > known:
                raise StoreError(
                    f"the database {self.path} has schema version {newest}, but this version "
                    f"of carebridge knows only up to {known}: upgrade carebridge, or set "
                    "storage.url to another file"
                )
            for migration in sorted(migrations, key=lambda m: m.version):
                if migration.version in applied:
                    continue
                try:
                    migration.apply(self.db)
                except sqlite3.Error as exc:
                    raise StoreError(
                        f"cannot migrate the database {self.path} to version "
                        f"{migration.version} ({migration.name}): {exc}"
                    ) from exc
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, _ts(datetime.now(UTC))),
                )
                log.info("store: applied migration %d (%s)", migration.version, migration.name)

    @contextmanager
    def _atomic(self, op: str) -> Iterator[sqlite3.Connection]:
        """Hold the lock; run the block in BEGIN IMMEDIATE, or in a savepoint if one is open."""
        with self._lock:
            conn = self._conn
            if conn.in_transaction:
                conn.execute("SAVEPOINT store_op")
                try:
                    with _translated(op):
                        yield conn
                except BaseException:
                    if conn.in_transaction:  # an error may have ended the whole transaction
                        conn.execute("ROLLBACK TO store_op")
                        conn.execute("RELEASE store_op")
                    raise
                conn.execute("RELEASE store_op")
                return
            with _translated(op):
                conn.execute("BEGIN IMMEDIATE")
            try:
                with _translated(op):
                    yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            try:
                with _translated(op):
                    conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock, _translated("read"):
            cursor = self._conn.cursor()
            cursor.row_factory = sqlite3.Row
            return cursor.execute(sql, params).fetchall()

    def _write_rows(
        self, conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()
    ) -> list[sqlite3.Row]:
        cursor = conn.cursor()
        cursor.row_factory = sqlite3.Row
        return cursor.execute(sql, params).fetchall()

    def _require(self, conn: sqlite3.Connection, table: str, row_id: int) -> sqlite3.Row:
        rows = self._write_rows(conn, f'SELECT * FROM "{table}" WHERE id = ?', (row_id,))
        if not rows:
            raise KeyError(f"no {table} row with id {row_id}")
        return rows[0]

    # -- transactions -----------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE); nested blocks become savepoints."""
        with self._atomic("transaction"):
            yield

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
                    "INSERT INTO contacts (channel, address, language, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel, address) DO NOTHING",
                    (channel, address, language or "en", _ts(now), _ts(now)),
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
    ) -> None:
        """Change the given contact-level facts (None leaves a fact as it is)."""
        at = _ts(now)
        with self._atomic("update_contact") as conn:
            current = self._require(conn, "contacts", contact_id)
            changes: dict[str, Any] = {}
            if opted_out is not None and bool(current["opted_out"]) != opted_out:
                changes["opted_out"] = int(opted_out)
                changes["opted_out_at"] = at if opted_out else None
            if language is not None and language != current["language"]:
                changes["language"] = language
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

    def touch_inbound(self, contact_id: int, now: datetime) -> None:
        """Record when the contact last wrote to us."""
        with self._atomic("touch_inbound") as conn:
            cursor = conn.execute(
                "UPDATE contacts SET last_inbound_at = max(coalesce(last_inbound_at, ''), ?)"
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
    ) -> int:
        """Append one line ("in" or "out") to a contact's transcript."""
        _checked(direction, ("in", "out"), "direction")
        with self._atomic("add_transcript") as conn:
            row = conn.execute(
                "INSERT INTO transcript (contact_id, session_id, direction, text, channel, at)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (contact_id, session_id, direction, text, channel, _ts(at)),
            ).fetchone()
        return int(row[0])

    def transcript(self, contact_id: int, limit: int | None = None) -> list[TranscriptEntry]:
        """A contact's transcript, oldest first; with `limit`, only the latest entries."""
        rows = self._rows(
            "SELECT * FROM transcript WHERE contact_id = ? ORDER BY at DESC, id DESC LIMIT ?",
            (contact_id, -1 if limit is None else limit),
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

    def escalations(self, status: str | None = None) -> list[EscalationRow]:
        """Tickets, optionally with one status, in the order they were opened."""
        if status is None:
            rows = self._rows("SELECT * FROM escalations ORDER BY id")
        else:
            _checked(status, EscalationStatus, "status")
            rows = self._rows("SELECT * FROM escalations WHERE status = ? ORDER BY id", (status,))
        return [_escalation_row(r) for r in rows]

    def get_escalation(self, escalation_id: int) -> EscalationRow | None:
        """One ticket, or None."""
        rows = self._rows("SELECT * FROM escalations WHERE id = ?", (escalation_id,))
        return _escalation_row(rows[0]) if rows else None

    def set_escalation_status(
        self, escalation_id: int, status: str, now: datetime, by: str | None = None
    ) -> None:
        """Claim (by a clinician) or close a ticket; a closed ticket stays closed."""
        new = EscalationStatus(_checked(status, EscalationStatus, "status"))
        at = _ts(now)
        with self._atomic("set_escalation_status") as conn:
            current = self._require(conn, "escalations", escalation_id)
            if current["status"] == EscalationStatus.CLOSED:
                return
            conn.execute(
                "UPDATE escalations SET status = ?, updated_at = ?,"
                " claimed_by = CASE WHEN ? THEN ? ELSE claimed_by END,"
                " claimed_at = CASE WHEN ? THEN ? ELSE claimed_at END,"
                " closed_at = CASE WHEN ? THEN ? ELSE closed_at END WHERE id = ?",
                (
                    new,
                    at,
                    new == EscalationStatus.CLAIMED,
                    by,
                    new == EscalationStatus.CLAIMED,
                    at,
                    new == EscalationStatus.CLOSED,
                    at,
                    escalation_id,
                ),
            )

    # -- outbox ---------------------------------------------------------------

    def enqueue(self, outbound: Outbound, now: datetime, not_before: datetime | None = None) -> int:
        """Queue a message for the dispatcher; returns the outbox id."""
        with self._atomic("enqueue") as conn:
            row = conn.execute(
                "INSERT INTO outbox (contact_id, channel, address, text, choices, kind, meta,"
                " status, attempts, next_attempt_at, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING id",
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
                ),
            ).fetchone()
        return int(row[0])

    def claim_outbox(self, now: datetime, limit: int) -> list[OutboxRow]:
        """Atomically move up to `limit` due queued rows to sending; oldest first."""
        if limit <= 0:
            return []
        with self._atomic("claim_outbox") as conn:
            rows = self._write_rows(
                conn,
                "UPDATE outbox SET status = ?, attempts = attempts + 1, claimed_at = ?"
                " WHERE id IN (SELECT id FROM outbox WHERE status = ? AND next_attempt_at <= ?"
                " ORDER BY id LIMIT ?) RETURNING *",
                (OutboxStatus.SENDING, _ts(now), OutboxStatus.QUEUED, _ts(now), limit),
            )
        return sorted((_outbox_row(r) for r in rows), key=lambda r: r.id)

    def mark_sent(self, outbox_id: int, provider_id: str | None, now: datetime) -> None:
        """The provider accepted the message (a later final status is kept)."""
        with self._atomic("mark_sent") as conn:
            self._require(conn, "outbox", outbox_id)
            conn.execute(
                "UPDATE outbox SET provider_id = coalesce(?, provider_id),"
                " sent_at = coalesce(sent_at, ?), error = NULL,"
                " status = CASE WHEN status IN (?, ?) THEN ? ELSE status END WHERE id = ?",
                (
                    provider_id,
                    _ts(now),
                    OutboxStatus.QUEUED,
                    OutboxStatus.SENDING,
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
                    " finished_at = CASE WHEN ? THEN ? ELSE finished_at END WHERE id = ?",
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
        where: list[str] = ["1"]
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

    def requeue_stuck(self, now: datetime, older_than: timedelta) -> int:
        """Put rows left `sending` (by a crash) for longer than `older_than` back in the queue.

        At-least-once: a message the provider accepted just before the crash is sent again.
        """
        with self._atomic("requeue_stuck") as conn:
            cursor = conn.execute(
                "UPDATE outbox SET status = ?, next_attempt_at = ?"
                " WHERE status = ? AND claimed_at <= ?",
                (OutboxStatus.QUEUED, _ts(now), OutboxStatus.SENDING, _ts(now - older_than)),
            )
        if cursor.rowcount:
            log.warning("store: requeued %d outbox rows stuck in sending", cursor.rowcount)
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
        params.append(-1 if limit is None else limit)
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
                "UPDATE jobs SET status = ?, worker = ?, claimed_at = ?"
                " WHERE id IN (SELECT id FROM jobs WHERE status = ? AND due_at <= ?"
                " ORDER BY due_at, id LIMIT ?) RETURNING *",
                (JobStatus.RUNNING, worker, _ts(now), JobStatus.PENDING, _ts(now), limit),
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


@contextmanager
def _translated(op: str) -> Iterator[None]:
    """Turn a driver error into StoreError naming the operation (never the values)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"store.{op}: {exc}") from exc


def _contact_row(r: sqlite3.Row) -> ContactRow:
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
    )


def _escalation_row(r: sqlite3.Row) -> EscalationRow:
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
    )


def _outbox_row(r: sqlite3.Row) -> OutboxRow:
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
    )


def _job_row(r: sqlite3.Row) -> JobRow:
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
