"""Golden transcripts in every configured language: the COVID-19 screening and each check-in,
completed over SMS by a patient who picks the language from the first-contact menu and then
answers every question the plain way a basic phone allows (numbers, 1/2 for yes/no).

Rewrite with `pytest tests/test_golden_languages.py --update-golden` and review the diff.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import engine
from bot.app import CareBridge
from bot.cli import _deliver, render_text
from bot.config import Config
from bot.flow import AskNode
from bot.messages import Inbound
from bot.session import SessionStatus

GOLDEN = Path(__file__).resolve().parent / "golden" / "languages"
LANGUAGES = ("en", "hi", "es")
# menu option -> (second menu option or None): how a patient reaches each flow from the menu
FLOWS = {
    "covid_screening": ("1", None),
    "hypertension_checkin": ("2", "1"),
    "diabetes_checkin": ("2", "2"),
    "asthma_checkin": ("2", "3"),
    "copd_checkin": ("2", "4"),
    "heart_failure_checkin": ("2", "5"),
    "pregnancy_checkin": ("2", "6"),
}
READINGS = {
    "age_years": "45",
    "temperature_c": "37.2",
    "spo2_percent": "97",
    "glucose_mg_dl": "110",
    "peak_flow_percent": "90",
    "rescue_inhaler_uses_day": "1",
    "weight_gain_kg_week": "0.5",
}


def answer(exp: engine.Expectation) -> str:
    """What the plain patient types: no to yes/no, none of a list, an ordinary reading."""
    if exp.type == "bool":
        return "2"
    if exp.type == "multi":
        return "0"
    if exp.type == "bp":
        return "128/82"
    if exp.type == "number":
        return READINGS.get(exp.concept, "skip")
    return "1"


def converse(config: Config, flow: str, language: str) -> tuple[str, CareBridge]:
    ticks = iter(range(100_000))

    def clock() -> datetime:
        return datetime(2020, 4, 1, 9, 0, tzinfo=UTC) + timedelta(seconds=next(ticks))

    app = CareBridge(config, clock=clock)
    out: list[str] = []
    first, second = FLOWS[flow]
    pick = str(LANGUAGES.index(language) + 1)
    script = ["hi", pick, "1", first] + ([second] if second else [])

    def say(text: str) -> None:
        out.append(f"> {text}")
        handled = app.handle(Inbound("sms", "+15550100", text, clock(), f"g{len(out)}"))
        out.extend(render_text(m, "sms") for m in _deliver(app, handled.contact_id))
        out.append("")

    for text in script:
        say(text)
    contact = app.store.find_contact("sms", "+15550100")
    assert contact is not None
    for _ in range(60):
        exp = engine.expectation(app.library, app.store.current_session(contact))
        if exp is None:
            break
        say(answer(exp))
    return "\n".join(out), app


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_every_flow_completes_in_every_language(
    flow: str, language: str, tmp_config: Config, update_golden: bool
) -> None:
    got, app = converse(tmp_config, flow, language)
    try:
        contact = app.store.find_contact("sms", "+15550100")
        assert contact is not None and contact.language == language
        session = app.store.current_session(contact)
        assert session.status is SessionStatus.COMPLETED
        assert session.triage == "self_care"  # the plain patient has nothing of concern
        asked = {
            c
            for node in app.library.flows[flow].nodes.values()
            if isinstance(node, AskNode)
            for c in node.concepts
        }
        assert "meds_taken" in asked or flow == "covid_screening"
        assert asked & set(session.answers), "the flow itself was run"
    finally:
        app.close()
    expected = GOLDEN / f"{flow}.{language}.txt"
    if update_golden or not expected.exists():
        GOLDEN.mkdir(parents=True, exist_ok=True)
        expected.write_text(got, encoding="utf-8")
        if not update_golden:
            pytest.fail(f"{expected.name} was missing and has been written: review it")
    assert got == expected.read_text(encoding="utf-8")
