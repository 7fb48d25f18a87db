"""Tickets in the clinician queue (escalations, compare-and-set claims, deadlines), their
internal notes, and the append-only audit log of who saw or changed what.
Imports the standard library and bot.store (codec, sql)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from bot.store.codec import _checked, _dt, _dt_req, _json, _ts
from bot.store.sql import Row, SqlMixin

log = logging.getLogger(__name__)

# Triage levels, least to most urgent: an escalation only ever moves up this list.
TRIAGE_LEVELS: tuple[str, ...] = (
    "self_care",
    "consultation",
    "consultation_24",
    "emergency",
    "emergency_ambulance",
)


class EscalationStatus(StrEnum):
    """Where a clinician ticket stands: waiting -> claimed -> resolved | returned_to_bot.

    Waiting and claimed are "open"; the others are final. `closed` is the status tickets had
    before the console existed (schema version 3); it is still accepted and is final.
    """

    WAITING = "waiting"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    RETURNED_TO_BOT = "returned_to_bot"
    CLOSED = "closed"


OPEN_ESCALATION_STATUSES = frozenset({EscalationStatus.WAITING, EscalationStatus.CLAIMED})


FINAL_ESCALATION_STATUSES = frozenset(
    {EscalationStatus.RESOLVED, EscalationStatus.RETURNED_TO_BOT, EscalationStatus.CLOSED}
)


@dataclass(frozen=True)
class EscalationRow:
    """A ticket in the clinician queue; one open ticket per contact at most."""

    id: int
    contact_id: int
    session_id: int | None
    level: str
    reason: str
    flow: str | None
    red_flags: tuple[str, ...]
    summary: dict[str, Any] = field(hash=False)
    status: EscalationStatus
    opened_at: datetime
    updated_at: datetime
    appended: int  # how many later escalations were folded into this ticket
    claimed_by: str | None
    claimed_at: datetime | None
    closed_at: datetime | None  # when it reached a final status
    priority: str | None = None  # emergency | urgent | routine (set by bot.escalation)
    deadline_at: datetime | None = None  # unclaimed past this: announced to on-call, raised
    assignee_id: int | None = None  # the console user who claimed it
    first_response_at: datetime | None = None  # the first clinician reply to the patient
    resolved_at: datetime | None = None
    announced_at: datetime | None = None  # last announcement to on-call
    announcements: int = 0
    raised_at: datetime | None = None  # when it went past its deadline unclaimed

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ESCALATION_STATUSES


@dataclass(frozen=True)
class NoteRow:
    """An internal note on a ticket (never sent to the patient)."""

    id: int
    escalation_id: int
    user_id: int
    username: str
    text: str
    at: datetime


@dataclass(frozen=True)
class AuditRow:
    """One entry of the append-only audit log: who saw or changed what, and when."""

    id: int
    at: datetime
    user_id: int | None  # None: the system (deadline sweep, first start)
    username: str | None
    action: str  # view_ticket, claim, reply, reveal_address, login, ...
    contact_id: int | None
    escalation_id: int | None
    detail: dict[str, Any] = field(hash=False)


_OPEN_ESCALATION = (EscalationStatus.WAITING, EscalationStatus.CLAIMED)


class TicketStore(Protocol):
    """Escalation tickets, their notes and the audit log."""

    # -- escalations ---------------------------------------------------------------------------

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
        """Open a ticket, or fold this one into the contact's open ticket; returns its id."""
        ...

    def escalations(
        self, status: str | None = None, contact_id: int | None = None
    ) -> list[EscalationRow]:
        """Tickets, optionally with one status and/or of one contact, in the order opened."""
        ...

    def get_escalation(self, escalation_id: int) -> EscalationRow | None:
        """One ticket, or None."""
        ...

    def set_escalation_status(
        self, escalation_id: int, status: str, now: datetime, by: str | None = None
    ) -> None:
        """Claim (by a clinician) or close a ticket; a final status never changes."""
        ...

    def plan_escalation(
        self, escalation_id: int, priority: str, deadline_at: datetime, now: datetime
    ) -> None:
        """Set a ticket's priority and claim deadline."""
        ...

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
        ...

    def release_escalation(self, escalation_id: int, user_id: int, now: datetime) -> bool:
        """claimed by this user -> waiting (back in the queue); False otherwise."""
        ...

    def finish_escalation(self, escalation_id: int, status: str, now: datetime) -> bool:
        """An open ticket -> a final status (resolved, returned_to_bot, closed); False if final."""
        ...

    def note_first_response(self, escalation_id: int, now: datetime) -> None:
        """Record the first clinician reply (later calls change nothing)."""
        ...

    def announce_escalation(self, escalation_id: int, now: datetime, quiet_since: datetime) -> bool:
        """Mark a waiting ticket announced unless it was announced after `quiet_since`.

        True for exactly one caller per announcement, so a sweep may run on every node.
        """
        ...

    def raise_escalation(self, escalation_id: int, now: datetime) -> bool:
        """Mark a waiting ticket as past its deadline (raised in the queue); True the first time."""
        ...

    # -- ticket notes --------------------------------------------------------------------------

    def add_ticket_note(self, escalation_id: int, user_id: int, text: str, now: datetime) -> int:
        """Add an internal note to a ticket."""
        ...

    def ticket_notes(self, escalation_id: int) -> list[NoteRow]:
        """A ticket's notes, oldest first."""
        ...

    # -- the audit log -------------------------------------------------------------------------

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
        ...

    def audit_log(
        self,
        *,
        contact_id: int | None = None,
        user_id: int | None = None,
        limit: int = 200,
    ) -> list[AuditRow]:
        """Audit entries, newest first, optionally about one contact or by one user."""
        ...


class TicketSql(SqlMixin):
    """`TicketStore` in SQL written once; a mixin of `SqlStore`."""

    # -- escalations ---------------------------------------------------------------------------

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

    # -- ticket notes --------------------------------------------------------------------------

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

    # -- the audit log -------------------------------------------------------------------------

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
