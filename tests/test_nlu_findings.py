"""Findings (nlu/findings.py) and their NegEx-style scope (nlu/scope.py)."""

from __future__ import annotations

import pytest

from nlu.interpreter import Interpreter
from nlu.types import Entity


@pytest.fixture(scope="module")
def it() -> Interpreter:
    return Interpreter(use_classifier=False)


def finding(it: Interpreter, text: str, concept: str) -> Entity:
    found = [e for e in it.interpret(text).entities if e.entity == concept]
    assert found, f"{concept} not found in {text!r}"
    # a finding that is also a global red flag (reduced_fetal_movement) is reported by
    # both extractors; the findings one is the one these tests are about
    return next((e for e in found if e.extractor == "carebridge_findings"), found[0])


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("loose motions", "diarrhea"),
        ("breathless", "dyspnea"),
        ("short of breath", "dyspnea"),
        ("fevr", "fever"),
        ("bukhar hai", "fever"),
        ("coff", "cough"),
        ("sore thraot", "sore_throat"),
        ("cant smell anything", "loss_of_smell_taste"),
        ("body ache", "myalgia"),
        ("so tired", "fatigue"),
        ("headach", "headache"),
        ("runny nose", "runny_nose"),
        ("throwing up", "vomiting"),
        ("feeling dizzy", "dizziness"),
        ("she fainted", "fainting"),
        ("blurred vision", "vision_changes"),
        ("my ankles are swollen", "ankle_swelling"),
        ("green phlegm", "sputum_change"),
        ("baby is moving less", "reduced_fetal_movement"),
        ("i am pregnant", "pregnant"),
        ("i am diabetic", "diabetes"),
        ("my wife tested positive", "exposure_contact"),
        ("cant keep water down", "unable_to_drink"),
    ],
)
def test_lay_terms_map_to_concepts(it: Interpreter, text: str, concept: str) -> None:
    e = finding(it, text, concept)
    assert e.value is True and not e.negated and e.extractor == "carebridge_findings"


def test_the_issue_example(it: Interpreter) -> None:
    u = it.interpret("I have had fever and a dry cough for 3 days")
    assert u.findings() == {"fever": True, "cough": True, "symptom_onset_days": 3.0}
    assert u.subject == "self"


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("no fever", "fever"),
        ("not coughing anymore", "cough"),
        ("denies headache", "headache"),
        ("i don't have a sore throat", "sore_throat"),
        ("no fever, cough or headache", "headache"),
        ("fever is gone", "fever"),
        ("without vomiting", "vomiting"),
        ("never had diarrhoea", "diarrhea"),
    ],
)
def test_negated(it: Interpreter, text: str, concept: str) -> None:
    assert finding(it, text, concept).negated
    assert it.interpret(text).findings()[concept] is False


@pytest.mark.parametrize(
    "text",
    [
        "forgot my insulin",
        "i missed my tablets yesterday",
        "forgot to take my meds",
        "ran out of pills",
    ],
)
def test_absent_phrases_deny_a_concept(it: Interpreter, text: str) -> None:
    assert it.interpret(text).findings() == {"meds_taken": False}
    assert it.interpret("took my meds").findings() == {"meds_taken": True}


def test_orthopnea_is_not_severe_dyspnea(it: Interpreter) -> None:
    u = it.interpret("cant breathe when lying flat")
    assert u.red_flags == () and u.findings() == {"orthopnea": True}


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("cough but no fever", "cough"),
        ("no fever but cough", "cough"),
        ("fever is not gone", "fever"),  # pseudo-negation
        ("no change in my cough", "cough"),
        ("no smell and fever", "fever"),  # the "no" is part of "no smell"
    ],
)
def test_not_negated(it: Interpreter, text: str, concept: str) -> None:
    assert not finding(it, text, concept).negated


@pytest.mark.parametrize(
    "text",
    [
        "maybe a little fever",
        "i think i have fever",
        "fever?",
        "possibly a cough",
        "i don't know if i have fever",
    ],
)
def test_uncertain(it: Interpreter, text: str) -> None:
    concept = "cough" if "cough" in text else "fever"
    e = finding(it, text, concept)
    assert e.uncertain and not e.negated
    assert concept not in it.interpret(text).findings()  # uncertain findings do not prefill


@pytest.mark.parametrize(
    ("text", "subject"),
    [
        ("my son has fever", "child"),
        ("my daughter is coughing", "child"),
        ("my mother has diarrhoea", "parent"),
        ("my father can't breathe", "parent"),
        ("my granny is confused", "grandparent"),
        ("my husband has a cough", "spouse"),
        ("i have a headache", "self"),
        ("I'm worried about my baby", "child"),
        ("fever and cough", None),
    ],
)
def test_subject(it: Interpreter, text: str, subject: str | None) -> None:
    assert it.interpret(text).subject == subject


def test_severe_headache_implies_headache(it: Interpreter) -> None:
    found = {e.entity for e in it.interpret("worst headache of my life").entities}
    assert {"severe_headache", "headache"} <= found
