"""Readings in free text (nlu/readings.py, nlu/units.py): values in the concept's unit."""

from __future__ import annotations

from datetime import date

import pytest

from nlu.evaluate import READING_CONCEPTS, evaluate_readings, nlu_tests_dir
from nlu.interpreter import Interpreter
from nlu.types import Expectation, QuestionType

WEDNESDAY = date(2024, 5, 15)


@pytest.fixture(scope="module")
def it() -> Interpreter:
    return Interpreter(use_classifier=False)


def readings(it: Interpreter, text: str, **kw: object) -> dict[str, float]:
    u = it.interpret(text, today=WEDNESDAY, **kw)  # type: ignore[arg-type]
    return {e.entity: e.value for e in u.entities if e.entity in READING_CONCEPTS}


def test_reading_test_set_is_at_least_95_percent_exact(it: Interpreter) -> None:
    path = nlu_tests_dir() / "en_readings.yml"
    report = evaluate_readings(lambda t, day: it.interpret(t, today=day), path)
    assert report.total >= 100
    assert report.exact >= 0.95, report.failures


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bp 150/95 sugar 13.9", {"systolic_bp": 150, "diastolic_bp": 95, "glucose_mg_dl": 250}),
        ("temp 101.3F", {"temperature_c": 38.5}),
        ("temperature 38,5", {"temperature_c": 38.5}),
        ("fever and cough since 3 days", {"symptom_onset_days": 3}),
        ("fevr 3 dys", {"symptom_onset_days": 3}),
        ("since monday", {"symptom_onset_days": 2}),
        ("2 hrs", {"symptom_onset_days": 0.08}),
        ("spo2 92 pulse 110", {"spo2_percent": 92, "heart_rate": 110}),
        ("weight 165 lbs", {"weight_kg": 74.8}),
        ("my son is 6 months old", {"age_years": 0.5}),
    ],
)
def test_examples(it: Interpreter, text: str, expected: dict[str, float]) -> None:
    assert readings(it, text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "took 500mg paracetamol",
        "call me at 5",
        "room 12",
        "i have 2 kids",
        "10/12/2024",
        "1/2 tablet",
    ],
)
def test_numbers_that_are_not_readings(it: Interpreter, text: str) -> None:
    assert readings(it, text) == {}


def test_implausible_values_are_dropped(it: Interpreter) -> None:
    assert readings(it, "temp 10") == {}
    assert readings(it, "bp 40/300") == {}


def test_peak_flow_needs_personal_best_for_litres(it: Interpreter) -> None:
    assert readings(it, "peak flow 350") == {}
    exp = Expectation("peak_flow_percent", QuestionType.NUMBER, unit="%", personal_best=500)
    assert readings(it, "peak flow 350", expecting=exp) == {"peak_flow_percent": 70.0}


def test_entity_span_and_extractor(it: Interpreter) -> None:
    text = "my temp is 101.3 F today"
    (ent,) = [e for e in it.interpret(text).entities if e.entity == "temperature_c"]
    assert text[ent.start : ent.end] == "101.3 F"
    assert ent.extractor == "carebridge_readings"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-40", [-40.0]),
        ("temp \u221240", [-40.0]),  # the minus sign a phone keyboard may put
        ("\u20135", [-5.0]),  # an en dash before a number is a minus
        ("38,5", [38.5]),
        ("2-3 days", [2.0, 3.0]),  # a range, not minus three
        ("38.5-39", [38.5, 39.0]),
        ("0x41", []),  # hex is not how anyone writes an age
        ("1e3", []),  # nor an exponent a temperature
        ("1.5e3", []),
        ("9" * 400, []),  # not a finite number
    ],
)
def test_numbers_keep_their_sign_and_refuse_hex_and_exponents(
    text: str, expected: list[float]
) -> None:
    from nlu.readings import numbers

    assert [value for value, _start, _end in numbers(text)] == expected


@pytest.mark.parametrize("text", ["temp -40", "spo2 -5", "weight -70 kg", "sugar -100"])
def test_negative_numbers_are_never_readings(it: Interpreter, text: str) -> None:
    assert readings(it, text) == {}


@pytest.mark.parametrize(
    ("concept", "unit", "bounds", "text"),
    [
        ("temperature_c", "Cel", (30.0, 45.0), "-40"),
        ("temperature_c", "Cel", (30.0, 45.0), "\u221240"),
        ("spo2_percent", "%", (50.0, 100.0), "-95"),
        ("age_years", "a", (0.0, 120.0), "-5"),
    ],
)
def test_a_negative_answer_is_out_of_range_not_its_absolute_value(
    it: Interpreter, concept: str, unit: str, bounds: tuple[float, float], text: str
) -> None:
    from nlu.types import AnswerStatus

    exp = Expectation(concept, QuestionType.NUMBER, unit=unit, range=bounds)
    answer = it.interpret(text, expecting=exp).answer
    assert answer is not None and answer.status is AnswerStatus.OUT_OF_RANGE
    assert answer.value is not None and answer.value < 0


@pytest.mark.parametrize(
    ("concept", "unit", "text"),
    [("age_years", "a", "0x41"), ("temperature_c", "Cel", "1e3"), ("temperature_c", "Cel", "1E3")],
)
def test_hex_and_exponents_are_not_answers(
    it: Interpreter, concept: str, unit: str, text: str
) -> None:
    from nlu.types import AnswerStatus

    exp = Expectation(concept, QuestionType.NUMBER, unit=unit, range=(0.0, 120.0))
    answer = it.interpret(text, expecting=exp).answer
    assert answer is not None and answer.status is AnswerStatus.INVALID
