"""Findings in free text: symptoms and risk factors as concept ids ("loose motions" ->
diarrhea, "breathless" -> dyspnea), and who is ill ("my son" -> child).
Lexicon: data/nlu/findings/<lang>.yml.

Imports only the standard library and nlu.lexicon, nlu.scope.
"""

from __future__ import annotations

from nlu.lexicon import Lexicon, Matches
from nlu.scope import Hit, find_hits

EXTRACTOR = "carebridge_findings"


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
