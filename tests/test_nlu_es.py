"""Spanish NLU: red flags and their negation ("no tengo", "sin", "ya no"), findings, readings
with decimal commas and Spanish units, answers, intents on the held-out set, and reading a
message in the language it is written in."""

from __future__ import annotations

from datetime import date

import pytest
import yaml

from nlu.evaluate import (
    evaluate_intents,
    evaluate_readings,
    evaluate_redflags,
    load_redflag_cases,
    nlu_tests_dir,
)
from nlu.interpreter import Interpreter, default_interpreter
from nlu.language import detect_language
from nlu.lexicon import DATA_DIR
from nlu.matcher import first_literals
from nlu.text import fold_spelling, words
from nlu.training import load_training_data
from nlu.types import GLOBAL_RED_FLAGS, AnswerStatus, Entity, Expectation, Option, QuestionType

TESTS = nlu_tests_dir()


@pytest.fixture(scope="module")
def it() -> Interpreter:
    return Interpreter(use_classifier=False)  # red flags, findings, readings: no model


def finding(it: Interpreter, text: str, concept: str) -> Entity:
    found = [e for e in it.interpret(text, None, "es").entities if e.entity == concept]
    assert found, f"{concept} not found in {text!r}"
    return found[0]


# --- red flags --------------------------------------------------------------------------


def test_red_flag_set_is_big_enough_and_covers_every_flag() -> None:
    cases, benign = load_redflag_cases(TESTS / "es_redflags.yml")
    assert len(cases) >= 80 and len(benign) >= 80
    assert {f for c in cases for f in c.flags} == set(GLOBAL_RED_FLAGS)


@pytest.mark.parametrize("contact", ["es", "en", "hi"])
def test_recall_100_percent_and_false_alarms_at_most_2_percent(
    it: Interpreter, contact: str
) -> None:
    report = evaluate_redflags(lambda t: it.interpret(t, None, contact), TESTS / "es_redflags.yml")
    assert report.missed == [] and report.recall == 1.0
    assert report.false_alarm_rate <= 0.02, report.false_alarms


@pytest.mark.parametrize(
    ("text", "flags"),
    [
        ("no puedo respirar", ("severe_dyspnea",)),
        ("labios morados", ("cyanosis",)),
        ("dolor de pecho", ("chest_pain",)),
        ("convulsiones", ("convulsions",)),
        ("quiero morir", ("suicidal_thoughts",)),
        ("mi papá no puede respirar y tiene los labios morados", ("severe_dyspnea", "cyanosis")),
        ("no despierta", ("hard_to_wake",)),
        ("se le cayó la cara", ("stroke_signs",)),
        ("está muy confundida", ("confusion",)),
    ],
)
def test_the_brief_examples(it: Interpreter, text: str, flags: tuple[str, ...]) -> None:
    for contact in ("es", "en"):
        assert it.interpret(text, None, contact).red_flags == flags, (text, contact)


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("no tengo dolor de pecho", "chest_pain"),
        ("sin dolor de pecho", "chest_pain"),
        ("no me duele el pecho", "chest_pain"),
        ("nunca ha tenido convulsiones", "convulsions"),
        ("ya no le dan convulsiones", "convulsions"),
        ("no tiene los labios morados", "cyanosis"),
        ("niega dolor toracico", "chest_pain"),
        ("dolor de pecho? no", "chest_pain"),
        ("no quiero morir", "suicidal_thoughts"),
    ],
)
def test_negated_red_flags(it: Interpreter, text: str, flag: str) -> None:
    u = it.interpret(text, None, "es")
    found = [e for e in u.entities if e.entity == flag]
    assert found and all(e.negated for e in found), text
    assert u.red_flags == ()


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("no tengo fiebre y dolor de pecho", "chest_pain"),  # "y" ends a red flag's negation
        ("No, no puede respirar!", "severe_dyspnea"),
        ("sin fiebre pero no puedo respirar", "severe_dyspnea"),
        ("no, tengo dolor de pecho", "chest_pain"),
        ("ya no quiero vivir", "suicidal_thoughts"),  # "no" inside the phrase
        ("quizás fue una convulsión?", "convulsions"),  # hedged still counts
        ("no sé si es dolor de pecho", "chest_pain"),
    ],
)
def test_negation_never_reaches_past_its_scope(it: Interpreter, text: str, flag: str) -> None:
    assert flag in it.interpret(text, None, "es").red_flags, text


