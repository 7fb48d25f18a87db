"""Flows on the live channels: `spoken:` variants in the flow YAML (schema, placeholders, how
they replace the written text on a call), the validator's voice and USSD checks, and how
keypad keys become answers.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_cli import ROOT, run, write_config

from bot.app import load_flows
from bot.cli import live_text_problems
from bot.config import Config
from bot.errors import FlowError
from bot.flow import Library
from bot.live import spoken_variant
from bot.loader import load_library
from bot.messages import Outbound
from channels.render import keyed_answer
from channels.ussd import paginate
from channels.voice import spoken, unspeakable

CONCEPTS = ROOT / "data" / "concepts.yaml"

FLOW = """
spec_version: 2
id: tiny
title: {en: Tiny}
start: ask_bp
nodes:
  ask_bp:
    ask: {en: "If you feel worse, call {emergency_number}. What is your BP now, e.g. 120/80?"}
    spoken:
      en: "If you feel worse, call {emergency_number}. What is your BP now, like 120 over 80?"
    concepts: [systolic_bp, diastolic_bp]
    type: bp
    next: done
  done: {end: {say: {en: "Bye. Call {emergency_number} in an emergency."}}}
"""


def tiny(tmp_path: Path, text: str = FLOW) -> Library:
    d = tmp_path / "flows"
    d.mkdir(exist_ok=True)
    shutil.copy(ROOT / "flows" / "_interrupts.yaml", d / "_interrupts.yaml")
    (d / "tiny.yaml").write_text(text, encoding="utf-8")
    return load_library(
        d,
        CONCEPTS,
        first_flow="tiny",
        default_flow="tiny",
        placeholders={"emergency_number": "112"},
    )


def test_a_spoken_variant_replaces_the_written_text_with_its_values(tmp_path: Path) -> None:
    lib = tiny(tmp_path)
    written = "Thanks.\n\nIf you feel worse, call 112. What is your BP now, e.g. 120/80?"
    assert spoken_variant(lib, written, "en") == (
        "Thanks.\n\nIf you feel worse, call 112. What is your BP now, like 120 over 80?"
    )
    assert spoken_variant(lib, written, "hi") == written  # no Hindi variant: as written
    assert spoken_variant(lib, "Something else.", "en") == "Something else."


@pytest.mark.parametrize(
    ("spoken_yaml", "problem"),
    [
        ('      hi: "x"', "spoken.hi: there is no written 'hi' text to read"),
        ('      en: "Call {service_name}?"', "placeholders ['service_name'] differ"),
        ('      en: ""', "spoken.en: must be a non-empty string"),
    ],
)
def test_spoken_variants_are_checked_on_load(
    tmp_path: Path, spoken_yaml: str, problem: str
) -> None:
    good = next(line for line in FLOW.splitlines() if "like 120 over 80" in line)
    with pytest.raises(FlowError) as err:
        tiny(tmp_path, FLOW.replace(good, spoken_yaml))
    assert any(problem in line and ":ask_bp:" in line for line in err.value.problems), err.value


def test_the_shipped_flows_are_clean_for_voice_and_ussd(config: Config) -> None:
    errors, warnings = live_text_problems(load_flows(config), config.ussd.max_chars)
    assert errors == [] and warnings == []


def test_the_validator_reports_unspeakable_texts_and_overlong_ussd_sentences(
    tmp_path: Path,
) -> None:
    long = "This sentence goes on " + "and on " * 30 + "without a full stop"
    flow = FLOW.replace(
        'done: {end: {say: {en: "Bye. Call {emergency_number} in an emergency."}}}',
        f'done: {{end: {{say: {{en: "See www.example.org 🙂. {long}."}}}}}}',
    )
    errors, warnings = live_text_problems(tiny(tmp_path, flow), 182)
    assert len(errors) == 1 and ":done:end.say.en:" in errors[0]
    assert "a USSD screen has room for" in errors[0]
    assert len(warnings) == 1 and ":done:end.say.en: reads badly aloud" in warnings[0]
    assert "www.example.org" in warnings[0] and "🙂" in warnings[0]
    # ask_bp has `/` in readings but a spoken variant: no warning for it
    assert not any(":ask_bp:" in w for w in warnings)


def test_flows_validate_prints_warnings_and_fails_on_errors(
    tmp_config: Config, tmp_path: Path
) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", flows)
    menu = flows / "menu.yaml"
    text = menu.read_text(encoding="utf-8")
    (flows / "menu.yaml").write_text(
        text.replace("What would you like to do?", "What would you like to do? See www.x.org", 1),
        encoding="utf-8",
    )
    cfg = write_config(
        tmp_config, tmp_path, flows={**tmp_config.flows.model_dump(), "dir": str(flows)}
    )
    code, out = run(["flows", "validate"], cfg)
    assert code == 0 and "warning: " in out and "reads badly aloud (www.x.org)" in out
    long = "word " * 60
    (flows / "menu.yaml").write_text(
        text.replace("What would you like to do?", f"What would {long}you like to do?", 1),
        encoding="utf-8",
    )
    code, out = run(["flows", "validate"], cfg)
    assert code == 1 and "a USSD screen has room for" in out and "Traceback" not in out


@pytest.mark.parametrize(
    ("keys", "kind", "options", "sep", "text"),
    [
        ("38*5", "number", 0, "*", "38.5"),
        ("120*80", "bp", 0, "*", "120/80"),
        ("**", "number", 0, "*", "skip"),
        ("127", "multi", 7, "*", "1 2 7"),
        ("1*10", "multi", 11, "*", "1 10"),
        ("10", "multi", 11, "*", "10"),
        ("0", "multi", 11, "*", "0"),
        ("2", "bool", 0, "*", "2"),
        ("38#5", "number", 0, "#", "38.5"),
        ("##", "bp", 0, "#", "skip"),
        ("1#2", "multi", 11, "#", "1 2"),
    ],
)
def test_keys_become_what_a_patient_would_type(
    keys: str, kind: str, options: int, sep: str, text: str
) -> None:
    assert keyed_answer(keys, kind, options, separator=sep) == text


def test_speech_and_screens_drop_what_does_not_fit_the_channel() -> None:
    assert spoken("*Fever* 38 °C 🙂\n\nDoctor/nurse") == "Fever 38 degrees Celsius Doctor, nurse"
    found = unspeakable("120/80 mg/dL at https://x.org °")
    assert {"mg/dL", "https://x.org", "°"} <= set(found) and "/" in found
    assert unspeakable("Doctor/nurse, call 112.") == []
    choices = tuple(f"Option number {i} with some words" for i in range(1, 12))
    pages = paginate([Outbound("ussd", "x", "Which of these do you have?", choices)], "en")
    assert len(pages) > 1 and all(len(p) <= 182 for p in pages)
    assert "98. More" in pages[0] and "00. Back" in pages[-1] and "98. More" not in pages[-1]
    joined = "\n".join(pages)
    assert all(f"{i}. Option number {i} with some words" in joined for i in range(1, 12))
