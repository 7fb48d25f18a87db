"""The store side of the live channels (voice calls and USSD sessions, docs/channels.md): the
provider waits for the answer, so the replies a request produced are claimed from the outbox
and marked sent in that same request. A mixin of `SqlStore`; plain portable SQL.
Imports the standard library and bot.store (codec, messaging, sql).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from bot.store.codec import _ts
from bot.store.messaging import OutboxRow, OutboxStatus
from bot.store.sql import SqlMixin


class LiveOutbox(Protocol):
    """What the voice and USSD webhooks need of the store, beyond `Store`."""

    def claim_live(
        self,
        contact_id: int,
        channel: str,
        provider_id: str,
        now: datetime,
        *,
        adopt: str | None = None,
    ) -> list[OutboxRow]: ...

    def said_in(self, provider_id: str) -> list[OutboxRow]: ...

    def last_said(self, contact_id: int, channel: str) -> list[OutboxRow]: ...

    def finish_call(self, call_sid: str, status: str, now: datetime, code: str) -> int: ...


class LiveSql(SqlMixin):
    """`LiveOutbox` in SQL written once; a mixin of `SqlStore` (it uses `MessagingSql`'s
    `get_outbox`)."""

    if TYPE_CHECKING:  # MessagingSql's, in SqlStore: declared for the type checker only

        def get_outbox(self, outbox_id: int) -> OutboxRow | None: ...

    def claim_live(
        self,
        contact_id: int,
        channel: str,
        provider_id: str,
        now: datetime,
        *,
        adopt: str | None = None,
    ) -> list[OutboxRow]:
        """Take every reply waiting for this contact on a live channel (due queued rows, and
        rows a dispatcher holds a lease on) and mark them sent under `provider_id` (the call
        turn or USSD step that says them), oldest first; `adopt`: also rows a dispatcher
        recorded as sent under that placeholder id without sending them. These are exactly
        what the response of this request says: the outbox stays the one record of what the
        patient was told."""
        stamp = _ts(now)
        with self._atomic("claim_live") as conn:
            ids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT id FROM outbox WHERE contact_id = ? AND channel = ? AND"
                    " ((status = ? AND next_attempt_at <= ?) OR status = ?"
                    " OR (status = ? AND provider_id = ?)) ORDER BY id",
                    (
                        contact_id,
                        channel,
                        OutboxStatus.QUEUED,
                        stamp,
                        OutboxStatus.SENDING,
                        OutboxStatus.SENT,
                        adopt,
                    ),
                ).fetchall()
            ]
            for outbox_id in ids:
                conn.execute(
                    "UPDATE outbox SET status = ?, provider_id = ?, sent_at = ?, claimed_at = ?,"
                    " attempts = attempts + 1, error = NULL WHERE id = ? AND status IN (?, ?, ?)",
                    (
                        OutboxStatus.SENT,
                        provider_id,
                        stamp,
                        stamp,
                        outbox_id,
                        OutboxStatus.QUEUED,
                        OutboxStatus.SENDING,
                        OutboxStatus.SENT,
                    ),
                )
        return self._by_ids(ids)

    def said_in(self, provider_id: str) -> list[OutboxRow]:
        """The rows sent under `provider_id` (a call turn, a USSD step, an outbound call)."""
        rows = self._rows("SELECT id FROM outbox WHERE provider_id = ? ORDER BY id", (provider_id,))
        return self._by_ids([int(r[0]) for r in rows])

    def last_said(self, contact_id: int, channel: str) -> list[OutboxRow]:
        """The flow rows of the latest turn said to this contact on a live channel (what `*`
        repeats): the newest turn with a row that is not a channel line (`meta.line`: resume,
        goodbye, ...), without its channel lines."""
        rows = self._rows(
            "SELECT id FROM outbox WHERE contact_id = ? AND channel = ? AND"
            " provider_id IS NOT NULL AND status IN (?, ?) ORDER BY id DESC LIMIT 50",
            (contact_id, channel, OutboxStatus.SENT, OutboxStatus.DELIVERED),
        )
        for row in self._by_ids([int(r[0]) for r in rows]):
            if "line" not in row.outbound.meta and row.provider_id is not None:
                turn = self.said_in(row.provider_id)
                return [r for r in turn if "line" not in r.outbound.meta]
        return []

    def finish_call(self, call_sid: str, status: str, now: datetime, code: str) -> int:
        """A call we placed ended: the rows it was placed for become `status` (delivered,
        undelivered or failed; final), unless they already have a final status. Returns how
        many rows changed."""
        final = OutboxStatus(status)
        with self._atomic("finish_call") as conn:
            return conn.execute(
                "UPDATE outbox SET status = ?, error_code = ?, finished_at = ?"
                " WHERE provider_id = ? AND status IN (?, ?)",
                (
                    final,
                    None if final is OutboxStatus.DELIVERED else code,
                    _ts(now),
                    call_sid,
                    OutboxStatus.SENDING,
                    OutboxStatus.SENT,
                ),
            ).rowcount

    def _by_ids(self, ids: list[int]) -> list[OutboxRow]:
        found = (self.get_outbox(i) for i in ids)
        return [row for row in found if row is not None]
