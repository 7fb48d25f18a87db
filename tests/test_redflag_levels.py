"""Issue 11 red flags in the engine: the level of each flag comes from flows/_interrupts.yaml
(most urgent wins, both emergency levels carry the emergency number, suicidal thoughts keep
the crisis line), and a message near a red flag gets ONE yes/no question stored in the
session: yes -> the red flag, no -> carry on with the question that was open."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot import engine
from bot.errors import FlowError
from bot.events import EscalationOpened, MsgCreated, RedFlagRaised, TriageDecided
from bot.flow import Library
from bot.loader import load_library
from bot.messages import Inbound
from bot.session import Contact, Session, SessionStatus
from nlu.types import GLOBAL_RED_FLAGS, Answer, AnswerStatus, Intent, QuestionType, Understanding

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def und(
    *, red_flags: tuple[str, ...] = (), asks: tuple[str, ...] = (), answer: object = None
) -> Understanding:
    return Understanding(
        "x",
        "en",
        Intent("inform", 0.9),
        red_flags=red_flags,
        red_flag_candidates=asks,
        answer=Answer(AnswerStatus.OK, answer) if answer is not None else None,  # type: ignore[arg-type]
    )


def say(lib: Library, session: Session, text: str, u: Understanding) -> engine.Sprint:
    return engine.resume(lib, session, Inbound("sms", "+1555", text, NOW, f"m-{text}"), u, NOW)


def at_screening(lib: Library) -> Session:
    contact = Contact(id=1, channel="sms", consent_care=True, language_set=True)
    return engine.start(lib, Session(contact=contact), "covid_screening", NOW).session


def replies(sprint: engine.Sprint) -> str:
    return "\n".join(e.text for e in sprint.events if isinstance(e, MsgCreated))


def level_of(sprint: engine.Sprint) -> str:
    return next(e.level for e in sprint.events if isinstance(e, TriageDecided))


def test_every_danger_sign_is_a_global_red_flag_with_a_level(lib: Library) -> None:
    assert len(set(GLOBAL_RED_FLAGS)) == len(GLOBAL_RED_FLAGS)
    assert set(lib.interrupts.red_flags) == set(GLOBAL_RED_FLAGS)
    assert lib.interrupts.red_flags["severe_burn"].level == "emergency"
    assert lib.interrupts.red_flags["heavy_bleeding"].level == "emergency_ambulance"
    assert all(f in lib.concepts for f in GLOBAL_RED_FLAGS)


def test_an_emergency_level_flag_sends_to_the_emergency_department_with_the_number(
    lib: Library,
) -> None:
    sprint = say(lib, at_screening(lib), "burn", und(red_flags=("severe_burn",)))
    assert level_of(sprint) == "emergency"
    assert "emergency department now" in replies(sprint) and "112" in replies(sprint)
    esc = next(e for e in sprint.events if isinstance(e, EscalationOpened))
    assert (esc.level, esc.reason, esc.red_flags) == ("emergency", "red_flag", ("severe_burn",))
    assert sprint.session.status is SessionStatus.COMPLETED
    assert sprint.session.triage == "emergency"


def test_the_most_urgent_level_wins_and_the_crisis_line_stays(lib: Library) -> None:
    sprint = say(lib, at_screening(lib), "x", und(red_flags=("severe_burn", "suicidal_thoughts")))
    assert level_of(sprint) == "emergency_ambulance"
    text = replies(sprint)
    assert "Call 112 now" in text and "14416" in text


def test_near_a_red_flag_asks_one_question_then_yes_raises_it(lib: Library) -> None:
    session = at_screening(lib)
    sprint = say(lib, session, "chest kinda hurs", und(asks=("chest_pain", "severe_dyspnea")))
    text = replies(sprint)
    assert "Do you have chest pain or pressure right now?" in text and "1 for Yes" in text
    assert not any(isinstance(e, RedFlagRaised) for e in sprint.events)
    s = sprint.session
    assert s.confirm_flag == "chest_pain"
    assert Session.from_state(s.contact, s.to_state()).confirm_flag == "chest_pain"  # stored
    exp = engine.expectation(lib, s)
    assert exp is not None and exp.type is QuestionType.BOOL
    sprint = say(lib, s, "1", und(answer=True))
    assert [e.concepts for e in sprint.events if isinstance(e, RedFlagRaised)] == [("chest_pain",)]
    assert level_of(sprint) == "emergency_ambulance" and "112" in replies(sprint)
    assert sprint.session.confirm_flag is None


def test_no_carries_on_with_the_question_that_was_open(lib: Library) -> None:
    session = at_screening(lib)
    question = engine.expectation(lib, session)
    sprint = say(lib, session, "x", und(asks=("stiff_neck_fever",)))
    sprint = say(lib, sprint.session, "2", und(answer=False))
    assert not any(isinstance(e, RedFlagRaised) for e in sprint.events)
    assert sprint.session.confirm_flag is None
    assert engine.expectation(lib, sprint.session) == question
    assert sprint.session.answers["stiff_neck_fever"] is False


def test_an_unclear_answer_asks_the_same_question_again(lib: Library) -> None:
    sprint = say(lib, at_screening(lib), "x", und(asks=("severe_burn",)))
    sprint = say(lib, sprint.session, "hmm", und())
    assert "large or deep burn" in replies(sprint)
    assert sprint.session.confirm_flag == "severe_burn"


def test_a_first_message_near_a_sign_starts_its_flow_after_a_no(lib: Library) -> None:
    contact = Contact(id=2, channel="sms", consent_care=True, language_set=True)
    sprint = say(lib, Session(contact=contact), "x", und(asks=("infant_fever",)))
    assert "under 3 months" in replies(sprint)
    sprint = say(lib, sprint.session, "no", und(answer=False))
    assert engine.expectation(lib, sprint.session) is not None  # a flow began


def test_a_red_flag_level_must_be_given_for_every_flag(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", flows)
    path = flows / "_interrupts.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace("  severe_burn:\n    level: emergency\n", "  severe_burn:\n    level: soon\n"),
        encoding="utf-8",
    )
    with pytest.raises(FlowError) as err:
        load_library(flows, ROOT / "data" / "concepts.yaml")
    assert "red_flags:severe_burn.level: must be one of emergency_ambulance, emergency" in str(
        err.value
    )
