"""The messy-patient driver (tests/messy_patients.py) over every vignette in flows/tests, in
en/hi/es, worded, messy and volunteered: no conversation under-triaged, every emergency
caught. All of them in-process (the same calls `chat --jsonl` makes, fresh patient each), and
a sample of each style x language through the real `carebridge chat --jsonl` subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest
from chat_driver import InProcess, Subprocess, write_config
from messy_patients import LANGUAGES, STYLES, Outcome, play, table, vignettes
from pg import with_store

from bot.config import Config

# one xdist worker plays each engine's module fixture once (spread over two, both played it:
# 230 s of CPU twice in `make test`)
pytestmark = pytest.mark.xdist_group("messy_patients")


@pytest.fixture(scope="module")
def outcomes(module_store_url: str, config: Config) -> list[Outcome]:
    driver = InProcess(with_store(config, module_store_url))
    try:
        return [
            play(driver.say, f"m{i}-{style}-{lang}", v, lang, style)
            for i, v in enumerate(vignettes())
            for style in STYLES
            for lang in LANGUAGES
        ]
    finally:
        driver.close()


def test_every_vignette_in_every_style_and_language(outcomes: list[Outcome]) -> None:
    print("\n" + table(outcomes))
    flows = {o.vignette.flow for o in outcomes}
    assert len(flows) >= 8 and len(outcomes) == len(vignettes()) * 9
    under = [
        (o.style, o.language, o.vignette.flow, o.vignette.name, o.triage, o.vignette.expect)
        for o in outcomes
        if o.under_triaged
    ]
    assert not under, "\n".join(map(str, under))


def test_every_emergency_is_caught(outcomes: list[Outcome]) -> None:
    emergencies = [o for o in outcomes if o.emergency_expected]
    assert len(emergencies) >= 9 * 100
    missed = [(o.style, o.language, o.vignette.name) for o in emergencies if not o.emergency_caught]
    assert not missed, missed


def test_both_halves_are_played(outcomes: list[Outcome]) -> None:
    halves = {o.vignette.half for o in outcomes}
    assert halves == {0, 1}


@pytest.mark.parametrize("style", STYLES)
def test_a_sample_over_the_real_chat_jsonl_subprocess(
    style: str, outcomes: list[Outcome], config: Config, store_url: str, tmp_path: Path
) -> None:
    """Per language: one emergency and one other vignette of this style, played through
    `carebridge chat --jsonl` as a program would; the same outcome as in-process."""
    path = write_config(with_store(config, store_url), tmp_path)
    all_v = vignettes()
    for lang in LANGUAGES:
        k = LANGUAGES.index(lang) + STYLES.index(style) * 3
        emergency = [v for v in all_v if v.expect in ("emergency", "emergency_ambulance")]
        other = [v for v in all_v if v.expect not in ("emergency", "emergency_ambulance")]
        for v in (emergency[k * 13 % len(emergency)], other[k * 17 % len(other)]):
            chat = Subprocess(path, f"sub-{style}-{lang}-{v.flow}")
            try:
                got = play(chat.say, "", v, lang, style)
            finally:
                chat.close()
            assert not got.under_triaged, (style, lang, v.name, got.triage, got.transcript)
            same = next(
                o for o in outcomes if o.vignette == v and o.style == style and o.language == lang
            )
            assert got.triage == same.triage, (style, lang, v.name)
