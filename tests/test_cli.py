"""The command line contracts of DESIGN.md: triage JSON, flows validate/test/graph, chat."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bot.cli import main
from bot.config import Config

ROOT = Path(__file__).resolve().parent.parent


def write_config(config: Config, tmp_path: Path, **changes: object) -> Path:
    """The project's config.yaml with the database (and `changes`) in a temporary place."""
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["storage"] = {"url": config.storage.url}
    data.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run(args: list[str], config: Path, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args], input=stdin)
    return result.exit_code, result.output


def test_triage_json_has_the_design_contract(tmp_config: Config, tmp_path: Path) -> None:
    cfg = write_config(tmp_config, tmp_path)
    facts = tmp_path / "facts.yaml"
    facts.write_text("fever: true\nspo2_percent: 91\nage_years: 40\n", encoding="utf-8")
    code, out = run(["triage", "--flow", "covid_screening", "--facts", str(facts), "--json"], cfg)
    assert code == 0, out
    doc = json.loads(out)
    assert set(doc) == {"flow", "triage", "red_flags", "escalated", "answers", "transcript"}
    assert (doc["flow"], doc["triage"], doc["escalated"]) == ("covid_screening", "emergency", True)
    assert doc["answers"]["spo2_percent"] == 91.0
    assert any("patient" in turn for turn in doc["transcript"])


def test_triage_reads_facts_from_stdin_and_rejects_unknown_concepts(
    tmp_config: Config, tmp_path: Path
) -> None:
    cfg = write_config(tmp_config, tmp_path)
    code, out = run(["triage", "--flow", "covid_screening", "--facts", "-"], cfg, "{}\n")
    assert (code, out.strip()) == (0, "covid_screening: self_care")
    code, out = run(["triage", "--flow", "covid_screening", "--facts", "-"], cfg, "fevr: true\n")
    assert code == 1 and "fevr: unknown concept id (did you mean fever?)" in out


@pytest.mark.parametrize(
    ("facts", "problem"),
    [
        ("age_years: seventy\n", "age_years: 'seventy' is not a number"),
        ("fever: maybe\n", "fever: 'maybe' is not true or false"),
        ("spo2_percent: 150\n", "spo2_percent: 150 is out of range (50 to 100)"),
        ("age_years: 700\n", "age_years: 700 is out of range (0 to 120)"),
        ("sex: robot\n", "sex: 'robot' is not a valid choice (one of: female, male, other)"),
        ("temprature_c: 39\n", "temprature_c: unknown concept id (did you mean temperature_c?)"),
    ],
)
def test_triage_with_bad_facts_says_which_concept_and_why_in_one_line(
    tmp_config: Config, tmp_path: Path, facts: str, problem: str
) -> None:
    cfg = write_config(tmp_config, tmp_path)
    source = tmp_path / "vignette.yaml"
    source.write_text(f"fever: true\n{facts}", encoding="utf-8")
    code, out = run(["triage", "--flow", "covid_screening", "--facts", str(source)], cfg)
    assert code == 1
    assert out.strip() == f"Error: {source}: bad facts: {problem}"
    assert "Traceback" not in out


def test_flows_validate_names_file_node_and_field_and_fails(
    tmp_config: Config, tmp_path: Path
) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", flows)
    broken = (flows / "consent.yaml").read_text().replace("concept: consent_care", "concept: nope")
    (flows / "consent.yaml").write_text(broken)
    cfg = write_config(
        tmp_config, tmp_path, flows={**tmp_config.flows.model_dump(), "dir": str(flows)}
    )
    code, out = run(["flows", "validate"], cfg)
    assert code == 1
    assert f"{flows / 'consent.yaml'}:ask_consent:concept: unknown concept 'nope'" in out
    assert "Traceback" not in out


def test_flows_test_and_graph(tmp_config: Config, tmp_path: Path) -> None:
    cfg = write_config(tmp_config, tmp_path)
    code, out = run(["flows", "test"], cfg)
    assert code == 0 and out.strip().endswith("0 failed")
    code, out = run(["flows", "graph", "consent"], cfg)
    assert code == 0 and out.startswith("flowchart TD") and "ask_consent" in out


def test_chat_jsonl_is_one_object_per_patient_line(tmp_config: Config, tmp_path: Path) -> None:
    cfg = write_config(tmp_config, tmp_path)
    code, out = run(["chat", "--jsonl", "--as", "p1"], cfg, "hi\n1\nyes\n1\n0\n")
    assert code == 0, out
    lines = [json.loads(line) for line in out.splitlines()][1:]  # after the language menu
    assert len(lines) == 4
    keys = {"replies", "expecting", "flow", "triage", "red_flags", "escalated", "status"}
    assert all(set(line) == keys for line in lines)
    assert lines[0]["expecting"] == {"concept": "consent_care", "type": "bool", "choices": []}
    assert lines[3]["expecting"]["concept"] == "age_years"
    assert lines[3]["flow"] == "covid_screening" and lines[3]["status"] == "active"


def test_chat_script_resumes_after_a_restart(tmp_config: Config, tmp_path: Path) -> None:
    cfg = write_config(tmp_config, tmp_path)
    script = tmp_path / "s.txt"
    script.write_text("hi\n1\nyes\n1\n", encoding="utf-8")
    code, out = run(["chat", "--script", str(script), "--as", "p2"], cfg)
    assert code == 0 and "> 1" in out and "any of these right now" in out
    code, out = run(["chat", "--as", "p2"], cfg, "")  # a new process, same patient
    assert "continuing where you left off" in out and "any of these right now" in out


def test_a_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("flows: {max_failures: 0}\n", encoding="utf-8")
    code, out = run(["flows", "validate"], bad)
    assert code == 1 and "flows.max_failures" in out and "Traceback" not in out
