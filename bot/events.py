"""What the engine emits; the caller (bot.app) performs the I/O each event implies.

Imports only the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class MsgCreated:
    """A reply for the patient (goes to the outbox)."""

    text: str
    choices: tuple[str, ...] = ()
    # A multi-select question: the labels of its "None" and "Done" buttons (Telegram).
    multi: tuple[str, str] | None = None


@dataclass(frozen=True)
class AnswerRecorded:
    concept: str
    value: Any
    source: str = "answer"  # answer | prefill | red_flag


@dataclass(frozen=True)
class RedFlagRaised:
    concepts: tuple[str, ...]


@dataclass(frozen=True)
class TriageDecided:
    flow: str
    level: str
    rows: tuple[int, ...]  # indexes of the matching rows, for audit


@dataclass(frozen=True)
class EscalationOpened:
    level: str
    reason: str  # triage | red_flag | patient_request | repeated_failures | flow
    flow: str | None = None
    red_flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class FlowEntered:
    flow: str


@dataclass(frozen=True)
class FlowEnded:
    flow: str


@dataclass(frozen=True)
class FollowUpScheduled:
    flow: str
    due_at: datetime
    every: timedelta | None = None
    times: int = 1


@dataclass(frozen=True)
class ContactChanged:
    """A contact-level fact changed: opt-out, language or consent."""

    field: str  # opted_out | language | consent_care | consent_broadcast
    value: Any


@dataclass(frozen=True)
class PrivacyRequested:
    """The patient asked what is kept about them (`mydata`) or confirmed erasure (`forget`)."""

    kind: str  # mydata | forget


@dataclass(frozen=True)
class ErrorRaised:
    """Something went wrong inside a conversation; the patient got a safe reply."""

    code: str
    detail: str = ""


Event = (
    MsgCreated
    | AnswerRecorded
    | RedFlagRaised
    | TriageDecided
    | EscalationOpened
    | FlowEntered
    | FlowEnded
    | FollowUpScheduled
    | ContactChanged
    | PrivacyRequested
    | ErrorRaised
)
