"""Per-channel rendering, SMS encoding and segment arithmetic, splitting, and the SMS text lint."""

from __future__ import annotations

import pytest

from bot.messages import Outbound
from channels.render import (
    Button,
    encoding,
    is_gsm7,
    lint_sms_text,
    render,
    segments,
    sms_fits,
    split_outbound,
    split_text,
)

HINDI = "क्या आपको बुखार है"  # "Do you have a fever?": 18 characters, all UCS-2
QUESTION = ("Do you have a fever?", ("Yes", "No", "Don't know"))


def _msg(channel: str, text: str = QUESTION[0], choices: tuple[str, ...] = QUESTION[1]) -> Outbound:
    return Outbound(channel, "+15557654321", text, choices)


# rendering ---------------------------------------------------------------------------------


def test_sms_numbers_the_choices_on_their_own_lines() -> None:
    rendered = render(_msg("sms"))

    assert rendered.text == "Do you have a fever?\n1. Yes\n2. No\n3. Don't know"
    assert rendered.buttons == ()


def test_sms_replaces_typographic_characters_with_gsm7_ones() -> None:
    text = "Don\u2019t worry \u2013 it\u2019s \u201cnormal\u201d\u2026"  # curly, en dash, ellipsis
    rendered = render(_msg("sms", text, ("Yes\u2014sure",)))

    assert rendered.text == "Don't worry - it's \"normal\"...\n1. Yes-sure"
    assert is_gsm7(rendered.text)


def test_whatsapp_bolds_the_question_and_numbers_the_choices() -> None:
    rendered = render(_msg("whatsapp", "Thanks.\nDo you have a fever?"))

    assert rendered.text == "Thanks.\n*Do you have a fever?*\n\n1. Yes\n2. No\n3. Don't know"


def test_whatsapp_leaves_statements_and_already_formatted_text_alone() -> None:
    assert render(_msg("whatsapp", "Stay home.", ())).text == "Stay home."
    assert render(_msg("whatsapp", "Is it *bad*?", ("Yes",))).text == "Is it *bad*?\n\n1. Yes"


def test_telegram_keeps_choices_as_buttons_and_out_of_the_text() -> None:
    rendered = render(_msg("telegram"))

    assert rendered.text == "Do you have a fever?"
    assert rendered.buttons == (
        Button("1. Yes", "1"),
        Button("2. No", "2"),
        Button("3. Don't know", "3"),
    )


def test_other_channels_get_numbered_text_unchanged() -> None:
    text = "It\u2019s fine?"
    assert render(_msg("web", text, ("Yes",))).text == f"{text}\n1. Yes"


def test_the_channel_argument_overrides_the_messages_channel() -> None:
    assert render(_msg("sms"), "telegram").buttons


# encoding and segments ---------------------------------------------------------------------


def test_gsm7_detection() -> None:
    assert is_gsm7("Hello @ £5, è ü Ñ ¿?\n")
    assert is_gsm7("{braces} [brackets] ~ | ^ € \\")  # the extension table
    assert not is_gsm7("38°C")
    assert not is_gsm7("ç")  # only the capital Ç is in GSM-7
    assert not is_gsm7("🙂")
    assert (encoding("plain"), encoding(HINDI)) == ("gsm7", "ucs2")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters count double: 160 septets
        ("€" * 81, 2),
        ("a" * 152 + "€" + "a" * 152, 3),  # an escape pair never straddles two segments
        ("क" * 70, 1),  # UCS-2: 70 per single message ...
        ("क" * 71, 2),  # ... and 67 per part
        ("क" * 134, 2),
        ("क" * 135, 3),
        ("a" * 69 + "°", 1),  # one UCS-2 character turns the whole text UCS-2
        ("a" * 70 + "°", 2),
        ("🙂" * 35, 1),  # an emoji is two UTF-16 units
        ("🙂" * 36, 2),
    ],
)
def test_segments(text: str, expected: int) -> None:
    assert segments(text) == expected


def test_hindi_text_is_ucs2_at_70_characters_per_segment() -> None:
    text = (HINDI + "? ") * 4  # 80 characters

    assert encoding(text) == "ucs2"
    assert (len(text), segments(text)) == (80, 2)


# splitting ---------------------------------------------------------------------------------


def test_short_text_is_not_split() -> None:
    assert split_text("Stay home. Drink water.", sms_fits(1)) == ["Stay home. Drink water."]


def test_long_text_splits_at_sentence_boundaries() -> None:
    sentences = [f"Sentence number {i} is about forty characters." for i in range(10)]

    parts = split_text(" ".join(sentences), sms_fits(1))

    assert len(parts) > 1
    assert all(segments(p) == 1 for p in parts)
    assert " ".join(parts) == " ".join(sentences)
    assert all(p.endswith(".") for p in parts)


def test_hindi_splits_at_the_danda_within_ucs2_limits() -> None:
    text = "।  ".join([HINDI * 2] * 6) + "।"

    parts = split_text(text, sms_fits(1))

    assert all(segments(p) == 1 for p in parts)
    assert all(p.endswith("।") for p in parts)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")


def test_an_overlong_sentence_splits_at_words_and_an_overlong_word_at_characters() -> None:
    parts = split_text("word " * 50 + "x" * 400, sms_fits(1))

    assert all(segments(p) == 1 for p in parts)
    assert "".join(parts).replace(" ", "") == "word" * 50 + "x" * 400


def test_split_outbound_keeps_the_question_with_its_choices() -> None:
    advice = " ".join(f"Advice sentence {i} explains something useful." for i in range(12))
    msg = Outbound("sms", "+15557654321", f"{advice} Do you have a fever?", ("Yes", "No"))

    parts = split_outbound(msg, max_segments=1)

    assert len(parts) > 2
    assert all(segments(render(p).text) == 1 for p in parts)
    assert [p.choices for p in parts[:-1]] == [()] * (len(parts) - 1)
    assert parts[-1].choices == ("Yes", "No")
    assert parts[-1].text.endswith("Do you have a fever?")
    assert [p.meta["part"] for p in parts] == [
        f"{i}/{len(parts)}" for i in range(1, len(parts) + 1)
    ]
    assert " ".join(p.text for p in parts) == msg.text


def test_split_outbound_returns_a_short_message_unchanged() -> None:
    msg = _msg("sms")

    assert split_outbound(msg) == [msg]


def test_split_outbound_uses_the_provider_limit_off_sms() -> None:
    msg = Outbound("telegram", "42", "A fairly long sentence for the chat. " * 200)

    parts = split_outbound(msg)

    assert len(parts) == 2
    assert all(len(p.text) <= 4096 for p in parts)


# lint --------------------------------------------------------------------------------------


def test_lint_passes_plain_gsm7_text() -> None:
    assert lint_sms_text("If your temperature is 38 C or more, reply 1.") == []


def test_lint_names_each_character_that_forces_ucs2_once() -> None:
    problems = lint_sms_text(
        "Fever \u2265 38°C? Don\u2019t wait \u2014 call \u201cnow\u201d 🚑. Really, don\u2019t."
    )

    assert len(problems) == 7
    assert problems[0].startswith("column 7: '≥' (U+2265 GREATER-THAN OR EQUAL TO)")
    assert any("'°'" in p and "degrees" in p for p in problems)
    assert any("U+2019" in p and 'use "\'"' in p for p in problems)
    assert any("EM DASH" in p and "use '-'" in p for p in problems)
    assert any("U+1F691 AMBULANCE" in p for p in problems)


def test_lint_leaves_texts_that_are_ucs2_by_script_alone() -> None:
    assert lint_sms_text(f"{HINDI}? 38°C “ok”") == []
