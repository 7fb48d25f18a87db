"""Hindi NLU (Devanagari and romanized Hinglish): red flags with trailing negation, findings,
readings, answers, intents on the held-out set, and reading a message in its language."""

from __future__ import annotations

import time
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
from nlu.text import fold_spelling
from nlu.training import load_training_data
from nlu.types import GLOBAL_RED_FLAGS, AnswerStatus, Entity, Expectation, Option, QuestionType

TESTS = nlu_tests_dir()


@pytest.fixture(scope="module")
def it() -> Interpreter:
    return Interpreter(use_classifier=False)  # red flags, findings, readings: no model


def finding(it: Interpreter, text: str, concept: str) -> Entity:
    found = [e for e in it.interpret(text, None, "hi").entities if e.entity == concept]
    assert found, f"{concept} not found in {text!r}"
    return found[0]


# --- red flags --------------------------------------------------------------------------


def test_red_flag_set_is_big_enough_and_covers_every_flag() -> None:
    cases, benign = load_redflag_cases(TESTS / "hi_redflags.yml")
    assert len(cases) >= 80 and len(benign) >= 80
    assert {f for c in cases for f in c.flags} == set(GLOBAL_RED_FLAGS)
    devanagari = [c for c in cases if any("\u0900" <= ch <= "\u097f" for ch in c.text)]
    assert len(devanagari) >= 20  # both scripts are tested


@pytest.mark.parametrize("contact", ["hi", "en", "es"])
def test_recall_100_percent_and_false_alarms_at_most_2_percent(
    it: Interpreter, contact: str
) -> None:
    # Whatever the contact's language: Hinglish from an English contact still interrupts.
    report = evaluate_redflags(lambda t: it.interpret(t, None, contact), TESTS / "hi_redflags.yml")
    assert report.missed == [] and report.recall == 1.0
    assert report.false_alarm_rate <= 0.02, report.false_alarms


def test_clinically_written_set_recall_100_percent_false_alarms_at_most_2_percent(
    it: Interpreter,
) -> None:
    """hi_clinical.yml: danger signs in wordings the generator does not use ("dil mein
    dard", "pasliyan chal rahi", "20 din ka baby", "stanpan", plurals); a tuning set."""
    path = TESTS / "hi_clinical.yml"
    cases, benign = load_redflag_cases(path)
    assert len(cases) >= 100 and len(benign) >= 50
    assert {f for c in cases for f in c.flags} == set(GLOBAL_RED_FLAGS)
    report = evaluate_redflags(lambda t: it.interpret(t, None, "hi"), path)
    assert report.missed == [] and report.recall == 1.0
    assert report.false_alarm_rate <= 0.02, report.false_alarms


@pytest.mark.parametrize(
    ("text", "flags"),
    [
        ("papa ko saans nahi aa rahi, hoth neele ho gaye", ("severe_dyspnea", "cyanosis")),
        ("saans lene mein dikkat", ("severe_dyspnea",)),
        ("seene mein dard", ("chest_pain",)),
        ("behosh", ("hard_to_wake",)),
        ("daura pada", ("convulsions",)),
        ("सांस नहीं आ रही", ("severe_dyspnea",)),
        ("सीने में दर्द", ("chest_pain",)),
        ("मैं मरना चाहता हूं", ("suicidal_thoughts",)),
    ],
)
def test_the_brief_examples(it: Interpreter, text: str, flags: tuple[str, ...]) -> None:
    for contact in ("hi", "en"):
        assert it.interpret(text, None, contact).red_flags == flags, (text, contact)


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("seene mein dard nahi hai", "chest_pain"),
        ("seene me dard nhi", "chest_pain"),
        ("seene mein dard bilkul nahi", "chest_pain"),
        ("saans lene mein koi dikkat nahi", "severe_dyspnea"),
        ("behosh nahi hua", "hard_to_wake"),
        ("सीने में दर्द नहीं है", "chest_pain"),
        ("seene mein dard? nahi", "chest_pain"),
    ],
)
def test_trailing_negation_clears_a_red_flag(it: Interpreter, text: str, flag: str) -> None:
    u = it.interpret(text, None, "hi")
    found = [e for e in u.entities if e.entity == flag]
    assert found and all(e.negated for e in found), text
    assert u.red_flags == ()


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("bukhar nahi hai seene mein dard hai", "chest_pain"),  # the "nahi" is bukhar's
        ("bukhar nahi par saans nahi aa rahi", "severe_dyspnea"),  # "nahi" inside the phrase
        ("seene mein dard kam nahi ho raha", "chest_pain"),  # pseudo-negation
        ("seene mein dard, pata nahi kyun", "chest_pain"),
        ("papa ko daura pada nahi pata kya karu", "convulsions"),
        ("nahi, saans bilkul nahi aa rahi", "severe_dyspnea"),
        ("seene mein dard aur bukhar nahi hai", "chest_pain"),  # strict: "aur" stops it
        ("shayad daura pada", "convulsions"),  # a hedged emergency still counts
    ],
)
def test_negation_never_reaches_past_its_scope(it: Interpreter, text: str, flag: str) -> None:
    assert flag in it.interpret(text, None, "hi").red_flags, text


