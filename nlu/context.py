"""ConText-style negation, time and history for red flags (after medspaCy's ConText): trigger
phrases with a direction govern the hits in their sentence up to a terminator. A red flag
governed by a `negated`, `historical` or `resolved` trigger is not current. Triggers are
compared word by word with the typo tolerance of nlu/compose.py ("wihtout", "deneis").
Data: data/nlu/redflags/compose/context.yml.

Imports only the standard library, PyYAML, rapidfuzz and nlu.compose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rapidfuzz.distance import OSA

from nlu.compose import Token, Word, close_typo, contraction, skeleton
from nlu.text import DEVANAGARI_WORD

_SENTENCE = re.compile(r"[!?;\n\u0964\u0965]+|\.(?!\d)")
_TOKEN = re.compile(rf"[\w'{DEVANAGARI_WORD}]+|,")


def tokenize(text: str, offset: int) -> list[Token]:
    """Words and commas (a comma can end a negation's scope)."""
    out = []
    for m in _TOKEN.finditer(text):
        word = contraction(m.group())
        out.append(Token(word, _key(word), offset + m.start(), offset + m.end()))
    return out


CATEGORIES = ("negated", "historical", "resolved")
PSEUDO = "pseudo"
"""Phrases that contain a trigger but negate nothing ("not sure", "no sé si", "kam nahi",
"pata nahi"): a trigger inside one is dropped, as in ConText."""
DIRECTIONS = ("forward", "backward", "both")


@dataclass(frozen=True)
class Rule:
    category: str
    direction: str
    words: tuple[Word, ...]
    max_gap: int | None  # words allowed between the trigger and the sign; None: the sentence
    max_gap_backward: int | None = None  # the same for a trigger after the sign


class Context:
    """The triggers and terminators of context.yml."""

    def __init__(self, doc: dict[str, Any], where: str) -> None:
        self.rules: list[Rule] = []
        for cat in CATEGORIES:
            spec = doc.get(cat)
            if not isinstance(spec, dict):
                raise ValueError(f"{where}: {cat}: expected a mapping of direction -> phrases")
            gap = spec.get("max_gap")
            back = spec.get("max_gap_backward", gap)
            for direction in DIRECTIONS:
                for phrase in spec.get(direction) or []:
                    words = tuple(_word(w) for w in str(phrase).lower().split())
                    if words:
                        self.rules.append(Rule(cat, direction, words, gap, back))
        self._by_first: dict[str, list[Rule]] = {}
        self._long: list[Rule] = []
        for rule in self.rules:
            skel, spelled, _ = rule.words[0]
            self._by_first.setdefault(skel, []).append(rule)
            if spelled != skel:
                self._by_first.setdefault(spelled, []).append(rule)
            if len(spelled) >= 4:
                self._long.append(rule)
        self.pseudo = [
            tuple(_word(w) for w in str(p).lower().split()) for p in doc.get(PSEUDO) or []
        ]
        self._by_letter: dict[str, list[Rule]] = {}
        self._by_letters: dict[str, list[Rule]] = {}
        for rule in self._long:
            spelled = rule.words[0][1]
            self._by_letter.setdefault(spelled[0], []).append(rule)
            self._by_letters.setdefault("".join(sorted(spelled)), []).append(rule)
        self.terminators = [
            tuple(_word(w) for w in str(p).lower().split()) for p in doc.get("terminators") or []
        ]
        self.tight = [
            tuple(_word(w) for w in str(p).lower().split())
            for p in doc.get("tight_terminators") or []
        ]
        self._terminators = self._index(self.terminators)
        self._fuzzy_terminators = [p for p in self.terminators if len(p[0][1]) >= 5]
        self._fuzzy_tight = [p for p in self.tight if len(p[0][1]) >= 5]
        self._tight = self._index(self.tight)
        self._pseudo = self._index(self.pseudo)

    @staticmethod
    def _at(toks: list[Token], i: int, words: tuple[Word, ...]) -> bool:
        """Trigger words match exactly (skeleton or spelling), or with one typo from five
        letters on ("wihtout", "deneis", "phele"): shorter words differ by one letter too often."""
        if i + len(words) > len(toks):
            return False
        for k, w in enumerate(words):
            tok = toks[i + k]
            raw = tok.text.replace("'", "")
            exact = tok.key == w[0] or raw == w[1]
            if not exact and (len(w[1]) < 4 or not _slip(raw, w[1], len(words) > 1)):
                return False
        return True

    def not_current(self, folded: str, start: int, end: int) -> str | None:
        """The category that makes the sign at [start, end) not current ("negated",
        "historical", "resolved"), or None when it is current."""
        lo, hi = 0, len(folded)
        for m in _SENTENCE.finditer(folded):
            if m.end() <= start:
                lo = m.end()
            elif m.start() >= end:
                hi = m.start()
                break
        toks = tokenize(folded[lo:hi], lo)
        if not toks:
            return None
        first = next((i for i, t in enumerate(toks) if t.end > start), len(toks))
        last = max((i for i, t in enumerate(toks) if t.start < end), default=first)
        triggers: list[tuple[Rule, int, int]] = []
        for i, tok in enumerate(toks):
            for rule in self._candidates(tok):
                if self._at(toks, i, rule.words):
                    triggers.append((rule, i, i + len(rule.words) - 1))
        if not triggers:
            return None
        pseudo = self._stops(toks, self._pseudo, set())
        triggers = [t for t in triggers if not any(k in pseudo for k in range(t[1], t[2] + 1))]
        used = {k for _, a, b in triggers for k in range(a, b + 1)}
        stops = self._stops(toks, self._terminators, used, self._fuzzy_terminators)
        tight = stops | self._stops(toks, self._tight, used, self._fuzzy_tight)
        for rule, a, b in triggers:
            if a <= last and first <= b:
                continue  # the trigger is part of the sign's own words
            before = b < first
            if rule.direction == "forward" and not before:
                continue
            if rule.direction == "backward" and before:
                continue
            x, y = (b + 1, first) if before else (last + 1, a)
            limit = rule.max_gap if before else rule.max_gap_backward
            if limit is not None and y - x > limit:
                continue
            barrier = tight if rule.category == "negated" else stops
            if any(x <= k < y for k in barrier):
                continue
            return rule.category
        return None

    def mentions(self, folded: str, category: str) -> bool:
        """Whether any trigger of `category` occurs in the text (e.g. a negation)."""
        return category in self.categories(folded)

    def categories(self, folded: str) -> set[str]:
        """The categories of every trigger in the text (pseudo-negations left out)."""
        toks = tokenize(folded, 0)
        pseudo = self._stops(toks, self._pseudo, set())
        return {
            rule.category
            for i, tok in enumerate(toks)
            if i not in pseudo
            for rule in self._candidates(tok)
            if self._at(toks, i, rule.words)
        }

    def _candidates(self, tok: Token) -> list[Rule]:
        """Rules whose first word this token may be (exact, or a typo from five letters)."""
        raw = tok.text.replace("'", "")
        found = self._by_first.get(tok.key, []) + self._by_first.get(raw, [])
        if len(raw) >= 4:
            found = found + [
                r
                for r in self._by_letter.get(raw[0], [])
                if abs(len(r.words[0][1]) - len(raw)) <= 1
            ]
            found = found + self._by_letters.get("".join(sorted(raw)), [])
        return found

    @staticmethod
    def _index(phrases: list[tuple[Word, ...]]) -> dict[str, list[tuple[Word, ...]]]:
        out: dict[str, list[tuple[Word, ...]]] = {}
        for words in phrases:
            out.setdefault(words[0][0], []).append(words)
            if words[0][1] != words[0][0]:
                out.setdefault(words[0][1], []).append(words)
        return out

    @staticmethod
    def _stops(
        toks: list[Token],
        index: dict[str, list[tuple[Word, ...]]],
        used: set[int],
        fuzzy: list[tuple[Word, ...]] | None = None,
    ) -> set[int]:
        """Token positions inside one of the phrases: exact words, or with `fuzzy` (the
        terminators) a typo of a word of five letters or more ("agian", "currenty")."""
        out: set[int] = set()
        for i, tok in enumerate(toks):
            if i in used:
                continue
            raw = tok.text.replace("'", "")
            found = index.get(tok.key, []) + index.get(raw, [])
            if fuzzy and len(raw) >= 5:
                found = found + [p for p in fuzzy if close_typo(raw, p[0][1])]
            for words in found:
                if i + len(words) <= len(toks) and all(
                    toks[i + k].key == w[0]
                    or toks[i + k].text.replace("'", "") == w[1]
                    or (fuzzy and len(w[1]) >= 5 and close_typo(toks[i + k].text, w[1]))
                    for k, w in enumerate(words)
                ):
                    out.update(range(i, i + len(words)))
        return out


def _slip(typed: str, known: str, anchored: bool) -> bool:
    """A typo of a trigger word (nlu.compose.close_typo), or, in a trigger of several words
    (the others anchor it), a letter dropped from a word of five letters or more ("5 yeas
    ago", "ya esoy bien"; a lone "nuca" is not "nunca")."""
    if close_typo(typed, known):
        return True
    return (
        anchored
        and len(known) >= 5
        and len(typed) == len(known) - 1
        and typed[0] == known[0]
        and OSA.distance(typed, known) == 1
    )


def _key(word: str) -> str:
    return skeleton(word.replace("'", ""))


def _word(text: str) -> Word:
    raw = text.replace("'", "")
    return (skeleton(raw), raw, False)


_CACHE: dict[Path, Context] = {}


def load_context(data_dir: Path) -> Context | None:
    """The ConText triggers of a data folder (cached); None without context.yml."""
    found = _CACHE.get(data_dir)
    if found is None:
        path = data_dir / "nlu" / "redflags" / "compose" / "context.yml"
        if not path.exists():
            return None
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        found = _CACHE[data_dir] = Context(doc, str(path))
    return found
