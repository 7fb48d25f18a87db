"""Answer parsing (nlu/answers.py): a reply read against the question the bot asked."""

from __future__ import annotations

from datetime import date

import pytest

from nlu.answers import score_option
from nlu.interpreter import Interpreter
from nlu.types import AnswerStatus, AnswerValue, Expectation, Option, QuestionType

OK, UNKNOWN, INVALID, OUT = (
    AnswerStatus.OK,
    AnswerStatus.UNKNOWN,
    AnswerStatus.INVALID,
    AnswerStatus.OUT_OF_RANGE,
)
WEDNESDAY = date(2024, 5, 15)


@pytest.fixture(scope="module")
def reader() -> Interpreter:
    return Interpreter(use_classifier=False)


def answer(
    it: Interpreter, text: str, exp: Expectation, today: date = WEDNESDAY
) -> tuple[AnswerStatus, AnswerValue]:
    a = it.interpret(text, exp, today=today).answer
    assert a is not None
    return a.status, a.value


def boolean(allow_unknown: bool = False) -> Expectation:
    return Expectation("fever", QuestionType.BOOL, allow_unknown=allow_unknown)


@pytest.mark.parametrize(
    "text",
    ["yes", "y", "Y", "YES!", "yeah", "yep", "yes please", "Yes please.", "1", "haan", "sure",
     "yes i have", "yeah a bit", "i have fever"],
)  # fmt: skip
def test_bool_yes(reader: Interpreter, text: str) -> None:
    assert answer(reader, text, boolean()) == (OK, True)


@pytest.mark.parametrize(
    "text",
    ["no", "n", "N", "NO.", "nope", "nah", "2", "no thanks", "not really", "nahi",
     "no i dont", "i have no fever", "no fever", "i dont think so"],
)  # fmt: skip
def test_bool_no(reader: Interpreter, text: str) -> None:
    assert answer(reader, text, boolean()) == (OK, False)


@pytest.mark.parametrize(
    "text", ["i dont know", "I don't know", "dont know", "dk", "DK", "not sure", "skip", "idk"]
)
def test_bool_unknown_only_where_allowed(reader: Interpreter, text: str) -> None:
    assert answer(reader, text, boolean(allow_unknown=True)) == (UNKNOWN, None)
    assert answer(reader, text, boolean(allow_unknown=False)) == (INVALID, None)


def test_bool_reads_denials_of_the_concept(reader: Interpreter) -> None:
    meds = Expectation("meds_taken", QuestionType.BOOL)
    assert answer(reader, "forgot my insulin", meds) == (OK, False)
    assert answer(reader, "took all my tablets", meds) == (OK, True)


def test_bool_hedged_finding_is_unknown(reader: Interpreter) -> None:
    assert answer(reader, "I dont know if I have fever", boolean(True)) == (UNKNOWN, None)
    assert answer(reader, "I dont know if I have fever", boolean(False)) == (INVALID, None)


@pytest.mark.parametrize("text", ["banana", "", "   ", "3", "what?"])
def test_bool_invalid(reader: Interpreter, text: str) -> None:
    assert answer(reader, text, boolean())[0] is INVALID


def temperature() -> Expectation:
    return Expectation("temperature_c", QuestionType.NUMBER, unit="Cel", range=(30, 45))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("101.3F", 38.5),
        ("101.3 f", 38.5),
        ("101.3", 38.5),  # above 45: Fahrenheit
        ("38,5", 38.5),
        ("38.5", 38.5),
        ("38.5 C", 38.5),
        ("it was 39 degrees", 39.0),
        ("100.4°F", 38.0),
        ("98.6 fahrenheit", 37.0),
    ],
)
def test_temperature(reader: Interpreter, text: str, value: float) -> None:
    assert answer(reader, text, temperature()) == (OK, value)


def test_temperature_out_of_range_keeps_value(reader: Interpreter) -> None:
    assert answer(reader, "50 C", temperature()) == (OUT, 50.0)


