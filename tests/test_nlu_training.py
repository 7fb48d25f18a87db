"""Rasa YAML training data (nlu/training.py) and the shipped data files."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.lexicon import DATA_DIR
from nlu.training import Span, TrainingDataError, load_training_data, parse_example

REQUIRED_INTENTS = {
    "greet", "goodbye", "thanks", "affirm", "deny", "dont_know", "start_screening",
    "start_checkin", "report_symptom", "report_reading", "ask_human", "help", "stop",
    "restart", "change_language", "out_of_scope",
}  # fmt: skip


def test_parse_inline_annotations() -> None:
    text, spans = parse_example(
        "[fevr](fever) [3 dys](symptom_onset_days) and bp [150](systolic_bp)"
    )
    assert text == "fevr 3 dys and bp 150"
    assert spans == (
        Span("fever", 0, 4, "fevr"),
        Span("symptom_onset_days", 5, 10, "3 dys"),
        Span("systolic_bp", 18, 21, "150"),
    )


def test_parse_json_annotation_and_synonym_shorthand() -> None:
    text, spans = parse_example('i have [loose motions]{"entity": "diarrhea", "value": "yes"}')
    assert text == "i have loose motions"
    assert spans == (Span("diarrhea", 7, 20, "yes"),)
    _, spans = parse_example("[temp](fever:true)")
    assert spans == (Span("fever", 0, 4, "true"),)


def test_malformed_files_name_the_file_and_entry(tmp_path: Path) -> None:
    bad = tmp_path / "xx.yml"
    bad.write_text('version: "3.1"\nnlu:\n- intent: greet\n  examples: hi\n', encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"xx\.yml: nlu\[0\]"):
        load_training_data(bad)
    bad.write_text(
        'version: "3.1"\nnlu:\n- something: x\n  examples: |\n    - a\n', encoding="utf-8"
    )
    with pytest.raises(TrainingDataError, match="intent, synonym, lookup, regex"):
        load_training_data(bad)


def test_shipped_english_data() -> None:
    data = load_training_data(DATA_DIR / "nlu" / "en.yml")
    counts = {i: sum(1 for e in data.examples if e.intent == i) for i in data.intents}
    assert set(counts) >= REQUIRED_INTENTS
    assert min(counts.values()) >= 20
    assert data.synonyms["loose motions"] == "diarrhea"
    assert data.lookups["symptom"] and data.regexes["blood_pressure"]
    assert any(e.entities for e in data.examples)
    assert any(e.text.isupper() for e in data.examples)  # all-caps phrasing is represented


def test_shipped_files_declare_rasa_version() -> None:
    import yaml

    for path in [DATA_DIR / "nlu" / "en.yml", DATA_DIR / "nlu" / "tests" / "en_heldout.yml"]:
        assert yaml.safe_load(path.read_text(encoding="utf-8"))["version"] == "3.1"


def test_entity_names_are_concept_ids() -> None:
    import yaml

    concepts = set(yaml.safe_load((DATA_DIR / "concepts.yaml").read_text())["concepts"])
    for path in [DATA_DIR / "nlu" / "en.yml", DATA_DIR / "nlu" / "tests" / "en_heldout.yml"]:
        names = {s.entity for e in load_training_data(path).examples for s in e.entities}
        assert names <= concepts, names - concepts
