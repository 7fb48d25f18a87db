"""Privacy by default (docs/security.md): the retention sweep that redacts old message text, and
erasing a patient on request (the FORGET keyword, `carebridge patients forget`, the console);
both audited. Imports bot.config, bot.flow, bot.store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.config import Config
from bot.flow import Library
from bot.store import PrivacyCounts, Store, UserRow

log = logging.getLogger(__name__)

SWEEP_BATCH = 5000  # rows per table per transaction: writers never wait long


class Privacy:
    """Retention and erasure on a store."""

    def __init__(
        self, store: Store, config: Config, library: Library, clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.days = config.retention.message_days
        self.clock = clock
        self.free_text = tuple(
            sorted(cid for cid, c in library.concepts.items() if c.type == "text")
        )

    def sweep(self, now: datetime | None = None) -> PrivacyCounts:
        """Redact message text older than `retention.message_days` and finish erasures whose
        confirmation has been sent. Idempotent: a second run changes nothing. Anything it
        changed is recorded in the audit log as `retention_purge`."""
        now = now or self.clock()
        before = now - timedelta(days=self.days)
        total = PrivacyCounts()
        while True:
            step = self.store.redact_messages(before, limit=SWEEP_BATCH)
            total = total + step
            if max(step.inbox, step.transcript, step.outbox) < SWEEP_BATCH:
                break
        finished = self.store.finish_forgetting(limit=SWEEP_BATCH)
        if total.total or finished:
            self.store.add_audit(
                now,
                None,
                None,
                "retention_purge",
                detail={
                    "days": self.days,
                    "before": before.isoformat(),
                    "inbox": total.inbox,
                    "transcript": total.transcript,
                    "outbox": total.outbox,
                    "forgotten_outbox": finished,
                },
            )
            log.info(
                "privacy: redacted inbox=%d transcript=%d outbox=%d; forgotten outbox=%d",
                total.inbox,
                total.transcript,
                total.outbox,
                finished,
            )
        return total

    def forget(
        self,
        contact_id: int,
        *,
        source: str,
        by: UserRow | None = None,
        requested_by: str | None = None,
        now: datetime | None = None,
    ) -> PrivacyCounts:
        """Erase a patient (and their linked contacts) on request, in the caller's transaction
        if one is open; audited as `forget_patient` with who asked (`source`: patient |
        cli | console), who operated it (`by`, or the OS account `requested_by` for the CLI)
        and how many rows were erased. KeyError if there is no such contact."""
        now = now or self.clock()
        with self.store.transaction():
            counts = self.store.forget_contact(contact_id, now, free_text=self.free_text)
            self.store.add_audit(
                now,
                by.id if by else None,
                by.username if by else None,
                "forget_patient",
                contact_id=contact_id,
                detail={
                    "source": source,
                    **({"requested_by": requested_by} if requested_by else {}),
                    "contacts": counts.contacts,
                    "inbox": counts.inbox,
                    "transcript": counts.transcript,
                    "outbox": counts.outbox,
                },
            )
        log.info("privacy: contact=%s forgotten (source=%s)", contact_id, source)
        return counts