def glucose(input_unit: str | None = None) -> Expectation:
    return Expectation(
        "glucose_mg_dl", QuestionType.NUMBER, unit="mg/dL", input_unit=input_unit, range=(10, 1000)
    )


@pytest.mark.parametrize(
    ("text", "input_unit", "value"),
    [
        ("13.9 mmol", None, 250.0),
        ("13.9 mmol/l", None, 250.0),
        ("13.9 mmol/L", "mmol/L", 250.0),
        ("13.9", "mmol/L", 250.0),
        ("7", "mmol/L", 126.0),
        ("35", "mmol/L", 630.0),
        ("36", "mmol/L", 36.0),  # 36 and above: mg/dL even when asked in mmol/L
        ("250", "mmol/L", 250.0),
        ("250", None, 250.0),
        ("180 mg/dl", None, 180.0),
        ("5.5", None, 99.0),  # a decimal of 35 or less is mmol/L
    ],
)
def test_glucose(reader: Interpreter, text: str, input_unit: str | None, value: float) -> None:
    assert answer(reader, text, glucose(input_unit)) == (OK, value)


@pytest.mark.parametrize(("text", "value"), [("92%", 92.0), ("92", 92.0), ("spo2 is 88", 88.0)])
def test_spo2(reader: Interpreter, text: str, value: float) -> None:
    exp = Expectation("spo2_percent", QuestionType.NUMBER, unit="%", range=(50, 100))
    assert answer(reader, text, exp) == (OK, value)


def test_spo2_out_of_range(reader: Interpreter) -> None:
    exp = Expectation("spo2_percent", QuestionType.NUMBER, unit="%", range=(50, 100))
    assert answer(reader, "120", exp) == (OUT, 120.0)


@pytest.mark.parametrize(
    ("text", "value"), [("350", 70.0), ("350 l/min", 70.0), ("70%", 70.0), ("65", 65.0)]
)
def test_peak_flow_with_personal_best(reader: Interpreter, text: str, value: float) -> None:
    exp = Expectation("peak_flow_percent", QuestionType.NUMBER, unit="%", personal_best=500)
    assert answer(reader, text, exp) == (OK, value)


@pytest.mark.parametrize(
    ("text", "value"), [("70", 70.0), ("70 kg", 70.0), ("154 lbs", 69.9), ("200 pounds", 90.7)]
)
def test_weight(reader: Interpreter, text: str, value: float) -> None:
    exp = Expectation("weight_kg", QuestionType.NUMBER, unit="kg", range=(1, 400))
    assert answer(reader, text, exp) == (OK, value)


@pytest.mark.parametrize(
    ("text", "value"),
    [("34", 34.0), ("34 years", 34.0), ("34 yrs old", 34.0), ("6 months", 0.5),
     ("18 months", 1.5), ("two", 2.0)],
)  # fmt: skip
def test_age(reader: Interpreter, text: str, value: float) -> None:
    exp = Expectation("age_years", QuestionType.NUMBER, unit="a", range=(0, 120))
    assert answer(reader, text, exp) == (OK, value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3 days", 3.0),
        ("3", 3.0),
        ("2 weeks", 14.0),
        ("2 hrs", 0.08),
        ("since yesterday", 1.0),
        ("since monday", 2.0),  # today is a Wednesday
        ("a week", 7.0),
        ("three days", 3.0),
        ("2-3 days", 3.0),
        ("since this morning", 0.0),
    ],
)
def test_duration(reader: Interpreter, text: str, value: float) -> None:
    exp = Expectation("symptom_onset_days", QuestionType.NUMBER, unit="d")
    assert answer(reader, text, exp) == (OK, value)


def test_number_unknown_and_invalid(reader: Interpreter) -> None:
    exp = Expectation("temperature_c", QuestionType.NUMBER, unit="Cel", allow_unknown=True)
    assert answer(reader, "no thermometer at home", exp) == (UNKNOWN, None)
    assert answer(reader, "i didnt check", exp) == (UNKNOWN, None)
    assert answer(reader, "don't know", exp) == (UNKNOWN, None)
    assert answer(reader, "hot", exp) == (INVALID, None)


