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


FINAL_OUTBOX_STATUSES = frozenset(
    {OutboxStatus.DELIVERED, OutboxStatus.FAILED, OutboxStatus.UNDELIVERED}
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


class Role(StrEnum):
    """What a console user may do (docs/console.md has the table of routes per role)."""

    CLINICIAN = "clinician"  # the queue, tickets, patients: the only role that sees health data
    COORDINATOR = "coordinator"  # queue counts (and broadcasts); no patient data
    ADMIN = "admin"  # users and the audit log; no patient data


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
    # broadcasts (issue 7): who the contact is across channels, and audience facts
    person_id: int | None = None  # contacts with the same person_id are one person
    region: str | None = None
    timezone: str | None = None  # IANA name; an enrollment's time zone is used when None
    preferred: bool = False  # the person's preferred contact for broadcasts
    language_set: bool = False  # the language was chosen, given or inferred

    def to_contact(self) -> Contact:
        """The engine's view of this contact."""
        return Contact(
            id=self.id,
            channel=self.channel,
            language=self.language,
            opted_out=self.opted_out,
            consent_care=self.consent_care,
            language_set=self.language_set,
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
    author: str | None = None  # the console user who wrote an "out" line; None: the bot


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
class UserRow:
    """A console user; `password_hash` is an argon2id hash (bot.auth)."""

    id: int
    username: str
    password_hash: str
    role: Role
    disabled: bool
    must_change_password: bool  # a one-time password: change it at the next log-in
    failed_logins: int
    locked_until: datetime | None
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime
    totp_secret: str | None = None  # base32; set when the user enrolled a second factor


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


@dataclass(frozen=True)
class AuthSessionRow:
    """A console log-in; the cookie holds a token whose SHA-256 is `token_hash`."""

    id: int
    user_id: int
    token_hash: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None


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


# -- check-ins (issue 5) ---------------------------------------------------------------


class EnrollmentStatus(StrEnum):
    """Where a patient's enrollment in scheduled check-ins stands."""

    INVITED = "invited"  # enrolled by a coordinator; waiting for the patient's consent
    ACTIVE = "active"  # consented: check-ins are scheduled
    PAUSED = "paused"  # the patient opted out or withdrew consent; resumes if they return
    ENDED = "ended"


class ScheduleStatus(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class CheckinKind(StrEnum):
    """Why a check-in conversation is started on the bot's initiative."""

    SCHEDULED = "scheduled"  # a recurring check-in; missing it counts
    FOLLOW_UP = "follow_up"  # decided by a flow (re-check in 15 minutes, daily for 10 days)
    ENROLLMENT = "enrollment"  # the enrollment conversation (consent first)
    MANUAL = "manual"  # a coordinator asked for one now


class CheckinStatus(StrEnum):
    """Where one check-in occurrence stands; the last four are final (late may follow missed)."""

    QUEUED = "queued"  # due; waits for quiet hours to end or the patient to be free
    OPEN = "open"  # its conversation has started
    ANSWERED = "answered"
    LATE = "late"  # answered after it had been counted as missed
    MISSED = "missed"
    CANCELLED = "cancelled"  # opted out, no consent, enrollment ended


@dataclass(frozen=True)
class EnrollmentRow:
    """A patient enrolled for check-ins: conditions, when, where, and personal baselines."""

    id: int
    contact_id: int
    status: EnrollmentStatus
    conditions: tuple[str, ...]
    checkin_time: str  # "HH:MM", the patient's local time
    timezone: str  # IANA name
    team: str | None
    baselines: dict[str, Any] = field(hash=False)  # concept id -> value (glucose_unit, ...)
    session_id: int | None  # the enrollment conversation last applied
    enrolled_by: str | None
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None


@dataclass(frozen=True)
class NewSchedule:
    """A recurring check-in to store (see bot.schedules.Rule for `rule`)."""

    flow: str
    label: str
    rule: dict[str, Any] = field(hash=False)
    timezone: str
    next_due_at: datetime | None


@dataclass(frozen=True)
class ScheduleRow:
    """A recurring check-in; `next_due_at` is the next occurrence not yet turned into a job."""

    id: int
    contact_id: int
    flow: str
    label: str
    rule: dict[str, Any] = field(hash=False)
    timezone: str
    next_due_at: datetime | None
    status: ScheduleStatus
    created_at: datetime
    updated_at: datetime | None


@dataclass(frozen=True)
class CheckinRow:
    """One check-in occurrence: a flow the bot starts for a contact, and how it went."""

    id: int
    contact_id: int
    kind: CheckinKind
    flow: str
    schedule_id: int | None
    due_at: datetime  # the occurrence (the patient's local time, in UTC)
    not_before: datetime  # due_at moved out of quiet hours
    status: CheckinStatus
    session_id: int | None
    created_at: datetime
    started_at: datetime | None
    resolved_at: datetime | None


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


# -- broadcasts (issue 7) ---------------------------------------------------------------

BULK_KINDS = frozenset({"broadcast"})
"""Outbox kinds claimed after conversation messages (priority 1), and which never hold a
conversation message back behind them (docs/broadcasts.md)."""


class BroadcastStatus(StrEnum):
    """Where a coordinator broadcast stands.

    draft -> approved (by a second person) -> sending (fan-out into the outbox under way) ->
    sent (every recipient has an outbox row; delivery goes on there); cancelled at any point by
    the kill switch. A recurring broadcast stays `approved` and spawns one occurrence (its own
    broadcast) per due time; it is `sent` when its rule has ended.
    """

    DRAFT = "draft"
    APPROVED = "approved"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"


class ConsentPurpose(StrEnum):
    """What a consent record is about; `contact` is "may we message at all" (STOP / START)."""

    CARE = "care"
    BROADCAST = "broadcast"
    CONTACT = "contact"


@dataclass(frozen=True)
class Audience:
    """Who a broadcast is for: all subscribers, narrowed by each non-empty filter (a value in
    any filter's list matches; filters combine with AND). Language and channel are facts of
    a contact; region, tag and condition match when any contact of the person has them."""

    languages: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in vars(self).items() if v}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Audience:
        return cls(**{k: tuple(str(x) for x in raw.get(k, ())) for k in cls.__dataclass_fields__})

    def describe(self) -> str:
        """A one-line summary for people ("all subscribers" when nothing narrows it)."""
        parts = [f"{k}={','.join(v)}" for k, v in vars(self).items() if v]
        return " ".join(parts) or "all subscribers"


@dataclass(frozen=True)
class NewBroadcast:
    """A broadcast to store as a draft (bot.broadcast checks it first)."""

    name: str
    texts: dict[str, str] = field(hash=False)  # language -> text
    sms_texts: dict[str, str] = field(hash=False)  # language -> SMS variant (optional)
    default_language: str
    audience: Audience = Audience()
    send_at: datetime | None = None  # None: as soon as it is approved
    recurrence: dict[str, Any] | None = field(default=None, hash=False)  # bot.schedules.Rule
    timezone: str | None = None  # the recurrence's time zone
    next_due_at: datetime | None = None  # the first occurrence of a recurring broadcast
    urgent: bool = False  # ignores quiet hours
    whatsapp_template: str | None = None  # a name under broadcast.whatsapp_templates
    correction_of: int | None = None  # goes to exactly the recipients that one reached


@dataclass(frozen=True)
class BroadcastRow:
    """A stored broadcast: what, to whom, when, who created, approved or cancelled it."""

    id: int
    name: str
    status: BroadcastStatus
    created_by: int
    created_by_name: str
    created_at: datetime
    approved_by: int | None
    approved_by_name: str | None
    approved_at: datetime | None
    send_at: datetime | None
    recurrence: dict[str, Any] | None = field(hash=False)
    timezone: str | None
    next_due_at: datetime | None
    parent_id: int | None  # the recurring broadcast this is an occurrence of
    correction_of: int | None
    urgent: bool
    audience: Audience
    whatsapp_template: str | None
    default_language: str
    fan_out_cursor: int  # person id (or, for a correction, outbox id) fanned out so far
    enqueued: int  # outbox rows created so far
    started_at: datetime | None
    fanned_out_at: datetime | None
    cancelled_by: int | None
    cancelled_by_name: str | None
    cancelled_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class BroadcastText:
    """A broadcast's text in one language, and its SMS variant (None: the text itself)."""

    language: str
    text: str
    sms_text: str | None


@dataclass(frozen=True)
class Variant:
    """What one language on one channel receives: the outbox text and meta."""

    language: str
    channel: str
    text: str
    meta: dict[str, str] = field(hash=False)


@dataclass(frozen=True)
class FanOutPlan:
    """Everything the store needs to turn a broadcast's audience into outbox rows in SQL."""

    broadcast_id: int
    audience: Audience
    channels: tuple[str, ...]  # preference order: a person gets it on the first that reaches
    variants: tuple[Variant, ...]
    default_language: str  # its variant is used for languages without their own
    default_timezone: str
    releases: dict[str, datetime] = field(hash=False)  # time zone -> earliest send (quiet hours)
    default_release: datetime  # for time zones not in `releases`
    quiet: str | None = None  # "21:00-08:00" on each row for the dispatcher; None: urgent
    correction_of: int | None = None


@dataclass(frozen=True)
class FanOutStep:
    """What one fan-out batch did."""

    enqueued: int  # outbox rows created by this batch
    cursor: int
    last: int  # the cursor value at which the fan-out is complete
    status: BroadcastStatus  # after the batch (sent when complete; cancelled stops it)


@dataclass(frozen=True)
class AudienceCount:
    """Recipients (one contact per person) on one channel, in one language and time zone."""

    channel: str
    language: str
    timezone: str
    count: int


@dataclass(frozen=True)
class AudienceCensus:
    """Who a plan reaches, and who matched the filters but is left out, and why."""

    counts: tuple[AudienceCount, ...]
    opted_out: int  # contacts that sent STOP
    no_consent: int  # contacts that never agreed to broadcasts (or withdrew)
    duplicates: int  # further contacts of a person who gets it on another channel


@dataclass(frozen=True)
class DeliveryCount:
    """Outbox rows of a broadcast with one channel, status and error."""

    channel: str
    status: OutboxStatus
    error: str | None
    count: int


@dataclass(frozen=True)
class OutboxGate:
    """What the dispatcher checks just before sending a broadcast row."""

    status: OutboxStatus  # the row's own status (cancelled by the kill switch)
    broadcast_status: BroadcastStatus | None
    opted_out: bool
    consent_broadcast: bool | None


@dataclass(frozen=True)
class ConsentRow:
    """One change of consent, append-only: the timestamped record of a purpose."""

    id: int
    contact_id: int
    purpose: ConsentPurpose
    granted: bool
    source: str | None  # conversation, keyword, console, cli, migration; None: the bot
    at: datetime


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
        source: str | None = None,
    ) -> None:
        """Change the given contact-level facts (None leaves a fact as it is); each change of
        consent or opt-out is appended to the consent record with `source`."""
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
        author: str | None = None,
    ) -> int:
        """Append one line ("in" or "out"; `author`: the clinician who wrote it)."""
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

    def add_ticket_note(self, escalation_id: int, user_id: int, text: str, now: datetime) -> int:
        """Add an internal note to a ticket."""
        ...

    def ticket_notes(self, escalation_id: int) -> list[NoteRow]:
        """A ticket's notes, oldest first."""
        ...

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
        ...

    def get_user(self, user_id: int) -> UserRow | None:
        """One user, or None."""
        ...

    def find_user(self, username: str) -> UserRow | None:
        """The user with this username, or None."""
        ...

    def users(self) -> list[UserRow]:
        """Every console user, by username."""
        ...

    def set_user_password(
        self, user_id: int, password_hash: str, now: datetime, *, must_change_password: bool
    ) -> None:
        """Replace a user's password hash (and unlock the account)."""
        ...

    def set_user_disabled(self, user_id: int, disabled: bool, now: datetime) -> None:
        """Disable (no log-in) or enable a user."""
        ...

    def record_login(
        self, user_id: int, now: datetime, *, ok: bool, lock_until: datetime | None = None
    ) -> None:
        """A log-in attempt: success resets the failure count; a failure counts (and may lock)."""
        ...

    def create_auth_session(
        self, user_id: int, token_hash: str, csrf_token: str, now: datetime, expires_at: datetime
    ) -> int:
        """Record a new log-in."""
        ...

    def get_auth_session(self, token_hash: str) -> AuthSessionRow | None:
        """The log-in with this token hash (expired or revoked ones too), or None."""
        ...

    def touch_auth_session(self, session_id: int, now: datetime) -> None:
        """Record activity on a log-in (for the idle timeout)."""
        ...

    def revoke_auth_sessions(
        self, now: datetime, *, session_id: int | None = None, user_id: int | None = None
    ) -> int:
        """End one log-in, or every log-in of a user; returns how many were ended."""
        ...

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

    # -- outbox ---------------------------------------------------------------

    def enqueue(self, outbound: Outbound, now: datetime, not_before: datetime | None = None) -> int:
        """Queue a message for the dispatcher; returns the outbox id."""
        ...

    def claim_outbox(
        self, now: datetime, limit: int, channel: str | None = None
    ) -> list[OutboxRow]:
        """Atomically move up to `limit` due queued rows (of `channel`, if given) to sending;
        oldest first, and never ahead of an earlier pending message to the same contact."""
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

    def hold_outbox(self, outbox_id: int) -> None:
        """Park a claimed row as `held` until `release_held` (WhatsApp outside the window)."""
        ...

    def release_held(self, contact_id: int, now: datetime) -> int:
        """The patient wrote: their held messages are due now; returns how many."""
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
        ...

    def get_enrollment(self, contact_id: int) -> EnrollmentRow | None:
        """The contact's enrollment, or None."""
        ...

    def enrollments(
        self, status: str | None = None, team: str | None = None
    ) -> list[EnrollmentRow]:
        """Enrollments, optionally with one status and/or team, oldest first."""
        ...

    def enrollments_to_sync(self) -> list[EnrollmentRow]:
        """Enrollments whose status no longer matches the contact: invited or paused with
        consent (and not opted out), or active without consent or opted out."""
        ...

    def set_enrollment_status(self, contact_id: int, status: str, now: datetime) -> None:
        """Change an enrollment's status (active also records activated_at the first time)."""
        ...

    def replace_schedules(
        self, contact_id: int, schedules: list[NewSchedule], now: datetime
    ) -> list[int]:
        """End the contact's active schedules and add these; returns the new ids."""
        ...

    def schedules(
        self, contact_id: int | None = None, status: str | None = "active"
    ) -> list[ScheduleRow]:
        """Schedules (active ones by default), optionally of one contact, by id."""
        ...

    def due_schedules(self, now: datetime, limit: int) -> list[ScheduleRow]:
        """Active schedules whose next occurrence is due, earliest first."""
        ...

    def advance_schedule(
        self, schedule_id: int, expected: datetime, next_due_at: datetime | None, now: datetime
    ) -> bool:
        """Move a schedule to its next occurrence (None ends it) if it still is at `expected`;
        False when another sweep moved it first."""
        ...

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
        ...

    def checkins(
        self,
        contact_id: int | None = None,
        status: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
    ) -> list[CheckinRow]:
        """Check-in occurrences, latest due first (then latest id)."""
        ...

    def contacts_with_checkins(self, statuses: tuple[str, ...]) -> list[int]:
        """Contacts with at least one check-in in one of these statuses."""
        ...

    def claim_checkin(self, checkin_id: int, now: datetime) -> bool:
        """Claim a queued check-in (queued -> open); False if another sweep claimed it."""
        ...

    def set_checkin_session(self, checkin_id: int, session_id: int) -> None:
        """Record the conversation an open check-in is carried out in."""
        ...

    def resolve_checkin(
        self, checkin_id: int, status: str, now: datetime, *, expected: str
    ) -> bool:
        """Move a check-in from `expected` to `status`; False if it was not in `expected`."""
        ...

    def jobs(
        self, contact_id: int | None = None, kind: str | None = None, status: str | None = None
    ) -> list[JobRow]:
        """Jobs, optionally of one contact, kind and/or status, earliest due first."""
        ...

    def requeue_stuck_jobs(self, now: datetime, older_than: timedelta) -> int:
        """Put jobs left `running` (a worker died) for longer than `older_than` back to pending."""
        ...

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

    # -- broadcasts (issue 7) ---------------------------------------------------------

    def add_broadcast(self, new: NewBroadcast, user_id: int, username: str, now: datetime) -> int:
        """Store a draft broadcast and its texts; returns its id."""
        ...

    def get_broadcast(self, broadcast_id: int) -> BroadcastRow | None:
        """One broadcast, or None."""
        ...

    def broadcasts(
        self, status: str | None = None, parent_id: int | None = None, limit: int = 100
    ) -> list[BroadcastRow]:
        """Broadcasts, newest first, optionally with one status or of one recurring parent."""
        ...

    def broadcast_texts(self, broadcast_id: int) -> list[BroadcastText]:
        """A broadcast's texts, by language."""
        ...

    def approve_broadcast(
        self, broadcast_id: int, user_id: int, username: str, now: datetime
    ) -> bool:
        """draft -> approved by a user who is not its creator; False if not a draft.
        Approval by the creator is refused by the schema itself (StoreError)."""
        ...

    def start_broadcast(self, broadcast_id: int, now: datetime, *, early: bool = False) -> bool:
        """approved one-off -> sending once its send time has come (`early`: now anyway)."""
        ...

    def fan_out(self, plan: FanOutPlan, batch: int, now: datetime) -> FanOutStep:
        """Enqueue the next `batch` people of a sending broadcast in one transaction, in SQL
        (INSERT ... SELECT): the audience never passes through Python."""
        ...

    def fan_out_start(self, plan: FanOutPlan) -> tuple[int, int]:
        """(first, last) cursor values of a plan's fan-out, for progress bars."""
        ...

    def cancel_broadcast(
        self, broadcast_id: int, user_id: int, username: str, now: datetime
    ) -> int:
        """The kill switch: the broadcast (and a recurring one's occurrences) -> cancelled,
        then every queued or sending row of it -> cancelled. Returns how many rows stopped."""
        ...

    def due_broadcasts(self, now: datetime, limit: int) -> list[BroadcastRow]:
        """Approved one-offs whose time has come, and broadcasts still fanning out."""
        ...

    def due_recurrences(self, now: datetime, limit: int) -> list[BroadcastRow]:
        """Approved recurring broadcasts whose next occurrence is due."""
        ...

    def add_occurrence(self, parent_id: int, send_at: datetime, now: datetime) -> int | None:
        """Copy an approved recurring broadcast into an approved one-off at `send_at`; None if
        that occurrence exists already."""
        ...

    def advance_recurrence(
        self, broadcast_id: int, expected: datetime, next_due_at: datetime | None, now: datetime
    ) -> bool:
        """Move a recurring broadcast to its next occurrence (None: it has ended -> sent) if it
        still is at `expected`."""
        ...

    def audience_census(self, plan: FanOutPlan) -> AudienceCensus:
        """Count who the plan reaches (per channel, language, time zone) and who is left out."""
        ...

    def audience_timezones(self) -> list[str]:
        """Every time zone a contact or enrollment names (for quiet-hour releases)."""
        ...

    def delivery_counts(self, broadcast_id: int) -> list[DeliveryCount]:
        """A broadcast's outbox rows counted by channel, status and error."""
        ...

    def stopped_after(self, broadcast_id: int) -> dict[str, int]:
        """Per channel, recipients it reached who have opted out since (STOP in reply)."""
        ...

    def outbox_gate(self, outbox_id: int) -> OutboxGate | None:
        """A row's status with its broadcast's status and its contact's consent, in one read."""
        ...

    def cancel_outbox(self, outbox_id: int, reason: str, now: datetime) -> bool:
        """A queued or sending row -> cancelled (`reason` in `error`); False otherwise."""
        ...

    def defer_outbox(self, outbox_id: int, until: datetime) -> bool:
        """A claimed row back to queued, due at `until`, without counting an attempt."""
        ...

    def set_contact_facts(
        self,
        contact_id: int,
        now: datetime,
        *,
        region: str | None = None,
        timezone: str | None = None,
        clear: tuple[str, ...] = (),
    ) -> None:
        """Set a contact's region and/or time zone (`clear` names facts to unset)."""
        ...

    def set_contact_tags(
        self, contact_id: int, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        """Add and remove tags; returns the contact's tags, sorted."""
        ...

    def linked_contacts(self, contact_id: int) -> list[Contact]:
        """The person's other contacts (same person_id), most recently active first."""
        ...

    def link_contacts(self, contact_id: int, other_id: int, now: datetime) -> int:
        """Make two contacts (and everyone linked to either) one person; returns its id."""
        ...

    def prefer_contact(self, contact_id: int, now: datetime) -> None:
        """Make this the preferred contact of its person for broadcasts."""
        ...

    def consents(self, contact_id: int) -> list[ConsentRow]:
        """A contact's consent record, oldest first."""
        ...

    # -- privacy (docs/security.md) ---------------------------------------------------------

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

    def set_user_totp(self, user_id: int, secret: str | None, now: datetime) -> None:
        """Set or clear a console user's TOTP secret."""
        ...