# --- findings: negation follows the noun ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("mujhe bukhar hai", "fever"),
        ("khansi 2 din se", "cough"),
        ("gala kharab hai", "sore_throat"),
        ("sir dard ho raha", "headache"),
        ("dast lag gaye", "diarrhea"),
        ("ulti ho rahi hai", "vomiting"),
        ("chakkar aa rahe hain", "dizziness"),
        ("kamzori lag rahi hai", "fatigue"),
        ("badan dard", "myalgia"),
        ("saans phool rahi hai", "dyspnea"),
        ("pairon mein sujan", "ankle_swelling"),
        ("मुझे बुखार है", "fever"),
        ("खांसी और जुकाम", "runny_nose"),
        ("मुझे fever hai", "fever"),
    ],
)
def test_symptoms(it: Interpreter, text: str, concept: str) -> None:
    e = finding(it, text, concept)
    assert e.value is True and not e.negated and not e.uncertain


@pytest.mark.parametrize(
    ("text", "negated"),
    [
        ("bukhar nahi hai", {"fever"}),
        ("bukhar aur khansi nahi hai", {"fever", "cough"}),
        ("na bukhar na khansi", {"fever", "cough"}),
        ("bina bukhar ke khansi", {"fever"}),
        ("बुखार नहीं है", {"fever"}),
        ("khansi chali gayi", {"cough"}),
        ("no fever bas khansi", {"fever"}),
    ],
)
def test_negated_findings(it: Interpreter, text: str, negated: set[str]) -> None:
    found = it.interpret(text, None, "hi").findings()
    assert {c for c, v in found.items() if v is False} == negated, found


@pytest.mark.parametrize(
    ("text", "findings"),
    [
        ("bukhar hai khansi nahi", {"fever": True, "cough": False}),  # "hai" ends a clause
        ("bukhar ki wajah se khana nahi kha raha", {"fever": True}),
        ("bukhar nahi utar raha", {"fever": True}),  # pseudo-negation
        ("khansi theek nahi ho rahi", {"cough": True}),
    ],
)
def test_not_negated(it: Interpreter, text: str, findings: dict[str, bool]) -> None:
    assert it.interpret(text, None, "hi").findings() == findings


@pytest.mark.parametrize(
    "text", ["shayad bukhar hai", "thoda sa bukhar hai", "bukhar jaisa lag raha", "शायद बुखार है"]
)
def test_uncertain(it: Interpreter, text: str) -> None:
    e = finding(it, text, "fever")
    assert e.uncertain and not e.negated
    assert "fever" not in it.interpret(text, None, "hi").findings()


@pytest.mark.parametrize(
    ("text", "subject"),
    [
        ("papa ko saans nahi aa rahi", "parent"),
        ("mere bete ko bukhar hai", "child"),
        ("dadi ko chakkar aa rahe", "grandparent"),
        ("mujhe khansi hai", "self"),
        ("मेरी बेटी को बुखार है", "child"),
    ],
)
def test_subject(it: Interpreter, text: str, subject: str) -> None:
    assert it.interpret(text, None, "hi").subject == subject


