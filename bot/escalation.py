"""The clinician queue as a service: priority and deadline, claim, reply, resolve, return to the
bot, notes, and the deadline sweep that announces unclaimed tickets to on-call. Imports bot.store,
bot.config, bot.messages, bot.session, bot.errors; bot.app passes in the splitter and flow starter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from bot.config import Config
from bot.errors import CarebridgeError
from bot.messages import Outbound
from bot.session import SessionStatus
from bot.store import EscalationRow, EscalationStatus, Lane, Store, UserRow

log = logging.getLogger(__name__)
_EMERGENCY_LEVELS = frozenset({"emergency", "emergency_ambulance"})

Clock = Callable[[], datetime]
Splitter = Callable[[Outbound], list[Outbound]]
FlowStarter = Callable[[int, str, str], object]  # (contact_id, flow_id, kind)
# (event, data, now, contact_id): bot.app sets it to the event webhooks' emit (bot.events_out)
Notify = Callable[[str, dict[str, Any], datetime, int], object]

MAX_REPLY_CHARS = 1600  # about ten SMS segments; longer replies belong in a call
MAX_NOTE_CHARS = 4000


class Priority(StrEnum):
    """How fast a clinician must pick a ticket up; derived from the triage level."""

    EMERGENCY = "emergency"
    URGENT = "urgent"
    ROUTINE = "routine"


PRIORITY_RANK = {Priority.EMERGENCY: 0, Priority.URGENT: 1, Priority.ROUTINE: 2}
_LEVEL_PRIORITY = {
    "emergency_ambulance": Priority.EMERGENCY,
    "emergency": Priority.EMERGENCY,
    "consultation_24": Priority.URGENT,
}


class TicketError(CarebridgeError):
    """A ticket action that cannot be done now; the message says why and what to do."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code  # not_found | final | claimed_by_other | not_claimed | opted_out | ...


def priority_for(level: str) -> Priority:
    """The queue priority of a triage level (anything below consultation_24 is routine)."""
    return _LEVEL_PRIORITY.get(level, Priority.ROUTINE)


def queue_key(ticket: EscalationRow) -> tuple[int, datetime, int]:
    """Sort key of the queue: priority (a ticket past its deadline ahead of its peers), then
    the longest waiting first."""
    rank = 2 * PRIORITY_RANK[Priority(ticket.priority or priority_for(ticket.level))]
    return (rank - (1 if ticket.raised_at else 0), ticket.opened_at, ticket.id)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _no_split(out: Outbound) -> list[Outbound]:
    return [out]


