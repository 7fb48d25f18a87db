"""The terminal simulator on the live channels: `carebridge chat --channel voice` shows a call
as a script of prompts and keys (and the `<Dial>` of an emergency), `--channel ussd` shows
the phone's USSD screen; both go through the webhooks' own steps and resume after a drop.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import run, write_config

from bot.config import Config


def test_voice_is_a_script_of_prompts_and_keys(tmp_config: Config, tmp_path: Path) -> None:
    cfg = write_config(tmp_config, tmp_path)
    # English, consent, COVID-19 check, then a red flag keyed, then "connect me"
    code, out = run(["chat", "--channel", "voice", "--as", "+919800000401"], cfg, "1\n1\n1\n1\n1\n")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "--- call ---"
    assert "BOT: Which language would you like?" in lines  # its spoken: variant
    assert "BOT: For English, press 1." in lines and "BOT: हिन्दी के लिए 2 दबाएं।" in lines
    assert "WAIT: one key or speech (silence: the prompt again)" in lines
    assert "KEYS: 1" in lines
    assert "WAIT: keys ending with # or speech (silence: the prompt again)" in lines
    emergency = lines.index("BOT: To be connected to 112 now, press 1.")
    assert "Call 112 now" in lines[emergency - 1]
    assert lines[-2:] == ["BOT: Connecting you to 112 now.", "DIAL: 112"]


def test_voice_script_resumes_after_the_line_drops(tmp_config: Config, tmp_path: Path) -> None:
    cfg = write_config(tmp_config, tmp_path)
    code, out = run(
        ["chat", "--channel", "voice", "--as", "+919800000402"], cfg, "3\n1\n1\n!hangup\n0\n"
    )
    assert code == 0, out
    second = out.split("--- call ---")[2].splitlines()
    assert second[1] == "BOT: Hola de nuevo. Seguimos donde nos quedamos."
    assert second[2].startswith("BOT: Este chequeo de COVID-19")
    assert "SAYS" not in out  # every line was keys
    assert "¿Qué edad tiene?" in out.split("KEYS: 0")[-1]


@pytest.mark.parametrize(("key", "word"), [("1", "More"), ("2", "आगे"), ("3", "Más")])
def test_ussd_is_a_phone_screen(tmp_config: Config, tmp_path: Path, key: str, word: str) -> None:
    cfg = write_config(tmp_config, tmp_path)
    code, out = run(["chat", "--channel", "ussd", "--as", "+254711000400"], cfg, f"{key}\n1\n1\n")
    assert code == 0, out
    assert out.splitlines()[0] == "--- dial ---"
    screens = out.split("┌")[1:]
    assert len(screens) == 4
    for screen in screens:
        body, _, status = screen.rpartition("┘\n")
        assert all(line.startswith(("│", "─", "└")) for line in body.splitlines()[1:])
        count = int(status.split("/")[0])
        assert count <= 182 and "(CON: waiting for keys)" in status
    assert f"98. {word}" in screens[-1]
    assert "│ 1. English" in screens[0]
