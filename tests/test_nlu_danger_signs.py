"""The classes of miss named in issue 11, read by the real interpreter: composition with
words between, Devanagari with an intensifier, Hinglish breathlessness with inability to
speak, idiomatic confusion, typos, and time: a past or resolved sign is not current, a
negated one is not a red flag."""

from __future__ import annotations

import pytest

from nlu.interpreter import Interpreter


@pytest.fixture(scope="module")
def it() -> Interpreter:
    return Interpreter()


@pytest.mark.parametrize(
    ("text", "lang", "flag"),
    [
        ("my chest feels tight and there is a pain in it and im sweating", "en", "chest_pain"),
        ("सीने में बहुत तेज़ दर्द", "hi", "chest_pain"),
        ("saans phool rahi hai aur bol bhi nahi pa raha", "hi", "severe_dyspnea"),
        ("my baby is making a grunting noise with every breath", "en", "chest_indrawing"),
        ("my dad is talking nonsense", "en", "confusion"),
        ("pet mein bahut tez dard hai", "hi", "severe_abdominal_pain"),
        ("mi hijo no puede tomar nada y está muy decaído", "es", "child_cannot_drink"),
        ("my 2 month old is hot and won't feed", "en", "infant_fever"),
        ("crushng pain in my chets", "en", "chest_pain"),
        ("last year I had a fit and now chest pain again", "en", "chest_pain"),
    ],
)
def test_red_flags_that_generalise(it: Interpreter, text: str, lang: str, flag: str) -> None:
    assert flag in it.interpret(text, None, lang).red_flags


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("chest pain last year, none now", "en"),
        ("had chest pain yesterday, gone now", "en"),
        ("used to have fits as a kid", "en"),
        ("no chest pain", "en"),
        ("de niño tenía convulsiones, ahora nada", "es"),
        ("pichle saal seene mein dard tha, ab kuch nahi", "hi"),
        ("seene mein jalan hai khana khane ke baad", "hi"),
        ("I can breathe fine", "en"),
    ],
)
def test_past_resolved_and_negated_signs_are_not_red_flags(
    it: Interpreter, text: str, lang: str
) -> None:
    u = it.interpret(text, None, lang)
    assert u.red_flags == () and u.red_flag_candidates == ()


def test_saans_with_inability_to_speak_is_read_as_breathlessness(it: Interpreter) -> None:
    u = it.interpret("saans phool rahi hai aur bol bhi nahi pa raha", None, "hi")
    assert "severe_dyspnea" in u.red_flags
