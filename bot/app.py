"""The composition root: one inbound message -> one transaction -> replies in the outbox.

Wires config, flows, the interpreter, the engine and the store. May import anything in bot,
nlu and channels.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot import engine, trends
from bot.broadcasts.service import Broadcasts
from bot.config import Config
from bot.dispatch import DeliveryPolicy, Dispatcher, RetryPolicy, Sender
from bot.escalation import Tickets
from bot.events import (
    AnswerRecorded,
    ContactChanged,
    ErrorRaised,
    EscalationOpened,
    Event,
    FollowUpScheduled,
    MsgCreated,
    PrivacyRequested,
    RedFlagRaised,
    TriageDecided,
)
from bot.events_out import CHANNEL as EVENTS_CHANNEL
from bot.events_out import Events, WebhookSender
from bot.flow import EMERGENCY_LEVELS, Library
from bot.loader import load_library
from bot.messages import Inbound, Outbound
from bot.phones import inbound_address
from bot.privacy import Privacy
from bot.session import Contact, Session, SessionStatus
from bot.store import EnrollmentStatus, Lane, Store, open_store
from bot.store.owner import StoreOwner
from channels.render import select_multi, split_outbound
from nlu import detect_language
from nlu.types import Expectation, Understanding

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_RETHINKS = 5  # times a message is thought through again when its conversation changed


class Interpreter(Protocol):
    def interpret(
        self, text: str, expecting: Expectation | None, language: str = "en"
    ) -> Understanding: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Handled:
    """What one inbound message did (for CLIs, tests and the web layer)."""

    duplicate: bool = False
    contact_id: int | None = None
    session: Session | None = None
    events: tuple[Event, ...] = ()
    outbox_ids: list[int] = field(default_factory=list)

    @property
    def replies(self) -> list[MsgCreated]:
        return [e for e in self.events if isinstance(e, MsgCreated)]

    @property
    def escalated(self) -> bool:
        return any(isinstance(e, EscalationOpened) for e in self.events)


def load_flows(config: Config) -> Library:
    """The flow library for this configuration."""
    return load_library(
        config.path(config.flows.dir),
        config.path("data/concepts.yaml"),
        languages=config.languages,
        placeholders={
            "emergency_number": config.emergency.number,
            "crisis_line": config.emergency.crisis_line,
            "service_name": config.service_name,
            "retention_days": str(config.retention.message_days),
        },
        first_flow=config.flows.first,
        default_flow=config.flows.default,
        max_failures=config.flows.max_failures,
    )


def default_interpreter(config: Config) -> Interpreter:
    """The configured interpreter: the process-wide embedded one, or Rasa falling back to it."""
    from nlu.interpreter import default_interpreter as embedded

    local = embedded()
    local.threshold = config.nlu.confidence_threshold
    if config.nlu.backend != "rasa":
        return local
    from nlu.rasa import RasaHttpInterpreter

    return RasaHttpInterpreter(
        config.nlu.rasa_url or "http://localhost:5005",
        fallback=local,
        timeout=config.nlu.rasa_timeout_s,
    )


class CareBridge:
    """The application: handle inbound messages and expose the store to services."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        library: Library | None = None,
        interpreter: Interpreter | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.config = config
        self.library = library or load_flows(config)
        self.store = store or open_store(config.storage_url())
        self.interpreter = interpreter or default_interpreter(config)
        self.clock = clock
        self.owner = StoreOwner()  # runs handle()'s two transactions and the dispatcher's
        self._turns = [threading.Lock() for _ in range(256)]  # one address at a time
        self.tickets = Tickets(
            self.store,
            config,
            clock=clock,
            split=split_outbound,
            start_flow=self.start_flow,
            flows=self.library.flows,
        )
        self.privacy = Privacy(self.store, config, self.library, clock)  # retention, FORGET
        # outgoing event webhooks (docs/api.md): queued in the transaction of what they report
        self.outgoing = Events(self.store, config.events)
        self.tickets.notify = lambda event, data, now, contact: self.outgoing.emit(
            event, data, now, contact_id=contact
        )

    def close(self) -> None:
        self.owner.close()
        self.store.close()

    def handle(self, inbound: Inbound) -> Handled:
        """Process one inbound message; a duplicate does nothing.

        Three steps, so that no write transaction waits on the NLU: record the message and
        load the conversation (one short transaction on the store's owner thread); interpret
        it, run the engine and render the replies (here, no store); save the new state and
        queue the replies (one transaction, which first checks that nothing else changed the
        conversation meanwhile, else thinks again). A crash between the first and the last
        step leaves the message recorded but unhandled: the provider's retry handles it.
        Messages from one address are handled one at a time. Called on the owner thread
        itself (`serve` does: two thread hand-offs per message instead of six), it runs all
        three steps there, one message after another."""
        inbound = self._normalized(inbound)
        turn = contextlib.nullcontext() if self.owner.here else self._turn(inbound)
        with turn:
            for _ in range(_RETHINKS):
                begun = self.owner.call(self._begin, inbound)
                if begun is None:
                    log.info("duplicate inbound channel=%s", inbound.channel)
                    return Handled(duplicate=True)
                plan = self._think(begun, inbound)
                handled = self.owner.call(self._commit, begun, plan, inbound)
                if handled is not None:
                    return handled
                log.info("conversation changed meanwhile contact=%s: again", begun.contact.id)
            raise RuntimeError("the conversation kept changing while a message was handled")

    def handle_group(self, inbounds: Sequence[Inbound]) -> list[Handled | Exception]:
        """`handle` for messages that queued up together, on the store's owner thread (`serve`
        runs it through `StoreOwner.run_grouped`): the first steps of all of them in one
        transaction, then the NLU and the engine with none open, then their last steps in one
        more; so two commits per group instead of two per message. Each message's last step is
        still all-or-nothing (a savepoint in the group's transaction), and a webhook is only
        answered after its group committed. A message whose address came earlier in the
        group, a conversation that changed meanwhile, or any error in a group transaction
        (which then rolls back whole) falls back to `handle`, one message at a time.
        Returns one result per message, in order: its `Handled`, or the exception it raised."""
        inbounds = [self._normalized(i) for i in inbounds]
        results: list[Handled | Exception | None] = [None] * len(inbounds)
        seen: set[tuple[str, str]] = set()
        group: list[int] = []
        for i, inbound in enumerate(inbounds):
            if (inbound.channel, inbound.address) not in seen:
                seen.add((inbound.channel, inbound.address))
                group.append(i)
        if len(group) > 1:
            try:
                with self.store.transaction():
                    begun = [self._begin(inbounds[i]) for i in group]
                plans = [
                    None if b is None else self._think(b, inbounds[i])
                    for i, b in zip(group, begun, strict=True)
                ]
                with self.store.transaction():
                    for i, b, plan in zip(group, begun, plans, strict=True):
                        if b is None or plan is None:
                            log.info("duplicate inbound channel=%s", inbounds[i].channel)
                            results[i] = Handled(duplicate=True)
                        else:  # None when the conversation changed: `handle` below
                            results[i] = self._commit(b, plan, inbounds[i])
            except Exception as exc:  # nothing of the last steps committed: one at a time
                log.warning(
                    "a group of %d messages rolled back (%s)", len(group), type(exc).__name__
                )
                results = [None] * len(inbounds)
        for i, result in enumerate(results):
            if result is None:
                try:
                    results[i] = self.handle(inbounds[i])
                except Exception as exc:  # this message's caller gets it
                    results[i] = exc
        return [r for r in results if r is not None]

    def _normalized(self, inbound: Inbound) -> Inbound:
        """One number, one contact: SMS/WhatsApp addresses in E.164 whatever the provider
        wrote."""
        address = inbound_address(
            inbound.channel, inbound.address, self.config.phones.default_region
        )
        return inbound if address == inbound.address else replace(inbound, address=address)

    def recover_inbound(self, max_age: timedelta = timedelta(hours=1)) -> int:
        """Handle the messages a crash left recorded but unhandled (between `handle`'s first
        and last step; their webhooks were never acknowledged, and not every provider
        retries): those received within `max_age` now, oldest first, exactly once; older
        ones are left as they are and counted in the log. Returns how many were handled."""
        cutoff = self.clock() - max_age
        rows = self.owner.call(self.store.unprocessed_inbound)
        fresh = [r for r in rows if r.inbound.received_at >= cutoff]
        if len(fresh) < len(rows):
            log.warning(
                "inbox: %d unhandled messages older than %s left", len(rows) - len(fresh), max_age
            )
        done = sum(not self.handle(r.inbound).duplicate for r in fresh)
        if done:
            log.warning("inbox: handled %d messages a crash had left unhandled", done)
        return done

    def _lock(self, contact_id: int) -> None:
        """Inside a transaction: hold the contact's turn until it ends, so no other process
        (a second `serve`, a worker's sweep) saves this patient's conversation meanwhile
        (docs/deploy.md). A store without the lock (a test double) relies on its own."""
        lock = getattr(self.store, "lock_contact", None)
        if lock is not None:
            lock(contact_id)

    def _turn(self, inbound: Inbound) -> threading.Lock:
        """One lock per address (striped) for callers off the owner thread; the owner thread
        takes none (it never waits for another thread, so it can never deadlock with one)."""
        return self._turns[hash((inbound.channel, inbound.address)) % len(self._turns)]

    def _begin(self, inbound: Inbound) -> _Begun | None:
        """Record the message (or find it recorded but unhandled) and load the conversation."""
        now = self.clock()
        with self.store.transaction():
            inbox_id = self.store.record_inbound(inbound)
            if inbox_id is None:
                inbox_id = self.store.pending_inbound(inbound.channel, inbound.provider_id)
                if inbox_id is None:
                    return None
            contact = self.store.find_contact(inbound.channel, inbound.address)
            if contact is None:  # first contact: the language, when the message tells it
                contact = self.store.get_or_create_contact(
                    inbound.channel, inbound.address, now, language=self._first_language(inbound)
                )
            self.store.touch_inbound(contact.id, now)
            self.store.release_held(contact.id, now)  # the WhatsApp window is open again
            contact = self._with_conditions(contact)
            own = self.store.current_session(contact)
        session, moved = self._carry_over(own)
        return _Begun(inbox_id, contact, own, session, moved, now)

    def _think(self, begun: _Begun, inbound: Inbound) -> _Plan:
        """Interpret, run the engine and render the replies: no store, no transaction."""
        session, contact = begun.session, begun.contact
        try:
            expecting = engine.expectation(self.library, session)
            understanding = self.interpreter.interpret(inbound.text, expecting, contact.language)
            sprint = engine.resume(self.library, session, inbound, understanding, begun.now)
        except Exception as exc:  # a bug must not cost the patient a reply or the message
            # the traceback without the exception's message, which may quote patient text
            log.error(
                "engine failure contact=%s error=%s\n%s",
                contact.id,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            sprint = engine.Sprint(
                session, (ErrorRaised("engine_failure"), MsgCreated(self._error_text()))
            )
        lane = emergency_lane(sprint.events)
        parts = self._render(sprint.events, inbound.channel, inbound.address, contact.id, "reply")
        return _Plan(sprint, parts, lane)

    def _commit(self, begun: _Begun, plan: _Plan, inbound: Inbound) -> Handled | None:
        """Save and queue what `_think` decided, in one transaction; None: the conversation
        changed since `_begin` read it (a check-in, a clinician), so think again."""
        now = begun.now
        with self.store.transaction():
            self._lock(begun.contact.id)  # one message of a patient at a time, on any process
            if self.store.pending_inbound(inbound.channel, inbound.provider_id) is None:
                return Handled(duplicate=True)  # handled meanwhile by another thread
            if self.store.current_session(begun.contact) != begun.own:
                return None
            if begun.moved is not None:
                self.store.save_session(begun.moved, now)
            saved = self.store.save_session(plan.sprint.session, now)
            self.store.add_transcript(
                begun.contact.id, saved.id, "in", inbound.text, inbound.channel, now
            )
            handled = self._apply(
                saved,
                plan.sprint.events,
                inbound.channel,
                inbound.address,
                now,
                rendered=plan.parts,
                lane=plan.lane,
            )
            self.store.mark_inbound_processed(begun.inbox_id, now)
        return handled

    def _render(
        self, events: tuple[Event, ...], channel: str, address: str, contact_id: int, kind: str
    ) -> dict[int, list[Outbound]]:
        """The outbox parts of every message the events create, by event index."""
        parts: dict[int, list[Outbound]] = {}
        for i, ev in enumerate(events):
            if isinstance(ev, MsgCreated):
                meta = {} if ev.multi is None else select_multi(*ev.multi)
                out = Outbound(channel, address, ev.text, ev.choices, contact_id, kind, meta)
                parts[i] = split_outbound(out)
        return parts

    def _with_conditions(self, contact: Contact) -> Contact:
        """The contact with the conditions it is enrolled for, which complaint routing reads
        (docs/routing.md); an ended enrollment counts no more."""
        enrollment = self.store.get_enrollment(contact.id)
        if enrollment is None or enrollment.status == EnrollmentStatus.ENDED:
            return contact
        return replace(contact, conditions=tuple(enrollment.conditions))

    def _first_language(self, inbound: Inbound) -> str | None:
        """A new contact's language when the channel says it (Telegram's language_code) or the
        message is clearly written in another configured language; None: ask with the menu."""
        languages = self.library.languages
        hint = (inbound.language_hint or "").split("-")[0].lower()
        if hint in languages:
            return hint
        return detect_language(inbound.text, languages[1:]) if len(languages) > 1 else None

    def _carry_over(self, session: Session) -> tuple[Session, Session | None]:
        """A person who left a conversation open on another channel continues it here: it moves
        to this contact as an expired session, so the engine offers to continue. Returns the
        session to resume and the other contact's session, completed, to save with it."""
        if engine.expectation(self.library, session) is not None:
            return session, None
        for other in self.store.linked_contacts(session.contact.id):
            theirs = self.store.current_session(other)
            if engine.expectation(self.library, theirs) is None:
                continue
            log.info(
                "conversation moved from contact=%s to contact=%s", other.id, session.contact.id
            )
            state = {**theirs.to_state(), "status": str(SessionStatus.EXPIRED)}
            moved = Session.from_state(session.contact, state, started_at=theirs.started_at)
            return moved, theirs.evolve(status=SessionStatus.COMPLETED, node=None, stack=())
        return session, None

    def start_flow(self, contact_id: int, flow_id: str, kind: str = "reminder") -> Handled:
        """Begin a flow for a contact on the bot's initiative (check-ins, follow-ups)."""
        now = self.clock()
        with self.store.transaction():
            self._lock(contact_id)
            contact = self.store.get_contact(contact_id)
            if contact is None or contact.opted_out:
                return Handled(contact_id=contact_id)
            channel, address = self.store.contact_address(contact_id)
            session = self.store.current_session(contact)
            sprint = engine.start(self.library, session, flow_id, now)
            saved = self.store.save_session(sprint.session, now)
            return self._apply(saved, sprint.events, channel, address, now, kind=kind)

    def _error_text(self) -> str:
        msg = self.library.interrupts.messages.get("error", {})
        return (msg.get("en") or "Sorry, something went wrong.").format_map(
            engine._SafeFormat(self.library.placeholders)
        )

    def _apply(
        self,
        session: Session,
        events: tuple[Event, ...],
        channel: str,
        address: str,
        now: datetime,
        *,
        kind: str = "reply",
        rendered: Mapping[int, list[Outbound]] | None = None,
        lane: Lane | None = None,
    ) -> Handled:
        """Perform what the events imply, inside the caller's transaction; `rendered`: the
        messages' outbox parts made beforehand (`_render`)."""
        contact_id = session.contact.id
        assert session.id is not None
        handled = Handled(contact_id=contact_id, session=session, events=events)
        if rendered is None:
            rendered = self._render(events, channel, address, contact_id, kind)
        if lane is None:
            lane = emergency_lane(events)
        for i, ev in enumerate(events):
            match ev:
                case MsgCreated(text=text):
                    for part in rendered[i]:
                        handled.outbox_ids.append(self.store.enqueue(part, now, lane=lane))
                    self.store.add_transcript(contact_id, session.id, "out", text, channel, now)
                case ContactChanged(field=name, value=value):
                    self.store.update_contact(contact_id, now=now, **{name: value})
                    if name == "opted_out" and value is True:
                        self.outgoing.emit("contact.opted_out", {}, now, contact_id=contact_id)
                case EscalationOpened():
                    ticket_id = self.store.open_escalation(
                        contact_id,
                        session.id,
                        ev.level,
                        ev.reason,
                        ev.flow,
                        ev.red_flags,
                        self._summary(session),
                        now,
                    )
                    self.tickets.opened(ticket_id, now)  # priority, deadline, on-call
                    log.info("escalation opened contact=%s level=%s", contact_id, ev.level)
                case AnswerRecorded(concept=concept, value=value):
                    cdef = self.library.concepts.get(concept)
                    if cdef and cdef.type == "number" and isinstance(value, int | float):
                        reading_id = self.store.add_reading(
                            contact_id, session.id, concept, float(value), cdef.unit, now
                        )
                        self.outgoing.emit(
                            "reading.recorded",
                            {
                                "reading_id": reading_id,
                                "session_id": session.id,
                                "concept": concept,
                                "value": float(value),
                                "unit": cdef.unit,
                                "at": now.isoformat(),
                            },
                            now,
                            contact_id=contact_id,
                        )
                case FollowUpScheduled():
                    self.store.schedule_job(
                        contact_id,
                        "follow_up",
                        ev.flow,
                        ev.due_at,
                        {
                            "every_s": ev.every.total_seconds() if ev.every else None,
                            "times": ev.times,
                        },
                        dedupe_key=f"follow_up:{contact_id}:{ev.flow}:{ev.due_at.isoformat()}",
                    )
                case TriageDecided():
                    log.info("triage contact=%s flow=%s level=%s", contact_id, ev.flow, ev.level)
                    self.outgoing.emit(
                        "triage.decided",
                        {"session_id": session.id, "flow": ev.flow, "level": ev.level},
                        now,
                        contact_id=contact_id,
                    )
                case PrivacyRequested(kind="forget"):
                    self.privacy.forget(contact_id, source="patient", now=now)
                case PrivacyRequested(kind=kind):
                    self.store.add_audit(now, None, None, f"patient_{kind}", contact_id=contact_id)
                case ErrorRaised():
                    log.warning("conversation error contact=%s code=%s", contact_id, ev.code)
                case _:
                    pass
        return handled

    def _summary(self, session: Session) -> dict[str, Any]:
        """What a clinician needs at a glance: flow, level, red flags, answers with units."""
        answers = {}
        for concept, value in session.answers.items():
            cdef = self.library.concepts.get(concept)
            unit = cdef.unit if cdef and cdef.type == "number" else None
            answers[concept] = {"value": value, "unit": unit}
        return {
            "flow": session.flow,
            "triage": session.triage,
            "red_flags": list(session.red_flags),
            "answers": answers,
            "risk_band": session.answers.get("covid_risk_band"),
            "trends": self._trend_lines(session.contact.id),  # "BP last 5: 142/90, ..."
        }

    # --- check-ins (issue 5): used by bot.scheduler and bot.cli_patients --------------------

    def start_checkin(
        self,
        contact_id: int,
        flow_id: str,
        now: datetime,
        *,
        answers: Mapping[str, Any] | None = None,
        kind: str = "reminder",
    ) -> Handled:
        """Begin `flow_id` for a contact at `now` on the bot's initiative (check-ins, follow-ups,
        enrollment), with per-patient baselines put in the session's answers so the questions
        read the patient's units; joins the caller's transaction. An opted-out contact gets
        nothing (`Handled.session` is None)."""
        with self.store.transaction():
            self._lock(contact_id)
            contact = self.store.get_contact(contact_id)
            if contact is None or contact.opted_out:
                return Handled(contact_id=contact_id)
            channel, address = self.store.contact_address(contact_id)
            session = self.store.current_session(contact)
            sprint = engine.start(self.library, session, flow_id, now)
            started = sprint.session
            if answers:
                started = started.evolve(answers={**answers, **started.answers})
            saved = self.store.save_session(started, now)
            return self._apply(saved, sprint.events, channel, address, now, kind=kind)

    def send_reminder(
        self, session: Session, text: str, choices: tuple[str, ...], now: datetime
    ) -> list[int]:
        """Queue a reminder about a conversation (the lifecycle nudge) and its transcript line."""
        contact_id = session.contact.id
        channel, address = self.store.contact_address(contact_id)
        out = Outbound(channel, address, text, choices, contact_id, "reminder")
        with self.store.transaction():
            ids = [self.store.enqueue(part, now) for part in split_outbound(out)]
            self.store.add_transcript(contact_id, session.id, "out", text, channel, now)
        return ids

    def escalate(
        self,
        contact_id: int,
        session: Session | None,
        level: str,
        reason: str,
        flow: str | None,
        extra: Mapping[str, Any],
        now: datetime,
    ) -> int:
        """Open (or fold into the open) clinician ticket on the bot's own initiative (missed
        check-ins, the blood-pressure trend): the usual summary plus `extra`."""
        summary = (
            self._summary(session)
            if session is not None
            else {"trends": self._trend_lines(contact_id)}
        )
        summary.update(extra)
        with self.store.transaction():
            ticket = self.store.open_escalation(
                contact_id,
                session.id if session is not None else None,
                level,
                reason,
                flow,
                tuple(session.red_flags) if session is not None else (),
                summary,
                now,
            )
            self.tickets.opened(ticket, now)  # priority, deadline, on-call
        log.info("escalation opened contact=%s level=%s reason=%s", contact_id, level, reason)
        return ticket

    def apply_trend_rule(self, session: Session, now: datetime) -> int | None:
        """PROTOCOLS.md's trend rule after a conversation that measured blood pressure: when
        its latest reading and the two before it were all at >= 140/90, open a `consultation`
        escalation; once per reading (idempotent). Returns the ticket id, or None."""
        if session.id is None:
            return None
        contact_id = session.contact.id
        rows = [
            *self.store.readings(contact_id, "systolic_bp", limit=20),
            *self.store.readings(contact_id, "diastolic_bp", limit=20),
        ]
        series = trends.blood_pressures(rows)
        if not series or series[-1].session_id != session.id or not trends.trend_alert(series):
            return None
        with self.store.transaction():
            streak = trends.raised_streak(series)
            mark = self.store.schedule_job(
                contact_id,
                "trend_alert",
                "hypertension_checkin",
                now,
                {"streak": streak},
                dedupe_key=f"trend:{contact_id}:{series[-1].at.isoformat()}",
            )
            if mark is None:
                return None  # raised for this reading already
            self.store.finish_job(mark, "done", now)
            rule = (
                f"{streak} check-ins in a row at or above "
                f"{trends.RAISED_SYSTOLIC:g}/{trends.RAISED_DIASTOLIC:g}"
            )
            return self.escalate(
                contact_id,
                session,
                trends.TREND_LEVEL,
                "bp_trend",
                "hypertension_checkin",
                {"trend_rule": rule},
                now,
            )

    def _trend_lines(self, contact_id: int) -> list[str]:
        return trends.summary_lines(self.store.readings(contact_id, limit=100))


def channels_off(config: Config, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The channels that cannot send with this configuration and environment, and why (the
    browser simulator `web` included)."""
    env = os.environ if env is None else env
    off: dict[str, str] = {}
    if config.simulator.enabled is False:
        off["web"] = "simulator.enabled is false"
    elif not config.simulator_on():
        off["web"] = (
            f"the server binds to {config.server.host}, not loopback "
            "(set simulator.enabled: true to use the simulator there anyway)"
        )
    for kind in ("sms", "whatsapp"):
        sender = config.twilio.sms_from if kind == "sms" else config.twilio.whatsapp_from
        if not getattr(config.channels, kind).enabled:
            off[kind] = f"channels.{kind}.enabled is false"
        elif not env.get("TWILIO_ACCOUNT_SID") or not env.get("TWILIO_AUTH_TOKEN"):
            off[kind] = "TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN not set"
        elif not sender:
            off[kind] = f"twilio.{kind}_from not set"
    if not config.channels.telegram.enabled:
        off["telegram"] = "channels.telegram.enabled is false"
    elif not env.get("TELEGRAM_BOT_TOKEN"):
        off["telegram"] = "TELEGRAM_BOT_TOKEN not set"
    off.update(live_channels_off(config, env))
    return off


def live_channels_off(config: Config, env: Mapping[str, str]) -> dict[str, str]:
    """Why the voice dispatcher cannot place calls; a voice message that cannot go out waits in
    the outbox and is said when the patient calls. USSD is never here: it has no sender (pull
    only), and its messages always wait for the patient's next dial."""
    off: dict[str, str] = {}
    if not config.channels.voice.enabled:
        off["voice"] = "channels.voice.enabled is false"
    elif not env.get("TWILIO_ACCOUNT_SID") or not env.get("TWILIO_AUTH_TOKEN"):
        off["voice"] = "TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN not set"
    elif not config.voice.from_number:
        off["voice"] = "voice.from_number not set (calls in work; no check-in calls out)"
    return off


def emergency_lane(events: tuple[Event, ...]) -> Lane | None:
    """The emergency lane when the events raise a red flag or decide an emergency; else None
    (the lane of the message's kind)."""
    for ev in events:
        if isinstance(ev, RedFlagRaised):
            return Lane.EMERGENCY
        if isinstance(ev, TriageDecided | EscalationOpened) and ev.level in EMERGENCY_LEVELS:
            return Lane.EMERGENCY
    return None


@dataclass(frozen=True)
class _Begun:
    """What `CareBridge._begin` read: the message's inbox row and the conversation."""

    inbox_id: int
    contact: Contact
    own: Session  # the contact's session as stored
    session: Session  # the session to resume (carried over from another channel, maybe)
    moved: Session | None  # the other channel's session, completed, to save
    now: datetime


@dataclass(frozen=True)
class _Plan:
    """What `CareBridge._think` decided: the engine's sprint and the rendered replies."""

    sprint: engine.Sprint
    parts: dict[int, list[Outbound]]
    lane: Lane | None


def build_channels(
    config: Config, env: Mapping[str, str] | None = None
) -> tuple[dict[str, Sender], dict[str, str]]:
    """The provider channels that are enabled and have their secrets; and why others are off."""
    from channels.simulator import SimulatorChannel
    from channels.telegram import TelegramChannel
    from channels.twilio import TwilioChannel

    env = os.environ if env is None else env
    off = channels_off(config, env)
    senders: dict[str, Sender] = {}
    if "web" not in off:
        senders["web"] = SimulatorChannel()
    public = config.server.public_url.rstrip("/")
    for kind in ("sms", "whatsapp"):
        if kind in off:
            continue
        sender = config.twilio.sms_from if kind == "sms" else config.twilio.whatsapp_from
        senders[kind] = TwilioChannel(
            kind,
            env["TWILIO_ACCOUNT_SID"],
            env["TWILIO_AUTH_TOKEN"],
            sender or "",
            api_base_url=config.twilio.api_base_url,
            status_callback_url=f"{public}/webhooks/twilio/status",
            whatsapp_template_sid=config.twilio.whatsapp_template_sid,
        )
    if "telegram" not in off:
        senders["telegram"] = TelegramChannel(
            env["TELEGRAM_BOT_TOKEN"], api_base_url=config.telegram.api_base_url
        )
    if "voice" not in off:
        from channels.voice import VoiceCaller

        senders["voice"] = VoiceCaller(
            env["TWILIO_ACCOUNT_SID"],
            env["TWILIO_AUTH_TOKEN"],
            config.voice.from_number or "",
            f"{public}/webhooks/twilio/voice",
            api_base_url=config.twilio.api_base_url,
            status_callback_url=f"{public}/webhooks/twilio/voice",
        )
    if config.events.subscriptions:  # event webhooks (docs/api.md); a missing secret: ConfigError
        senders[EVENTS_CHANNEL] = WebhookSender(list(config.events.subscriptions), env)
    return senders, off


def build_dispatcher(
    config: Config,
    store: Store,
    senders: Mapping[str, Sender],
    owner: StoreOwner | None = None,
) -> Dispatcher:
    """The outbox dispatcher with the configured rates, leases and retries; its store calls
    run on `owner`'s thread when given."""
    rates = {
        name: getattr(config.channels, name).rate_per_s
        for name in ("sms", "whatsapp", "telegram", "voice")
    }
    d = config.delivery
    extra: dict[str, Any] = {"run_store": owner.run_urgent} if owner is not None else {}
    return Dispatcher(
        store,
        senders,
        rates={**rates, "web": 100.0, EVENTS_CHANNEL: config.events.rate_per_s},
        policy=RetryPolicy(d.retry_base_s, d.retry_cap_s, d.max_attempts),
        delivery=DeliveryPolicy(
            lease_s=d.lease_s,
            send_timeout_s=d.send_timeout_s,
            order_hold_s=d.order_hold_s,
            headroom=d.emergency_headroom,
            max_in_flight=d.max_in_flight,
            admit_wait_s=d.admit_wait_s,
        ),
        **extra,
    )


def build_broadcasts(
    config: Config, store: Store, clock: Clock = utcnow, off: Mapping[str, str] | None = None
) -> Broadcasts:
    """The coordinator broadcast service, with SMS arithmetic from channels.render (the CLI
    and the console call the same object; docs/broadcasts.md). `off`: channels that cannot
    send and why (build_channels' second result)."""
    from channels import render

    simulator = config.simulator_on() and "web" not in (off or {})
    return Broadcasts(store, config, render, clock=clock, off=off, simulator=simulator)