# --- findings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("tengo fiebre", "fever"),
        ("tengo calentura", "fever"),
        ("tos seca", "cough"),
        ("me duele la garganta", "sore_throat"),
        ("dolor de cabeza", "headache"),
        ("dolor de kbeza", "headache"),
        ("diarrea", "diarrhea"),
        ("estoy vomitando", "vomiting"),
        ("estoy mareada", "dizziness"),
        ("me siento muy cansado", "fatigue"),
        ("me falta el aire al caminar", "dyspnea"),
        ("perdí el olfato", "loss_of_smell_taste"),
        ("tengo los pies hinchados", "ankle_swelling"),
        ("visión borrosa", "vision_changes"),
        ("estoy embarazada", "pregnant"),
    ],
)
def test_symptoms(it: Interpreter, text: str, concept: str) -> None:
    e = finding(it, text, concept)
    assert e.value is True and not e.negated and not e.uncertain


@pytest.mark.parametrize(
    ("text", "negated"),
    [
        ("no tengo fiebre", {"fever"}),
        ("sin fiebre", {"fever"}),
        ("ya no toso", {"cough"}),
        ("no tengo fiebre ni tos", {"fever", "cough"}),
        ("la fiebre se me quitó", {"fever"}),
        ("se me quitó la fiebre", {"fever"}),
        ("fiebre tampoco", {"fever"}),
    ],
)
def test_negated_findings(it: Interpreter, text: str, negated: set[str]) -> None:
    found = it.interpret(text, None, "es").findings()
    assert {c for c, v in found.items() if v is False} == negated, found


@pytest.mark.parametrize(
    ("text", "findings"),
    [
        ("no tengo fiebre pero sí tos", {"fever": False, "cough": True}),
        ("no se le quita la fiebre", {"fever": True}),  # pseudo-negation
        ("la tos no mejora", {"cough": True}),
        ("ya no tengo tos, ahora tengo fiebre", {"cough": False, "fever": True}),
    ],
)
def test_not_negated(it: Interpreter, text: str, findings: dict[str, bool]) -> None:
    assert it.interpret(text, None, "es").findings() == findings


@pytest.mark.parametrize(
    "text", ["quizás tengo fiebre", "un poco de fiebre", "creo que tengo fiebre", "¿fiebre?"]
)
def test_uncertain(it: Interpreter, text: str) -> None:
    e = finding(it, text, "fever")
    assert e.uncertain and not e.negated
    assert "fever" not in it.interpret(text, None, "es").findings()


@pytest.mark.parametrize(
    ("text", "subject"),
    [
        ("mi hijo tiene fiebre", "child"),
        ("mi mamá está confundida", "parent"),
        ("mi abuela no despierta", "grandparent"),
        ("mi esposo tiene tos", "spouse"),
        ("tengo dolor de cabeza", "self"),
    ],
)
def test_subject(it: Interpreter, text: str, subject: str) -> None:
    assert it.interpret(text, None, "es").subject == subject


def test_accents_are_optional_and_spans_point_into_the_original(it: Interpreter) -> None:
    for text in ("Dolor de pecho desde hace 3 días", "dolor de pecho desde hace 3 dias"):
        u = it.interpret(text, None, "es")
        spans = {e.entity: text[e.start : e.end] for e in u.entities}
        assert spans == {"chest_pain": text[:14], "symptom_onset_days": text[-6:]}


# --- readings and answers -----------------------------------------------------------------


def test_reading_set_is_at_least_95_percent_exact(it: Interpreter) -> None:
    report = evaluate_readings(
        lambda t, day: it.interpret(t, None, "es", today=day), TESTS / "es_readings.yml"
    )
    assert report.total >= 60
    assert report.exact >= 0.95, report.failures


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("azúcar 250", {"glucose_mg_dl": 250.0}),
        ("temperatura 38,5", {"temperature_c": 38.5}),
        ("presión 150/95", {"systolic_bp": 150.0, "diastolic_bp": 95.0}),
        ("presión 130 sobre 85", {"systolic_bp": 130.0, "diastolic_bp": 85.0}),
        ("oxígeno 92", {"spo2_percent": 92.0}),
        ("fiebre 39.5 y tos", {"fever": True, "temperature_c": 39.5, "cough": True}),
        ("tos desde el lunes", {"cough": True, "symptom_onset_days": 2.0}),
        ("tres días con diarrea", {"diarrhea": True, "symptom_onset_days": 3.0}),
    ],
)
def test_readings(it: Interpreter, text: str, expect: dict[str, object]) -> None:
    u = it.interpret(text, None, "es", today=date(2024, 5, 15))
    assert u.findings() == expect


BOOL = Expectation("fever", QuestionType.BOOL, allow_unknown=True)


