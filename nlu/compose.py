"""Red flags by composition: a danger sign is a set of term groups (body part + symptom +
intensity, ...) that all occur in one sentence, in any order, with words between; words are
compared on a spelling skeleton (Hinglish and Devanagari variants) with a bounded edit
distance (rapidfuzz), so typos still match. Rules and terms: data/nlu/redflags/compose/rules.yml.

Imports only the standard library, PyYAML, rapidfuzz and nlu.text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from pathlib import Path
from typing import Any

import yaml
from rapidfuzz.distance import OSA
from rapidfuzz.process import extract

from nlu.text import DEVANAGARI_WORD

_TOKEN = re.compile(rf"[\w'{DEVANAGARI_WORD}]+")
_SENTENCE = re.compile(r"[!?;\n\u0964\u0965|]+|\.(?!\d)")
_DEVANAGARI = re.compile("[\u0900-\u097f]")
_DEVA_DROP = str.maketrans({"\u0902": "", "\u0901": "", "\u093c": "", "\u094d": "",
                            "\u0940": "\u093f", "\u0942": "\u0941", "\u0948": "\u0947",
                            "\u094c": "\u094b", "\u0906": "\u0905", "\u0908": "\u0907",
                            "\u090a": "\u0909"})  # fmt: skip
_LATIN_RULES = (
    (re.compile(r"(.)\1+"), r"\1"),
    (re.compile(r"ee|ii"), "i"),
    (re.compile(r"oo|uu"), "u"),
    (re.compile(r"ph"), "f"),
    (re.compile(r"(?<=[bdgjk])h"), ""),  # Hinglish aspirates: "bhram"/"bram", "khoon"/"koon"
    (re.compile(r"w"), "v"),
    (re.compile(r"z"), "j"),
    (re.compile(r"sh"), "s"),
    (re.compile(r"y(?=[aeiou])"), "i"),
)
WINDOW = 12
"""At most this many words from the first to the last part of a composed sign."""


def skeleton(word: str) -> str:
    """A spelling skeleton: Devanagari without nasal marks, nukta, virama and vowel length;
    Latin with doubled letters, aspirates and common Hinglish variants merged
    ("seene"/"sine", "dard"/"darrd", "phool"/"fool", "bahut"/"bahot" stay close)."""
    if _DEVANAGARI.search(word):
        return word.translate(_DEVA_DROP)
    out = word
    for pattern, repl in _LATIN_RULES:
        out = pattern.sub(repl, out)
    return out


def typo_budget(word: str) -> int:
    """Edits a word may carry and still match: none up to 4 letters, 1 up to 7, else 2."""
    n = len(word)
    return 0 if n <= 4 else 1 if n <= 7 else 2


@dataclass(frozen=True)
class Token:
    text: str
    key: str
    start: int
    end: int


@dataclass(frozen=True)
class ComposedHit:
    """A sign found by composition: its span in the folded text."""

    concept: str
    start: int
    end: int
    near: bool = False  # matched a `near:` rule only (asks for confirmation)
    loose: bool = False  # every part but one, and that one with a slip (asks too)


Word = tuple[str, str, bool]
"""A term word: (skeleton, folded spelling, is a prefix)."""


def _word(text: str) -> Word:
    raw = text.lower().replace("'", "")
    prefix = raw.endswith("*")
    raw = raw.rstrip("*")
    return (skeleton(raw), raw, prefix)


class Vocabulary:
    """Term groups: each term a sequence of words (a trailing `*` = any ending)."""

    def __init__(self, groups: dict[str, list[str]], not_typos: frozenset[str]) -> None:
        self.groups = groups
        self.not_typos = not_typos
        # first word -> (group, term words), by skeleton and by spelling
        self.exact: dict[str, list[tuple[str, tuple[Word, ...]]]] = {}
        self.spelled: dict[str, list[tuple[str, tuple[Word, ...]]]] = {}
        self.prefixes: list[tuple[Word, str, tuple[Word, ...]]] = []
        for group, terms in groups.items():
            for term in terms:
                words = tuple(_word(w) for w in term.split())
                first = words[0]
                if first[2]:
                    self.prefixes.append((first, group, words))
                else:
                    self.exact.setdefault(first[0], []).append((group, words))
                    self.spelled.setdefault(first[1], []).append((group, words))
        self.spellings = list(self.spelled)

    @lru_cache(maxsize=20_000)  # noqa: B019 - one Vocabulary per data folder, kept for life
    def lookup_exact(self, key: str, raw: str) -> tuple[tuple[str, tuple[Word, ...]], ...]:
        """Terms whose first word this token is as spelled: the same skeleton or a prefix."""
        out = list(self.exact.get(key, ()))
        out.extend(
            (group, words)
            for first, group, words in self.prefixes
            if key.startswith(first[0]) or raw.startswith(first[1])
        )
        return tuple(out)

    @lru_cache(maxsize=20_000)  # noqa: B019 - one Vocabulary per data folder, kept for life
    def lookup(self, key: str, raw: str) -> tuple[tuple[str, tuple[Word, ...]], ...]:
        """Terms whose first word this token (skeleton `key`, spelling `raw`) can be:
        the same skeleton, a prefix, or a typo of a spelling (see `_close`)."""
        out = list(self.exact.get(key, ()))
        typo_ok = raw not in self.not_typos
        for first, group, words in self.prefixes:
            if (
                key.startswith(first[0])
                or raw.startswith(first[1])
                or (
                    typo_ok and len(first[1]) >= 4 and len(raw) >= 5 and _prefix_typo(raw, first[1])
                )
                or (typo_ok and len(raw) == 4 and _short_prefix_typo(raw, first[1]))
            ):
                out.append((group, words))
        if typo_ok and len(raw) >= 4:
            # every spelling a typo may be ("vomiti": "vomito" as well as "vomita"); a word
            # that is itself a term is a typo only of the first word of a longer term, whose
            # later words must then follow ("vómits sin parar": English "vomits")
            known = key in self.exact
            for spelling, _, _ in extract(
                raw, self.spellings, scorer=OSA.distance, score_cutoff=2, limit=None
            ):
                if close_typo(raw, spelling):
                    out.extend(t for t in self.spelled[spelling] if not known or len(t[1]) > 1)
        return tuple(out)


def _prefix_typo(raw: str, prefix: str) -> bool:
    """A typo inside the first letters of a word ("conulsions" for convuls*)."""
    n = len(prefix)
    swap = sorted(raw[:n]) == sorted(prefix)
    if n < 5 and not swap:
        # four letters: only two letters swapped ("hruts" for hurt*) or a wrong first
        # vowel ("ozules" for azul*)
        return raw[0] in _VOWELS and prefix[0] in _VOWELS and raw[1:n] == prefix[1:]
    if raw[0] != prefix[0] and not swap and not (raw[0] in _VOWELS and prefix[0] in _VOWELS):
        return False
    return any(OSA.distance(raw[:m], prefix) <= 1 for m in (n - 1, n, n + 1) if m <= len(raw))


def _short_prefix_typo(raw: str, prefix: str) -> bool:
    """A four-letter word that is a prefix term with two letters swapped ("apin" for pain*)
    or with a letter dropped from a five-letter one ("dele" for duele*)."""
    if len(prefix) == 4:
        return raw != prefix and sorted(raw) == sorted(prefix) and OSA.distance(raw, prefix) == 1
    return _dropped(raw, prefix)


def close_typo(typed: str, known: str) -> bool:
    """A typo of a known word: one edit for words of 5+ letters with the same first letter,
    two for 9+, and only a swap of two letters for 4-letter words ("chets", "hcest")."""
    d = OSA.distance(typed, known)
    n = min(len(typed), len(known))
    if n >= 11:
        return d <= 2
    if n >= 5:
        return d <= 1 and (
            typed[0] == known[0] or sorted(typed) == sorted(known) or _vowel_slip(typed, known)
        )
    if n == 4 and d == 1 and _dropped(typed, known):
        return True
    return n == 4 and d == 1 and len(typed) == len(known) and sorted(typed) == sorted(known)


def _dropped(typed: str, known: str) -> bool:
    """A letter dropped inside a five-letter word, first and last kept ("dele" for "duele",
    "psos" for "posos", "bram" for "bhram"; "seen" is not "seena")."""
    return (
        len(typed) == 4
        and len(known) == 5
        and typed[0] == known[0]
        and typed[-1] == known[-1]
        and OSA.distance(typed, known) == 1
    )


_VOWELS = frozenset("aeiou")


def _vowel_slip(typed: str, known: str) -> bool:
    """A wrong first vowel, the rest the same ("otaques", "antenso", "ombarazo")."""
    return (
        len(typed) == len(known)
        and typed[0] in _VOWELS
        and known[0] in _VOWELS
        and typed[1:] == known[1:]
    )


CONTRACTIONS = (
    "don't", "doesn't", "didn't", "won't", "can't", "isn't", "aren't", "wasn't", "weren't",
    "haven't", "hasn't", "hadn't", "couldn't", "wouldn't", "shouldn't",
)  # fmt: skip


@lru_cache(maxsize=4096)
def contraction(word: str) -> str:
    """A slip in a typed "n't" contraction mended ("wan't" -> "won't", "dun't"/"do't" ->
    "don't"): the closest contraction one edit away, a same-length one first; else the word."""
    if "'" not in word or not word.endswith("'t") or word in CONTRACTIONS:
        return word
    best = [c for c in CONTRACTIONS if c[0] == word[0] and OSA.distance(word, c) <= 1]
    best.sort(key=lambda c: (len(c) != len(word), c))
    return best[0] if best else word


def tokenize(text: str, offset: int = 0) -> list[Token]:
    """The words of a folded text with their skeletons and offsets (+ `offset`)."""
    out = []
    for m in _TOKEN.finditer(text):
        word = contraction(m.group())
        key = skeleton(word.replace("'", ""))
        out.append(Token(word, key, offset + m.start(), offset + m.end()))
    return out


def word_fits(tok: Token, word: Word | str, exact: bool = False) -> bool:
    """Whether a token is a term word (a later word of a term: one edit allowed from 4
    letters, none when `exact`)."""
    if isinstance(word, str):
        word = _word(word)
    key, raw = tok.key, tok.text.replace("'", "")
    skel, spelled, prefix = word
    if prefix:
        if key.startswith(skel) or raw.startswith(spelled):
            return True
        if exact:
            return False
        # a slip inside a later word's stem ("nahi motte" for "nahi mit*"), or in the stem
        # itself, from four letters ("ke vichr", "ke ivchar" for "ke vichar*")
        n = len(spelled)
        if n >= 3 and len(raw) > n and raw[0] == spelled[0] and OSA.distance(raw[:n], spelled) <= 1:
            return True
        return (
            n >= 4
            and (raw[0] == spelled[0] or sorted(raw[:n]) == sorted(spelled))
            and any(OSA.distance(raw[:m], spelled) <= 1 for m in (n - 1, n) if m <= len(raw))
        )
    if key == skel or raw == spelled:
        return True
    if exact or len(raw) < 4 or len(spelled) < 4:
        return False
    return OSA.distance(raw, spelled, score_cutoff=2) <= (2 if len(spelled) >= 11 else 1)


class Composer:
    """The composition rules of data/nlu/redflags/compose/rules.yml, ready to match."""

    def __init__(self, doc: dict[str, Any], where: str) -> None:
        terms = doc.get("terms")
        rules = doc.get("rules")
        if not isinstance(terms, dict) or not isinstance(rules, dict):
            raise ValueError(f"{where}: expected `terms:` and `rules:` mappings")
        groups: dict[str, list[str]] = {}
        for name, items in terms.items():
            if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
                raise ValueError(f"{where}: terms.{name}: expected a list of strings")
            groups[str(name)] = [t for t in items if t.strip()]
        not_typos = frozenset(str(w).lower() for w in doc.get("not_typos") or ())
        self.inner_negation = frozenset(
            skeleton(str(w).lower().replace("'", "")) for w in doc.get("inner_negation") or ()
        )

        self.vocab = Vocabulary(groups, not_typos)
        self._recent: dict[str, list[ComposedHit]] = {}
        self._recent_groups: dict[str, frozenset[str]] = {}
        self.common = frozenset(str(w).lower() for w in doc.get("common_words") or ())
        self.strict = frozenset(str(g) for g in doc.get("strict_groups") or ())
        for g in self.strict:
            if g not in groups:
                raise ValueError(f"{where}: strict_groups: unknown term group {g!r}")
        self.rules: list[tuple[str, tuple[str, ...], bool]] = []
        self.unless: dict[str, tuple[str, ...]] = {}
        for concept, spec in rules.items():
            spec = spec if isinstance(spec, dict) else {"all": spec}
            unless = tuple(str(g) for g in spec.get("unless") or ())
            for g in unless:
                if g not in groups:
                    raise ValueError(f"{where}: rules.{concept}.unless: unknown term group {g!r}")
            self.unless[str(concept)] = unless
            for kind in ("all", "near"):
                for i, alt in enumerate(spec.get(kind) or []):
                    if not isinstance(alt, list) or not alt:
                        raise ValueError(f"{where}: rules.{concept}.{kind}[{i}]: expected a list")
                    for g in alt:
                        if g not in groups:
                            raise ValueError(
                                f"{where}: rules.{concept}.{kind}[{i}]: unknown term group {g!r}"
                            )
                    self.rules.append((str(concept), tuple(alt), kind == "near"))

    def tokens(self, folded: str) -> list[Token]:
        return tokenize(folded)

    def group_spans(
        self, toks: list[Token], exact: bool = False
    ) -> dict[str, list[tuple[int, int]]]:
        """Token index spans (first, last) where each term group occurs; `exact`: only as
        spelled (skeleton, spelling or prefix), no typo."""
        out: dict[str, list[tuple[int, int]]] = {}
        for i, tok in enumerate(toks):
            raw = tok.text.replace("'", "")
            found = (
                self.vocab.lookup_exact(tok.key, raw) if exact else self.vocab.lookup(tok.key, raw)
            )
            for group, words in found:
                j = i + len(words)
                if j > len(toks):
                    continue
                if all(word_fits(toks[i + k], w, exact) for k, w in enumerate(words[1:], 1)):
                    spans = out.setdefault(group, [])
                    if (i, j - 1) not in spans:
                        spans.append((i, j - 1))
        return out

    def look_alike_spans(self, toks: list[Token]) -> dict[str, list[tuple[int, int]]]:
        """Where the `unless:` groups occur: as spelled only. A look-alike word vetoes a sign,
        so a slip must never make one ("dadai" is not "dawai": a missed emergency costs
        more than a false alarm)."""
        return self.group_spans(toks, exact=True)

    def vetoed(self, folded: str) -> set[str]:
        """Concepts whose `unless:` words occur in the text ("through my nose")."""
        spans = self.look_alike_spans(self.tokens(folded))
        return {c for c, groups in self.unless.items() if any(g in spans for g in groups)}

    def loose_spans(self, toks: list[Token], group: str) -> list[tuple[int, int]]:
        """Where a term of `group` occurs give or take one edit even in a short word ("deep
        bun", "chest hurs"): only asked for when every other part of a sign is there."""
        out: list[tuple[int, int]] = []
        for i, tok in enumerate(toks):
            raw = tok.text.replace("'", "")
            if len(raw) < 3 or raw in self.vocab.not_typos or raw in self.common:
                continue
            for term in self.vocab.groups[group]:
                words = tuple(_word(w) for w in term.split())
                _, spelled, prefix = words[0]
                if len(spelled) < 4 or i + len(words) > len(toks):
                    continue
                if raw[0] != spelled[0]:
                    continue  # a slip keeps the first letter ("bun", "hurs", "cest")
                head = raw
                if prefix:
                    ok = any(
                        OSA.distance(raw[:m], spelled) <= 1
                        for m in (len(spelled) - 1, len(spelled))
                        if m <= len(raw)
                    )
                else:
                    ok = OSA.distance(head, spelled) <= 1
                if ok and all(word_fits(toks[i + k], w) for k, w in enumerate(words[1:], 1)):
                    out.append((i, i + len(words) - 1))
                    break
        return out

    def has_group(self, folded: str, group: str) -> bool:
        """Whether a term group occurs in the text ("reassured": "i'm fine", "bien")."""
        return group in self.group_spans(self.tokens(folded))

    def _best(
        self, spans: dict[str, list[tuple[int, int]]], groups: tuple[str, ...], toks: list[Token]
    ) -> tuple[int, int] | None:
        """The shortest token window holding one occurrence of every group (at most WINDOW
        words, no plain negation between the parts), widened to parts right next to it."""
        best: tuple[int, int] | None = None
        for combo in product(*(spans[g] for g in groups)):
            lo = min(s for s, _ in combo)
            hi = max(e for _, e in combo)
            if hi - lo > WINDOW or (best is not None and hi - lo >= best[1] - best[0]):
                continue
            inside = {k for a, b in combo for k in range(a, b + 1)}
            if any(
                toks[k].key in self.inner_negation for k in range(lo, hi + 1) if k not in inside
            ):
                continue  # "lips are not blue"
            best = (lo, hi)
        if best is None:
            return None
        # end with a part that follows right after ("dhabbe jo nahi mitte")
        hi = best[1]
        for g in groups:
            for a, b in spans[g]:
                if hi < a <= hi + 2:
                    hi = max(hi, b)
        # start at the first part of the sign in reach, so a cue before it governs the
        # whole sign ("not any tightness and pain in the chest")
        lo = min([best[0]] + [s for g in groups for s, e in spans[g] if best[0] - 3 <= e < best[0]])
        return (lo, hi)

    def find(self, folded: str) -> list[ComposedHit]:
        """Every rule whose groups all occur in one sentence within WINDOW words (the last
        few messages' results are kept: one message asks more than once)."""
        found = self._recent.get(folded)
        if found is None:
            found = self._find(folded)
            if len(self._recent) >= 64:
                self._recent.pop(next(iter(self._recent)))
            self._recent[folded] = found
        return list(found)

    def _find(self, folded: str) -> list[ComposedHit]:
        hits: list[ComposedHit] = []
        pos = 0
        for piece in [*_SENTENCE.split(folded)]:
            at = folded.find(piece, pos) if piece else pos
            pos = at + len(piece)
            toks = self.tokens(piece)
            if not toks:
                continue
            spans = self.group_spans(toks)
            alike = self.look_alike_spans(toks)
            for g in self.strict:  # as spelled only: never a slip, never a loose part
                spans.pop(g, None)
                if g in alike:
                    spans[g] = alike[g]
            for concept, groups, near in self.rules:
                missing = [g for g in groups if g not in spans]
                if (
                    len(missing) == 1
                    and len(groups) > 1
                    and not near
                    and missing[0] not in self.strict
                ):
                    # every other part is there: a slip in a short word still counts,
                    # as a near match (the bot asks)
                    taken = {
                        k
                        for g in groups
                        if g in spans
                        for a, b in spans[g]
                        for k in range(a, b + 1)
                    }
                    loose = [
                        (a, b)
                        for a, b in self.loose_spans(toks, missing[0])
                        if not taken & set(range(a, b + 1))
                    ]
                    if loose:
                        found = self._best({**spans, missing[0]: loose}, groups, toks)
                        if found is not None and not any(g in alike for g in self.unless[concept]):
                            start, end = at + toks[found[0]].start, at + toks[found[1]].end
                            hits.append(ComposedHit(concept, start, end, True, True))
                    continue
                if missing:
                    continue
                if any(g in alike for g in self.unless[concept]):
                    continue  # "a little", "small": a look-alike, not the sign
                best = self._best(spans, groups, toks)
                if best is not None:
                    hits.append(
                        ComposedHit(concept, at + toks[best[0]].start, at + toks[best[1]].end, near)
                    )
        return _joined(folded, hits)


_OR = frozenset(("or", "nor", "o", "ni", "ya", "या", "u", "and/or"))


def _joined(folded: str, hits: list[ComposedHit]) -> list[ComposedHit]:
    """Two findings of one sign joined by "or" are one ("no inability to drink or
    breastfeed"): a cue before the first then governs both, as in ConText."""
    out: list[ComposedHit] = []
    for h in sorted(hits, key=lambda h: (h.start, h.end)):
        for k, prev in enumerate(out):
            if (
                prev.concept == h.concept
                and prev.near == h.near
                and prev.end <= h.start
                and folded[prev.end : h.start].strip() in _OR
            ):
                out[k] = ComposedHit(h.concept, prev.start, h.end, h.near, prev.loose or h.loose)
                break
        else:
            out.append(h)
    return out


_COMPOSERS: dict[Path, Composer] = {}


def load_composer(data_dir: Path) -> Composer | None:
    """The composer of a data folder (cached); None when it has no compose.yml."""
    found = _COMPOSERS.get(data_dir)
    if found is None:
        path = data_dir / "nlu" / "redflags" / "compose" / "rules.yml"
        if not path.exists():
            return None
        doc = yaml.load(
            path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        )
        found = _COMPOSERS[data_dir] = Composer(doc, str(path))
    return found
