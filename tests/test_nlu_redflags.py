"""Red-flag detector (nlu/redflags.py): recall on the test set, false alarms, negation."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.evaluate import evaluate_redflags, load_redflag_cases, nlu_tests_dir
from nlu.interpreter import Interpreter
from nlu.redflags import detect, red_flags
from nlu.types import GLOBAL_RED_FLAGS

TEST_SET = nlu_tests_dir() / "en_redflags.yml"


@pytest.fixture(scope="module")
def it() -> Interpreter:
    return Interpreter(use_classifier=False)  # red flags never depend on the classifier


def test_test_set_is_big_enough_and_covers_every_flag() -> None:
    cases, benign = load_redflag_cases(TEST_SET)
    assert len(cases) >= 80
    assert len(benign) >= 80
    covered = {f for c in cases for f in c.flags}
    assert covered == set(GLOBAL_RED_FLAGS)


def test_recall_is_100_percent_and_false_alarms_at_most_2_percent(it: Interpreter) -> None:
    report = evaluate_redflags(lambda t: it.interpret(t), TEST_SET)
    assert report.missed == []
    assert report.recall == 1.0
    assert report.false_alarm_rate <= 0.02, report.false_alarms


def test_the_issue_examples() -> None:
    assert red_flags("my father can't breathe properly and his lips are blue") == (
        "severe_dyspnea",
        "cyanosis",
    )
    assert red_flags("I have no chest pain") == ()


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("no chest pain", "chest_pain"),
        ("I have no chest pain", "chest_pain"),
        ("denies chest pain", "chest_pain"),
        ("not confused", "confusion"),
        ("no trouble breathing", "severe_dyspnea"),
        ("never had a seizure", "convulsions"),
        ("he doesn't have any chest pain", "chest_pain"),
        ("chest pain? no", "chest_pain"),
    ],
)
def test_negated_red_flags_are_reported_as_negated_entities(text: str, flag: str) -> None:
    found = [e for e in detect(text) if e.entity == flag]
    assert found, f"{flag} not even seen in {text!r}"
    assert all(e.negated for e in found)
    assert red_flags(text) == ()


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("no fever and chest pain", "chest_pain"),  # "and" ends the negation of a red flag
        ("no smell and chest pain", "chest_pain"),  # the "no" belongs to "no smell"
        ("No, he can't breathe!", "severe_dyspnea"),  # "no," answers, it does not negate
        ("no he is not waking up", "hard_to_wake"),
        ("no fever. chest pain since an hour", "chest_pain"),
        ("I can't sleep, chest pain", "chest_pain"),
        ("not sure but maybe a seizure", "convulsions"),
    ],
)
def test_negation_never_reaches_past_its_scope(text: str, flag: str) -> None:
    assert flag in red_flags(text)


def test_uncertain_red_flags_still_count() -> None:
    ents = [e for e in detect("maybe he had a seizure?") if e.entity == "convulsions"]
    assert ents and ents[0].uncertain and not ents[0].negated
    assert red_flags("maybe he had a seizure?") == ("convulsions",)


def test_dyspnea_is_not_a_red_flag_but_severe_dyspnea_is() -> None:
    for mild in ("short of breath", "breathless when walking", "shortness of breath", "SOB"):
        assert red_flags(mild) == (), mild
    for severe in ("struggling to breathe", "gasping", "can't breathe"):
        assert red_flags(severe) == ("severe_dyspnea",), severe


def test_spans_point_into_the_original_text() -> None:
    text = "My Father CAN'T breathe"
    (ent,) = detect(text)
    assert text[ent.start : ent.end] == "CAN'T breathe"
    assert ent.extractor == "carebridge_redflags"


def test_red_flags_run_even_when_the_classifier_is_unavailable(tmp_path: Path) -> None:
    it = Interpreter(use_classifier=False)
    u = it.interpret("cant breth")
    assert u.intent.name == "out_of_scope" and u.intent.confidence == 0.0
    assert u.red_flags == ("severe_dyspnea",)


def test_red_flags_are_checked_with_a_question_pending(it: Interpreter) -> None:
    from nlu.types import Expectation, QuestionType

    u = it.interpret("38.5 and he is having a fit", Expectation("t", QuestionType.NUMBER, "Cel"))
    assert u.red_flags == ("convulsions",)
    assert u.answer is not None and u.answer.value == 38.5
