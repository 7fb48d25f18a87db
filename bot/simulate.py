"""A simulated patient who answers every question from a facts file (`carebridge triage`).

Absent bool = no, absent number = "don't know". Pure: runs the engine without a store.
Imports bot.engine, bot.flow, bot.session, bot.events, bot.messages and nlu types.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot import engine
from bot.events import EscalationOpened, MsgCreated, RedFlagRaised
from bot.flow import AskNode, Library
from bot.messages import Inbound
from bot.session import Contact, Session, SessionStatus
from nlu.types import (
    GLOBAL_RED_FLAGS,
    Answer,
    AnswerStatus,
    Expectation,
    Intent,
    QuestionType,
    Understanding,
)

SIM_TIME = datetime(2020, 4, 1, 9, 0, tzinfo=UTC)
MAX_TURNS = 200


@dataclass
class SimResult:
    flow: str
    triage: str | None
    red_flags: list[str]
    escalated: bool
    answers: dict[str, Any]
    transcript: list[dict[str, str]]

    def as_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "triage": self.triage,
            "red_flags": self.red_flags,
            "escalated": self.escalated,
            "answers": self.answers,
            "transcript": self.transcript,
        }


def answer_from_facts(exp: Expectation, facts: dict[str, Any]) -> tuple[str, Answer]:
    """What the simulated patient types, and the answer it means."""
    if exp.type is QuestionType.BOOL:
        value = bool(facts.get(exp.concept, False))
        return ("yes" if value else "no"), Answer(AnswerStatus.OK, value)
    if exp.type is QuestionType.NUMBER:
        if facts.get(exp.concept) is None:
            return "don't know", Answer(AnswerStatus.UNKNOWN)
        num = float(facts[exp.concept])
        return f"{num:g}", Answer(AnswerStatus.OK, num)
    if exp.type is QuestionType.BP:
        sys_, dia = facts.get("systolic_bp"), facts.get("diastolic_bp")
        if sys_ is None or dia is None:
            return "don't know", Answer(AnswerStatus.UNKNOWN)
        return f"{sys_:g}/{dia:g}", Answer(AnswerStatus.OK, (float(sys_), float(dia)))
    if exp.type is QuestionType.MULTI:
        chosen = tuple(o.value for o in exp.options if facts.get(o.value))
        typed = " ".join(str(i) for i, o in enumerate(exp.options, 1) if o.value in chosen)
        return (typed or "0"), Answer(AnswerStatus.OK, chosen)
    if exp.type is QuestionType.CHOICE:
        choice = facts.get(exp.concept)
        if choice is None and exp.options:
            choice = exp.options[0].value
        return str(choice), Answer(AnswerStatus.OK, str(choice))
    return str(facts.get(exp.concept, "")), Answer(AnswerStatus.OK, str(facts.get(exp.concept, "")))


def fact_problems(lib: Library, facts: dict[str, Any]) -> list[str]:
    """What is wrong in a facts file, one "concept: problem" per bad fact (empty: all good).

    Each fact must be a known concept with a value of its type: true/false for bool, a number
    inside the concept's range (or the range a flow asks it with) for number, one of the
    values for choice; an absent or empty (null) value is always allowed.
    """
    problems = []
    for concept, value in facts.items():
        cdef = lib.concepts.get(str(concept))
        if cdef is None:
            near = difflib.get_close_matches(str(concept), list(lib.concepts), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            problems.append(f"{concept}: unknown concept id{hint}")
            continue
        if value is None:
            continue
        problem = _value_problem(lib, cdef.id, cdef.type, value)
        if problem:
            problems.append(f"{concept}: {problem}")
    return problems


def _value_problem(lib: Library, concept: str, kind: str, value: Any) -> str | None:
    if kind == "bool":
        return None if isinstance(value, bool) else f"{value!r} is not true or false"
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return f"{value!r} is not a number"
        low_high = _range_of(lib, concept)
        if low_high is not None and not low_high[0] <= value <= low_high[1]:
            return f"{value:g} is out of range ({low_high[0]:g} to {low_high[1]:g})"
        return None
    if kind == "choice":
        allowed = _values_of(lib, concept)
        if not isinstance(value, str) or (allowed and value not in allowed):
            listed = f" (one of: {', '.join(allowed)})" if allowed else ""
            return f"{value!r} is not a valid choice{listed}"
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return f"{value!r} is not text"
    return None


def _range_of(lib: Library, concept: str) -> tuple[float, float] | None:
    """The concept's range, else the range a flow asks it with."""
    cdef = lib.concepts[concept]
    if cdef.range is not None:
        return cdef.range
    for flow in lib.flows.values():
        for node in flow.nodes.values():
            if isinstance(node, AskNode) and node.range is not None and concept in node.concepts:
                return node.range
    return None


def _values_of(lib: Library, concept: str) -> tuple[str, ...]:
    """The concept's values, else the options of the questions that ask it."""
    cdef = lib.concepts[concept]
    if cdef.values:
        return cdef.values
    found: dict[str, None] = {}
    for flow in lib.flows.values():
        for node in flow.nodes.values():
            if isinstance(node, AskNode) and node.type == "choice" and concept in node.concepts:
                found.update(dict.fromkeys(o.value for o in node.options))
    return tuple(found)


def simulate(lib: Library, flow_id: str, facts: dict[str, Any], language: str = "en") -> SimResult:
    """Run `flow_id` to the end as a patient who answers from `facts`."""
    if flow_id not in lib.flows:
        raise KeyError(flow_id)
    contact = Contact(id=0, channel="sim", language=language, consent_care=True)
    session = Session(contact=contact)
    transcript: list[dict[str, str]] = []
    red_flags: list[str] = []
    escalated = False

    def take(events: tuple[Any, ...]) -> None:
        nonlocal escalated
        for ev in events:
            if isinstance(ev, MsgCreated):
                transcript.append({"bot": ev.text})
            elif isinstance(ev, RedFlagRaised):
                red_flags.extend(ev.concepts)
            elif isinstance(ev, EscalationOpened):
                escalated = True

    sprint = engine.start(lib, session, flow_id, SIM_TIME)
    take(sprint.events)
    session = sprint.session
    volunteered = tuple(
        rf
        for rf in GLOBAL_RED_FLAGS
        if facts.get(rf) and rf not in engine.asked_concepts(lib, flow_id)
    )
    if volunteered:  # a red flag the flow never asks about is said in free text
        typed = "I have " + " and ".join(rf.replace("_", " ") for rf in volunteered)
        transcript.append({"patient": typed})
        u = Understanding(typed, language, Intent("report_symptom", 1.0), red_flags=volunteered)
        sprint = engine.resume(
            lib, session, Inbound("sim", "sim", typed, SIM_TIME, "sim-0"), u, SIM_TIME
        )
        take(sprint.events)
        session = sprint.session
    for _ in range(MAX_TURNS):
        exp = engine.expectation(lib, session)
        if exp is None or session.status is not SessionStatus.ACTIVE:
            break
        typed, answer = answer_from_facts(exp, facts)
        transcript.append({"patient": typed})
        u = Understanding(typed, language, Intent("inform", 1.0), answer=answer)
        inbound = Inbound("sim", "sim", typed, SIM_TIME, f"sim-{len(transcript)}")
        sprint = engine.resume(lib, session, inbound, u, SIM_TIME)
        take(sprint.events)
        session = sprint.session
    return SimResult(
        flow=flow_id,
        triage=session.triage,
        red_flags=sorted(set(red_flags)),
        escalated=escalated,
        answers=dict(session.answers),
        transcript=transcript,
    )
