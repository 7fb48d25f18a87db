"""Lexicon loading (nlu/lexicon.py): merging languages, and errors that say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.evaluate import nlu_tests_dir
from nlu.lexicon import LexiconError, load_lexicon, scan
from nlu.redflags import red_flags
from nlu.text import fold


def test_a_language_file_adds_to_english(tmp_path: Path) -> None:
    data = _copy_lexicons(tmp_path)
    (data / "nlu" / "redflags" / "xx.yml").write_text(
        "redflags:\n  chest_pain:\n    patterns:\n      - dolor de pecho\n", encoding="utf-8"
    )
    (data / "nlu" / "findings" / "xx.yml").write_text(
        "findings:\n  fever:\n    patterns:\n      - calentura\n", encoding="utf-8"
    )
    assert red_flags("dolor de pecho", "xx", data) == ("chest_pain",)
    assert red_flags("chest pain", "xx", data) == ("chest_pain",)  # English still works
    # Red flags of every language are read whatever the contact's language (patients
    # mix); findings only in the contact's language and English.
    assert red_flags("dolor de pecho", "en", data) == ("chest_pain",)
    assert [m[0] for m in scan(load_lexicon("xx", data), fold("fiebre"))["fi"]] == ["fever"]
    assert scan(load_lexicon("en", data), fold("calentura"))["fi"] == []


def test_a_broken_pattern_names_its_file_concept_and_line(tmp_path: Path) -> None:
    data = _copy_lexicons(tmp_path)
    (data / "nlu" / "redflags" / "xx.yml").write_text(
        "redflags:\n  chest_pain:\n    patterns:\n      - ok\n      - (unbalanced\n",
        encoding="utf-8",
    )
    with pytest.raises(LexiconError, match=r"redflags/xx.*chest_pain\.patterns\[\d+\]"):
        load_lexicon("xx", data)


def test_yaml_booleans_are_refused(tmp_path: Path) -> None:
    data = _copy_lexicons(tmp_path)
    (data / "nlu" / "lexicon" / "xx.yml").write_text(
        "answers:\n  yes_starts: [yes]\n", encoding="utf-8"
    )
    with pytest.raises(LexiconError, match="quote it"):
        load_lexicon("xx", data)


def _copy_lexicons(tmp_path: Path) -> Path:
    src = nlu_tests_dir().parent
    for kind in ("redflags", "findings", "lexicon"):
        folder = tmp_path / "nlu" / kind
        folder.mkdir(parents=True)
        (folder / "en.yml").write_bytes((src / kind / "en.yml").read_bytes())
    return tmp_path


def test_scan_groups_matches_by_section() -> None:
    lex = load_lexicon("en")
    found = scan(lex, fold("no chest pain, my son has fevr, temp 39"))
    assert [m[0] for m in found["rf"]] == ["chest_pain"]
    assert [m[0] for m in found["fi"]] == ["fever"]
    assert [m[0] for m in found["subj"]] == ["child"]
    assert "pre" in [m[0] for m in found["cue"]]
    assert "temperature_c" in [m[0] for m in found["kw"]]


def test_english_lexicon_loads_once() -> None:
    assert load_lexicon("en") is load_lexicon("en")


def test_every_entity_name_is_a_concept_id() -> None:
    import yaml

    from nlu.evaluate import READING_CONCEPTS
    from nlu.lexicon import DATA_DIR

    concepts = set(yaml.safe_load((DATA_DIR / "concepts.yaml").read_text())["concepts"])
    lex = load_lexicon("en")
    names = {cp.concept for cp in lex.redflags} | {cp.concept for cp in lex.findings}
    names |= {i for cp in lex.findings for i in cp.implies} | set(READING_CONCEPTS)
    assert names <= concepts, names - concepts