@pytest.mark.parametrize(
    ("text", "status", "value"),
    [
        ("sí", AnswerStatus.OK, True),
        ("si", AnswerStatus.OK, True),
        ("claro que sí", AnswerStatus.OK, True),
        ("no", AnswerStatus.OK, False),
        ("para nada", AnswerStatus.OK, False),
        ("no tengo fiebre", AnswerStatus.OK, False),
        ("no sé", AnswerStatus.UNKNOWN, None),
        ("nose", AnswerStatus.UNKNOWN, None),
        ("ni idea", AnswerStatus.UNKNOWN, None),
    ],
)
def test_yes_no_answers(it: Interpreter, text: str, status: AnswerStatus, value: object) -> None:
    a = it.interpret(text, BOOL, "es").answer
    assert a is not None and (a.status, a.value) == (status, value)


@pytest.mark.parametrize(
    ("text", "exp", "value"),
    [
        ("tres días", Expectation("symptom_onset_days", QuestionType.NUMBER, unit="d"), 3.0),
        ("una semana", Expectation("symptom_onset_days", QuestionType.NUMBER, unit="d"), 7.0),
        ("desde ayer", Expectation("symptom_onset_days", QuestionType.NUMBER, unit="d"), 1.0),
        ("38,5", Expectation("temperature_c", QuestionType.NUMBER, unit="Cel"), 38.5),
        ("dos veces", Expectation("rescue_inhaler_uses_day", QuestionType.NUMBER, unit="/d"), 2.0),
        ("140 sobre 90", Expectation("bp", QuestionType.BP), (140.0, 90.0)),
    ],
)
def test_number_answers(it: Interpreter, text: str, exp: Expectation, value: object) -> None:
    a = it.interpret(text, exp, "es").answer
    assert a is not None and a.status is AnswerStatus.OK and a.value == value


def test_options_labelled_in_spanish(it: Interpreter) -> None:
    multi = Expectation(
        "symptoms",
        QuestionType.MULTI,
        options=(Option("fever", ("Fiebre",)), Option("headache", ("Dolor de cabeza",))),
    )
    a = it.interpret("fiebre y dolor de cabeza", multi, "es").answer
    assert a is not None and a.value == ("fever", "headache")
    a = it.interpret("ninguno", multi, "es").answer
    assert a is not None and a.value == ()


# --- intents and the language a message is read in ----------------------------------------


def test_heldout_intents_macro_f1() -> None:
    it = default_interpreter()
    report = evaluate_intents(lambda t: it.interpret(t, None, "es"), TESTS / "es_heldout.yml")
    assert report.total >= 200
    assert report.macro_f1 >= 0.9, report.confusions


def test_heldout_file_is_never_trained_on() -> None:
    train = load_training_data(DATA_DIR / "nlu" / "es.yml", DATA_DIR / "nlu" / "en.yml")
    seen = {" ".join(words(e.text)) for e in train.examples}
    heldout = load_training_data(TESTS / "es_heldout.yml").examples
    assert not [e.text for e in heldout if " ".join(words(e.text)) in seen]


@pytest.mark.parametrize(
    ("text", "contact", "language", "intent"),
    [
        ("tengo fiebre y tos", "es", "es", "report_symptom"),
        ("tengo fiebre y tos", "en", "es", "report_symptom"),
        ("quiero hablar con un doctor", "en", "es", "ask_human"),
        ("gracias", "hi", "es", "thanks"),
        ("I have a cough", "es", "es", "report_symptom"),  # es includes English
    ],
)
def test_understanding_language_is_the_language_used(
    text: str, contact: str, language: str, intent: str
) -> None:
    u = default_interpreter().interpret(text, None, contact)
    assert (u.language, u.intent.name) == (language, intent)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tengo fiebre", "es"),
        ("no puedo respirar", "es"),
        ("¿qué hago?", "es"),
        ("hola", "es"),
        ("si", None),
        ("no", None),
        ("ok", None),
    ],
)
def test_detect_language(text: str, expected: str | None) -> None:
    assert detect_language(text, ("en", "hi", "es")) == expected
    assert detect_language(text, ("en", "hi")) is None


def test_every_spanish_pattern_starts_with_letters_the_matcher_can_bucket() -> None:
    for kind in ("redflags", "findings"):
        doc = yaml.safe_load((DATA_DIR / "nlu" / kind / "es.yml").read_text(encoding="utf-8"))
        for concept, spec in doc[kind].items():
            for p in (*spec.get("patterns", ()), *spec.get("absent", ())):
                assert first_literals(fold_spelling(p)) is not None, (concept, p)


def test_cli_reads_the_language_option() -> None:
    from click.testing import CliRunner

    from bot.cli_nlu import nlu

    result = CliRunner().invoke(nlu, ["test", "--lang", "es"])
    assert result.exit_code == 0, result.output
    assert "language: es" in result.output and "es_heldout.yml" in result.output
    assert "false alarms 0.0" in result.output and "es_readings.yml" in result.output
