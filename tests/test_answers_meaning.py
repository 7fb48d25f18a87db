"""Answers read by meaning, never by one shared word (issue 11): menus, the language menu,
checklists read in part, "no thermometer" as don't-know, several findings in one answer, and
SMS slang per language. Driven as a patient would, through the app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chat_driver import InProcess

from bot.config import Config
from nlu.interpreter import default_interpreter
from nlu.types import AnswerStatus, Expectation, Option, QuestionType


@pytest.fixture
def chat(tmp_config: Config) -> Iterator[InProcess]:
    d = InProcess(tmp_config)
    yield d
    d.close()


def to_menu(chat: InProcess, who: str, language: str, consent: str) -> dict[str, object]:
    chat.say(who, "hello")
    chat.say(who, language)
    return chat.say(who, consent)


def test_a_typed_menu_answer_is_read_by_meaning_not_by_one_shared_word(chat: InProcess) -> None:
    state = to_menu(chat, "p1", "3", "sí")
    assert state["flow"] == "menu"
    state = chat.say("p1", "chequeo de mi azúcar")
    assert state["flow"] == "diabetes_checkin"  # not "Chequeo de COVID-19"


def test_hi_at_the_language_menu_is_a_greeting_and_hindi_by_name_is_hindi(chat: InProcess) -> None:
    chat.say("p2", "hello")
    state = chat.say("p2", "hi")
    assert state["expecting"]["concept"] == "preferred_language"  # asked again, not Hindi
    state = chat.say("p2", "hindi")
    assert state["expecting"]["concept"] == "consent_care"
    assert "सहमत" in state["replies"][-1]


def test_a_checklist_answer_read_in_part_asks_about_the_rest(chat: InProcess) -> None:
    to_menu(chat, "p3", "3", "sí")
    chat.say("p3", "control de mi enfermedad")
    chat.say("p3", "epoc")
    state = chat.say("p3", "ninguno")  # no red flag
    first = state["expecting"]["choices"]
    assert len(first) == 3  # more breathless, sputum, fever
    state = chat.say("p3", "sí, más flema y algo que me pasa en la garganta")
    assert state["expecting"] is not None and state["flow"] == "copd_checkin"
    rest = state["expecting"]["choices"]
    assert len(rest) == 2 and set(rest) < set(first)  # asked again, not recorded as "no"
    assert "Anotado" in state["replies"][-1]
    state = chat.say("p3", "ninguno")
    while state["expecting"] is not None:
        state = chat.say("p3", "no")
    assert state["triage"] == "consultation"  # one cardinal symptom, read from the first answer


@pytest.mark.parametrize(
    ("lang", "text", "concept", "kind"),
    [
        ("en", "I don't have a thermometer", "temperature_c", QuestionType.NUMBER),
        ("en", "dont have an oximeter", "spo2_percent", QuestionType.NUMBER),
        ("en", "don't have a BP machine", "systolic_bp", QuestionType.BP),
        ("es", "no tengo oxímetro", "spo2_percent", QuestionType.NUMBER),
        ("es", "ni idea", "temperature_c", QuestionType.NUMBER),
        ("hi", "thermometer nahi hai", "temperature_c", QuestionType.NUMBER),
        ("hi", "nahi pata", "spo2_percent", QuestionType.NUMBER),
    ],
)
def test_no_device_or_no_idea_means_unknown(
    lang: str, text: str, concept: str, kind: QuestionType
) -> None:
    exp = Expectation(concept, kind, allow_unknown=True)
    assert default_interpreter().interpret(text, exp, lang).answer.status is AnswerStatus.UNKNOWN  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("lang", "text", "value"),
    [
        ("en", "nop", False),
        ("es", "no nada", False),
        ("hi", "ji nahi", False),
        ("es", "sip", True),
        ("hi", "haan ji", True),
    ],
)
def test_sms_slang_yes_and_no(lang: str, text: str, value: bool) -> None:
    ans = (
        default_interpreter().interpret(text, Expectation("fever", QuestionType.BOOL), lang).answer
    )
    assert ans is not None and ans.status is AnswerStatus.OK and ans.value is value


@pytest.mark.parametrize(
    ("lang", "text"), [("en", "nope nothing"), ("hi", "nahi kuch nahi"), ("es", "no nada")]
)
def test_none_in_several_words_answers_a_checklist(lang: str, text: str) -> None:
    exp = Expectation(
        "fever",
        QuestionType.MULTI,
        options=(Option("fever", ("Fever",)), Option("cough", ("Cough",))),
    )
    ans = default_interpreter().interpret(text, exp, lang).answer
    assert ans is not None and ans.status is AnswerStatus.OK and ans.value == ()


def test_several_findings_in_one_answer_all_count() -> None:
    options = (
        Option("dyspnea", ("रोज से ज्यादा सांस फूलना",)),
        Option("sputum_change", ("बलगम ज्यादा आना या बलगम का रंग बदलना",)),
        Option("fever", ("बुखार",)),
    )
    exp = Expectation("dyspnea", QuestionType.MULTI, options=options)
    text = "haan sans phoolti hai aur balgam ka rang badla hai"
    ans = default_interpreter().interpret(text, exp, "hi").answer
    assert ans is not None and ans.status is AnswerStatus.OK
    assert ans.value == ("dyspnea", "sputum_change")


@pytest.mark.parametrize(
    ("status", "flow"), [("active", "heart_failure_checkin"), ("ended", "general_triage")]
)
def test_an_enrolled_condition_routes_a_symptom_to_its_check_in(
    chat: InProcess, status: str, flow: str
) -> None:
    """The app puts the enrollment's conditions on the engine's contact; an ended
    enrollment counts no more."""
    to_menu(chat, "p9", "1", "yes")
    chat.say("p9", "thanks")  # leaves the menu: the next message is outside a conversation
    contact = chat.app.store.find_contact("sms", "p9")
    assert contact is not None
    chat.app.store.save_enrollment(
        contact.id,
        status=status,
        conditions=("heart_failure",),
        checkin_time="09:00",
        timezone="UTC",
        team=None,
        baselines={},
        now=chat.app.clock(),
    )
    state = chat.say("p9", "my ankles are swollen")
    assert state["flow"] == flow
