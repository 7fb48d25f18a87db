"""Findings in free text: symptoms and risk factors as concept ids ("loose motions" ->
diarrhea, "breathless" -> dyspnea), and who is ill ("my son" -> child).
Lexicon: data/nlu/findings/<lang>.yml.

Imports only the standard library and nlu.lexicon, nlu.scope, nlu.text, nlu.types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from nlu.lexicon import Lexicon, Matches
from nlu.scope import Hit, find_hits
from nlu.text import fold
from nlu.types import Entity

EXTRACTOR = "carebridge_findings"
_WORD = re.compile(r"[^\W\d_]{3,}")
# Words that say nothing about what is wrong (greetings, pronouns, joiners, asking for a
# check), in en/hi/es; anything else left over after the findings is an unread complaint.
_NOT_COMPLAINT = frozenset(
    [
        "hi",
        "hii",
        "hello",
        "hey",
        "hola",
        "buenas",
        "buenos",
        "dias",
        "tardes",
        "noches",
        "namaste",
        "namaskar",
        "ji",
        "sir",
        "madam",
        "doctor",
        "the",
        "and",
        "but",
        "also",
        "too",
        "with",
        "have",
        "has",
        "had",
        "got",
        "are",
        "was",
        "were",
        "been",
        "this",
        "that",
        "for",
        "from",
        "about",
        "you",
        "your",
        "our",
        "his",
        "her",
        "him",
        "she",
        "they",
        "them",
        "its",
        "not",
        "yes",
        "please",
        "pls",
        "plz",
        "thanks",
        "thank",
        "want",
        "need",
        "would",
        "like",
        "check",
        "checkup",
        "test",
        "testing",
        "screening",
        "covid",
        "corona",
        "coronavirus",
        "age",
        "old",
        "years",
        "year",
        "months",
        "month",
        "weeks",
        "week",
        "days",
        "day",
        "since",
        "today",
        "yesterday",
        "now",
        "temp",
        "temperature",
        "sugar",
        "glucose",
        "oxygen",
        "spo2",
        "reading",
        "pressure",
        "peak",
        "flow",
        "azucar",
        "temperatura",
        "hai",
        "hain",
        "aur",
        "bhi",
        "mujhe",
        "mera",
        "meri",
        "mere",
        "main",
        "hum",
        "ko",
        "ka",
        "ki",
        "ke",
        "se",
        "mein",
        "par",
        "karna",
        "karni",
        "karo",
        "chahiye",
        "jaanch",
        "janch",
        "umar",
        "saal",
        "mahine",
        "hafte",
        "din",
        "kal",
        "aaj",
        "abhi",
        "hoon",
        "hu",
        "tha",
        "thi",
        "que",
        "con",
        "por",
        "para",
        "una",
        "uno",
        "unos",
        "los",
        "las",
        "del",
        "tengo",
        "tiene",
        "quiero",
        "hacer",
        "chequeo",
        "prueba",
        "control",
        "edad",
        "años",
        "meses",
        "semanas",
        "desde",
        "hoy",
        "ayer",
        "ahora",
        "estoy",
        "esta",
        "porfa",
        "favor",
    ]
)


def unread_words(text: str, entities: Iterable[Entity]) -> list[str]:
    """Words of a message that no finding, reading or red flag explains and that are not
    greetings or joiners: a complaint the lexicons do not name ("got burned by hot water")."""
    folded = fold(text)
    spans = [(e.start, e.end) for e in entities]
    out = []
    for m in _WORD.finditer(folded):
        if any(s < m.end() and e > m.start() for s, e in spans):
            continue
        if m.group(0) not in _NOT_COMPLAINT:
            out.append(m.group(0))
    return out


def finding_hits(folded: str, lex: Lexicon, matches: Matches) -> list[Hit]:
    """Finding hits of a scanned message (negation not yet applied)."""
    hits = find_hits(lex.findings, matches["fi"], folded, absent=matches["fx"])
    hits.sort(key=lambda h: (h.start, h.end))
    return hits


def subject(matches: Matches) -> str | None:
    """Who is ill: the first person named ("my son" -> "child"), else "self" when the
    patient speaks of themself, else None."""
    found = matches["subj"]
    for label, _s, _e in found:
        if label != "self":
            return label
    return "self" if found else None
