"""Text helpers shared by the extractors: length-preserving folding, the lexicon pattern
syntax, number reading and fuzzy word comparison.

A leaf module: imports only the standard library.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Apostrophe look-alikes become a plain "'" so patterns can treat it as optional.
_FOLD_TABLE = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})

SEP = r"[^\w'.!?;\n]+"
"""Between two words of a pattern: any run of spaces and inner punctuation, never a
sentence break."""

GAP = rf"(?:{SEP}[\w']+){{0,3}}{SEP}"
"""A `~` in a pattern: up to three intervening words."""


def fold(text: str) -> str:
    """Lower-case `text` and unify apostrophes, keeping every character at its offset."""
    out = text.translate(_FOLD_TABLE).lower()
    if len(out) == len(text):
        return out
    # Rare: a character whose lower case is longer ("İ"). Fold one by one.
    return "".join(c if len(low := c.lower()) != 1 else low for c in text.translate(_FOLD_TABLE))


def compile_pattern(pattern: str) -> str:
    """Turn one lexicon pattern into a regular expression source (see docs/nlu.md).

    A space stands for a word separator, a lone `~` for up to three intervening words,
    and `'` is optional, so `can't ~ breathe` also reads "cant really breathe".
    """
    body = pattern.strip()
    body = re.sub(r"\s+~\s+", "\x00", body)
    body = body.replace("'", "'?")
    body = re.sub(r"\s+", lambda _m: SEP, body)
    body = body.replace("\x00", GAP)
    return rf"(?<![\w'])(?:{body})(?![\w'])"


def compile_union(patterns: list[str] | tuple[str, ...]) -> str:
    """One regular expression source matching any of the lexicon `patterns`."""
    return "|".join(f"(?:{compile_pattern(p)})" for p in patterns)


NUMBER_WORDS: dict[str, float] = {
    "zero": 0, "one": 1, "a": 1, "an": 1, "once": 1, "single": 1, "two": 2, "twice": 2,
    "couple": 2, "three": 3, "thrice": 3, "few": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "fourteen": 14, "fifteen": 15, "twenty": 20, "thirty": 30, "half": 0.5,
}  # fmt: skip
"""English number words; a language lexicon may add its own (`number_words:`)."""

NUMBER_RE = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)?|\.\d+)(?![\d])")
"""A decimal number, comma or point as the separator: 38,5 and 38.5 both read 38.5."""


def parse_number(token: str) -> float:
    """Read a number token matched by NUMBER_RE ("38,5" -> 38.5)."""
    return float(token.replace(",", "."))


def strip_accents(text: str) -> str:
    """Remove combining accents (for fuzzy comparison of labels only)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    """The words of `text`, folded, without accents or punctuation."""
    return _WORD_RE.findall(strip_accents(fold(text)).replace("'", ""))


def edit_distance(a: str, b: str, limit: int = 3) -> int:
    """Optimal-string-alignment distance between `a` and `b`, capped at `limit` + 1."""
    if a == b:
        return 0
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        best = cur[0]
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            val = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                val = min(val, prev2[j - 2] + 1)
            cur[j] = val
            best = min(best, val)
        if best > limit:
            return limit + 1
        prev2, prev = prev, cur
    return min(prev[-1], limit + 1)


def allowed_typos(word: str) -> int:
    """How many edits a word of this length may carry and still be recognised."""
    n = len(word)
    if n <= 3:
        return 0
    if n <= 5:
        return 1
    return 2


@lru_cache(maxsize=4096)
def fuzzy_equal(typed: str, target: str) -> bool:
    """True when `typed` is `target` or a small typo of it ("fevr" ~ "fever")."""
    if typed == target:
        return True
    limit = allowed_typos(typed if len(typed) < len(target) else target)
    if limit == 0 or (typed[:1] != target[:1] and limit < 2):
        return False
    return edit_distance(typed, target, limit) <= limit
