"""Complaint routing suite: >= 150 first messages (pregnancy, each condition, COVID-19, other
complaints, greetings; en/hi/es) start the right flow, read from the `flow` field of the
`chat --jsonl` state once the language menu and consent are answered. Messages:
tests/data/routing_messages.yml (tuning and held-out halves, docs/routing.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chat_driver import InProcess, Subprocess, write_config
from pg import with_store

from bot.config import Config
from bot.flow import EMERGENCY_LEVELS
from nlu.types import GLOBAL_RED_FLAGS

ROOT = Path(__file__).resolve().parent.parent
DATA = yaml.safe_load((ROOT / "tests" / "data" / "routing_messages.yml").read_text("utf-8"))
LANGUAGE_NUMBER = {"en": "1", "hi": "2", "es": "3"}
CONSENT = {"en": "yes", "hi": "haan", "es": "sí"}
CASES = [
    (lang, flow, item if isinstance(item, str) else item["text"], isinstance(item, dict))
    for lang, flows in DATA.items()
    for flow, items in flows.items()
    for item in items
]


def first_flow(
    say: Callable[[str, str], dict[str, Any]], address: str, lang: str, text: str
) -> str:
    """The flow a first message starts, after the language menu, consent and a red-flag
    confirmation question (answered no) if one is asked."""
    state = say(address, text)
    for _ in range(4):
        exp = state.get("expecting") or {}
        if exp.get("concept") == "preferred_language":
            state = say(address, LANGUAGE_NUMBER[lang])
        elif exp.get("concept") == "consent_care":
            state = say(address, CONSENT[lang])
        elif exp.get("concept") in GLOBAL_RED_FLAGS and exp.get("type") == "bool":  # confirm: no
            state = say(address, "2")
        else:
            break
    if state.get("red_flags") and state.get("triage") in EMERGENCY_LEVELS:
        return "emergency"
    return str(state.get("flow"))


@pytest.fixture(scope="module")
def driver(module_store_url: str, config: Config) -> Iterator[InProcess]:
    d = InProcess(with_store(config, module_store_url))
    yield d
    d.close()


def test_the_suite_is_big_enough_and_split_in_halves() -> None:
    assert len(CASES) >= 150
    for lang in ("en", "hi", "es"):
        flows = {flow for lng, flow, _, _ in CASES if lng == lang}
        assert {"pregnancy_checkin", "covid_screening", "general_triage", "menu"} <= flows
        assert {f"{c}_checkin" for c in ("diabetes", "hypertension", "asthma", "copd")} <= flows
    held = sum(h for *_, h in CASES)
    assert 0.4 <= held / len(CASES) <= 0.6


def test_every_first_message_reaches_the_right_flow(driver: InProcess) -> None:
    """Every tuning message reaches its flow. A held-out message may instead be taken for a
    red flag (an emergency answer, never a wrong flow), at most 5% of them: that is the
    red-flag lexicon's call, which the held-out half must not be tuned against."""
    wrong, alarms = [], []
    for i, (lang, flow, text, held) in enumerate(CASES):
        got = first_flow(driver.say, f"route-{i}", lang, text)
        if got == "emergency" and flow != "emergency" and held:
            alarms.append((lang, text))
        elif got != flow:
            wrong.append((lang, text, flow, got, "held-out" if held else "tuning"))
    held_out = sum(h for *_, h in CASES)
    print(
        f"routing: {len(CASES) - len(wrong) - len(alarms)}/{len(CASES)} right, "
        f"red-flag alarms {alarms}"
    )
    assert not wrong, "\n".join(map(str, wrong))
    assert len(alarms) <= 0.05 * held_out, alarms


FRESH = yaml.safe_load((ROOT / "tests" / "data" / "routing_fresh.yml").read_text("utf-8"))


def test_a_second_held_out_set_written_after_the_rules(driver: InProcess) -> None:
    """36 messages written once the routing was final and never tuned against: none reaches
    a wrong flow; a few taken for a red flag (an emergency answer: over-triage, never under)
    are counted and allowed up to 10% (docs/routing.md)."""
    cases = [(lang, flow, t) for lang, fl in FRESH.items() for flow, ts in fl.items() for t in ts]
    assert len(cases) == 36
    wrong, alarms = [], []
    for i, (lang, flow, text) in enumerate(cases):
        got = first_flow(driver.say, f"fresh-{i}", lang, text)
        if got == "emergency":
            alarms.append(text)
        elif got != flow:
            wrong.append((lang, text, flow, got))
    print(f"fresh held-out routing: {len(cases) - len(wrong) - len(alarms)}/{len(cases)}, {alarms}")
    assert not wrong, wrong
    assert len(alarms) <= 0.10 * len(cases), alarms


@pytest.mark.parametrize("lang", ["en", "hi", "es"])
def test_routing_over_the_real_chat_jsonl_subprocess(
    lang: str, config: Config, store_url: str, tmp_path: Path
) -> None:
    """A sample per language, through `carebridge chat --jsonl` as a program would."""
    path = write_config(with_store(config, store_url), tmp_path)
    sample = [c for c in CASES if c[0] == lang and c[1] in ("pregnancy_checkin", "general_triage")]
    for i, (_, flow, text, _) in enumerate(sample[:2] + sample[-2:]):
        chat = Subprocess(path, f"sub-{lang}-{i}")
        try:
            assert first_flow(chat.say, "", lang, text) == flow, text
        finally:
            chat.close()
