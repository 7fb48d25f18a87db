"""Text helpers (nlu/text.py): folding, the lexicon pattern syntax, numbers, fuzzy words."""

from __future__ import annotations

import re

import pytest

from nlu.text import (
    NUMBER_RE,
    compile_pattern,
    edit_distance,
    fold,
    fuzzy_equal,
    parse_number,
    words,
)


def test_fold_keeps_offsets() -> None:
    for text in ["Can\u2019t BREATHE", "İstanbul fever", "ÀÉÎ", "plain"]:
        assert len(fold(text)) == len(text)
    assert fold("Can\u2019t") == "can't"


@pytest.mark.parametrize(
    ("pattern", "text", "hit"),
    [
        ("can't breathe", "i cant breathe", "cant breathe"),
        ("can't breathe", "i can't  breathe", "can't  breathe"),
        ("lips ~ blue", "lips are very blue", "lips are very blue"),
        ("lips ~ blue", "lips blue", "lips blue"),
        ("chest pain", "chest. pain", None),  # never across a sentence break
        ("fit", "fitness", None),  # whole words only
        ("(a |an )?fit", "had a fit", "a fit"),
    ],
)
def test_pattern_syntax(pattern: str, text: str, hit: str | None) -> None:
    m = re.search(compile_pattern(pattern), text)
    assert (m.group(0) if m else None) == hit


def test_fuzzy() -> None:
    assert fuzzy_equal("fevr", "fever")
    assert fuzzy_equal("thraot", "throat")  # transposition
    assert not fuzzy_equal("male", "female")
    assert not fuzzy_equal("cat", "cot")  # short words must be exact
    assert edit_distance("kitten", "sitting") == 3
    assert words("Don't, STOP!") == ["dont", "stop"]


def test_numbers_read_comma_or_point() -> None:
    assert [parse_number(m.group(1)) for m in NUMBER_RE.finditer("38,5 and 101.3 and 7")] == [
        38.5,
        101.3,
        7.0,
    ]
