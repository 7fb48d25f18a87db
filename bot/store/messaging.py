"""Inbox and outbox: inbound messages stored before the provider gets its 200, and the
outbox (delivery ledger and work queue: lanes, leases, holds, provider status callbacks).
Imports the standard library, bot.messages and bot.store (codec, sql)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any, Protocol

from bot.messages import Inbound, Outbound
from bot.store.codec import _checked, _dt, _dt_req, _json, _ts
from bot.store.sql import Row, SqlMixin

log = logging.getLogger(__name__)


class OutboxStatus(StrEnum):
    """Where one outgoing message stands; delivered, failed and undelivered are final.

    `cancelled` (broadcasts only) was never sent: the kill switch stopped it, or the recipient
    opted out first. Nothing re-queues it; a send already in flight still records `sent`.
    """

    QUEUED = "queued"  # waiting for the dispatcher (first try or a retry)
    SENDING = "sending"  # claimed by a dispatcher
    SENT = "sent"  # accepted by the provider
    DELIVERED = "delivered"
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    CANCELLED = "cancelled"
    HELD = "held"  # a clinician's WhatsApp message waiting for the patient to reopen the window


class Lane(IntEnum):
    """The outbox `priority` column: lower is claimed first (docs/channels.md, Delivery).

    Emergency replies (a red flag, an emergency triage outcome, a clinician's words on an open
    emergency ticket) have their own lane: the dispatcher claims them in a task of their own,
    ahead of everything, and only an older emergency row to the same contact holds one back.
    """

    EMERGENCY = -1
    CONVERSATION = 0  # replies, reminders, clinician messages, on-call notices
    BULK = 1  # broadcasts


FINAL_OUTBOX_STATUSES = frozenset(
    {OutboxStatus.DELIVERED, OutboxStatus.FAILED, OutboxStatus.UNDELIVERED}
)


BULK_KINDS = frozenset({"broadcast"})
"""Outbox kinds claimed after conversation messages (priority 1), and which never hold a
conversation message back behind them (docs/broadcasts.md)."""


@dataclass(frozen=True)
class InboxRow:
    """A raw inbound message as persisted before the provider got its 200."""

    id: int
    inbound: Inbound
    raw: str | None
    processed_at: datetime | None


@dataclass(frozen=True)
class OutboxRow:
    """One outgoing message: the delivery ledger and the dispatcher's work item."""

    id: int
    outbound: Outbound
    status: OutboxStatus
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    claimed_at: datetime | None
    sent_at: datetime | None
    finished_at: datetime | None  # when a final status was recorded
    provider_id: str | None
    error: str | None
    error_code: str | None
    lane: Lane = Lane.CONVERSATION  # the `priority` column


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


class MessagingStore(Protocol):
    """The inbox and the outbox."""

    # -- inbox ---------------------------------------------------------------------------------

    def record_inbound(self, inbound: Inbound, raw: str | None = None) -> int | None:
        """Persist an inbound message; None if (channel, provider_id) was seen before."""
        ...

    def mark_inbound_processed(self, inbox_id: int, now: datetime) -> None:
        """Record that the bot has handled this inbound message."""
        ...

    def pending_inbound(self, channel: str, provider_id: str) -> int | None:
        """The id of this inbound message if it was recorded but not handled (a crash came
        between recording and handling it), else None."""
        ...

    def unprocessed_inbound(self) -> list[InboxRow]:
        """Inbound messages recorded but not handled (crash recovery), oldest first."""
        ...

    # -- outbox --------------------------------------------------------------------------------

    def enqueue(
        self,
        outbound: Outbound,
        now: datetime,
        not_before: datetime | None = None,
        *,
        lane: Lane | None = None,
    ) -> int:
        """Queue a message for the dispatcher; returns the outbox id. The lane defaults to
        the kind's (bulk for broadcasts, conversation otherwise)."""
        ...

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
        """Atomically lease up to `limit` due rows (of `channel`, if given; only the emergency
        lane if `urgent`, all but it if `urgent` is False) until `now + lease`: lane first,
        then earliest due, then oldest. Rows whose lease ran out (a crashed or stalled
        dispatcher) are taken back first. A row is not claimed while an earlier row to the
        same contact in the same or a more urgent lane is in flight or waiting for a retry,
        unless that row was created more than `order_hold` ago; due rows of one contact are
        claimed together (the dispatcher sends them in id order)."""
        ...

    def mark_sent(self, outbox_id: int, provider_id: str | None, now: datetime) -> None:
        """The provider accepted the message."""
        ...

    def mark_retry(self, outbox_id: int, error: str, next_attempt_at: datetime) -> None:
        """A transient failure: back to queued, due again at `next_attempt_at`."""
        ...

    def release_outbox(self, outbox_id: int, now: datetime) -> None:
        """Hand a claimed row back unsent (not counted as an attempt): queued, due `now`."""
        ...

    def mark_failed(
        self,
        outbox_id: int,
        status: str,
        error: str,
        now: datetime,
        error_code: str | None = None,
    ) -> None:
        """A permanent failure: final status `failed` or `undelivered`."""
        ...

    def update_status_by_provider_id(
        self, provider_id: str, status: str, now: datetime, error_code: str | None = None
    ) -> int | None:
        """Apply a provider status callback (never backwards); the row's id, or None."""
        ...

    def get_outbox(self, outbox_id: int) -> OutboxRow | None:
        """One outbox row, or None."""
        ...

    def outbox(self, contact_id: int | None = None, status: str | None = None) -> list[OutboxRow]:
        """Outbox rows, optionally for one contact and/or one status, oldest first."""
        ...

    def hold_outbox(self, outbox_id: int) -> None:
        """Park a claimed row as `held` until `release_held` (WhatsApp outside the window)."""
        ...

    def release_held(self, contact_id: int, now: datetime) -> int:
        """The patient wrote: their held messages are due now; returns how many."""
        ...


class MessagingSql(SqlMixin):
    """`MessagingStore` in SQL written once; a mixin of `SqlStore`."""

    # -- inbox ---------------------------------------------------------------------------------

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

    # -- outbox --------------------------------------------------------------------------------

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
