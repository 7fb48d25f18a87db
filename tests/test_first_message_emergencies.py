"""First-message emergency suite (issue 11): a fresh contact's first message, sent through
`carebridge chat --jsonl` as a patient would, must get the emergency instruction (the
configured emergency number) in the FIRST reply for every general emergency complaint, in
en, hi and es; at most 10% of the non-urgent complaints may. Messages:
data/nlu/tests/first_messages.yml. A language menu may follow; the red flag comes first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from click.testing import CliRunner
from pg import with_store
from test_cli import write_config

from bot.app import CareBridge, load_flows
from bot.cli import _deliver, _jsonl_state, main
from bot.config import Config, load_config
from bot.messages import Inbound

ROOT = Path(__file__).resolve().parent.parent
SUITE = yaml.safe_load((ROOT / "data" / "nlu" / "tests" / "first_messages.yml").read_text("utf-8"))
LANGS = ("en", "hi", "es")


def cli_first_reply(cfg: Path, address: str, text: str) -> dict[str, Any]:
    """The first `carebridge chat --jsonl` line for a fresh patient's first message."""
    result = CliRunner().invoke(
        main, ["--config", str(cfg), "chat", "--jsonl", "--as", address], input=text + "\n"
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(lines) == 1, result.output
    return cast(dict[str, Any], lines[0])


class Chat:
    """What `carebridge chat --jsonl` does for one line (bot.cli), for many fresh patients
    in one process: the app handles the message, the terminal takes the queued replies."""

    def __init__(self, config: Config) -> None:
        self.app = CareBridge(config, library=load_flows(config))
        self.n = 0

    def first_reply(self, address: str, text: str) -> dict[str, Any]:
        self.n += 1
        inbound = Inbound("sms", address, text, self.app.clock(), f"first-{self.n}")
        handled = self.app.handle(inbound)
        return _jsonl_state(self.app, handled, _deliver(self.app, handled.contact_id))


def emergency_instruction(state: dict[str, Any], number: str) -> bool:
    """The first reply is a red-flag emergency outcome with the emergency number in it."""
    replies = state["replies"]
    return (
        bool(replies)
        and bool(state["red_flags"])
        and state["triage"] in ("emergency", "emergency_ambulance")
        and number in str(replies[0])
    )


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, module_store_url: str
) -> Iterator[tuple[Chat, Path, str]]:
    tmp = tmp_path_factory.mktemp("first")
    base = load_config(ROOT / "config.yaml", env={})
    config = with_store(base, module_store_url)
    chat = Chat(config)
    yield chat, write_config(config, tmp), base.emergency.number
    chat.app.close()


def test_the_suite_is_big_enough() -> None:
    for lang in LANGS:
        assert len(SUITE["emergency"][lang]) >= 60
        assert len(SUITE["non_urgent"][lang]) >= 20


@pytest.mark.parametrize("lang", LANGS)
def test_every_emergency_gets_the_emergency_number_in_the_first_reply(
    setup: tuple[Chat, Path, str], lang: str
) -> None:
    chat, _, number = setup
    missed = []
    for i, text in enumerate(SUITE["emergency"][lang]):
        state = chat.first_reply(f"first-{lang}-e{i}", text)
        if not emergency_instruction(state, number):
            missed.append((text, state["replies"][:1]))
    assert missed == []


@pytest.mark.parametrize("lang", LANGS)
def test_at_most_a_tenth_of_non_urgent_complaints_get_it(
    setup: tuple[Chat, Path, str], lang: str
) -> None:
    chat, _, number = setup
    texts = SUITE["non_urgent"][lang]
    alarmed = [
        t
        for i, t in enumerate(texts)
        if emergency_instruction(chat.first_reply(f"first-{lang}-n{i}", t), number)
    ]
    assert len(alarmed) <= 0.10 * len(texts), alarmed


def test_the_same_through_the_chat_command(setup: tuple[Chat, Path, str]) -> None:
    """One emergency and one non-urgent first message per language over the real CLI."""
    _, cfg, number = setup
    for lang in LANGS:
        state = cli_first_reply(cfg, f"cli-{lang}-e", SUITE["emergency"][lang][0])
        assert emergency_instruction(state, number), state
        state = cli_first_reply(cfg, f"cli-{lang}-n", SUITE["non_urgent"][lang][0])
        assert not emergency_instruction(state, number), state


def test_near_a_sign_the_bot_asks_once_and_a_yes_gets_the_emergency(
    setup: tuple[Chat, Path, str],
) -> None:
    """The real interpreter: a slip in the one word that is missing from a sign asks one
    yes/no question naming the sign; "1" (yes) gets the emergency instruction."""
    chat, _, number = setup
    state = chat.first_reply("near-1", "i have a deep bun on my arm")
    assert not state["red_flags"]
    assert "large or deep burn" in state["replies"][0]
    assert state["expecting"]["type"] == "bool"
    state = chat.first_reply("near-1", "1")
    assert emergency_instruction(state, number), state
    assert state["red_flags"] == ["severe_burn"]


def test_a_letter_dropped_inside_a_five_letter_word_is_a_typo(
    setup: tuple[Chat, Path, str],
) -> None:
    """ "siff" keeps the first and last letters of "stiff": read as the word, so the sign is
    raised at once (no question)."""
    chat, _, number = setup
    state = chat.first_reply("drop-1", "my neck is siff and i have a fever")
    assert state["red_flags"] == ["stiff_neck_fever"]
    assert emergency_instruction(state, number), state
