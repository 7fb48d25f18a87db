"""Evaluate flow conditions and rule tables over a session's answers (pure functions).

Imports bot.flow and the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.flow import LEVELS, AllOf, Answered, AnyOf, Compare, Condition, Count, Not, Row, Truthy
from nlu.types import GLOBAL_RED_FLAGS


def _compare(value: Any, ops: tuple[tuple[str, Any], ...]) -> bool:
    for op, arg in ops:
        if op == "between":
            ok = arg[0] <= value <= arg[1]
        elif op == "lt":
            ok = value < arg
        elif op == "le":
            ok = value <= arg
        elif op == "gt":
            ok = value > arg
        elif op == "ge":
            ok = value >= arg
        elif op == "eq":
            ok = value == arg
        else:
            ok = value != arg
        if not ok:
            return False
    return True


def truthy(value: Any) -> bool:
    """An answer taken as a condition: None (unanswered or don't know) is false."""
    if value is None or value is False:
        return False
    if isinstance(value, str | tuple):
        return bool(value)
    return True


def evaluate(cond: Condition, answers: Mapping[str, Any], defines: Mapping[str, Condition]) -> bool:
    """True when the condition holds for these answers."""
    match cond:
        case Truthy(name):
            if name == "red_flag":
                return any(answers.get(rf) is True for rf in GLOBAL_RED_FLAGS)
            if name in defines:
                return evaluate(defines[name], answers, defines)
            return truthy(answers.get(name))
        case Compare(concept, ops):
            value = answers.get(concept)
            if value is None or isinstance(value, bool | tuple):
                return False
            try:
                return _compare(value, ops)
            except TypeError:
                return False
        case AnyOf(items):
            return any(evaluate(c, answers, defines) for c in items)
        case AllOf(items):
            return all(evaluate(c, answers, defines) for c in items)
        case Not(item):
            return not evaluate(item, answers, defines)
        case Count(items, ops):
            return _compare(sum(evaluate(c, answers, defines) for c in items), ops)
        case Answered(concept):
            return concept in answers
    raise TypeError(f"not a condition: {cond!r}")  # pragma: no cover - loader guarantees


def decide(
    rows: tuple[Row, ...],
    order: tuple[str, ...],
    answers: Mapping[str, Any],
    defines: Mapping[str, Condition],
) -> tuple[str | None, tuple[int, ...]]:
    """Evaluate every row; the value earliest in `order` among the matches wins."""
    matched = tuple(
        i for i, row in enumerate(rows) if row.when is None or evaluate(row.when, answers, defines)
    )
    if not matched:
        return None, ()
    best = min((rows[i].value for i in matched), key=order.index)
    return best, matched


def triage(
    rows: tuple[Row, ...], answers: Mapping[str, Any], defines: Mapping[str, Condition]
) -> tuple[str | None, tuple[int, ...]]:
    """The most urgent level of all matching rows (PROTOCOLS.md: never the first match)."""
    return decide(rows, LEVELS, answers, defines)
