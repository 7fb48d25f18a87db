"""Conversation state: the contact snapshot and the session the engine reads and returns.

Imports only the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any


class SessionStatus(StrEnum):
    """Where a conversation stands."""

    ACTIVE = "active"  # inside a flow, waiting for the patient's answer
    COMPLETED = "completed"  # the flow ended; the next message starts a new one
    HANDED_OFF = "handed_off"  # a human has the conversation; the bot steps back
    EXPIRED = "expired"  # no answer in time; answers are kept


@dataclass(frozen=True)
class Contact:
    """What the engine may know about the person (no phone number is needed by the engine)."""

    id: int
    channel: str
    language: str = "en"
    opted_out: bool = False
    consent_care: bool | None = None  # None: not asked yet
    language_set: bool = False  # chosen, given at enrollment or inferred; else asked first
    conditions: tuple[str, ...] = ()  # enrolled for (bot.schedules.CONDITION_FLOWS keys)


@dataclass(frozen=True)
class Frame:
    """A flow on the call stack, and where to continue in it when the inner flow ends: after
    the `enter` node `node`, at the question `node` (asked again), or at the start ("")."""

    flow: str
    node: str


@dataclass(frozen=True)
class Session:
    """One conversation: where it is, what has been answered, and how it went."""

    contact: Contact
    flow: str | None = None
    node: str | None = None
    status: SessionStatus = SessionStatus.COMPLETED
    answers: dict[str, Any] = field(default_factory=dict)
    stack: tuple[Frame, ...] = ()
    failures: int = 0
    pending_options: tuple[str, ...] = ()  # multi-select: the options still asked, in order
    triage: str | None = None
    red_flags: tuple[str, ...] = ()
    confirm_flag: str | None = None  # a red flag asked about with one yes/no question
    confirm_flow: str | None = None  # the flows to start after a "no" (space-separated ids)
    confirming: str | None = None  # a request waiting for the patient's yes (FORGET)
    id: int | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None

    def evolve(self, **changes: Any) -> Session:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_state(self) -> dict[str, Any]:
        """The JSON-safe part a store persists (the contact is stored on its own)."""
        return {
            "flow": self.flow,
            "node": self.node,
            "status": str(self.status),
            "answers": dict(self.answers),
            "stack": [[f.flow, f.node] for f in self.stack],
            "failures": self.failures,
            "pending_options": list(self.pending_options),
            "triage": self.triage,
            "red_flags": list(self.red_flags),
            "confirm_flag": self.confirm_flag,
            "confirm_flow": self.confirm_flow,
            "confirming": self.confirming,
        }

    @classmethod
    def from_state(
        cls,
        contact: Contact,
        state: dict[str, Any],
        *,
        id: int | None = None,
        started_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> Session:
        """Rebuild a session from `to_state()` output."""
        answers = {
            k: tuple(v) if isinstance(v, list) else v for k, v in state.get("answers", {}).items()
        }
        return cls(
            contact=contact,
            flow=state.get("flow"),
            node=state.get("node"),
            status=SessionStatus(state.get("status", SessionStatus.COMPLETED)),
            answers=answers,
            stack=tuple(Frame(f, n) for f, n in state.get("stack", [])),
            failures=int(state.get("failures", 0)),
            pending_options=tuple(state.get("pending_options", [])),
            triage=state.get("triage"),
            red_flags=tuple(state.get("red_flags", [])),
            confirm_flag=state.get("confirm_flag"),
            confirm_flow=state.get("confirm_flow"),
            confirming=state.get("confirming"),
            id=id,
            started_at=started_at,
            updated_at=updated_at,
        )
