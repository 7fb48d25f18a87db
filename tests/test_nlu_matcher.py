"""Fast matching of many lexicon patterns (nlu/matcher.py)."""

from __future__ import annotations

import re

import pytest

from nlu.matcher import Matcher, first_literals, word_starts
from nlu.text import compile_pattern


@pytest.mark.parametrize(
    ("pattern", "prefixes"),
    [
        ("(can't|cannot) breathe", {"can", "cannot"}),
        ("gasp\\w*", {"gasp"}),
        ("lips? blue", {"lip"}),
        ("(a |an )?fit", None),
        ("^fits?$", None),
        ("(struggl\\w*|fight) (to|for)", {"struggl", "fight"}),
    ],
)
def test_first_literals(pattern: str, prefixes: set[str] | None) -> None:
    assert first_literals(pattern) == prefixes


CORPUS = [
    "my father can't breathe properly and his lips are blue",
    "no chest pain, cant breth, not waking",
    "fits fits fit and a seizure",
    "a fit",
    "",
]
PATTERNS = [
    ("a", "(can't|cannot) ~ (breathe|breth)"),
    ("a", "not waking"),
    ("b", "lips? ~ blue"),
    ("c", "fits?"),
    ("c", "(a |an )?fit"),
    ("d", "chest pain"),
    ("e", "^fits?$"),
]


@pytest.mark.parametrize("text", CORPUS)
def test_matcher_agrees_with_finditer(text: str) -> None:
    m = Matcher(PATTERNS)
    got = m.find(text)
    expected = []
    for key in dict.fromkeys(k for k, _ in PATTERNS):
        union = "|".join(f"(?:{compile_pattern(p)})" for k, p in PATTERNS if k == key)
        expected += [
            (key, x.start(), x.end()) for x in re.finditer(union, text) if x.end() > x.start()
        ]
    assert sorted(got) == sorted(expected)
    assert got == m.find(text, word_starts(text))  # memoised gates give the same answer