def test_spans_point_into_the_original_devanagari_text(it: Interpreter) -> None:
    text = "मुझे बुखार है, सीने में दर्द नहीं"
    u = it.interpret(text, None, "hi")
    assert {e.entity: text[e.start : e.end] for e in u.entities} == {
        "fever": "बुखार",
        "chest_pain": "सीने में दर्द",
    }
    assert u.red_flags == ()


def test_a_devanagari_phrase_never_matches_inside_a_longer_word(it: Interpreter) -> None:
    # "सांस" (breath) must not match at the "स" inside "खांसी" (cough) and vice versa.
    u = it.interpret("खांसी नहीं आ रही", None, "hi")
    assert u.red_flags == () and u.findings() == {"cough": False}


# --- readings and answers -----------------------------------------------------------------


def test_reading_set_is_at_least_95_percent_exact(it: Interpreter) -> None:
    report = evaluate_readings(
        lambda t, day: it.interpret(t, None, "hi", today=day), TESTS / "hi_readings.yml"
    )
    assert report.total >= 60
    assert report.exact >= 0.95, report.failures


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("bukhar 101", {"fever": True, "temperature_c": 38.3}),
        ("BP 150/95 hai", {"systolic_bp": 150.0, "diastolic_bp": 95.0}),
        ("sugar 250 hai", {"glucose_mg_dl": 250.0}),
        ("बुखार १०२", {"fever": True, "temperature_c": 38.9}),
        ("teen din se khansi", {"cough": True, "symptom_onset_days": 3.0}),
        ("somvar se bukhar", {"fever": True, "symptom_onset_days": 2.0}),
    ],
)
def test_readings(it: Interpreter, text: str, expect: dict[str, object]) -> None:
    u = it.interpret(text, None, "hi", today=date(2024, 5, 15))
    assert u.findings() == expect


BOOL = Expectation("fever", QuestionType.BOOL, allow_unknown=True)


@pytest.mark.parametrize(
    ("text", "status", "value"),
    [
        ("haan", AnswerStatus.OK, True),
        ("ha", AnswerStatus.OK, True),
        ("ji", AnswerStatus.OK, True),
        ("haan ji", AnswerStatus.OK, True),
        ("हाँ", AnswerStatus.OK, True),
        ("nahi", AnswerStatus.OK, False),
        ("na", AnswerStatus.OK, False),
        ("nhi", AnswerStatus.OK, False),
        ("नहीं", AnswerStatus.OK, False),
        ("mujhe bukhar nahi hai", AnswerStatus.OK, False),
        ("pata nahi", AnswerStatus.UNKNOWN, None),
        ("पता नहीं", AnswerStatus.UNKNOWN, None),
    ],
)
def test_yes_no_answers(it: Interpreter, text: str, status: AnswerStatus, value: object) -> None:
    a = it.interpret(text, BOOL, "hi").answer
    assert a is not None and (a.status, a.value) == (status, value)


@pytest.mark.parametrize(
    ("text", "exp", "value"),
    [
        ("do din", Expectation("symptom_onset_days", QuestionType.NUMBER, unit="d"), 2.0),
        ("दो दिन", Expectation("symptom_onset_days", QuestionType.NUMBER, unit="d"), 2.0),
        ("kal se", Expectation("symptom_onset_days", QuestionType.NUMBER, unit="d"), 1.0),
        ("102", Expectation("temperature_c", QuestionType.NUMBER, unit="Cel"), 38.9),
        ("150/95 hai", Expectation("bp", QuestionType.BP), (150.0, 95.0)),
    ],
)
def test_number_answers(it: Interpreter, text: str, exp: Expectation, value: object) -> None:
    a = it.interpret(text, exp, "hi").answer
    assert a is not None and a.status is AnswerStatus.OK and a.value == value


