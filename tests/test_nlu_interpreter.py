"""The embedded interpreter (nlu/interpreter.py) and the package entry point."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import nlu
from nlu.interpreter import DEFAULT_THRESHOLD, Interpreter, default_interpreter
from nlu.types import AnswerStatus, Expectation, QuestionType, Understanding


def test_default_interpreter_is_cached_and_lazy() -> None:
    assert default_interpreter() is default_interpreter()
    assert default_interpreter().threshold == DEFAULT_THRESHOLD


def test_package_interpret_uses_the_default_interpreter() -> None:
    u = nlu.interpret("fever and cough since 3 days")
    assert isinstance(u, Understanding)
    assert u.intent.name == "report_symptom"
    assert u.findings() == {"fever": True, "cough": True, "symptom_onset_days": 3.0}
    assert u.language == "en" and u.extra["backend"] == "embedded"


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("hi", "greet"),
        ("STOP", "stop"),
        ("talk to a doctor", "ask_human"),
        ("bp 150/95 sugar 13.9", "report_reading"),
        ("i want to do the covid check", "start_screening"),
        ("restart", "restart"),
        ("thank u", "thanks"),
    ],
)
def test_intents(text: str, intent: str) -> None:
    assert nlu.interpret(text).intent.name == intent


def test_without_a_classifier_everything_else_still_works(tmp_path: Path) -> None:
    it = Interpreter(use_classifier=False)
    u = it.interpret("yes, temp 101F", Expectation("fever", QuestionType.BOOL))
    assert (u.intent.name, u.intent.confidence, u.intent_ranking) == ("out_of_scope", 0.0, ())
    assert u.answer is not None and u.answer.value is True
    assert u.findings() == {"temperature_c": 38.3}


def test_missing_training_data_is_not_fatal(tmp_path: Path) -> None:
    import shutil

    from nlu.lexicon import DATA_DIR

    for kind in ("redflags", "findings", "lexicon"):
        shutil.copytree(DATA_DIR / "nlu" / kind, tmp_path / "nlu" / kind)
    it = Interpreter(tmp_path)  # no data/nlu/en.yml: no classifier
    u = it.interpret("chest pain")
    assert u.intent.name == "out_of_scope" and u.red_flags == ("chest_pain",)


def test_threshold_turns_low_confidence_into_out_of_scope() -> None:
    strict = Interpreter(threshold=1.01)
    strict._classifiers = default_interpreter()._classifiers  # share the loaded model
    u = strict.interpret("hello")
    assert u.intent.name == "out_of_scope" and u.extra["low_confidence"] is True
    assert u.intent_ranking[0].name == "greet"  # the best guess is still there
    assert 0 < u.intent.confidence < 1


def test_unknown_language_falls_back_to_english() -> None:
    u = default_interpreter().interpret("chest pain and fever", language="zz")
    assert u.language == "en" and u.red_flags == ("chest_pain",)  # the language used
    assert u.intent.name == "report_symptom"


def test_answer_only_when_expecting() -> None:
    it = default_interpreter()
    assert it.interpret("2").answer is None
    exp = Expectation("sex", QuestionType.CHOICE, options=())
    a = it.interpret("2", exp).answer
    assert a is not None and a.status is AnswerStatus.INVALID


def test_entities_are_in_text_order_and_spans_are_exact() -> None:
    text = "No chest pain. My son has FEVR 39.5 since 2 days!"
    u = default_interpreter().interpret(text)
    assert [e.start for e in u.entities] == sorted(e.start for e in u.entities)
    pieces = {e.entity: text[e.start : e.end] for e in u.entities}
    assert pieces == {
        "chest_pain": "chest pain",
        "fever": "FEVR",
        "temperature_c": "39.5",
        "symptom_onset_days": "2 days",
    }
    assert u.subject == "child" and u.red_flags == ()


def test_thread_safe_first_use() -> None:
    it = Interpreter()
    it._classifiers = {}
    results: list[str] = []

    def work() -> None:
        results.append(it.interpret("hello").intent.name)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["greet"] * 4


@pytest.mark.parametrize("text", ["", " ", "🙂", "?" * 500, "a" * 5000, "١٢٣", "İSTANBUL", "\x00"])
def test_odd_input_never_crashes(text: str) -> None:
    u = default_interpreter().interpret(text, Expectation("x", QuestionType.NUMBER, unit="Cel"))
    assert u.text == text
    for e in u.entities:
        assert 0 <= e.start < e.end <= len(text)
