"""Red-flag detector: the global red flags of shared/PROTOCOLS.md in free text, deterministic,
negation-aware, independent of the intent classifier. Lexicon: data/nlu/redflags/<lang>.yml.

Imports only the standard library and nlu.findings, nlu.lexicon, nlu.scope, nlu.text, nlu.types.
"""

from __future__ import annotations

from pathlib import Path

from nlu.findings import finding_hits
from nlu.lexicon import Lexicon, Matches, load_lexicon, scan
from nlu.scope import Hit, Scope, find_hits
from nlu.text import fold
from nlu.types import Entity

EXTRACTOR = "carebridge_redflags"

GLOBAL_RED_FLAGS: tuple[str, ...] = (
    "severe_dyspnea",
    "chest_pain",
    "confusion",
    "hard_to_wake",
    "cyanosis",
    "stroke_signs",
    "convulsions",
    "suicidal_thoughts",
)
"""The global red-flag concept ids, in PROTOCOLS.md order."""


def red_flag_hits(folded: str, lex: Lexicon, matches: Matches) -> list[Hit]:
    """Red-flag hits of a scanned message (negation not yet applied)."""
    return find_hits(lex.redflags, matches["rf"], folded, red_flag=True)


def hit_entities(hits: list[Hit], scope: Scope, extractor: str) -> list[Entity]:
    """Entities for hits, one per concept and span, with negation and uncertainty applied."""
    out: list[Entity] = []
    seen: set[tuple[str, int, int]] = set()
    for h in hits:
        key = (h.concept, h.start, h.end)
        if key in seen:
            continue
        seen.add(key)
        out.append(
            Entity(
                entity=h.concept,
                value=True,
                start=h.start,
                end=h.end,
                extractor=extractor,
                negated=scope.negated(h),
                uncertain=scope.uncertain(h),
            )
        )
    return out


def flags_of(entities: tuple[Entity, ...] | list[Entity]) -> tuple[str, ...]:
    """The red-flag concept ids the entities assert (not negated; uncertain still counts)."""
    found = {e.entity for e in entities if e.entity in GLOBAL_RED_FLAGS and not e.negated}
    return tuple(c for c in GLOBAL_RED_FLAGS if c in found)


def detect(text: str, language: str = "en", data_dir: Path | None = None) -> list[Entity]:
    """Red-flag entities of one message, negated ones included (marked `negated`)."""
    lex = load_lexicon(language, data_dir)
    folded = fold(text)
    matches = scan(lex, folded)
    hits = red_flag_hits(folded, lex, matches)
    if not hits:
        return []
    # Findings take part only to shield cues inside them ("no smell and chest pain").
    scope = Scope(folded, lex, hits + finding_hits(folded, lex, matches), matches["cue"])
    return hit_entities(hits, scope, EXTRACTOR)


def red_flags(text: str, language: str = "en", data_dir: Path | None = None) -> tuple[str, ...]:
    """The global red flags a message reports, e.g. ("severe_dyspnea", "cyanosis")."""
    return flags_of(detect(text, language, data_dir))
