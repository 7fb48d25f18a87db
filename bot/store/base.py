"""The storage seam: the `Store` protocol every backend implements, and the rows it returns.

Imports only the standard library, bot.messages and bot.session.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from bot.messages import Inbound, Outbound
from bot.session import Contact, Session

# Triage levels, least to most urgent: an escalation only ever moves up this list.
TRIAGE_LEVELS: tuple[str, ...] = (
    "self_care",
    "consultation",
    "consultation_24",
    "emergency",
    "emergency_ambulance",
)


class OutboxStatus(StrEnum):
    """Where one outgoing message stands; the last three are final."""

    QUEUED = "queued"  # waiting for the dispatcher (first try or a retry)
    SENDING = "sending"  # claimed by a dispatcher
    SENT = "sent"  # accepted by the provider
    DELIVERED = "delivered"
    FAILED = "failed"
    UNDELIVERED = "undelivered"


FINAL_OUTBOX_STATUSES = frozenset(
    {OutboxStatus.DELIVERED, OutboxStatus.FAILED, OutboxStatus.UNDELIVERED}
)


class EscalationStatus(StrEnum):
    """Where a clinician ticket stands; waiting and claimed are "open"."""

    WAITING = "waiting"
    CLAIMED = "claimed"
    CLOSED = "closed"


class JobStatus(StrEnum):
    """Where a scheduled job (follow-up, reminder) stands."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class InboxRow:
    """A raw inbound message as persisted before the provider got its 200."""

    id: int
    inbound: Inbound
    raw: str | None
    processed_at: datetime | None


@dataclass(frozen=True)
class ContactRow:
    """Everything stored about a contact, including what the engine does not see."""

    id: int
    channel: str
    address: str
    language: str
    opted_out: bool
    consent_care: bool | None
    consent_broadcast: bool | None
    created_at: datetime
    updated_at: datetime
    opted_out_at: datetime | None
    consent_care_at: datetime | None
    consent_broadcast_at: datetime | None
    last_inbound_at: datetime | None  # WhatsApp's 24-hour window starts here

    def to_contact(self) -> Contact:
        """The engine's view of this contact."""
        return Contact(
            id=self.id,
            channel=self.channel,
            language=self.language,
            opted_out=self.opted_out,
            consent_care=self.consent_care,
        )


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
    closed_at: datetime | None


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


@dataclass(frozen=True)
class ReadingRow:
    """One measurement (temperature, SpO2, glucose, ...) under a concept id."""

    id: int
    contact_id: int
    session_id: int | None
    concept: str
    value: float
    unit: str | None
    at: datetime


@dataclass(frozen=True)
class JobRow:
    """A follow-up or reminder that is due at some time; claimed by one worker."""

    id: int
    contact_id: int | None
    kind: str
    flow: str | None
    due_at: datetime
    payload: dict[str, Any] = field(hash=False)
    dedupe_key: str | None
    status: JobStatus
    worker: str | None
    claimed_at: datetime | None
    finished_at: datetime | None


class Store(Protocol):
    """All persistent state. Times are timezone-aware datetimes; backends store them in UTC.

    Every write is atomic on its own, and joins the caller's `transaction()` if one is open.
    """

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction: commit at the end of the block, roll back on an exception."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...

    # -- inbox ----------------------------------------------------------------

    def record_inbound(self, inbound: Inbound, raw: str | None = None) -> int | None:
        """Persist an inbound message; None if (channel, provider_id) was seen before."""
        ...

    def mark_inbound_processed(self, inbox_id: int, now: datetime) -> None:
        """Record that the bot has handled this inbound message."""
        ...

    def unprocessed_inbound(self) -> list[InboxRow]:
        """Inbound messages recorded but not handled (crash recovery), oldest first."""
        ...

    # -- contacts -------------------------------------------------------------

    def get_or_create_contact(
        self, channel: str, address: str, now: datetime, language: str | None = None
    ) -> Contact:
        """The contact for this address on this channel, created on first contact."""
        ...

    def get_contact(self, contact_id: int) -> Contact | None:
        """The engine's view of a contact, or None."""
        ...

    def find_contact(self, channel: str, address: str) -> Contact | None:
        """The contact for this address on this channel, or None (never creates one)."""
        ...

    def contact_row(self, contact_id: int) -> ContactRow | None:
        """Everything stored about a contact, or None."""
        ...

    def contact_address(self, contact_id: int) -> tuple[str, str]:
        """(channel, address) of a contact; KeyError if there is no such contact."""
        ...

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
        ...

    def touch_inbound(self, contact_id: int, now: datetime) -> None:
        """Record when the contact last wrote to us."""
        ...

    # -- sessions -------------------------------------------------------------

    def current_session(self, contact: Contact) -> Session:
        """The contact's latest session, or a fresh one that is not stored yet."""
        ...

    def save_session(self, session: Session, now: datetime) -> Session:
        """Insert (id is None) or update a session; returns it with id and timestamps set."""
        ...

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
        ...

    def transcript(self, contact_id: int, limit: int | None = None) -> list[TranscriptEntry]:
        """A contact's transcript, oldest first; with `limit`, only the latest entries."""
        ...

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
        """Open a ticket, or fold this one into the contact's open ticket; returns its id."""
        ...

    def escalations(self, status: str | None = None) -> list[EscalationRow]:
        """Tickets, optionally with one status, in the order they were opened."""
        ...

    def get_escalation(self, escalation_id: int) -> EscalationRow | None:
        """One ticket, or None."""
        ...

    def set_escalation_status(
        self, escalation_id: int, status: str, now: datetime, by: str | None = None
    ) -> None:
        """Claim (by a clinician) or close a ticket."""
        ...

    # -- outbox ---------------------------------------------------------------

    def enqueue(self, outbound: Outbound, now: datetime, not_before: datetime | None = None) -> int:
        """Queue a message for the dispatcher; returns the outbox id."""
        ...

    def claim_outbox(self, now: datetime, limit: int) -> list[OutboxRow]:
        """Atomically move up to `limit` due queued rows to sending; oldest first."""
        ...

    def mark_sent(self, outbox_id: int, provider_id: str | None, now: datetime) -> None:
        """The provider accepted the message."""
        ...

    def mark_retry(self, outbox_id: int, error: str, next_attempt_at: datetime) -> None:
        """A transient failure: back to queued, due again at `next_attempt_at`."""
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

    def requeue_stuck(self, now: datetime, older_than: timedelta) -> int:
        """Put rows left `sending` (by a crash) for longer than `older_than` back in the queue."""
        ...

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
        ...

    def readings(
        self, contact_id: int, concept: str | None = None, limit: int | None = None
    ) -> list[ReadingRow]:
        """A contact's measurements, newest first."""
        ...

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
        ...

    def claim_due_jobs(self, now: datetime, limit: int, worker: str) -> list[JobRow]:
        """Atomically move up to `limit` due pending jobs to running; earliest due first."""
        ...

    def finish_job(self, job_id: int, status: str, now: datetime) -> None:
        """Record a job's end: `done`, `failed` or `cancelled` (a pending job may be cancelled)."""
        ...
