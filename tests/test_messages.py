"""The channel-neutral message types: the one place inbound text is capped and made storable."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.messages import MAX_TEXT_CHARS, Inbound

NOW = datetime(2020, 4, 1, 9, tzinfo=UTC)


def test_inbound_text_is_cut_at_the_cap_and_says_so() -> None:
    long = Inbound("telegram", "1", "a" * (MAX_TEXT_CHARS + 500), NOW, "u1")
    assert len(long.text) == MAX_TEXT_CHARS == 1600 and long.truncated
    exact = Inbound("sms", "+1555", "b" * MAX_TEXT_CHARS, NOW, "u2")
    assert len(exact.text) == MAX_TEXT_CHARS and not exact.truncated


def test_lone_surrogates_become_replacement_characters_everywhere() -> None:
    inbound = Inbound("telegram", "1\ud800", "hi \udfff", NOW, "u\ud83d", "e\udc00n")
    assert inbound.text == "hi \ufffd" and inbound.address == "1\ufffd"
    assert inbound.provider_id == "u\ufffd" and inbound.language_hint == "e\ufffdn"
    for value in (inbound.text, inbound.address, inbound.provider_id, inbound.language_hint):
        assert value is not None
        value.encode("utf-8")  # storable


def test_a_real_emoji_is_kept() -> None:
    assert Inbound("telegram", "1", "ok \U0001f600", NOW, "u3").text == "ok \U0001f600"