class Tickets:
    """Ticket operations on a store. Every change is one transaction and one audit entry."""

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        clock: Clock = utcnow,
        split: Splitter = _no_split,
        start_flow: FlowStarter | None = None,
        flows: Collection[str] = (),
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.split = split
        self.start_flow = start_flow
        self.flows = frozenset(flows)
        self.notify: Notify = lambda *_: None  # outgoing events, inside the same transaction

    # -- reading ----------------------------------------------------------------------------

    def queue(self) -> list[EscalationRow]:
        """Open tickets in queue order: the waiting ones, then those a clinician has; test
        contacts' tickets (the simulator's) after the real patients' in each."""
        test = self.test_contacts()

        def key(ticket: EscalationRow) -> tuple[bool, tuple[int, datetime, int]]:
            return (ticket.contact_id in test, queue_key(ticket))

        waiting = sorted(self.store.escalations("waiting"), key=key)
        return waiting + sorted(self.store.escalations("claimed"), key=key)

    def test_contacts(self) -> frozenset[int]:
        """Ids of the test contacts with an open ticket (labelled TEST, never announced)."""
        ids = {t.contact_id for s in ("waiting", "claimed") for t in self.store.escalations(s)}
        rows = (self.store.contact_row(i) for i in ids)
        return frozenset(row.id for row in rows if row is not None and row.test)

    def get(self, ticket_id: int) -> EscalationRow:
        """One ticket; TicketError if there is none."""
        ticket = self.store.get_escalation(ticket_id)
        if ticket is None:
            raise TicketError(f"there is no ticket {ticket_id}", code="not_found")
        return ticket

    def deadline_for(self, priority: Priority) -> timedelta:
        """How long a ticket of this priority may wait unclaimed (escalation.deadlines_minutes)."""
        minutes: int = getattr(self.config.escalation.deadlines_minutes, priority.value)
        return timedelta(minutes=minutes)

    def console_url(self, ticket_id: int) -> str:
        """The ticket's page in the console (server.public_url)."""
        return f"{self.config.server.public_url.rstrip('/')}/console/tickets/{ticket_id}"

    # -- the bot side: a ticket was opened or folded ------------------------------------------

    def opened(self, ticket_id: int, now: datetime) -> None:
        """Plan a new (or folded) ticket and announce it if it is already due (emergencies).

        Called by bot.app inside the inbound transaction, right after `open_escalation`.
        A ticket a clinician has claimed keeps the patient with the clinician, even after a
        red flag (the emergency reply has gone out already).
        """
        ticket = self._plan(self.get(ticket_id), now)
        self._notify("escalation.opened", ticket, now)
        if ticket.status is EscalationStatus.CLAIMED:
            self._set_session(ticket.contact_id, SessionStatus.HANDED_OFF, now)
        elif ticket.deadline_at is not None and ticket.deadline_at <= now:
            self._overdue(ticket, now)

    def _plan(self, ticket: EscalationRow, now: datetime) -> EscalationRow:
        """Priority from the level; the deadline counts from when that priority was reached."""
        priority = priority_for(ticket.level)
        current = Priority(ticket.priority) if ticket.priority else None
        if ticket.deadline_at is not None and current is not None:
            if PRIORITY_RANK[priority] >= PRIORITY_RANK[current]:
                return ticket  # not more urgent than planned
            deadline = min(ticket.deadline_at, now + self.deadline_for(priority))
        else:
            deadline = ticket.opened_at + self.deadline_for(priority)
        self.store.plan_escalation(ticket.id, priority, deadline, now)
        return self.get(ticket.id)

    # -- the deadline sweep ---------------------------------------------------------------------

    def sweep_deadlines(self, now: datetime) -> list[int]:
        """Announce and raise waiting tickets past their deadline; returns the announced ids.

        Idempotent and safe on several nodes: a ticket is announced at most once per
        `escalation.reannounce_minutes`. Run it every minute or so.
        """
        announced: list[int] = []
        for waiting in self.store.escalations("waiting"):
            with self.store.transaction():
                ticket = waiting
                if ticket.priority is None or ticket.deadline_at is None:
                    ticket = self._plan(ticket, now)
                due = ticket.deadline_at is not None and ticket.deadline_at <= now
                if due and self._overdue(ticket, now):
                    announced.append(ticket.id)
        return announced

    def _overdue(self, ticket: EscalationRow, now: datetime) -> bool:
        """Announce the ticket unless it was announced lately; raise it in the queue once its
        grace period is over (for a ticket due at once, one re-announcement interval)."""
        quiet = timedelta(minutes=self.config.escalation.reannounce_minutes)
        assert ticket.deadline_at is not None
        late_at = (
            ticket.deadline_at
            if ticket.deadline_at > ticket.opened_at
            else ticket.opened_at + quiet
        )
        if now >= late_at and self.store.raise_escalation(ticket.id, now):
            self._audit_system("raise", ticket, now)
        contact = self.store.contact_row(ticket.contact_id)
        if contact is not None and contact.test:
            return False  # a test contact (the simulator): never wake on-call for it
        if not self.store.announce_escalation(ticket.id, now, now - quiet):
            return False
        on_call = self.config.escalation.on_call
        if on_call.channel is None or not on_call.address:
            log.warning("ticket=%s overdue; escalation.on_call is not set: nobody told", ticket.id)
            return False
        text = self.announcement(ticket, now)
        out = Outbound(on_call.channel, on_call.address, text, kind="on_call")
        outbox_ids = [self.store.enqueue(part, now) for part in self.split(out)]
        self._audit_system("announce", ticket, now, outbox_ids=outbox_ids)
        log.info("ticket=%s announced to on-call outbox=%s", ticket.id, outbox_ids)
        return True

    def announcement(self, ticket: EscalationRow, now: datetime) -> str:
        """What on-call is told: the priority and a console link, never health details."""
        priority = (ticket.priority or priority_for(ticket.level)).upper()
        service = self.config.service_name
        url = self.console_url(ticket.id)
        if ticket.announced_at is None or ticket.announcements == 0:
            return f"{service}: new {priority} ticket waiting for a clinician. {url}"
        waited = max(0, int((now - ticket.opened_at).total_seconds() // 60))
        return f"{service}: {priority} ticket still unclaimed after {waited} min. {url}"

    # -- the clinician side ---------------------------------------------------------------------

    def claim(self, ticket_id: int, user: UserRow, *, take_over: bool = False) -> EscalationRow:
        """Take a ticket: the bot steps back from the patient until it is resolved or returned."""
        now = self.clock()
        with self.store.transaction():
            ticket = self._open(ticket_id)
            before = ticket.claimed_by if ticket.status is EscalationStatus.CLAIMED else None
            if not self.store.claim_escalation(
                ticket.id, user.id, user.username, now, take_over=take_over
            ):
                raise TicketError(
                    f"ticket {ticket_id} is claimed by {ticket.claimed_by}; take it over to "
                    "work on it",
                    code="claimed_by_other",
                )
            self._set_session(ticket.contact_id, SessionStatus.HANDED_OFF, now)
            detail = {"took_over_from": before} if before and before != user.username else {}
            self._audit(user, "claim", ticket, now, **detail)
            self._notify("escalation.claimed", self.get(ticket.id), now)
        log.info("ticket=%s claimed by user=%s", ticket_id, user.id)
        return self.get(ticket_id)

    def release(self, ticket_id: int, user: UserRow) -> EscalationRow:
        """Put a ticket you claimed back in the queue (the bot stays silent meanwhile)."""
        now = self.clock()
        with self.store.transaction():
            ticket = self._open(ticket_id)
            if not self.store.release_escalation(ticket.id, user.id, now):
                raise TicketError(f"ticket {ticket_id} is not claimed by you", code="not_claimed")
            self._audit(user, "release", ticket, now)
        return self.get(ticket_id)

    def reply(self, ticket_id: int, user: UserRow, text: str) -> list[int]:
        """Send a message to the patient through their channel (via the outbox).

        Only the clinician who claimed the ticket may reply. Returns the outbox ids.
        """
        body = text.strip()
        if not body:
            raise TicketError("the reply is empty", code="empty")
        if len(body) > MAX_REPLY_CHARS:
            raise TicketError(
                f"the reply has {len(body)} characters; keep it under {MAX_REPLY_CHARS}",
                code="too_long",
            )
        now = self.clock()
        with self.store.transaction():
            ticket = self._mine(ticket_id, user)
            contact = self.store.contact_row(ticket.contact_id)
            if contact is None or contact.opted_out:
                raise TicketError(
                    "the patient has opted out (STOP): no message can be sent to them",
                    code="opted_out",
                )
            session = self.store.current_session(contact.to_contact())
            out = Outbound(
                contact.channel, contact.address, body, contact_id=contact.id, kind="clinician"
            )
            # words on an open emergency ticket go in the emergency lane (docs/channels.md)
            lane = Lane.EMERGENCY if ticket.level in _EMERGENCY_LEVELS else None
            outbox_ids = [self.store.enqueue(part, now, lane=lane) for part in self.split(out)]
            self.store.add_transcript(
                contact.id, session.id, "out", body, contact.channel, now, author=user.username
            )
            self.store.note_first_response(ticket.id, now)
            self._audit(user, "reply", ticket, now, outbox_ids=outbox_ids, chars=len(body))
        log.info("ticket=%s reply by user=%s outbox=%s", ticket_id, user.id, outbox_ids)
        return outbox_ids

    def resolve(self, ticket_id: int, user: UserRow) -> EscalationRow:
        """Close the ticket as dealt with; the patient's next message goes to the bot."""
        return self._finish(ticket_id, user, EscalationStatus.RESOLVED, None)

    def return_to_bot(
        self, ticket_id: int, user: UserRow, flow: str | None = None
    ) -> EscalationRow:
        """Close the ticket and give the patient back to the bot, optionally starting `flow`."""
        if flow is not None and flow not in self.flows:
            raise TicketError(f"there is no flow {flow!r}", code="unknown_flow")
        return self._finish(ticket_id, user, EscalationStatus.RETURNED_TO_BOT, flow)

    def _finish(
        self, ticket_id: int, user: UserRow, status: EscalationStatus, flow: str | None
    ) -> EscalationRow:
        now = self.clock()
        with self.store.transaction():
            ticket = self._open(ticket_id)
            if ticket.status is EscalationStatus.CLAIMED and ticket.assignee_id != user.id:
                raise TicketError(
                    f"ticket {ticket_id} is claimed by {ticket.claimed_by}; take it over first",
                    code="claimed_by_other",
                )
            self.store.finish_escalation(ticket.id, status, now)
            self._set_session(ticket.contact_id, SessionStatus.COMPLETED, now)
            detail: dict[str, Any] = {"flow": flow} if flow else {}
            self._audit(user, str(status), ticket, now, **detail)
            self._notify("escalation.resolved", self.get(ticket.id), now)
            if flow is not None and self.start_flow is not None:
                self.start_flow(ticket.contact_id, flow, "reply")
        log.info("ticket=%s %s by user=%s", ticket_id, status, user.id)
        return self.get(ticket_id)

    def add_note(self, ticket_id: int, user: UserRow, text: str) -> int:
        """Add an internal note (never sent to the patient)."""
        body = text.strip()
        if not body:
            raise TicketError("the note is empty", code="empty")
        if len(body) > MAX_NOTE_CHARS:
            raise TicketError(
                f"the note has {len(body)} characters; keep it under {MAX_NOTE_CHARS}",
                code="too_long",
            )
        now = self.clock()
        with self.store.transaction():
            ticket = self.get(ticket_id)
            note_id = self.store.add_ticket_note(ticket.id, user.id, body, now)
            self._audit(user, "note", ticket, now, note_id=note_id)
        return note_id

    # -- helpers ----------------------------------------------------------------------------------

    def _open(self, ticket_id: int) -> EscalationRow:
        ticket = self.get(ticket_id)
        if not ticket.is_open:
            raise TicketError(f"ticket {ticket_id} is already {ticket.status}", code="final")
        return ticket

    def _mine(self, ticket_id: int, user: UserRow) -> EscalationRow:
        ticket = self._open(ticket_id)
        if ticket.status is not EscalationStatus.CLAIMED or ticket.assignee_id != user.id:
            who = f"by {ticket.claimed_by}" if ticket.claimed_by else "by nobody"
            raise TicketError(
                f"ticket {ticket_id} is claimed {who}; claim it before replying",
                code="not_claimed",
            )
        return ticket

    def _set_session(self, contact_id: int, status: SessionStatus, now: datetime) -> None:
        """Hand the conversation to a human, or give it back to the bot (if a human had it)."""
        contact = self.store.get_contact(contact_id)
        if contact is None:
            return
        session = self.store.current_session(contact)
        if session.status is status:
            return
        if status is SessionStatus.COMPLETED and session.status is not SessionStatus.HANDED_OFF:
            return  # the patient is already talking to the bot
        if session.id is None:
            session = session.evolve(started_at=now)
        self.store.save_session(session.evolve(status=status, node=None, stack=()), now)

    def _notify(self, event: str, ticket: EscalationRow, now: datetime) -> None:
        """Tell the event webhooks: ids, level, priority, status and timings; no text."""
        data: dict[str, Any] = {
            "escalation_id": ticket.id,
            "level": ticket.level,
            "priority": ticket.priority,
            "reason": ticket.reason,
            "flow": ticket.flow,
            "red_flags": list(ticket.red_flags),
            "status": str(ticket.status),
            "opened_at": ticket.opened_at.isoformat(),
            "appended": ticket.appended,
        }
        if ticket.claimed_at is not None:
            data["claimed_at"] = ticket.claimed_at.isoformat()
            data["wait_s"] = round((ticket.claimed_at - ticket.opened_at).total_seconds(), 3)
        if ticket.closed_at is not None:
            data["closed_at"] = ticket.closed_at.isoformat()
        self.notify(event, data, now, ticket.contact_id)

    def _audit(
        self, user: UserRow, action: str, ticket: EscalationRow, now: datetime, **detail: Any
    ) -> None:
        self.store.add_audit(
            now,
            user.id,
            user.username,
            action,
            contact_id=ticket.contact_id,
            escalation_id=ticket.id,
            detail=detail,
        )

    def _audit_system(
        self, action: str, ticket: EscalationRow, now: datetime, **detail: Any
    ) -> None:
        self.store.add_audit(
            now,
            None,
            None,
            action,
            contact_id=ticket.contact_id,
            escalation_id=ticket.id,
            detail=detail,
        )
