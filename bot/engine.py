"""The pure conversation engine: library + session + input + `now` in, new session + events out.

No database, network, clock or randomness here, so golden transcripts are deterministic.
Imports bot.flow, bot.conditions, bot.session, bot.events, bot.messages, nlu types and
nlu.findings.unread_words (pure).
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bot.conditions import decide, evaluate, triage
from bot.events import (
    AnswerRecorded,
    ContactChanged,
    ErrorRaised,
    EscalationOpened,
    Event,
    FlowEnded,
    FlowEntered,
    FollowUpScheduled,
    MsgCreated,
    PrivacyRequested,
    RedFlagRaised,
    TriageDecided,
)
from bot.flow import (
    EMERGENCY_LEVELS,
    ESCALATING_LEVELS,
    LEVELS,
    AskNode,
    Case,
    ClassifyNode,
    EndNode,
    EnterNode,
    EscalateNode,
    Flow,
    Library,
    Node,
    RouteNode,
    SayNode,
    Text,
    TriageNode,
    keyword_form,
)
from bot.messages import Inbound
from bot.session import Contact, Frame, Session, SessionStatus
from nlu.findings import unread_words
from nlu.types import (
    GLOBAL_RED_FLAGS,
    Answer,
    AnswerStatus,
    Expectation,
    Option,
    QuestionType,
    Understanding,
)

MAX_STEPS = 500
FLOW_START = ""  # Frame.node value meaning "start this flow" rather than "continue after node"
CONTACT_CONCEPTS = {
    "consent_care": "consent_care",
    "consent_broadcast": "consent_broadcast",
    "preferred_language": "language",
}
BUTTON_CHANNELS = frozenset({"telegram"})  # choices shown as buttons (channels/render.py)
CONFIRM_KEYS = frozenset({"confirm"})  # matched only while a request waits for a yes
INTENT_FLOWS = {"start_screening": "covid_screening", "report_symptom": "general_triage"}
READING_FLOWS = {
    "systolic_bp": "hypertension_checkin",
    "diastolic_bp": "hypertension_checkin",
    "glucose_mg_dl": "diabetes_checkin",
    "peak_flow_percent": "asthma_checkin",
    "weight_gain_kg_week": "heart_failure_checkin",
    "spo2_percent": "covid_screening",
    "temperature_c": "covid_screening",
}


MENU_INTENTS = {  # intent -> menu option it means
    "start_screening": "covid_screening",
    "start_checkin": "checkin",
    "ask_human": "agent",
    "change_language": "language",
}
GENERAL_FLOW = "general_triage"
SCREENING_FLOW = "covid_screening"
CONDITION_FLOWS = {  # a known or stated condition (concept id) -> its check-in
    "pregnant": "pregnancy_checkin",
    "heart_failure": "heart_failure_checkin",
    "copd": "copd_checkin",
    "asthma": "asthma_checkin",
    "diabetes": "diabetes_checkin",
    "hypertension": "hypertension_checkin",
}
ENROLLED_CONDITIONS = {  # enrollment condition names (bot.schedules) -> concept ids
    "pregnancy": "pregnant",
    "heart_failure": "heart_failure",
    "copd": "copd",
    "asthma": "asthma",
    "diabetes": "diabetes",
    "hypertension": "hypertension",
}
SCREENING_COMPLAINTS = frozenset(
    {"fever", "cough", "dyspnea", "sore_throat", "loss_of_smell_taste", "runny_nose"}
)
"""Fever, cough and breathing: the complaints that start the COVID-19 screening."""
COVID_NAMED = re.compile(r"covid|corona|कोविड|कोरोना", re.IGNORECASE)
UNREAD_WORDS = 3
"""This many unexplained words beside a recognised complaint also start the general triage."""
CHILD_AGE = 5
"""A child under 5 goes to the general triage (WHO IMCI danger signs), not the screening."""
NOT_COMPLAINTS = frozenset(
    {
        "pregnant",
        "health_worker",
        "vaccinated_covid",
        "exposure_contact",
        "meds_taken",
        "heart_disease",
        "lung_disease",
        "kidney_disease",
        "immunocompromised",
        "obesity",
        "cancer",
        *CONDITION_FLOWS,
    }
)
"""Bool findings that say who the person is, not what is wrong now."""


def asked_concepts(lib: Library, flow_id: str) -> frozenset[str]:
    """Every concept a flow (and the flows it enters) can ask about."""
    seen: set[str] = set()
    todo, done = [flow_id], set()
    while todo:
        fid = todo.pop()
        if fid in done or fid not in lib.flows:
            continue
        done.add(fid)
        for node in lib.flows[fid].nodes.values():
            if isinstance(node, AskNode):
                seen.update(node.concepts)
                if node.type == "multi":
                    seen.update(o.value for o in node.options)
            elif isinstance(node, EnterNode):
                todo.append(node.flow)
    return frozenset(seen)


def route(lib: Library, u: Understanding, known: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The flows a message outside a conversation starts, in order, chosen by the complaint
    and the person's conditions (docs/routing.md): pregnancy first, then each condition's
    check-in (stated in the message, or known with a symptom or reading its check-in asks
    about), a reading's check-in, the COVID-19 screening for fever, cough or breathing, and
    the general triage for any complaint still not covered. No complaint: the menu (a
    greeting), the screening (asked for by name) or the general triage (a symptom the
    lexicons do not name)."""
    said = u.findings()
    stated = {c for c, v in said.items() if c in CONDITION_FLOWS and v is True}
    conditions = known | stated
    complaints = {
        c
        for c, v in said.items()
        if v is True
        and c not in NOT_COMPLAINTS
        and (cdef := lib.concepts.get(c)) is not None
        and cdef.type == "bool"
    }
    complaints |= set(u.red_flags)
    readings = [e.entity for e in u.entities if not e.negated and e.entity in READING_FLOWS]
    flows: list[str] = []

    def add(flow: str | None) -> None:
        if flow is not None and flow in lib.flows and flow not in flows:
            flows.append(flow)

    for concept, flow in CONDITION_FLOWS.items():
        if concept not in conditions or flow not in lib.flows:
            continue
        asks = asked_concepts(lib, flow)
        if concept in stated or complaints & asks or any(r in asks for r in readings):
            add(flow)
    for reading in readings:
        if not any(reading in asked_concepts(lib, f) for f in flows):
            add(READING_FLOWS[reading])
    covered: set[str] = set()
    for flow in flows:
        covered |= asked_concepts(lib, flow)
    uncovered = complaints - covered
    ages = [e.value for e in u.entities if e.entity == "age_years" and not e.negated]
    young = any(isinstance(a, int | float) and a < CHILD_AGE for a in ages)
    screening = bool(uncovered & SCREENING_COMPLAINTS) and not young
    asked_for = u.intent.name == "start_screening" or COVID_NAMED.search(u.text) is not None
    screening |= asked_for and not young  # asked for by name
    # words no finding explains, beside a recognised complaint or condition: a complaint the
    # lexicons do not name, which only the general triage asks about
    unread = len(unread_words(u.text, u.entities)) >= UNREAD_WORDS and bool(flows or complaints)
    general = uncovered - asked_concepts(lib, SCREENING_FLOW) or (uncovered and not screening)
    if general or young:
        add(GENERAL_FLOW)  # first: its danger signs come before the screening's questions
    if screening:
        add(SCREENING_FLOW)
    if unread:
        add(GENERAL_FLOW)  # last: the complaint it asks about is only guessed
    if not flows:
        intent = u.intent.name
        if intent in INTENT_FLOWS:
            add(INTENT_FLOWS[intent])
        elif intent == "start_checkin" and len(known) == 1:
            add(CONDITION_FLOWS[next(iter(known))])
    return tuple(flows) or (lib.default_flow,)


