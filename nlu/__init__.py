"""Understanding layer: text -> intent, entities, red flags, and the answer to the question asked.

A leaf package: imports nothing from `bot` or `channels`. See docs/nlu.md.
"""

from collections.abc import Iterable
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
    "detect_language",
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


def detect_language(text: str, candidates: Iterable[str] | None = None) -> str | None:
    """The language `text` is clearly written in, among `candidates` (default: every
    language with NLU data), or None: Devanagari or clear Hinglish -> "hi", clear Spanish
    -> "es", clear English -> "en"; "ok", "hi", "no", "2" -> None. Pure; see nlu/language.py."""
    from nlu.language import detect_language as detect

    return detect(text, candidates)
