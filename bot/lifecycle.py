"""Session lifecycle policy: an unanswered conversation gets one nudge (outside quiet hours),
then expires with its answers kept; and what the nudge says (the pending question again).

Pure: imports bot.engine (expectation only), bot.flow, bot.session and bot.schedules.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot import engine
from bot.flow import AskNode, Library, Text
from bot.schedules import QuietHours, defer_quiet
from bot.session import Session


class Step(StrEnum):
    """What the lifecycle sweep does to an active conversation now."""

    WAIT = "wait"
    NUDGE = "nudge"
    EXPIRE = "expire"


@dataclass(frozen=True)
class Lifecycle:
    """When to nudge and when to expire (config `checkins.nudge_after` / `expire_after`)."""

    nudge_after: timedelta = timedelta(hours=2)
    expire_after: timedelta = timedelta(hours=10)
    busy_grace: timedelta = timedelta(minutes=30)


def nudge_at(
    last_activity: datetime, tz: ZoneInfo, quiet: QuietHours | None, policy: Lifecycle
) -> datetime:
    """When the one nudge of this silence is due: after `nudge_after`, out of quiet hours."""
    return defer_quiet(last_activity + policy.nudge_after, tz, quiet)


def next_step(
    last_activity: datetime,
    nudged_at: datetime | None,
    now: datetime,
    tz: ZoneInfo,
    quiet: QuietHours | None,
    policy: Lifecycle,
    *,
    can_nudge: bool = True,
) -> Step:
    """Nudge once after `nudge_after` of silence (deferred out of quiet hours, never dropped);
    expire `expire_after` after the nudge. A contact who cannot be nudged (opted out) expires
    as if nudged on time; a nudge more than `expire_after` overdue (the scheduler was down)
    is not sent late: the conversation expires instead."""
    nudged = nudged_at is not None and nudged_at >= last_activity
    due = nudge_at(last_activity, tz, quiet, policy)
    if nudged:
        assert nudged_at is not None
        return Step.EXPIRE if now >= nudged_at + policy.expire_after else Step.WAIT
    if now >= due + policy.expire_after:
        return Step.EXPIRE
    if now >= due and can_nudge:
        return Step.NUDGE
    return Step.WAIT


def message(lib: Library, key: str, language: str) -> str:
    """A lifecycle message (`nudge`, `checkin_nudge`: required in _interrupts.yaml)."""
    text = lib.interrupts.messages[key]
    return _fill(lib, text.get(language) or text.get("en") or next(iter(text.values())))


def prompt(lib: Library, session: Session) -> tuple[str, tuple[str, ...]] | None:
    """The question a session is waiting on, as the engine asked it (text, choices)."""
    exp = engine.expectation(lib, session)
    flow = lib.flows.get(session.flow or "")
    node = flow.nodes.get(session.node or "") if flow else None
    if exp is None or not isinstance(node, AskNode):
        return None
    lang = session.contact.language
    text = _text(lib, node.text, lang)
    if node.allow_unknown:
        text += _text(lib, lib.interrupts.messages.get("unknown_allowed"), lang)
    choices = tuple(o.labels[0] for o in exp.options) if node.type in ("choice", "multi") else ()
    return text, choices


def nudge_text(lib: Library, session: Session, *, checkin: bool) -> tuple[str, tuple[str, ...]]:
    """The nudge for a silent conversation: a reminder line, then the pending question."""
    lead = message(lib, "checkin_nudge" if checkin else "nudge", session.contact.language)
    asked = prompt(lib, session)
    if asked is None:
        return lead, ()
    return f"{lead}\n\n{asked[0]}", asked[1]


class _Safe(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(lib: Library, raw: str) -> str:
    return string.Formatter().vformat(raw, (), _Safe(lib.placeholders))


def _text(lib: Library, text: Text | None, lang: str) -> str:
    if not text:
        return ""
    return _fill(lib, text.get(lang) or text.get("en") or next(iter(text.values())))