def bp() -> Expectation:
    return Expectation("systolic_bp", QuestionType.BP, unit="mm[Hg]")


@pytest.mark.parametrize(
    "text", ["150/95", "150 over 95", "bp 150 / 95", "150-95", "BP: 150/95 today", "150 95"]
)
def test_blood_pressure(reader: Interpreter, text: str) -> None:
    assert answer(reader, text, bp()) == (OK, (150.0, 95.0))


def test_blood_pressure_systolic_must_exceed_diastolic(reader: Interpreter) -> None:
    assert answer(reader, "80/120", bp()) == (INVALID, None)


def test_blood_pressure_out_of_range(reader: Interpreter) -> None:
    assert answer(reader, "350/95", bp()) == (OUT, (350.0, 95.0))
    assert answer(reader, "99/15", bp()) == (OUT, (99.0, 15.0))  # diastolic below 20


def test_blood_pressure_needs_two_numbers(reader: Interpreter) -> None:
    assert answer(reader, "150", bp()) == (INVALID, None)


SEX = (Option("female", ("Female",)), Option("male", ("Male",)), Option("other", ("Other",)))


@pytest.mark.parametrize(
    ("text", "value"),
    [("2", "male"), ("1", "female"), ("Male", "male"), ("female", "female"), ("FEMALE", "female"),
     ("femal", "female"), ("i am a male", "male"), ("othr", "other"), ("option 3", "other")],
)  # fmt: skip
def test_choice(reader: Interpreter, text: str, value: str) -> None:
    exp = Expectation("sex", QuestionType.CHOICE, options=SEX)
    assert answer(reader, text, exp) == (OK, value)


@pytest.mark.parametrize("text", ["4", "0", "banana", "male or female"])
def test_choice_invalid(reader: Interpreter, text: str) -> None:
    exp = Expectation("sex", QuestionType.CHOICE, options=SEX)
    assert answer(reader, text, exp)[0] is INVALID


SYMPTOMS = (
    Option("fever", ("Fever",)),
    Option("cough", ("Cough",)),
    Option("sore_throat", ("Sore throat",)),
    Option("diarrhea", ("Diarrhoea",)),
    Option("loss_of_smell_taste", ("Loss of smell or taste",)),
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 3 4", ("fever", "sore_throat", "diarrhea")),
        ("1,3", ("fever", "sore_throat")),
        ("3, 1", ("fever", "sore_throat")),
        ("1 and 2", ("fever", "cough")),
        ("fever and cough", ("fever", "cough")),
        ("fevr, coff", ("fever", "cough")),
        ("Sore throat", ("sore_throat",)),
        ("loose motions and sore thraot", ("sore_throat", "diarrhea")),
        ("cant smell anything", ("loss_of_smell_taste",)),
        ("cough but no fever", ("cough",)),
        ("0", ()),
        ("none", ()),
        ("nothing", ()),
        ("None of these", ()),
    ],
)
def test_multi(reader: Interpreter, text: str, value: tuple[str, ...]) -> None:
    exp = Expectation("symptoms", QuestionType.MULTI, options=SYMPTOMS)
    assert answer(reader, text, exp) == (OK, value)


@pytest.mark.parametrize("text", ["6", "1 7", "0 9", "banana"])
def test_multi_invalid(reader: Interpreter, text: str) -> None:
    exp = Expectation("symptoms", QuestionType.MULTI, options=SYMPTOMS)
    assert answer(reader, text, exp) == (INVALID, None)


def test_text(reader: Interpreter) -> None:
    exp = Expectation("free_text_note", QuestionType.TEXT)
    assert answer(reader, "  my knee hurts too ", exp) == (OK, "my knee hurts too")
    assert answer(reader, "   ", exp) == (INVALID, None)


def test_option_scores_prefer_exact_over_typo() -> None:
    opt = Option("male", ("Male",))
    assert score_option("male", opt) > score_option("mael", opt) > 0
    assert score_option("female", opt) == 0
