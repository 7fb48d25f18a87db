"""Fast matching of many lexicon patterns: each pattern is tried only at the word starts
whose first letters it can begin with (about five per word), so a message costs a few
dictionary look-ups and anchored matches per word instead of a scan per pattern. Patterns
are compiled one by one, once per process (shared by every language's lexicon), so
building and warming a lexicon takes a fraction of a second.

Imports only the standard library and nlu.text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nlu.text import NOT_AFTER_WORD, WORD_CHARS, compile_pattern, fold_spelling

_WORD_START = re.compile(rf"{NOT_AFTER_WORD}[{WORD_CHARS}']")
_PLAIN = re.compile(r"[a-z0-9\u00c0-\uffff]")


def word_starts(folded: str) -> list[int]:
    """Offsets where a word begins (where every lexicon match must begin)."""
    return [m.start() for m in _WORD_START.finditer(folded)]


def _closing(source: str, open_at: int) -> int:
    depth = 0
    i = open_at
    while i < len(source):
        ch = source[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            i = source.index("]", i + 1) + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced parenthesis in pattern {source!r}")


def _split_alternatives(body: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            i = body.index("]", i + 1) + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(body[start:i])
            start = i + 1
        i += 1
    parts.append(body[start:])
    return parts


def first_literals(source: str) -> set[str] | None:
    """The literal text every match of a lexicon pattern starts with, one string per
    alternative (at least one character each); None when that cannot be told."""
    src = source.lstrip()
    if not src:
        return None
    if src.startswith("(") and not src.startswith("(?"):
        close = _closing(src, 0)
        rest = src[close + 1 :]
        if rest[:1] in ("?", "*") or rest.startswith("{0"):
            return None
        if rest[:1] == "+" or rest.startswith("{"):
            rest = ""
        out: set[str] = set()
        for alt in _split_alternatives(src[1:close]):
            found = first_literals(alt + rest) if alt.strip() else None
            if found is None:
                return None
            out |= found
        return out
    lit: list[str] = []
    for ch in src:
        if ch in "?*{":  # the quantifier makes the letter before it optional
            if lit:
                lit.pop()
            break
        if not _PLAIN.match(ch):
            break
        lit.append(ch)
    return {"".join(lit)} if lit else None


_Item = tuple[int, re.Pattern[str]]
_Combo = tuple[str, str, str]  # the 3-, 2- and 1-letter bucket keys that apply ("" = none)
_COMPILED: dict[str, re.Pattern[str]] = {}
"""Compiled patterns by source, shared by every Matcher (English patterns are part of
every language's lexicon)."""


def _compiled(source: str) -> re.Pattern[str]:
    found = _COMPILED.get(source)
    if found is None:
        found = _COMPILED[source] = re.compile(source)
    return found


class _Group:
    """The candidate patterns for one combination of buckets."""

    __slots__ = ("cands",)

    def __init__(self, cands: list[_Item]) -> None:
        self.cands = cands


class Matcher:
    """A set of keyed lexicon patterns, matched together over one folded message."""

    def __init__(self, entries: Sequence[tuple[str, str]]) -> None:
        self.keys: list[str] = []
        index: dict[str, int] = {}
        self._memo: dict[str, _Group] = {}
        self._groups: dict[_Combo, _Group] = {}
        # Patterns bucketed by the first 3, 2 or 1 letters every match starts with.
        self._buckets: tuple[dict[str, list[_Item]], ...] = ({}, {}, {})
        self._anywhere: list[_Item] = []
        for key, source in entries:
            if key not in index:
                index[key] = len(self.keys)
                self.keys.append(key)
            item = (index[key], _compiled(compile_pattern(source)))
            prefixes = first_literals(fold_spelling(source))
            if prefixes is None:
                self._anywhere.append(item)
                continue
            for p in prefixes:
                n = min(len(p), 3)
                bucket = self._buckets[n - 1].setdefault(p[:n], [])
                if item not in bucket:
                    bucket.append(item)

    def _combo(self, head: str) -> _Combo:
        b1, b2, b3 = self._buckets
        return (
            head if head in b3 else "",
            head[:2] if head[:2] in b2 else "",
            head[:1] if head[:1] in b1 else "",
        )

    def _group(self, combo: _Combo) -> _Group:
        group = self._groups.get(combo)
        if group is None:
            b1, b2, b3 = self._buckets
            k3, k2, k1 = combo
            cands = [*b3.get(k3, ()), *b2.get(k2, ()), *b1.get(k1, ()), *self._anywhere]
            group = self._groups[combo] = _Group(cands)
        return group

    def _lookup(self, head: str) -> _Group:
        group = self._group(self._combo(head))
        if len(self._memo) < 50_000:  # bounded: a flood of odd words cannot grow it forever
            self._memo[head] = group
        return group

    def warm(self) -> int:
        """Build the candidate list of every bucket combination now (returns how many);
        patterns are already compiled, so this is cheap."""
        b1, b2, b3 = self._buckets
        combos = {self._combo(k) for k in (*b3, *b2, *b1)} | {("", "", "")}
        for combo in combos:
            self._group(combo)
        return len(combos)

    def find(self, folded: str, starts: list[int] | None = None) -> list[tuple[str, int, int]]:
        """(key, start, end) of every match; per key the longest match at each start, and
        matches of one key never overlap (leftmost first), as with `finditer`."""
        if starts is None:
            starts = word_starts(folded)
        memo = self._memo
        found: dict[int, list[tuple[int, int]]] = {}
        for pos in starts:
            head = folded[pos : pos + 3]
            group = memo.get(head)
            if group is None:
                group = self._lookup(head)
            for k, pattern in group.cands:
                m = pattern.match(folded, pos)
                if m is None:
                    continue
                end = m.end()
                if end <= pos:
                    continue
                spans = found.setdefault(k, [])
                if spans and spans[-1][0] == pos:
                    if end > spans[-1][1]:
                        spans[-1] = (pos, end)
                else:
                    spans.append((pos, end))
        out: list[tuple[str, int, int]] = []
        for k, spans in found.items():
            last_end = -1
            for s, e in spans:
                if s >= last_end:
                    out.append((self.keys[k], s, e))
                    last_end = e
        out.sort(key=lambda t: (t[1], t[2]))
        return out
