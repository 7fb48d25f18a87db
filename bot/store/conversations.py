"""Conversations: a contact's sessions (flow state), the transcript, and the session marks
the idle, nudge and review sweeps use. Imports the standard library, bot.session and bot.store
(codec, sql)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from bot.session import Contact, Session
from bot.store.codec import _checked, _dt, _dt_req, _json, _ts
from bot.store.sql import NO_LIMIT, Row, SqlMixin


@dataclass(frozen=True)
class TranscriptEntry:
    """One line of a conversation, in or out."""

    id: int
    contact_id: int
    session_id: int | None
    direction: str  # "in" | "out"
    text: str
    channel: str
    at: datetime
    author: str | None = None  # the console user who wrote an "out" line; None: the bot


@dataclass(frozen=True)
class SessionMark:
    """A session row's lifecycle columns, for the sweeps (no answers, no text)."""

    id: int
    contact_id: int
    flow: str | None
    status: str
    started_at: datetime
    updated_at: datetime
    nudged_at: datetime | None
    expired_at: datetime | None
    reviewed_at: datetime | None


_MARK_COLUMNS = (
    "s.id, s.contact_id, s.flow, s.status, s.started_at, s.updated_at, s.nudged_at,"
    " s.expired_at, s.reviewed_at"
)


class ConversationStore(Protocol):
    """Sessions, the transcript and the session sweeps' marks."""

    # -- sessions ------------------------------------------------------------------------------

    def current_session(self, contact: Contact) -> Session:
        """The contact's latest session, or a fresh one that is not stored yet."""
        ...

    def save_session(self, session: Session, now: datetime) -> Session:
        """Insert (id is None) or update a session; returns it with id and timestamps set."""
        ...

    # -- transcript ----------------------------------------------------------------------------

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
        ...

    def transcript(self, contact_id: int, limit: int | None = None) -> list[TranscriptEntry]:
        """A contact's transcript, oldest first; with `limit`, only the latest entries."""
        ...

    # -- the session sweeps' marks -------------------------------------------------------------

    def session_mark(self, session_id: int) -> SessionMark | None:
        """A session's lifecycle columns, or None."""
        ...

    def get_session(self, session_id: int) -> Session | None:
        """One stored session with its contact, or None."""
        ...

    def idle_sessions(self, before: datetime, limit: int) -> list[SessionMark]:
        """Each contact's latest session if it is active and unchanged since `before`."""
        ...

    def unreviewed_sessions(self, since: datetime, limit: int) -> list[SessionMark]:
        """Sessions that ended (completed, handed off) since `since` and were not reviewed
        after their last change, oldest first."""
        ...

    def mark_session_nudged(self, session_id: int, last_activity: datetime, now: datetime) -> bool:
        """Record the one nudge of this silence: only if the session is still active, unchanged
        since `last_activity` and not nudged after it. False otherwise."""
        ...

    def expire_session(self, session_id: int, last_activity: datetime, now: datetime) -> bool:
        """Mark an active session unchanged since `last_activity` as expired (answers kept)."""
        ...

    def mark_session_reviewed(self, session_id: int, updated_at: datetime) -> bool:
        """Claim the review of a session that ended, as of its `updated_at`; False if another
        sweep reviewed that version already (a later change makes it due for review again)."""
        ...


class ConversationSql(SqlMixin):
    """`ConversationStore` in SQL written once; a mixin of `SqlStore`."""

    if TYPE_CHECKING:  # ContactSql's, in SqlStore: declared for the type checker only

        def get_contact(self, contact_id: int) -> Contact | None: ...

    # -- sessions ------------------------------------------------------------------------------

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

    # -- transcript ----------------------------------------------------------------------------

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

    # -- the session sweeps' marks -------------------------------------------------------------

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
