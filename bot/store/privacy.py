"""Privacy (docs/security.md): the retention purge that redacts old message text, and erasing
one person on request (FORGET); `PrivacyStore` and its `PrivacySql` mixin of `SqlStore` (the
TOTP secret is in bot.store.users). Imports the standard library and bot.store (codec, sql).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.store.codec import _ts
from bot.store.sql import Connection, SqlMixin

REDACTED = "[redacted]"  # message text past the retention period
ERASED = "[erased]"  # message text of a person who asked to be forgotten
_KEPT = f"text NOT IN ('{REDACTED}', '{ERASED}')"  # the partial indexes of migration 7
_UNFINISHED = "('queued', 'sending')"  # outbox rows still to be sent keep their text


def forgotten_address(contact_id: int) -> str:
    """What replaces a forgotten contact's phone number or chat id (bot.privacy)."""
    return f"forgotten-{contact_id}"


@dataclass(frozen=True)
class PrivacyCounts:
    """Rows a retention sweep redacted, or an erasure erased, per table."""

    inbox: int = 0
    transcript: int = 0
    outbox: int = 0
    contacts: int = 0

    def __add__(self, other: PrivacyCounts) -> PrivacyCounts:
        return PrivacyCounts(
            self.inbox + other.inbox,
            self.transcript + other.transcript,
            self.outbox + other.outbox,
            self.contacts + other.contacts,
        )

    @property
    def total(self) -> int:
        return self.inbox + self.transcript + self.outbox


class PrivacyStore(Protocol):
    """The retention purge and erasure on request."""

    def redact_messages(self, before: datetime, *, limit: int = 5000) -> PrivacyCounts:
        """Redact message text older than `before` (inbox, transcript, sent outbox rows); at
        most `limit` rows per table per call."""
        ...

    def forget_contact(
        self, contact_id: int, now: datetime, *, free_text: tuple[str, ...] = ()
    ) -> PrivacyCounts:
        """Erase a person's identifiers and texts (this contact and its linked ones), keeping
        de-identified counts, levels and readings."""
        ...

    def finish_forgetting(self, *, limit: int = 5000) -> int:
        """Erase outbox rows of forgotten contacts that were sent after the erasure."""
        ...