def test_options_labelled_in_devanagari(it: Interpreter) -> None:
    multi = Expectation(
        "symptoms",
        QuestionType.MULTI,
        options=(Option("fever", ("बुखार",)), Option("cough", ("खांसी",))),
    )
    a = it.interpret("बुखार और खांसी", multi, "hi").answer
    assert a is not None and a.value == ("fever", "cough")
    a = it.interpret("kuch nahi", multi, "hi").answer
    assert a is not None and a.value == ()


# --- intents and the language a message is read in ----------------------------------------


def test_heldout_intents_macro_f1() -> None:
    it = default_interpreter()
    report = evaluate_intents(lambda t: it.interpret(t, None, "hi"), TESTS / "hi_heldout.yml")
    assert report.total >= 200
    assert report.macro_f1 >= 0.9, report.confusions


def test_heldout_file_is_never_trained_on() -> None:
    from nlu.text import words

    train = load_training_data(DATA_DIR / "nlu" / "hi.yml", DATA_DIR / "nlu" / "en.yml")
    seen = {" ".join(words(e.text)) for e in train.examples}
    heldout = load_training_data(TESTS / "hi_heldout.yml").examples
    assert not [e.text for e in heldout if " ".join(words(e.text)) in seen]


@pytest.mark.parametrize(
    ("text", "contact", "language", "intent"),
    [
        ("mujhe bukhar hai", "hi", "hi", "report_symptom"),
        ("mujhe bukhar hai", "en", "hi", "report_symptom"),  # an English contact mixing
        ("doctor se baat karni hai", "en", "hi", "ask_human"),
        ("मुझे खांसी है", "en", "hi", "report_symptom"),
        ("I have fever and cough", "hi", "hi", "report_symptom"),  # hi includes English
        ("hello", "en", "en", "greet"),
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
        ("मुझे बुखार है", "hi"),
        ("mujhe bukhar hai", "hi"),
        ("saans lene mein dikkat", "hi"),
        ("papa ko saans nahi aa rahi, hoth neele ho gaye", "hi"),
        ("namaste", "hi"),
        ("ok", None),
        ("hi", None),
        ("2", None),
        ("my father has a cough since monday", "en"),
    ],
)
def test_detect_language(text: str, expected: str | None) -> None:
    assert detect_language(text, ("en", "hi", "es")) == expected


def test_detect_language_only_answers_with_a_candidate() -> None:
    assert detect_language("मुझे बुखार है", ("en", "es")) is None
    assert detect_language("mujhe bukhar hai", ("hi",)) == "hi"


def test_every_hindi_pattern_starts_with_letters_the_matcher_can_bucket() -> None:
    # A pattern that cannot be bucketed is tried at every word of every message.
    for kind in ("redflags", "findings"):
        doc = yaml.safe_load((DATA_DIR / "nlu" / kind / "hi.yml").read_text(encoding="utf-8"))
        for concept, spec in doc[kind].items():
            for p in (*spec.get("patterns", ()), *spec.get("absent", ())):
                assert first_literals(fold_spelling(p)) is not None, (concept, p)


def test_hindi_reading_is_fast() -> None:
    it = default_interpreter()
    msgs = ["papa ko saans nahi aa rahi, hoth neele ho gaye", "bukhar 101 hai", "haan", "मुझे खांसी है"]
    for m in msgs:
        it.interpret(m, None, "hi")
    times = []
    for _ in range(50):
        for m in msgs:
            t0 = time.perf_counter()
            it.interpret(m, None, "hi")
            times.append(time.perf_counter() - t0)
    times.sort()
    assert times[len(times) // 2] < 0.001  # ~0.2 ms on a quiet machine


def test_cli_infers_the_language_from_the_file_name() -> None:
    from click.testing import CliRunner

    from bot.cli_nlu import nlu

    result = CliRunner().invoke(nlu, ["test", "--data", str(TESTS / "hi_heldout.yml")])
    assert result.exit_code == 0, result.output
    assert "language: hi" in result.output
    assert "hi_redflags.yml" in result.output and "recall 1.000" in result.output