@dataclass(frozen=True)
class Sprint:
    """The result of one engine step."""

    session: Session
    events: tuple[Event, ...]

    @property
    def replies(self) -> list[MsgCreated]:
        return [e for e in self.events if isinstance(e, MsgCreated)]


class _SafeFormat(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def keyword(lib: Library, text: str, language: str) -> str | None:
    """The interrupt a message is, if it is exactly one of the configured keywords."""
    word = keyword_form(text)
    if not word:
        return None
    for name, per_lang in lib.interrupts.keywords.items():
        if name in CONFIRM_KEYS:
            continue
        langs = [language, *(lang for lang in per_lang if lang != language)]
        for lang in langs:
            if word in per_lang.get(lang, ()):
                return name
    return None


def _confirmed(lib: Library, text: str) -> bool:
    """The reply is one of the `confirm` keywords (a yes) in any configured language."""
    word = keyword_form(text)
    per_lang = lib.interrupts.keywords.get("confirm", {})
    return bool(word) and any(word in words for words in per_lang.values())


_SCRIPTS = {"hi": re.compile(r"[\u0900-\u097F]")}  # Devanagari


def infer_language(inbound: Inbound | None, languages: tuple[str, ...]) -> str | None:
    """A configured language the message itself reveals, or None (then the bot asks)."""
    if inbound is None:
        return None
    hint = (inbound.language_hint or "").split("-")[0].lower()
    if hint in languages:
        return hint
    for lang, script in _SCRIPTS.items():
        if lang in languages and script.search(inbound.text):
            return lang
    return None


def expectation(lib: Library, session: Session) -> Expectation | None:
    """What the session is waiting for, for the interpreter; None outside a question."""
    if session.confirm_flag is not None:  # one yes/no question about a red flag
        return Expectation(concept=session.confirm_flag, type=QuestionType.BOOL)
    node = _current_ask(lib, session)
    if node is None:
        return None
    lang = session.contact.language
    concept = lib.concepts.get(node.concepts[0])
    options: tuple[Option, ...] = ()
    if node.type in ("choice", "multi"):
        wanted = set(session.pending_options) if node.type == "multi" else None
        options = tuple(
            Option(o.value, _labels(o.text, lang, o.value))
            for o in node.options
            if wanted is None or o.value in wanted
        )
    # Per-patient baselines (enrollment, docs/checkins.md) carried in the session's answers:
    # a peak flow in L/min becomes a percent of the personal best; a mmol/L meter is the
    # default unit of a glucose reading.
    best = session.answers.get("peak_flow_best_lpm")
    personal_best = (
        float(best)
        if node.concepts[0] == "peak_flow_percent" and isinstance(best, int | float) and best > 0
        else None
    )
    input_unit = node.input_unit
    if input_unit is None and concept is not None and concept.unit == "mg/dL":
        meter = session.answers.get("glucose_unit")
        input_unit = meter if meter == "mmol/L" else None
    return Expectation(
        concept=options[0].value if node.type == "multi" and options else node.concepts[0],
        type=QuestionType(node.type),
        unit=concept.unit if concept else None,
        input_unit=input_unit,
        options=options,
        allow_unknown=node.allow_unknown,
        range=node.range,
        personal_best=personal_best,
    )


LANGUAGE_NAMES = {  # words a patient may type at the language menu, besides the labels
    "en": ("english", "angrezi", "inglés", "ingles", "अंग्रेजी"),
    "hi": ("hindi", "हिंदी", "हिन्दी", "hindustani"),
    "es": ("spanish", "español", "espanol", "castellano", "स्पेनिश"),
}


def _labels(text: Text, lang: str, value: str) -> tuple[str, ...]:
    """The words that name an option: its text in every language, and its value unless the
    value is a bare code ("hi" typed at the language menu is a greeting, not Hindi)."""
    seen: list[str] = []
    code = value.replace("_", " ")
    names = LANGUAGE_NAMES.get(value, ())
    for label in (
        text.get(lang),
        text.get("en"),
        *text.values(),
        *names,
        code if len(code) > 2 else None,
    ):
        if label and label not in seen:
            seen.append(label)
    return tuple(seen)


def _current_ask(lib: Library, session: Session) -> AskNode | None:
    """The question a session waits on; an expired one still holds its question (resumable)."""
    waiting = session.status in (SessionStatus.ACTIVE, SessionStatus.EXPIRED)
    if not waiting or not session.flow or not session.node:
        return None
    flow = lib.flows.get(session.flow)
    node = flow.nodes.get(session.node) if flow else None
    return node if isinstance(node, AskNode) else None


def start(
    lib: Library,
    session: Session,
    flow_id: str,
    now: datetime,
    understanding: Understanding | None = None,
) -> Sprint:
    """Begin `flow_id` as a new conversation (answers pre-filled from free text, if any)."""
    run = _Run(lib, session, now)
    run.begin(flow_id, understanding)
    return run.sprint()


def resume(
    lib: Library,
    session: Session,
    inbound: Inbound,
    understanding: Understanding,
    now: datetime,
) -> Sprint:
    """Handle one patient message: interrupts first, then the question being asked."""
    run = _Run(lib, session, now)
    run.handle(inbound, understanding)
    return run.sprint()


class _Run:
    """Mutable working state for one engine step; `sprint()` freezes it."""

    def __init__(self, lib: Library, session: Session, now: datetime) -> None:
        self.lib = lib
        self.s = session
        self.now = now
        self.events: list[Event] = []
        self.buffer: list[str] = []
        self.choices: tuple[str, ...] = ()
        self.multi: tuple[str, str] | None = None
        self.answers: dict[str, Any] = dict(session.answers)
        self.inbound: Inbound | None = None
        self.contact: Contact = session.contact

    # --- output ------------------------------------------------
    def t(self, text: Text | None, **extra: str) -> str:
        if not text:
            return ""
        lang = self.contact.language
        raw = text.get(lang) or text.get("en") or next(iter(text.values()))
        values = _SafeFormat({**self.lib.placeholders, **extra})
        return string.Formatter().vformat(raw, (), values)

    def msg(self, key: str, **extra: str) -> str:
        return self.t(self.lib.interrupts.messages.get(key), **extra)

    def say(self, text: str) -> None:
        if text:
            self.buffer.append(text)

    def flush(self) -> None:
        if self.buffer:
            self.events.append(MsgCreated("\n\n".join(self.buffer), self.choices, self.multi))
        self.buffer, self.choices, self.multi = [], (), None

    def sprint(self) -> Sprint:
        self.flush()
        self.s = self.s.evolve(answers=self.answers, contact=self.contact, updated_at=self.now)
        return Sprint(self.s, tuple(self.events))

    def record(self, concept: str, value: Any, source: str = "answer") -> None:
        self.answers[concept] = value
        self.events.append(AnswerRecorded(concept, value, source))
        field = CONTACT_CONCEPTS.get(concept)
        if field is not None and value is not None:
            self.contact_change(field, value)

    def contact_change(self, field: str, value: Any) -> None:
        self.contact = _replace_contact(self.contact, field, value)
        self.events.append(ContactChanged(field, value))

    # --- entry points ------------------------------------------------
    def handle(self, inbound: Inbound, u: Understanding) -> None:
        self.inbound = inbound
        word = keyword(self.lib, inbound.text, self.contact.language)
        confirming = self.s.confirming
        if confirming is not None:  # asked once: any reply settles it
            self.s = self.s.evolve(confirming=None)
        if u.red_flags:
            self.red_flag(tuple(u.red_flags))
            return
        if self.s.confirm_flag is not None and word is None:
            self.confirmed(u.answer)
            return
        if self.s.confirm_flag is not None:  # a keyword instead of yes/no: drop the question
            self.s = self.s.evolve(confirm_flag=None, confirm_flow=None)
        candidates = [  # a sign the patient already said no to is not asked about again
            c
            for c in u.red_flag_candidates
            if c in self.lib.interrupts.red_flags and self.answers.get(c) is not False
        ]
        if candidates and word is None and self.s.status is not SessionStatus.HANDED_OFF:
            self.confirm(candidates[0], u)
            return
        if self.privacy(word, confirming, inbound.text):
            return
        if word == "stop":
            self.contact_change("opted_out", True)
            self.say(self.msg("stopped"))
            self.s = self.s.evolve(status=SessionStatus.COMPLETED, stack=(), node=None)
            return
        if word == "join":  # broadcasts: subscribe (after STOP, this is also coming back)
            if self.contact.opted_out:
                self.contact_change("opted_out", False)
            self.contact_change("consent_broadcast", True)
            self.say(self.msg("joined"))
            self.reask()
            return
        if self.contact.opted_out:
            if word == "start":
                self.contact_change("opted_out", False)
                self.say(self.msg("started"))
            return  # an opted-out contact gets nothing else (red flags are answered above)
        if self.s.status is SessionStatus.HANDED_OFF:
            return  # a human has the conversation
        if word == "help":
            self.say(self.msg("help"))
            self.reask()
            return
        if word == "agent":
            self.events.append(EscalationOpened("consultation", "patient_request", self.s.flow, ()))
            self.say(self.msg("agent"))
            self.s = self.s.evolve(status=SessionStatus.HANDED_OFF, stack=(), node=None)
            return
        if word == "restart":
            self.say(self.msg("restart"))
            self.answers = {}
            self.begin(self.s.flow or self.lib.default_flow, None, fresh=True)
            return
        if word == "menu":  # a new conversation from the menu
            self.begin(self.lib.default_flow, None)
            return
        if word == "language":  # choose, then carry on with the question that was open
            self.answers.pop("preferred_language", None)
            here = _current_ask(self.lib, self.s)
            if here is not None and self.s.flow is not None:
                self.s = self.s.evolve(stack=(*self.s.stack, Frame(self.s.flow, here.id)))
                self.enter("language")
            else:
                self.begin("language", None)
            return
        here = _current_ask(self.lib, self.s)
        if here is None or self.complaint_at_menu(here, u):
            self.start_routed(u)
            return
        if self.s.status is SessionStatus.EXPIRED:
            self.welcome_back(u.answer)
            return
        self.answer(self.by_intent(here, u))

    def start_routed(self, u: Understanding) -> None:
        """Begin the flows the complaint routes to (the menu when there is no complaint)."""
        known = self.known_conditions()
        flows = route(self.lib, u, known)
        if flows[0] == self.lib.default_flow:
            self.begin(flows[0], u)
        else:
            self.begin(flows[0], u, then=flows[1:], known=known)

    def by_intent(self, here: AskNode, u: Understanding) -> Answer | None:
        """A menu answer the option words did not give, picked by what the message means
        ("meri bimari ki jaanch" is a check-in), when the intent names one of the options."""
        ans = u.answer
        if here.concepts[0] != "menu_choice" or (
            ans is not None and ans.status is not AnswerStatus.INVALID
        ):
            return ans
        value = MENU_INTENTS.get(u.intent.name)
        if value is not None and any(o.value == value for o in here.options):
            return Answer(AnswerStatus.OK, value)
        return ans

    def complaint_at_menu(self, here: AskNode, u: Understanding) -> bool:
        """A complaint typed at the main menu instead of an option ("my chest hurts") is read
        as a complaint, not as a failed menu answer."""
        if self.s.flow != self.lib.default_flow or self.s.stack:
            return False
        if u.answer is not None and u.answer.status is not AnswerStatus.INVALID:
            return False
        return route(self.lib, u, frozenset())[0] != self.lib.default_flow

    def known_conditions(self) -> frozenset[str]:
        """Conditions known before this message: enrollment, and the last conversation's answers."""
        known = {c for c, v in self.s.answers.items() if c in CONDITION_FLOWS and v is True}
        known |= {
            ENROLLED_CONDITIONS[c] for c in self.contact.conditions if c in ENROLLED_CONDITIONS
        }
        return frozenset(known)

    def privacy(self, word: str | None, confirming: str | None, text: str) -> bool:
        """MYDATA says what is kept and for how long; FORGET asks for a yes, then erases (the
        app does it on PrivacyRequested). True if the message was one of these."""
        if confirming == "forget":
            if _confirmed(self.lib, text):
                self.events.append(PrivacyRequested("forget"))
                self.say(self.msg("forgotten"))
                self.answers = {}
                self.s = self.s.evolve(status=SessionStatus.COMPLETED, stack=(), node=None)
                return True
            self.say(self.msg("forget_kept"))  # and the message is handled as usual
        if word == "mydata":
            self.events.append(PrivacyRequested("mydata"))
            self.say(self.msg("mydata"))
            self.reask()
            return True
        if word == "forget":
            self.say(self.msg("forget_confirm"))
            self.s = self.s.evolve(confirming="forget")
            return True
        return False

    def begin(
        self,
        flow_id: str,
        u: Understanding | None,
        *,
        fresh: bool = True,
        then: tuple[str, ...] = (),
        known: frozenset[str] = frozenset(),
    ) -> None:
        """Start a conversation; a contact never asked for consent goes through it first.
        `then`: flows that follow this one in the same conversation (complaint routing);
        `known`: conditions known from enrollment or earlier answers, pre-filled as true."""
        if fresh:
            self.fresh(u, known)
        stack: tuple[Frame, ...] = tuple(Frame(f, FLOW_START) for f in reversed(then))
        if self.contact.consent_care is not True and flow_id != self.lib.first_flow:
            stack = (*stack, Frame(flow_id, FLOW_START))
            flow_id = self.lib.first_flow
            patient_first = self.inbound is not None and self.contact.consent_care is None
            if patient_first and not self.language_known():
                # first contact, language unknown: the numbered language menu comes first
                stack, flow_id = (*stack, Frame(flow_id, FLOW_START)), "language"
        self.s = self.s.evolve(stack=stack)
        if u is not None:
            self.confirm_prefill(u)
        self.enter(flow_id)

    def fresh(self, u: Understanding | None, known: frozenset[str]) -> None:
        """A new conversation's answers: what the message said, and the known conditions."""
        self.answers = {} if u is None else self.answers_from(u)
        for concept in sorted(known):
            if concept not in self.answers:
                self.answers[concept] = True
                self.events.append(AnswerRecorded(concept, True, "known"))
        self.s = self.s.evolve(id=None, started_at=self.now, triage=None, red_flags=(), failures=0)

    def language_known(self) -> bool:
        """Whether a first contact's language is settled: one language configured, or one
        inferred from the channel (Telegram's language_code) or the script of the message."""
        if len(self.lib.languages) < 2 or self.contact.language_set:
            return True
        guess = infer_language(self.inbound, self.lib.languages)
        if guess is None:
            return False
        if guess != self.contact.language:
            self.contact_change("language", guess)
        return True

    def answers_from(self, u: Understanding) -> dict[str, Any]:
        answers: dict[str, Any] = {}
        for concept, value in u.findings().items():
            cdef = self.lib.concepts.get(concept)
            if cdef is None or concept in GLOBAL_RED_FLAGS:
                continue
            if cdef.type == "bool" and isinstance(value, bool):
                answers[concept] = value
            elif (
                cdef.type == "number"
                and isinstance(value, int | float)
                and _plausible(float(value), cdef.range)  # else the question is asked
            ):
                answers[concept] = float(value)
        for concept, value in answers.items():
            self.events.append(AnswerRecorded(concept, value, "prefill"))
        return answers

    def confirm_prefill(self, u: Understanding) -> None:
        noted = [self.label(c) for c, v in self.answers.items() if v is True]
        if noted and "prefilled" in self.lib.interrupts.messages:
            self.say(self.msg("prefilled", items=", ".join(noted)))

    def label(self, concept: str) -> str:
        """How the flows name a concept to the patient (an option's text), in their language."""
        for flow in self.lib.flows.values():
            for node in flow.nodes.values():
                if isinstance(node, AskNode) and node.type == "multi":
                    for option in node.options:
                        if option.value == concept:
                            return self.t(option.text)
        return concept.replace("_", " ")

    # --- red flags ------------------------------------------------
    def red_flag(self, flags: tuple[str, ...]) -> None:
        """A red flag interrupts whatever was running: the most urgent level of the flags
        (`red_flags:` in flows/_interrupts.yaml), its emergency message with the emergency
        number in this reply, and an escalation."""
        for concept in flags:
            self.record(concept, True, "red_flag")
        level = self.lib.interrupts.level_of(flags)
        self.events.append(RedFlagRaised(flags))
        flow = self.s.flow or "red_flag"
        self.events.append(TriageDecided(flow, level, ()))
        self.events.append(EscalationOpened(level, "red_flag", self.s.flow, flags))
        self.say(self.msg("red_flag" if level == "emergency_ambulance" else "red_flag_emergency"))
        if "suicidal_thoughts" in flags:
            self.say(self.msg("crisis"))
        self.s = self.s.evolve(
            status=SessionStatus.COMPLETED,
            stack=(),
            node=None,
            triage=level,
            red_flags=tuple(dict.fromkeys((*self.s.red_flags, *flags))),
            confirm_flag=None,
            confirm_flow=None,
        )

    def confirm(self, flag: str, u: Understanding) -> None:
        """A message near a red flag: ask one plain yes/no question naming the sign; the
        question that was open (or the flow this message would start) waits for the answer."""
        if _current_ask(self.lib, self.s) is not None:
            self.s = self.s.evolve(confirm_flag=flag, confirm_flow=None)
        else:  # a first message: the conversation it routes to starts after the answer
            known = self.known_conditions()
            flows = route(self.lib, u, known)
            self.fresh(u, known)
            self.s = self.s.evolve(
                status=SessionStatus.ACTIVE,  # a question waits for an answer
                stack=(),
                node=None,
                confirm_flag=flag,
                confirm_flow=" ".join(flows),
            )
        self.ask_confirmation()

    def ask_confirmation(self) -> None:
        flag = self.s.confirm_flag
        assert flag is not None
        question = self.t(self.lib.interrupts.red_flags[flag].ask)
        self.say(self.msg("confirm_red_flag", question=question))

    def confirmed(self, ans: Answer | None) -> None:
        """The answer to the red-flag question: yes -> that red flag; no -> carry on with
        the question that was open (or start the flow the first message asked for)."""
        flag, next_flow = self.s.confirm_flag, self.s.confirm_flow
        assert flag is not None
        if ans is None or ans.status is not AnswerStatus.OK or not isinstance(ans.value, bool):
            self.say(self.msg("hint_bool"))
            self.ask_confirmation()
            return
        self.s = self.s.evolve(confirm_flag=None, confirm_flow=None)
        if ans.value:
            self.red_flag((flag,))
            return
        if _current_ask(self.lib, self.s) is not None:
            self.record(flag, False, "red_flag_confirmation")
            self.reask()
        else:  # the routed conversation, with what the first message said, starts now
            self.record(flag, False, "red_flag_confirmation")
            first, *then = (next_flow or self.lib.default_flow).split()
            self.begin(first, None, fresh=False, then=tuple(then))

    # --- answering ------------------------------------------------
    def reask(self) -> None:
        if self.s.confirm_flag is not None:  # a nudge while the red-flag question waits
            self.ask_confirmation()
            return
        node = _current_ask(self.lib, self.s)
        if node is not None:
            self.ask(node, pending=self.s.pending_options)

    def welcome_back(self, ans: Answer | None) -> None:
        """The patient writes after the conversation expired: an answer to the question it was
        waiting on carries on where they left off; anything else offers that question again."""
        self.s = self.s.evolve(status=SessionStatus.ACTIVE, failures=0)
        if ans is not None and ans.status in (AnswerStatus.OK, AnswerStatus.UNKNOWN):
            self.answer(ans)
            return
        if self.s.flow != self.lib.default_flow:  # the menu is not a place to come back to
            self.say(self.msg("resume"))
        self.reask()

    def answer(self, ans: Answer | None) -> None:
        node = _current_ask(self.lib, self.s)
        flow_id = self.s.flow
        assert node is not None and flow_id is not None
        if ans is None or ans.status in (AnswerStatus.INVALID, AnswerStatus.OUT_OF_RANGE):
            failures = self.s.failures + 1
            self.s = self.s.evolve(failures=failures)
            key = "out_of_range" if ans and ans.status is AnswerStatus.OUT_OF_RANGE else ""
            self.say(self.msg(key) if key else self.t(node.hint) or self.msg(self.hint_key(node)))
            if failures >= self.lib.max_failures:
                self.say(self.msg("offer_human"))
            self.ask(node, pending=self.s.pending_options)
            return
        self.s = self.s.evolve(failures=0)
        value = ans.value if ans.status is AnswerStatus.OK else None
        if node.type == "bp":
            pair = value if isinstance(value, tuple) and len(value) == 2 else (None, None)
            for concept, v in zip(node.concepts, pair, strict=True):
                self.record(concept, float(v) if v is not None else None)
        elif node.type == "multi" and ans.status is AnswerStatus.PARTIAL:
            # read in part: what was read is recorded, the other options are asked again
            read = {str(v) for v in ans.value} if isinstance(ans.value, tuple) else set()
            asked = self.s.pending_options or node.concepts
            for concept in asked:
                if concept in read:
                    self.record(concept, True)
            rest = tuple(c for c in asked if c not in read)
            flags = tuple(rf for rf in GLOBAL_RED_FLAGS if self.answers.get(rf) is True)
            if any(f not in self.s.red_flags for f in flags):
                self.red_flag(tuple(f for f in flags if f not in self.s.red_flags))
                return
            noted = ", ".join(self.label(c) for c in asked if c in read)
            self.say(self.msg("prefilled", items=noted))
            self.ask(node, pending=rest)
            return
        elif node.type == "multi":
            chosen = set(value) if isinstance(value, tuple) else set()
            asked = self.s.pending_options or node.concepts
            for concept in asked:
                self.record(concept, (concept in chosen) if value is not None else None)
        else:
            self.record(node.concepts[0], value)
        flags = tuple(rf for rf in GLOBAL_RED_FLAGS if self.answers.get(rf) is True)
        new_flags = tuple(f for f in flags if f not in self.s.red_flags)
        if new_flags:
            self.red_flag(new_flags)
            return
        self.walk(flow_id, self.next_of(self.flow(flow_id), node.next))

    def hint_key(self, node: AskNode) -> str:
        """The re-prompt for a question type; on a channel with buttons, one that speaks of
        the buttons it shows (no "reply 0 for none" where there is a None button)."""
        channel = self.inbound.channel if self.inbound is not None else self.contact.channel
        buttons = f"hint_{node.type}_buttons"
        if channel in BUTTON_CHANNELS and buttons in self.lib.interrupts.messages:
            return buttons
        return f"hint_{node.type}"

    # --- walking ------------------------------------------------
    def flow(self, flow_id: str) -> Flow:
        return self.lib.flows[flow_id]

    def next_of(self, flow: Flow, cases: tuple[Case, ...]) -> str:
        for case in cases:
            if case.when is None or evaluate(case.when, self.answers, flow.defines):
                return case.goto
        raise _FlowBug(f"{flow.id}: no case matched")  # loader requires a default

    def enter(self, flow_id: str) -> None:
        if flow_id not in self.lib.flows:
            self.fail("unknown_flow", flow_id)
            return
        self.events.append(FlowEntered(flow_id))
        self.walk(flow_id, self.flow(flow_id).start)

    def fail(self, code: str, detail: str) -> None:
        self.events.append(ErrorRaised(code, detail))
        self.say(self.msg("error"))
        self.s = self.s.evolve(status=SessionStatus.COMPLETED, stack=(), node=None)

    def walk(self, flow_id: str, node_id: str) -> None:
        try:
            self._walk(flow_id, node_id)
        except _FlowBug as exc:
            self.fail("flow_bug", str(exc))

    def _walk(self, flow_id: str, node_id: str) -> None:
        for _ in range(MAX_STEPS):
            flow = self.flow(flow_id)
            node: Node = flow.nodes[node_id]
            nxt: str | None = None
            match node:
                case AskNode():
                    pending = self.pending(node)
                    if pending is None:
                        nxt = self.next_of(flow, node.next)
                    else:
                        self.s = self.s.evolve(
                            flow=flow_id, node=node.id, status=SessionStatus.ACTIVE, failures=0
                        )
                        self.ask(node, pending=pending)
                        return
                case SayNode():
                    self.say(self.t(node.text))
                    nxt = self.next_of(flow, node.next)
                case RouteNode():
                    nxt = self.next_of(flow, node.next)
                case TriageNode():
                    nxt = self.do_triage(flow, node)
                case ClassifyNode():
                    value, _ = decide(node.rows, node.order, self.answers, flow.defines)
                    if value is not None:
                        self.record(node.concept, value, "classify")
                    nxt = self.next_of(flow, node.next)
                case EscalateNode():
                    flags = tuple(rf for rf in GLOBAL_RED_FLAGS if self.answers.get(rf) is True)
                    self.events.append(EscalationOpened(node.level, node.reason, flow_id, flags))
                    nxt = self.next_of(flow, node.next)
                case EnterNode():
                    if node.flow not in self.lib.flows:
                        raise _FlowBug(f"{flow_id}:{node.id}: unknown flow {node.flow}")
                    self.s = self.s.evolve(stack=(*self.s.stack, Frame(flow_id, node.id)))
                    self.events.append(FlowEntered(node.flow))
                    flow_id, nxt = node.flow, self.flow(node.flow).start
                case EndNode():
                    self.say(self.t(node.text))
                    self.events.append(FlowEnded(flow_id))
                    if node.exit_all or not self.s.stack:
                        # `exit: human` (the menu's "Talk to a person"): like AGENT, the bot
                        # steps back and the patient's next messages go to the clinician
                        done = SessionStatus.HANDED_OFF if node.hand_over else None
                        self.s = self.s.evolve(
                            flow=flow_id,
                            node=None,
                            status=done or SessionStatus.COMPLETED,
                            stack=(),
                        )
                        return
                    frame = self.s.stack[-1]
                    if frame.node == FLOW_START and self.s.triage == LEVELS[0]:
                        # an ambulance ends the conversation: no routed flow follows it (an
                        # `emergency` lets the next one run: it may find an ambulance sign)
                        self.s = self.s.evolve(
                            flow=flow_id, node=None, status=SessionStatus.COMPLETED, stack=()
                        )
                        return
                    self.s = self.s.evolve(stack=self.s.stack[:-1])
                    flow_id = frame.flow
                    if frame.node == FLOW_START:
                        self.events.append(FlowEntered(flow_id))
                        nxt = self.flow(flow_id).start
                    else:
                        caller = self.flow(flow_id).nodes[frame.node]
                        # after an `enter` node: its next; an interrupted question: ask again
                        if isinstance(caller, EnterNode):
                            nxt = self.next_of(self.flow(flow_id), caller.next)
                        else:
                            nxt = caller.id
            assert nxt is not None
            node_id = nxt
        raise _FlowBug(f"{flow_id}: more than {MAX_STEPS} steps without a question")

    def pending(self, node: AskNode) -> tuple[str, ...] | None:
        """What is still to ask at this node; None when everything is answered already."""
        missing = tuple(c for c in node.concepts if c not in self.answers)
        if node.type == "multi":
            return missing or None
        return node.concepts if len(missing) == len(node.concepts) else None

    def ask(self, node: AskNode, *, pending: tuple[str, ...]) -> None:
        text = self.t(node.text)
        if node.allow_unknown:
            text += self.msg("unknown_allowed")
        self.say(text)
        if node.type in ("choice", "multi"):
            wanted = set(pending) if node.type == "multi" else None
            self.choices = tuple(
                self.t(o.text) for o in node.options if wanted is None or o.value in wanted
            )
        if node.type == "bool":
            self.choices = ()
        if node.type == "multi":
            self.multi = (self.msg("button_none") or "None", self.msg("button_done") or "Done")
        self.s = self.s.evolve(pending_options=pending if node.type == "multi" else ())

    def do_triage(self, flow: Flow, node: TriageNode) -> str:
        level, rows = triage(node.rows, self.answers, flow.defines)
        if level is None:
            raise _FlowBug(f"{flow.id}:{node.id}: no triage row matched (add an otherwise row)")
        self.events.append(TriageDecided(flow.id, level, rows))
        # flows chained by complaint routing: the conversation keeps its most urgent level
        earlier = self.s.triage
        urgent = (
            earlier if earlier in LEVELS and LEVELS.index(earlier) < LEVELS.index(level) else level
        )
        self.s = self.s.evolve(triage=urgent)
        outcome = next(
            o
            for o in node.outcomes[level]
            if o.when is None or evaluate(o.when, self.answers, flow.defines)
        )
        self.say(self.t(outcome.text, level_label=level.replace("_", " ")))
        if level in EMERGENCY_LEVELS:
            self.say(self.msg("emergency_instruction"))
        if level in ESCALATING_LEVELS:
            flags = tuple(rf for rf in GLOBAL_RED_FLAGS if self.answers.get(rf) is True)
            self.events.append(EscalationOpened(level, "triage", flow.id, flags))
        if outcome.follow_up is not None:
            fu = outcome.follow_up
            delay = fu.after or fu.every
            assert delay is not None
            self.events.append(FollowUpScheduled(fu.flow, self.now + delay, fu.every, fu.times))
        return outcome.next or self.next_of(flow, node.next)


class _FlowBug(Exception):
    """A flow reached a state the loader could not rule out; becomes an ErrorRaised event."""


def _plausible(value: float, bounds: tuple[float, float] | None) -> bool:
    """A number inside the concept's range (data/concepts.yaml), and finite."""
    return math.isfinite(value) and (bounds is None or bounds[0] <= value <= bounds[1])


def _replace_contact(contact: Contact, field: str, value: Any) -> Contact:
    """The engine's contact snapshot after a ContactChanged (fields it does not keep: as is)."""
    if field == "language":
        return replace(contact, language=value, language_set=True)
    return replace(contact, **{field: value}) if field in _CONTACT_FIELDS else contact


_CONTACT_FIELDS = frozenset({"opted_out", "language", "consent_care"})