class PrivacySql(SqlMixin):
    """`PrivacyStore` in SQL written once; a mixin of `SqlStore` (bot.store.core)."""

    def redact_messages(self, before: datetime, *, limit: int = 5000) -> PrivacyCounts:
        """Replace the text of messages older than `before` with "[redacted]": processed inbox
        rows (and their raw payloads), transcript lines, and outbox rows that are no longer
        waiting to be sent. At most `limit` rows per table; call again until it returns
        zeros. Counts, triage levels, readings and statuses are untouched."""
        cutoff = _ts(before)
        with self._atomic("redact_messages") as conn:
            inbox = conn.execute(
                f"UPDATE inbox SET text = ?, raw = NULL WHERE id IN (SELECT id FROM inbox"
                f" WHERE received_at < ? AND {_KEPT} AND processed_at IS NOT NULL LIMIT ?)",
                (REDACTED, cutoff, limit),
            ).rowcount
            transcript = conn.execute(
                f"UPDATE transcript SET text = ? WHERE id IN (SELECT id FROM transcript"
                f" WHERE at < ? AND {_KEPT} LIMIT ?)",
                (REDACTED, cutoff, limit),
            ).rowcount
            outbox = conn.execute(
                f"UPDATE outbox SET text = ? WHERE id IN (SELECT id FROM outbox"
                f" WHERE created_at < ? AND {_KEPT} AND status NOT IN {_UNFINISHED} LIMIT ?)",
                (REDACTED, cutoff, limit),
            ).rowcount
        return PrivacyCounts(inbox=inbox, transcript=transcript, outbox=outbox)

    def forget_contact(
        self, contact_id: int, now: datetime, *, free_text: tuple[str, ...] = ()
    ) -> PrivacyCounts:
        """Erase what identifies a person and what they wrote, for this contact and every
        contact linked to it: phone numbers and chat ids, message texts (inbox, transcript,
        outbox), the answers to the concepts in `free_text`, notes on their tickets and tags.
        Kept, de-identified: the contact row (so counts stay), sessions' triage levels,
        tickets' levels, readings, the consent record (plus a withdrawal) and the audit log.
        Queued messages are cancelled; open tickets are closed. The next message from the
        same number is a new contact. A message queued after this call (the confirmation)
        keeps its address until it is sent; `finish_forgetting` erases it then."""
        at = _ts(now)
        totals = PrivacyCounts()
        with self._atomic("forget_contact") as conn:
            person = conn.execute(
                "SELECT person_id FROM contacts WHERE id = ?", (contact_id,)
            ).fetchone()
            if person is None:
                raise KeyError(f"no contacts row with id {contact_id}")
            rows = conn.execute(
                "SELECT id, channel, address FROM contacts WHERE id = ? OR person_id = ?",
                (contact_id, person[0] if person[0] is not None else contact_id),
            ).fetchall()
            for cid, channel, address in rows:
                gone = forgotten_address(cid)
                inbox = conn.execute(
                    "UPDATE inbox SET text = ?, raw = NULL, address = ?"
                    " WHERE channel = ? AND address = ?",
                    (ERASED, gone, channel, address),
                ).rowcount
                transcript = conn.execute(
                    "UPDATE transcript SET text = ? WHERE contact_id = ?", (ERASED, cid)
                ).rowcount
                conn.execute(
                    "UPDATE outbox SET status = 'cancelled', error = 'forgotten', finished_at = ?"
                    " WHERE contact_id = ? AND status = 'queued'",
                    (at, cid),
                )
                outbox = conn.execute(
                    "UPDATE outbox SET text = ?, address = ? WHERE contact_id = ?"
                    " AND status <> 'sending'",
                    (ERASED, gone, cid),
                ).rowcount
                conn.execute(
                    "UPDATE ticket_notes SET text = ? WHERE escalation_id IN"
                    " (SELECT id FROM escalations WHERE contact_id = ?)",
                    (ERASED, cid),
                )
                conn.execute(
                    "UPDATE escalations SET status = 'closed', closed_at = ?, updated_at = ?"
                    " WHERE contact_id = ? AND status IN ('waiting', 'claimed')",
                    (at, at, cid),
                )
                for table in ("jobs", "checkins"):
                    conn.execute(
                        f"UPDATE {table} SET status = 'cancelled' WHERE contact_id = ?"
                        f" AND status IN ('pending', 'queued')",
                        (cid,),
                    )
                conn.execute(
                    "UPDATE schedules SET status = 'ended', updated_at = ? WHERE contact_id = ?",
                    (at, cid),
                )
                conn.execute(
                    "UPDATE enrollments SET status = 'ended', team = NULL, updated_at = ?"
                    " WHERE contact_id = ?",
                    (at, cid),
                )
                conn.execute("DELETE FROM contact_tags WHERE contact_id = ?", (cid,))
                self._erase_answers(conn, cid, free_text)
                conn.execute(
                    "INSERT INTO consents (contact_id, purpose, granted, source, at)"
                    " VALUES (?, 'care', 0, 'forget', ?), (?, 'broadcast', 0, 'forget', ?),"
                    " (?, 'contact', 0, 'forget', ?)",
                    (cid, at, cid, at, cid, at),
                )
                conn.execute(
                    "UPDATE contacts SET address = ?, person_id = id, opted_out = 1,"
                    " opted_out_at = ?, consent_care = 0, consent_broadcast = 0, region = NULL,"
                    " forgotten_at = ?, updated_at = ? WHERE id = ?",
                    (gone, at, at, at, cid),
                )
                totals = totals + PrivacyCounts(inbox, transcript, outbox, contacts=1)
        return totals

    @staticmethod
    def _erase_answers(conn: Connection, contact_id: int, concepts: tuple[str, ...]) -> None:
        """Drop the answers to `concepts` (typed in the patient's own words) from the contact's
        sessions and its tickets' summaries; numbers, yes/no and choices stay."""
        if not concepts:
            return
        for table, column in (("sessions", "state"), ("escalations", "summary")):
            for row_id, raw in conn.execute(
                f"SELECT id, {column} FROM {table} WHERE contact_id = ?", (contact_id,)
            ).fetchall():
                data = json.loads(raw or "{}")
                answers = data.get("answers")
                if isinstance(answers, dict) and any(c in answers for c in concepts):
                    data["answers"] = {k: v for k, v in answers.items() if k not in concepts}
                    conn.execute(
                        f"UPDATE {table} SET {column} = ? WHERE id = ?",
                        (json.dumps(data), row_id),
                    )

    def finish_forgetting(self, *, limit: int = 5000) -> int:
        """Erase the address and text of outbox rows of forgotten contacts that were queued
        after the erasure (the confirmation) and have been sent since. Returns how many."""
        with self._atomic("finish_forgetting") as conn:
            return conn.execute(
                "UPDATE outbox SET text = ?, address = 'forgotten-' || contact_id WHERE id IN"
                " (SELECT o.id FROM contacts c JOIN outbox o ON o.contact_id = c.id"
                " WHERE c.forgotten_at IS NOT NULL AND o.address <> 'forgotten-' || c.id"
                f" AND o.status NOT IN {_UNFINISHED} LIMIT ?)",
                (ERASED, limit),
            ).rowcount
