"""Understanding layer: text -> intent, entities, red flags, and the answer to the question asked.

A leaf package: imports nothing from `bot` or `channels`. See docs/nlu.md.
"""

from datetime import date

from nlu.types import (
    Answer,
    AnswerStatus,
    Entity,
    Expectation,
    Intent,
    Option,
    QuestionType,
    Understanding,
)

__all__ = [
    "Answer",
    "AnswerStatus",
    "Entity",
    "Expectation",
    "Intent",
    "Option",
    "QuestionType",
    "Understanding",
    "interpret",
]


def interpret(
    text: str,
    expecting: Expectation | None = None,
    language: str = "en",
    *,
    today: date | None = None,
) -> Understanding:
    """Read one patient message with the process-wide embedded interpreter."""
    from nlu.interpreter import default_interpreter

    return default_interpreter().interpret(text, expecting, language, today=today)
