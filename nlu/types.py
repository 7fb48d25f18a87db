"""Value types of the understanding layer: what the engine asks for and what it gets back.

A leaf module: imports only the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

AnswerValue = bool | float | str | tuple[str, ...] | tuple[float, float] | None


class QuestionType(StrEnum):
    """Kinds of question a flow can ask."""

    BOOL = "bool"
    NUMBER = "number"
    CHOICE = "choice"
    MULTI = "multi"
    TEXT = "text"
    BP = "bp"  # blood pressure: records (systolic, diastolic)


class AnswerStatus(StrEnum):
    """How a reply fits the question that was asked."""

    OK = "ok"
    UNKNOWN = "unknown"  # "don't know" / "skip" (only accepted where the question allows it)
    INVALID = "invalid"  # not understood as an answer
    OUT_OF_RANGE = "out_of_range"
    PARTIAL = "partial"  # a checklist answer read in part: value = what was read (asked again)


@dataclass(frozen=True)
class Option:
    """One option of a choice or multi-select question, numbered from 1 in display order."""

    value: str  # choice: the recorded value; multi: the concept id recorded as true
    labels: tuple[str, ...]  # words a patient may type for it (the label text first)


@dataclass(frozen=True)
class Expectation:
    """The question the bot is waiting on."""

    concept: str
    type: QuestionType
    unit: str | None = None  # the concept's unit (UCUM-ish: Cel, mg/dL, %, mm[Hg], kg, d, a)
    input_unit: str | None = None  # the unit patients are asked in, when it differs (mmol/L)
    options: tuple[Option, ...] = ()
    allow_unknown: bool = False
    range: tuple[float, float] | None = None
    personal_best: float | None = None  # peak flow in L/min, to convert to percent


@dataclass(frozen=True)
class Answer:
    """A reply read as an answer to an Expectation; value is normalised to the concept unit."""

    status: AnswerStatus
    value: AnswerValue = None


@dataclass(frozen=True)
class Intent:
    name: str
    confidence: float


@dataclass(frozen=True)
class Entity:
    """A reading or a finding; `entity` is a concept id, value in the concept's unit."""

    entity: str
    value: Any
    start: int
    end: int
    extractor: str
    confidence: float = 1.0
    negated: bool = False
    uncertain: bool = False


@dataclass(frozen=True)
class Understanding:
    """Everything the interpreter read in one message."""

    text: str
    language: str
    intent: Intent
    intent_ranking: tuple[Intent, ...] = ()
    entities: tuple[Entity, ...] = ()
    red_flags: tuple[str, ...] = ()  # global red-flag concept ids, not negated
    red_flag_candidates: tuple[str, ...] = ()
    """Red flags the message is near but not clearly (rules and model disagree, or a
    near match), most likely first: the bot asks one yes/no question about the first."""
    answer: Answer | None = None  # set when an Expectation was given
    subject: str | None = None  # who is ill, when said: "self", "child", "parent", ...
    extra: dict[str, Any] = field(default_factory=dict)

    def findings(self) -> dict[str, Any]:
        """Concept -> value for what the message asserted (negated findings map to False)."""
        out: dict[str, Any] = {}
        for ent in self.entities:
            if ent.uncertain:
                continue
            out[ent.entity] = False if ent.negated else ent.value
        return out


GLOBAL_RED_FLAGS: tuple[str, ...] = (
    "severe_dyspnea",
    "chest_pain",
    "confusion",
    "hard_to_wake",
    "cyanosis",
    "stroke_signs",
    "convulsions",
    "suicidal_thoughts",
    # general danger signs (issue 11; docs/nlu.md)
    "severe_abdominal_pain",
    "vomiting_blood",
    "coughing_blood",
    "heavy_bleeding",
    "pregnancy_bleeding",
    "pregnancy_headache_vision",
    "reduced_fetal_movement",
    "stiff_neck_fever",
    "non_blanching_rash",
    "thunderclap_headache",
    "face_tongue_swelling",
    "poisoning_overdose",
    "severe_burn",
    "major_injury",
    "head_injury_danger",
    "infant_fever",
    "child_cannot_drink",
    "child_vomits_everything",
    "child_lethargic",
    "chest_indrawing",
)
"""Every global red flag; its level and confirmation question are data
(`red_flags:` in flows/_interrupts.yaml, checked by the loader)."""
