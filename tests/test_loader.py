"""The flow loader: every error at once, each naming file, node and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.errors import FlowError
from bot.flow import AskNode, SayNode
from bot.loader import load_library

ROOT = Path(__file__).resolve().parent.parent
CONCEPTS = ROOT / "data" / "concepts.yaml"


def flows_dir(tmp_path: Path, **files: str) -> Path:
    """A flows folder with the real interrupts file plus the given flow files."""
    d = tmp_path / "flows"
    d.mkdir()
    shutil.copy(ROOT / "flows" / "_interrupts.yaml", d / "_interrupts.yaml")
    for name, text in files.items():
        (d / f"{name}.yaml").write_text(text, encoding="utf-8")
    return d


def load(d: Path, default: str = "tiny") -> object:
    return load_library(d, CONCEPTS, first_flow=default, default_flow=default)


TINY = """
spec_version: 2
id: tiny
title: {en: Tiny}
start: ask_fever
nodes:
  ask_fever:
    ask: {en: "Do you have a fever?"}
    concept: fever
    type: bool
    next:
      - {when: fever, goto: hot}
      - {goto: done}
  hot: {say: {en: Drink water.}, next: done}
  done: {end: {say: {en: Bye.}}}
"""


def test_a_valid_flow_loads_into_typed_nodes(tmp_path: Path) -> None:
    lib = load(flows_dir(tmp_path, tiny=TINY))
    flow = lib.flows["tiny"]  # type: ignore[attr-defined]
    assert isinstance(flow.nodes["ask_fever"], AskNode)
    assert flow.nodes["ask_fever"].concepts == ("fever",)
    assert isinstance(flow.nodes["hot"], SayNode)


def test_every_problem_is_reported_at_once_with_file_node_and_field(tmp_path: Path) -> None:
    bad = TINY.replace("concept: fever", "concept: fevr").replace("goto: hot", "goto: warm")
    bad = bad.replace("type: bool", "type: boolean")
    d = flows_dir(tmp_path, tiny=bad.replace("type: boolean", "type: bool"))
    with pytest.raises(FlowError) as err:
        load(d)
    problems = err.value.problems
    path = str(d / "tiny.yaml")
    assert f"{path}:ask_fever:concept: unknown concept 'fevr' (see data/concepts.yaml)" in problems
    assert f"{path}:ask_fever:next[0].goto: unknown node 'warm'" in problems
    assert len(problems) >= 2


def test_unknown_concept_in_a_condition_is_an_error(tmp_path: Path) -> None:
    bad = TINY.replace("{when: fever, goto: hot}", "{when: {fever_level: {gt: 2}}, goto: hot}")
    with pytest.raises(FlowError) as err:
        load(flows_dir(tmp_path, tiny=bad))
    assert any("unknown concept 'fever_level'" in p for p in err.value.problems)


def test_unquoted_yes_key_is_rejected(tmp_path: Path) -> None:
    bad = TINY.replace("title: {en: Tiny}", "title: {en: Tiny, yes: 1}")
    with pytest.raises(FlowError) as err:
        load(flows_dir(tmp_path, tiny=bad))
    assert any("mapping key is not a string" in p for p in err.value.problems)


def test_yaml_syntax_error_names_the_line_and_does_not_crash(tmp_path: Path) -> None:
    d = flows_dir(tmp_path, tiny=TINY + "  broken: [unclosed\n")
    with pytest.raises(FlowError) as err:
        load(d)
    assert err.value.problems[0].startswith(f"{d / 'tiny.yaml'}:line ")


def test_unknown_placeholder_and_missing_english_text(tmp_path: Path) -> None:
    bad = TINY.replace("{en: Drink water.}", "{en: 'Call {doctor_number}.'}")
    bad = bad.replace("{en: Bye.}", "{hi: Bye.}")
    with pytest.raises(FlowError) as err:
        load(flows_dir(tmp_path, tiny=bad))
    text = "\n".join(err.value.problems)
    assert "hot:say.en: unknown placeholder(s) ['doctor_number']" in text
    assert "done:end.say: missing the 'en' text" in text


def test_triage_outcomes_must_cover_every_reachable_level(tmp_path: Path) -> None:
    flow = """
spec_version: 2
id: tiny
title: {en: T}
start: decide
nodes:
  decide:
    triage:
      - {when: fever, level: consultation}
      - {level: self_care}
    outcomes:
      self_care: {say: {en: Rest.}}
    next: done
  done: {end: true}
"""
    with pytest.raises(FlowError) as err:
        load(flows_dir(tmp_path, tiny=flow))
    assert any(
        p.endswith(
            "tiny.yaml:decide:outcomes.consultation: missing: the table can reach this level"
        )
        for p in err.value.problems
    )


def test_version_1_files_are_migrated_on_load(tmp_path: Path) -> None:
    v1 = """
spec_version: 1
id: tiny
title: Tiny
start: ask_sex
nodes:
  ask_sex:
    ask: "What is your sex?"
    concept: sex
    type: choice
    choices:
      - {value: female, text: Female}
      - {value: male, text: Male}
    next: done
  done: {end: Bye.}
"""
    lib = load(flows_dir(tmp_path, tiny=v1))
    flow = lib.flows["tiny"]  # type: ignore[attr-defined]
    assert flow.spec_version == 2
    node = flow.nodes["ask_sex"]
    assert node.text == {"en": "What is your sex?"}
    assert [o.text for o in node.options] == [{"en": "Female"}, {"en": "Male"}]


def test_the_project_flows_load(tmp_path: Path) -> None:
    lib = load_library(ROOT / "flows", CONCEPTS, first_flow="consent", default_flow="menu")
    assert "covid_screening" in lib.flows


def test_every_configured_language_is_required_and_placeholders_must_match(
    tmp_path: Path,
) -> None:
    flow = TINY.replace("{en: Drink water.}", "{en: 'Call {emergency_number}.', hi: 'Call now.'}")
    d = flows_dir(tmp_path, tiny=flow)
    with pytest.raises(FlowError) as err:
        load_library(d, CONCEPTS, languages=("en", "hi"), first_flow="tiny", default_flow="tiny")
    text = "\n".join(err.value.problems)
    assert f"{d / 'tiny.yaml'}:ask_fever:ask: missing the 'hi' text" in text
    assert "hot:say.hi: placeholders [] differ from the 'en' text's ['emergency_number']" in text


def test_end_exit_human_hands_over_and_a_wrong_exit_is_named(tmp_path: Path) -> None:
    lib = load(flows_dir(tmp_path, tiny=TINY.replace("{say: {en: Bye.}}", "{exit: human}")))
    done = lib.flows["tiny"].nodes["done"]  # type: ignore[attr-defined]
    assert (done.exit_all, done.hand_over) == (True, True)
    bad = TINY.replace("{say: {en: Bye.}}", "{exit: person}")
    (tmp_path / "bad").mkdir()
    with pytest.raises(FlowError) as err:
        load(flows_dir(tmp_path / "bad", tiny=bad))
    path = tmp_path / "bad" / "flows" / "tiny.yaml"
    assert f"{path}:done:end.exit: must be 'flow', 'all' or 'human'" in err.value.problems
