"""`carebridge nlu parse|test|train` (bot/cli_nlu.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli_nlu import nlu
from nlu import classifier
from nlu.lexicon import DATA_DIR, available_languages


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(nlu, list(args))
    return result.exit_code, result.output


def test_parse_json_is_rasa_shape_plus_red_flags() -> None:
    code, out = run("parse", "--json", "my son cant breathe, no chest pain, temp 101F")
    assert code == 0
    doc = json.loads(out)
    assert set(doc) >= {"text", "intent", "intent_ranking", "entities", "red_flags"}
    assert doc["red_flags"] == ["severe_dyspnea"]
    assert {"entity", "value", "start", "end", "extractor"} <= set(doc["entities"][0])
    assert any(e["entity"] == "chest_pain" and e["negated"] for e in doc["entities"])
    assert any(e["entity"] == "temperature_c" and e["value"] == 38.3 for e in doc["entities"])
    assert doc["subject"] == "child"


def test_parse_human_readable() -> None:
    code, out = run("parse", "maybe a little fever since yesterday", "--lang", "en")
    assert code == 0
    assert "fever = True" in out and "[uncertain]" in out
    assert "symptom_onset_days = 1.0" in out


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """A copy of data/nlu with the cached models, so commands load instead of training (a
    message is read in the language it is written in, so every language's model may be
    needed)."""
    shutil.copytree(DATA_DIR / "nlu", tmp_path / "nlu")
    (tmp_path / "cache" / "nlu").mkdir(parents=True)
    for lang in available_languages(DATA_DIR):
        model = classifier.cache_path(lang, DATA_DIR)
        classifier.load_or_train(lang, DATA_DIR)
        shutil.copy2(model, tmp_path / "cache" / "nlu" / model.name)
    return tmp_path


def test_test_command_reports_and_passes(data_copy: Path) -> None:
    code, out = run("test", "--data-dir", str(data_copy))
    assert code == 0, out
    for needle in (
        "macro-F1",
        "entities: precision",
        "red flags",
        "recall 1.000",
        "false alarms",
        "readings: en_readings.yml",
        "prec",
    ):
        assert needle in out


def test_test_command_fails_on_a_missed_red_flag(data_copy: Path) -> None:
    path = data_copy / "nlu" / "tests" / "en_redflags.yml"
    text = path.read_text(encoding="utf-8").replace(
        "red_flags:\n", 'red_flags:\n  - {text: "my toe itches", flags: [chest_pain]}\n', 1
    )
    path.write_text(text, encoding="utf-8")
    code, out = run("test", "--data-dir", str(data_copy))
    assert code == 1
    assert "MISSED 'my toe itches'" in out


def test_test_command_fails_on_false_alarms(data_copy: Path) -> None:
    path = data_copy / "nlu" / "tests" / "en_redflags.yml"
    text = path.read_text(encoding="utf-8").replace(
        "benign:\n", 'benign:\n  - "chest pain"\n  - "crushing chest pain"\n  - "seizure"\n', 1
    )
    path.write_text(text, encoding="utf-8")
    code, out = run("test", "--data-dir", str(data_copy))
    assert code == 1 and "FALSE ALARM" in out


def test_test_command_with_an_explicit_file(data_copy: Path) -> None:
    custom = data_copy / "mine.yml"
    custom.write_text(
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hello there doc\n',
        encoding="utf-8",
    )
    code, out = run("test", "--data", str(custom), "--data-dir", str(data_copy))
    assert code == 0 and "mine.yml (1 examples)" in out


def test_train_forces_a_retrain_and_prints_the_cache(tmp_path: Path) -> None:
    (tmp_path / "nlu").mkdir()
    (tmp_path / "nlu" / "en.yml").write_text(
        'version: "3.1"\nnlu:\n- intent: a\n  examples: |\n    - hi\n    - hello\n'
        "- intent: b\n  examples: |\n    - stop\n    - quit\n",
        encoding="utf-8",
    )
    before = classifier.TRAIN_COUNT
    code, out = run("train", "--data-dir", str(tmp_path))
    assert code == 0 and before + 1 == classifier.TRAIN_COUNT
    assert f"cache: {tmp_path / 'cache' / 'nlu'}" in out
    code, _ = run("train", "--data-dir", str(tmp_path))
    assert before + 2 == classifier.TRAIN_COUNT
