"""Concept matching and NegEx-style scope: which matches a negation or uncertainty cue
governs ("no chest pain", "fever is gone", "maybe a little fever").

Imports only the standard library and nlu.lexicon.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from nlu.lexicon import ConceptSet, Lexicon
from nlu.text import NOT_AFTER_WORD, NOT_BEFORE_WORD, SENTENCE_PUNCT, WORD_CHARS

_WORD = re.compile(f"[{WORD_CHARS}']+")
_SENTENCE_BREAK = re.compile(rf"[{SENTENCE_PUNCT}]+|\s-\s")
_STRICT_BREAK = re.compile(rf",|{NOT_AFTER_WORD}(?:and|&|n|plus|also|then){NOT_BEFORE_WORD}")
_QUESTION_AFTER = re.compile(r"\s*\?")
_ANSWERED_NO = re.compile(
    r"\s*[?:=\-]+\s*(?:no|nope|nah|none|never|nil|negative|not(?!\s+(?:sure|certain))"
    r"|nahi|nahin|nhi|nai|\u0928\u0939\u0940\u0902|\u0928\u0939\u0940|ninguno|nada)"
    + NOT_BEFORE_WORD
)


@dataclass(frozen=True)
class Hit:
    """One concept matched in the folded text."""

    concept: str
    start: int
    end: int
    red_flag: bool = False
    absent: bool = False  # matched an `absent:` phrase: the concept is denied outright


def find_hits(
    concepts: ConceptSet,
    matches: list[tuple[str, int, int]],
    folded: str,
    *,
    red_flag: bool = False,
    absent: list[tuple[str, int, int]] | None = None,
) -> list[Hit]:
    """Hits for a section's matches, minus those overlapping one of the concept's
    `exclude` patterns, plus the concepts each implies; `absent` matches become hits
    that are negated whatever the context."""
    hits: list[Hit] = [Hit(c, s, e, red_flag, absent=True) for c, s, e in absent or ()]
    excluded: dict[str, list[tuple[int, int]]] = {}
    for concept, s, e in matches:
        cp = concepts.index[concept]
        if cp.exclude is not None:
            if concept not in excluded:
                excluded[concept] = [(m.start(), m.end()) for m in cp.exclude.finditer(folded)]
            if _overlaps((s, e), excluded[concept]):
                continue
        if any(h.absent and h.concept == concept and h.start < e and s < h.end for h in hits):
            continue  # "forgot to take my meds" denies what "take my meds" asserts
        hits.append(Hit(concept, s, e, red_flag))
        for implied in cp.implies:
            hits.append(Hit(implied, s, e, red_flag))
    return hits


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in pattern.finditer(text)]


def _overlaps(span: tuple[int, int], others: list[tuple[int, int]]) -> bool:
    s, e = span
    return any(os < e and s < oe for os, oe in others)


class Scope:
    """The cues of one folded message, ready to ask which hits they govern."""

    def __init__(
        self,
        folded: str,
        lexicon: Lexicon,
        hits: list[Hit],
        cue_matches: list[tuple[str, int, int]],
    ) -> None:
        self.text = folded
        self.window = lexicon.window
        self.links = lexicon.trailing_links
        matched = [(h.start, h.end) for h in hits]
        self.matched = sorted(matched)
        cues: dict[str, list[tuple[int, int]]] = {}
        for key, cs, ce in cue_matches:
            cues.setdefault(key, []).append((cs, ce))
        pseudo = cues.get("pseudo", [])

        def usable(span: tuple[int, int]) -> bool:
            # A cue inside a matched phrase ("can't breathe", "no smell", "saans nahi aa
            # rahi") or inside a pseudo-negation ("not sure", "nahi ja raha") negates nothing.
            return not _overlaps(span, pseudo) and not any(
                ms <= span[0] and span[1] <= me for ms, me in matched
            )

        self.pre = [s for s in cues.get("pre", []) if usable(s)]
        self.post = [s for s in cues.get("post", []) if usable(s)]
        self.trail = [s for s in cues.get("trail", []) if usable(s)]
        # Uncertainty survives pseudo-negation ("don't know if" is both).
        self.unsure = [
            s
            for s in cues.get("unsure", [])
            if not any(ms <= s[0] and s[1] <= me for ms, me in matched)
        ]
        # A terminator inside a cue ends no clause ("nahi hai", "lagta hai").
        inside = [*pseudo, *self.pre, *self.post, *self.trail, *self.unsure]
        terminators = [
            b
            for b in cues.get("break", [])
            if not any(cs <= b[0] and b[1] <= ce and (cs, ce) != b for cs, ce in inside)
        ]
        breaks = terminators + _spans(_SENTENCE_BREAK, folded)
        self.break_starts = sorted(s for s, _ in breaks)
        self.break_ends = sorted(e for _, e in breaks)
        strict = _spans(_STRICT_BREAK, folded) + cues.get("sbreak", [])
        self.strict_starts = sorted([*self.break_starts, *(s for s, _ in strict)])
        self.strict_ends = sorted([*self.break_ends, *(e for _, e in strict)])

    def _clause(self, start: int, end: int, strict: bool) -> tuple[int, int]:
        starts = self.strict_starts if strict else self.break_starts
        ends = self.strict_ends if strict else self.break_ends
        i = bisect_right(ends, start) - 1
        lo = ends[i] if i >= 0 else 0
        j = bisect_left(starts, end)
        hi = starts[j] if j < len(starts) else len(self.text)
        return lo, hi

    def _words_between(self, a: int, b: int) -> int:
        return len(_WORD.findall(self.text, a, b)) if b > a else 0

    def _trailing(self, hit: Hit, cue_start: int, strict: bool) -> bool:
        """True when only other matched phrases and link words ("aur", "bhi", "bilkul")
        stand between `hit` and a trailing negation cue ("bukhar aur khansi nahi hai").
        Red flags (`strict`): no other phrase and at most one link word ("seene mein dard
        bilkul nahi")."""
        links = 0
        for m in _WORD.finditer(self.text, hit.end, cue_start):
            s, e = m.span()
            if any(
                ms <= s and e <= me for ms, me in self.matched if (ms, me) != (hit.start, hit.end)
            ):
                if strict:
                    return False
                continue
            if m.group() not in self.links:
                return False
            links += 1
        return links <= (1 if strict else self.window)

    def negated(self, hit: Hit) -> bool:
        """True when a negation cue governs `hit`.

        Red flags are read strictly: only a cue before the phrase, within four words, with
        no comma or "and" between ("no fever and chest pain" keeps the red flag), or a
        trailing cue right after it ("seene mein dard nahi hai").
        """
        if hit.absent:
            return True
        strict = hit.red_flag
        lo, hi = self._clause(hit.start, hit.end, strict)
        window = min(self.window, 4) if strict else self.window
        for cs, ce in self.pre:
            if lo <= cs and ce <= hit.start and self._words_between(ce, hit.start) <= window:
                return True
        if _ANSWERED_NO.match(self.text, hit.end):  # "chest pain? no"
            return True
        if any(hit.end <= cs < hi and self._trailing(hit, cs, strict) for cs, _ in self.trail):
            return True
        if strict:
            return False
        return any(
            hit.end <= cs < hi and self._words_between(hit.end, cs) <= 2 for cs, _ in self.post
        )

    def uncertain(self, hit: Hit) -> bool:
        """True when the patient hedged ("maybe a little fever", "fever?")."""
        lo, hi = self._clause(hit.start, hit.end, False)
        for cs, ce in self.unsure:
            if lo <= cs and ce <= hit.start and self._words_between(ce, hit.start) <= self.window:
                return True
            if hit.end <= cs < hi and self._words_between(hit.end, cs) <= 1:
                return True
        return _QUESTION_AFTER.match(self.text, hit.end) is not None
