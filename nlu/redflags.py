"""Red-flag detector: the global red flags (PROTOCOLS.md and the issue-11 danger signs) in free
text, deterministic, negation- and time-aware, independent of the intent classifier. Phrase
lexicons data/nlu/redflags/<lang>.yml plus composition rules data/nlu/redflags/compose/.

Imports only the standard library and nlu.compose, nlu.context, nlu.findings, nlu.lexicon,
nlu.scope, nlu.text, nlu.types.
"""

from __future__ import annotations

from pathlib import Path

from nlu.compose import load_composer
from nlu.context import load_context
from nlu.findings import finding_hits
from nlu.lexicon import DATA_DIR, Lexicon, Matches, load_lexicon, scan
from nlu.scope import Hit, Scope, find_hits
from nlu.text import fold
from nlu.types import GLOBAL_RED_FLAGS, Entity

EXTRACTOR = "carebridge_redflags"


def red_flag_hits(
    folded: str, lex: Lexicon, matches: Matches, data_dir: Path | None = None
) -> list[Hit]:
    """Red-flag hits of a scanned message: phrase-lexicon matches and composed signs
    (negation and time not yet applied)."""
    hits = find_hits(lex.redflags, matches["rf"], folded, red_flag=True)
    composer = load_composer(data_dir or DATA_DIR)
    if composer is not None:
        hits.extend(
            Hit(h.concept, h.start, h.end, red_flag=True)
            for h in composer.find(folded)
            if not h.near
        )
    return hits


def near_flags(folded: str, data_dir: Path | None = None) -> tuple[str, ...]:
    """Red flags a message is near (a `near:` composition rule), not negated by a plain
    cue right before; the bot only asks about them when the second opinion agrees."""
    composer = load_composer(data_dir or DATA_DIR)
    if composer is None:
        return ()
    return tuple(dict.fromkeys(h.concept for h in composer.find(folded) if h.near and not h.loose))


def hit_entities(
    hits: list[Hit], scope: Scope, extractor: str, data_dir: Path | None = None
) -> list[Entity]:
    """Entities for hits, one per concept and span, with negation, uncertainty and (for red
    flags) time applied: a red flag in the past or resolved ("last year", "gone now") is
    marked negated (nlu/context.py)."""
    out: list[Entity] = []
    seen: set[tuple[str, int, int]] = set()
    context = load_context(data_dir or DATA_DIR)
    for h in _merged(hits):
        key = (h.concept, h.start, h.end)
        if key in seen:
            continue
        seen.add(key)
        negated = scope.negated(h)
        if not negated and h.red_flag and context is not None:
            negated = context.not_current(scope.text, h.start, h.end) is not None
        out.append(
            Entity(
                entity=h.concept,
                value=True,
                start=h.start,
                end=h.end,
                extractor=extractor,
                negated=negated,
                uncertain=scope.uncertain(h),
            )
        )
    return out


def _merged(hits: list[Hit]) -> list[Hit]:
    """Overlapping red-flag hits of one concept as one hit over their union, so a cue is
    judged against where the sign starts ("not having any tightness and pain in the chest":
    the phrase "pain in the chest" and the composed sign from "tightness" are one)."""
    out: list[Hit] = []
    for h in sorted(hits, key=lambda x: (x.concept, x.start, x.end)):
        last = out[-1] if out else None
        if (
            last is not None
            and h.red_flag
            and last.red_flag
            and not h.absent
            and not last.absent
            and last.concept == h.concept
            and h.start < last.end
        ):
            out[-1] = Hit(h.concept, last.start, max(last.end, h.end), red_flag=True)
        else:
            out.append(h)
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
    hits = red_flag_hits(folded, lex, matches, data_dir)
    if not hits:
        return []
    # Findings take part only to shield cues inside them ("no smell and chest pain").
    scope = Scope(folded, lex, hits + finding_hits(folded, lex, matches), matches["cue"])
    return hit_entities(hits, scope, EXTRACTOR, data_dir)


def red_flags(text: str, language: str = "en", data_dir: Path | None = None) -> tuple[str, ...]:
    """The global red flags a message reports, e.g. ("severe_dyspnea", "cyanosis")."""
    return flags_of(detect(text, language, data_dir))
