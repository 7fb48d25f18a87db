"""Text helpers shared by the extractors: length-preserving folding, the lexicon pattern
syntax, number reading and fuzzy word comparison.

A leaf module: imports only the standard library.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

DEVANAGARI_WORD = "\u0900-\u0963\u0966-\u097f"
"""The Devanagari block but its dandas (U+0964, U+0965: sentence punctuation), for use
inside a character class: its vowel signs and virama are not `\\w` in Python."""

WORD_CHARS = f"\\w{DEVANAGARI_WORD}"
"""What a word is made of, for use inside a character class (one-off expressions only:
a class mixing `\\w` with other scripts is slow to compile, see below)."""

# The pieces below are used in every lexicon pattern, so they keep `\w` and the Devanagari
# ranges in separate classes: Python compiles such classes ~5x faster than a mixed one.
WORD = f"(?:\\w|[{DEVANAGARI_WORD}])"
"""One word character."""
NOT_AFTER_WORD = f"(?<![\\w'])(?<![{DEVANAGARI_WORD}])"
"""Look-behind: no word character (or apostrophe) just before."""
NOT_BEFORE_WORD = f"(?![\\w'])(?![{DEVANAGARI_WORD}])"
"""Look-ahead: no word character (or apostrophe) just after."""

SENTENCE_PUNCT = ".!?;\n\u0964\u0965"
"""Characters that end a sentence (the Devanagari dandas included)."""

# Apostrophe look-alikes become a plain "'" so patterns can treat it as optional; Latin
# vowels lose their accents ("días" reads "dias"); Devanagari nukta letters become their
# base letter, candrabindu becomes anusvara ("साँस" reads "सांस") and the zero-width
# (non-)joiners Indic keyboards insert become a Devanagari sign, so they never split a
# word. One character for one, so offsets into the original text stay exact.
_ACCENTS = dict(zip("áàâäãéèêëíìîïóòôöõúùûüç", "aaaaaeeeeiiiiooooouuuuc", strict=True))
_NUKTA_LETTERS = "\u0958\u0959\u095a\u095b\u095c\u095d\u095e\u095f\u0901\u200c\u200d"
_BASE_LETTERS = "\u0915\u0916\u0917\u091c\u0921\u0922\u092b\u092f\u0902\u0900\u0900"
_DEVANAGARI = dict(zip(_NUKTA_LETTERS, _BASE_LETTERS, strict=True))
_SPELLING_TABLE = str.maketrans({**_ACCENTS, **_DEVANAGARI})
_FOLD_TABLE = str.maketrans(
    {"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'", **_ACCENTS, **_DEVANAGARI}
)

SEP = r"[^\w'.!?;\n]+"
"""Between two words of a pattern: any run of spaces and inner punctuation, never a
sentence break."""

GAP = rf"(?:{SEP}[\w']+){{0,3}}{SEP}"
"""A `~` in a pattern: up to three intervening words."""

# Patterns written in Devanagari need its vowel signs counted as word characters, which
# costs compile time (~2x); patterns in Latin letters keep the plain forms above.
_DEVANAGARI_SEP = "(?:(?![\u0900-\u097f])[^\\w'.!?;\n])+"
_DEVANAGARI_GAP = rf"(?:{_DEVANAGARI_SEP}(?:[\w']|[{DEVANAGARI_WORD}])+){{0,3}}{_DEVANAGARI_SEP}"
_HAS_DEVANAGARI = re.compile("[\u0900-\u097f]")


def fold(text: str) -> str:
    """Lower-case `text`, unify apostrophes, drop Latin accents and unify Devanagari
    spelling variants, keeping every character at its offset."""
    out = text.lower()
    if len(out) != len(text):
        # Rare: a character whose lower case is longer ("İ"). Fold one by one.
        out = "".join(c if len(low := c.lower()) != 1 else low for c in text)
    return out.translate(_FOLD_TABLE)


def fold_spelling(text: str) -> str:
    """The accent and Devanagari folding of `fold`, without lower-casing (for patterns and
    lexicon words, so their authors may write "días" or "साँस")."""
    return text.translate(_SPELLING_TABLE)


def _widen_word_class(body: str) -> str:
    """`\\w` in a pattern also means the Devanagari vowel signs (see DEVANAGARI_WORD):
    `\\w` becomes WORD, and a class holding `\\w` also takes the Devanagari range."""
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            pair = body[i : i + 2]
            out.append(WORD if pair == "\\w" else pair)
            i += 2
            continue
        if ch == "[":
            j = i + 1
            if j < len(body) and body[j] == "^":
                j += 1
            if j < len(body) and body[j] == "]":
                j += 1
            while j < len(body) and body[j] != "]":
                j += 2 if body[j] == "\\" else 1
            cls = body[i : j + 1]
            if "\\w" not in cls:
                out.append(cls)
            elif cls.startswith("[^"):
                out.append(f"(?:(?![{DEVANAGARI_WORD}]){cls})")
            else:
                out.append(f"(?:{cls}|[{DEVANAGARI_WORD}])")
            i = j + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def compile_pattern(pattern: str) -> str:
    """Turn one lexicon pattern into a regular expression source (see docs/nlu.md).

    A space stands for a word separator, a lone `~` for up to three intervening words,
    and `'` is optional, so `can't ~ breathe` also reads "cant really breathe".
    """
    body = fold_spelling(pattern.strip())
    if _HAS_DEVANAGARI.search(body) is None:
        sep, gap, before, after = SEP, GAP, r"(?<![\w'])", r"(?![\w'])"
    else:
        body = _widen_word_class(body)
        sep, gap = _DEVANAGARI_SEP, _DEVANAGARI_GAP
        before, after = NOT_AFTER_WORD, NOT_BEFORE_WORD
    body = re.sub(r"\s+~\s+", "\x00", body)
    body = body.replace("'", "'?")
    body = re.sub(r"\s+", lambda _m: sep, body)
    body = body.replace("\x00", gap)
    return rf"{before}(?:{body}){after}"


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


_WORD_RE = re.compile(f"(?:[^\\W_]|[{DEVANAGARI_WORD}])+")


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
