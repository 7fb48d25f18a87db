"""The parsed, validated form of a flow file (see docs/flows.md).

Imports only the standard library. Built by bot.loader; read by bot.engine.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

# A text per language: {"en": "...", "hi": "..."}.
Text = dict[str, str]

LEVELS: tuple[str, ...] = (
    "emergency_ambulance",
    "emergency",
    "consultation_24",
    "consultation",
    "self_care",
)
"""Triage levels, most urgent first (copied from data/concepts.yaml and checked against it)."""

ESCALATING_LEVELS = frozenset(LEVELS[:3])
EMERGENCY_LEVELS = frozenset(LEVELS[:2])

# GLOBAL_RED_FLAGS lives in nlu.types (the NLU finds them; their levels and confirmation
# questions are data in `red_flags:` of flows/_interrupts.yaml, checked by the loader).


def keyword_form(text: str) -> str:
    """How keywords are compared: punctuation and symbols dropped (letters and combining marks
    of any script kept, so Devanagari vowel signs survive), spaces collapsed, upper case."""
    kept = "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PS")
    return " ".join(kept.split()).upper()


def urgency(level: str) -> int:
    """Rank of a triage level: 0 is the most urgent."""
    return LEVELS.index(level)


# --- conditions -------------------------------------------------------------


@dataclass(frozen=True)
class Truthy:
    """A concept, a defined name, or `red_flag`, taken as true or false."""

    name: str


@dataclass(frozen=True)
class Compare:
    """All comparisons hold on an answered concept: (("lt", 90),)."""

    concept: str
    ops: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AllOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


@dataclass(frozen=True)
class Count:
    """The number of true items satisfies every comparison in ops."""

    items: tuple[Condition, ...]
    ops: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Answered:
    concept: str


Condition = Truthy | Compare | AnyOf | AllOf | Not | Count | Answered


@dataclass(frozen=True)
class Case:
    """One branch of a `next` list; `when is None` is the default."""

    when: Condition | None
    goto: str


# --- nodes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    value: str  # choice: recorded value; multi: the concept recorded
    text: Text


@dataclass(frozen=True)
class FollowUp:
    flow: str
    after: timedelta | None = None
    every: timedelta | None = None
    times: int = 1


@dataclass(frozen=True)
class Outcome:
    when: Condition | None
    text: Text | None
    follow_up: FollowUp | None = None
    next: str | None = None


@dataclass(frozen=True)
class Row:
    when: Condition | None
    value: str
    note: str = ""


@dataclass(frozen=True)
class SayNode:
    id: str
    text: Text
    next: tuple[Case, ...]


@dataclass(frozen=True)
class AskNode:
    id: str
    text: Text
    type: str  # bool | number | choice | multi | text | bp
    concepts: tuple[str, ...]  # one concept; two for bp; option concepts for multi
    next: tuple[Case, ...]
    options: tuple[Option, ...] = ()
    allow_unknown: bool = False
    hint: Text | None = None
    range: tuple[float, float] | None = None
    input_unit: str | None = None


@dataclass(frozen=True)
class RouteNode:
    id: str
    next: tuple[Case, ...]


@dataclass(frozen=True)
class TriageNode:
    id: str
    rows: tuple[Row, ...]
    outcomes: dict[str, tuple[Outcome, ...]]
    next: tuple[Case, ...]


@dataclass(frozen=True)
class ClassifyNode:
    id: str
    concept: str
    order: tuple[str, ...]
    rows: tuple[Row, ...]
    next: tuple[Case, ...]


@dataclass(frozen=True)
class EscalateNode:
    id: str
    reason: str
    level: str
    next: tuple[Case, ...]


@dataclass(frozen=True)
class EnterNode:
    id: str
    flow: str
    next: tuple[Case, ...]


@dataclass(frozen=True)
class EndNode:
    id: str
    text: Text | None = None
    exit_all: bool = False
    hand_over: bool = False  # `exit: human`: end every flow, a human has the conversation


Node = (
    SayNode | AskNode | RouteNode | TriageNode | ClassifyNode | EscalateNode | EnterNode | EndNode
)


@dataclass(frozen=True)
class Flow:
    id: str
    spec_version: int
    title: Text
    start: str
    nodes: dict[str, Node]
    defines: dict[str, Condition] = field(default_factory=dict)
    path: str = ""
    spoken: dict[str, dict[str, str]] = field(default_factory=dict)
    """Texts read aloud on a call instead of the written ones (`spoken:` in the YAML): per
    language, written template -> spoken template (docs/flows.md)."""


@dataclass(frozen=True)
class Interrupts:
    """Keywords per interrupt and language, and the system messages."""

    keywords: dict[str, dict[str, tuple[str, ...]]]
    messages: dict[str, Text]
    red_flags: dict[str, RedFlagSpec] = field(default_factory=dict)
    """Per global red flag: its level and the yes/no question that confirms it."""

    def level_of(self, flags: tuple[str, ...]) -> str:
        """The most urgent level among `flags` (emergency_ambulance when one is unknown)."""
        levels = [self.red_flags[f].level if f in self.red_flags else LEVELS[0] for f in flags]
        return min(levels, key=urgency) if levels else LEVELS[0]


@dataclass(frozen=True)
class RedFlagSpec:
    """One global red flag's outcome level and its confirmation question."""

    level: str
    ask: Text


@dataclass(frozen=True)
class ConceptDef:
    id: str
    type: str  # bool | number | choice | text
    unit: str | None = None
    values: tuple[str, ...] = ()
    range: tuple[float, float] | None = None


@dataclass(frozen=True)
class Library:
    """Everything the engine needs that does not change per message."""

    flows: dict[str, Flow]
    interrupts: Interrupts
    concepts: dict[str, ConceptDef]
    languages: tuple[str, ...] = ("en",)
    placeholders: dict[str, str] = field(default_factory=dict)  # emergency_number, ...
    first_flow: str = "consent"
    default_flow: str = "menu"
    max_failures: int = 3
