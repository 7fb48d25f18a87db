"""The composition root: one inbound message -> one transaction -> replies in the outbox.

Wires config, flows, the interpreter, the engine and the store. May import anything in bot,
nlu and channels.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from bot import engine, trends
from bot.broadcast import Broadcasts
from bot.config import Config
from bot.dispatch import Dispatcher, Sender
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
    TriageDecided,
)
from bot.flow import Library
from bot.loader import load_library
from bot.messages import Inbound, Outbound
from bot.phones import inbound_address
from bot.privacy import Privacy
from bot.session import Session, SessionStatus
from bot.store import Store, open_store
from channels.render import select_multi, split_outbound
from nlu import detect_language
from nlu.types import Expectation, Understanding

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


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
        self.tickets = Tickets(
            self.store,
            config,
            clock=clock,
            split=split_outbound,
            start_flow=self.start_flow,
            flows=self.library.flows,
        )
        self.privacy = Privacy(self.store, config, self.library, clock)  # retention, FORGET

    def close(self) -> None:
        self.store.close()

    def handle(self, inbound: Inbound) -> Handled:
        """Process one inbound message in one transaction; a duplicate does nothing."""
        now = self.clock()
        # one number, one contact: SMS/WhatsApp addresses in E.164 whatever the provider wrote
        address = inbound_address(
            inbound.channel, inbound.address, self.config.phones.default_region
        )
        if address != inbound.address:
            inbound = replace(inbound, address=address)
        with self.store.transaction():
            inbox_id = self.store.record_inbound(inbound)
            if inbox_id is None:
                log.info("duplicate inbound channel=%s", inbound.channel)
                return Handled(duplicate=True)
            contact = self.store.get_or_create_contact(
                inbound.channel, inbound.address, now, language=self._first_language(inbound)
            )
            self.store.touch_inbound(contact.id, now)
            self.store.release_held(contact.id, now)  # the WhatsApp window is open again
            session = self._carry_over(self.store.current_session(contact), now)
            expecting = engine.expectation(self.library, session)
            try:
                understanding = self.interpreter.interpret(
                    inbound.text, expecting, contact.language
                )
                sprint = engine.resume(self.library, session, inbound, understanding, now)
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
            saved = self.store.save_session(sprint.session, now)
            self.store.add_transcript(
                contact.id, saved.id, "in", inbound.text, inbound.channel, now
            )
            handled = self._apply(saved, sprint.events, inbound.channel, inbound.address, now)
            self.store.mark_inbound_processed(inbox_id, now)
        return handled

    def _first_language(self, inbound: Inbound) -> str | None:
        """A new contact's language when the channel says it (Telegram's language_code) or the
        message is clearly written in another configured language; None: ask with the menu."""
        languages = self.library.languages
        hint = (inbound.language_hint or "").split("-")[0].lower()
        if hint in languages:
            return hint
        return detect_language(inbound.text, languages[1:]) if len(languages) > 1 else None

    def _carry_over(self, session: Session, now: datetime) -> Session:
        """A person who left a conversation open on another channel continues it here: it moves
        to this contact as an expired session, so the engine offers to continue."""
        if engine.expectation(self.library, session) is not None:
            return session
        for other in self.store.linked_contacts(session.contact.id):
            theirs = self.store.current_session(other)
            if engine.expectation(self.library, theirs) is None:
                continue
            self.store.save_session(
                theirs.evolve(status=SessionStatus.COMPLETED, node=None, stack=()), now
            )
            log.info(
                "conversation moved from contact=%s to contact=%s", other.id, session.contact.id
            )
            state = {**theirs.to_state(), "status": str(SessionStatus.EXPIRED)}
            return Session.from_state(session.contact, state, started_at=theirs.started_at)
        return session

    def start_flow(self, contact_id: int, flow_id: str, kind: str = "reminder") -> Handled:
        """Begin a flow for a contact on the bot's initiative (check-ins, follow-ups)."""
        now = self.clock()
        with self.store.transaction():
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
    ) -> Handled:
        """Perform what the events imply, inside the caller's transaction."""
        contact_id = session.contact.id
        assert session.id is not None
        handled = Handled(contact_id=contact_id, session=session, events=events)
        for ev in events:
            match ev:
                case MsgCreated(text=text, choices=choices, multi=multi):
                    meta = {} if multi is None else select_multi(*multi)
                    out = Outbound(channel, address, text, choices, contact_id, kind, meta)
                    for part in split_outbound(out):
                        handled.outbox_ids.append(self.store.enqueue(part, now))
                    self.store.add_transcript(contact_id, session.id, "out", text, channel, now)
                case ContactChanged(field=name, value=value):
                    self.store.update_contact(contact_id, now=now, **{name: value})
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
                        self.store.add_reading(
                            contact_id, session.id, concept, float(value), cdef.unit, now
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


def build_channels(
    config: Config, env: Mapping[str, str] | None = None
) -> tuple[dict[str, Sender], dict[str, str]]:
    """The provider channels that are enabled and have their secrets; and why others are off."""
    from channels.simulator import SimulatorChannel
    from channels.telegram import TelegramChannel
    from channels.twilio import TwilioChannel

    env = os.environ if env is None else env
    senders: dict[str, Sender] = {"web": SimulatorChannel()}
    off: dict[str, str] = {}
    public = config.server.public_url.rstrip("/")
    for kind in ("sms", "whatsapp"):
        if not getattr(config.channels, kind).enabled:
            off[kind] = f"channels.{kind}.enabled is false"
            continue
        sid, token = env.get("TWILIO_ACCOUNT_SID"), env.get("TWILIO_AUTH_TOKEN")
        sender = config.twilio.sms_from if kind == "sms" else config.twilio.whatsapp_from
        if not sid or not token:
            off[kind] = "TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN not set"
        elif not sender:
            off[kind] = f"twilio.{kind}_from not set"
        else:
            senders[kind] = TwilioChannel(
                kind,
                sid,
                token,
                sender,
                api_base_url=config.twilio.api_base_url,
                status_callback_url=f"{public}/webhooks/twilio/status",
                whatsapp_template_sid=config.twilio.whatsapp_template_sid,
            )
    if not config.channels.telegram.enabled:
        off["telegram"] = "channels.telegram.enabled is false"
    elif not env.get("TELEGRAM_BOT_TOKEN"):
        off["telegram"] = "TELEGRAM_BOT_TOKEN not set"
    else:
        senders["telegram"] = TelegramChannel(
            env["TELEGRAM_BOT_TOKEN"], api_base_url=config.telegram.api_base_url
        )
    return senders, off


def build_dispatcher(config: Config, store: Store, senders: Mapping[str, Sender]) -> Dispatcher:
    """The outbox dispatcher with the configured per-channel rates."""
    rates = {
        name: getattr(config.channels, name).rate_per_s for name in ("sms", "whatsapp", "telegram")
    }
    return Dispatcher(store, senders, rates={**rates, "web": 100.0})


def build_broadcasts(config: Config, store: Store, clock: Clock = utcnow) -> Broadcasts:
    """The coordinator broadcast service, with SMS arithmetic from channels.render (the CLI
    and the console call the same object; docs/broadcasts.md)."""
    from channels import render

    return Broadcasts(store, config, render, clock=clock)
