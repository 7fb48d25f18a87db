"""A newcomer's first run, end to end, as `make run` gives it: a fresh database, no provider
credentials, the app on loopback and Debian's headless Chromium. A patient chats in the
browser simulator and asks for a person; a clinician claims and replies in the console and
the patient sees it; a coordinator's broadcast (approved by a second one) reaches the
simulator; a check-in enrolled from the command line arrives in the open simulator page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from browser import chromium
from click.testing import CliRunner
from console_helpers import free_port_url, make_user, served
from playwright.sync_api import Browser, Page, expect

from bot.app import CareBridge
from bot.cli_patients import patients
from bot.config import Config
from bot.session import SessionStatus
from bot.web import create_app

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a long enough password"
WAIT = 15_000  # ms: the page polls every 0.7 s and the dispatcher every 0.2 s


@dataclass
class Newcomer:
    url: str
    config: Config
    bridge: CareBridge


@pytest.fixture
def newcomer(tmp_config: Config) -> Iterator[Newcomer]:
    sock, url = free_port_url()
    config = tmp_config.model_copy(
        update={
            "server": tmp_config.server.model_copy(update={"public_url": url}),
            "console": tmp_config.console.model_copy(update={"poll_seconds": 1}),
        }
    )
    bridge = CareBridge(config)
    app = create_app(config, bridge=bridge, env={})  # no TWILIO_* / TELEGRAM_*: all off
    for name, role in (("dr.rao", "clinician"), ("asha", "coordinator"), ("ravi", "coordinator")):
        make_user(bridge.store, name, role, PASSWORD)
    with served(app, sock=sock):
        yield Newcomer(url, config, bridge)


def log_in(browser: Browser, url: str, user: str) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/console/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/(queue|broadcasts).*"))
    return page


def say(page: Page, text: str, expect_text: str) -> None:
    """The patient types `text` and waits for a bot message containing `expect_text`."""
    page.fill("#text", text)
    page.press("#text", "Enter")
    expect(page.locator(".msg.bot", has_text=expect_text).last).to_be_visible(timeout=WAIT)


def bot_says(page: Page, text: str) -> None:
    expect(page.locator(".msg.bot", has_text=text).last).to_be_visible(timeout=WAIT)


def menu_hands_over() -> bool:
    """Whether flows/menu.yaml hands 'Talk to a person' over like AGENT (issue 14, fixed on
    the journeys branch with `exit: human`); until that lands the step after it is xfail."""
    node = yaml.safe_load((ROOT / "flows" / "menu.yaml").read_text())["nodes"]["agent_done"]
    return node.get("end", {}).get("exit") == "human"


def test_a_newcomer_tries_every_journey_without_credentials(newcomer: Newcomer) -> None:
    url, store = newcomer.url, newcomer.bridge.store
    with chromium() as browser:
        # 1. A patient chats in the simulator and asks for a person (menu option 3).
        patient = browser.new_page(viewport={"width": 375, "height": 740})
        patient.goto(url + "/")
        address = patient.locator("#address").inner_text()
        assert address.startswith("sim-")
        say(patient, "hi", "Which language would you like?")
        say(patient, "1", "Do you agree to continue?")
        say(patient, "yes", "What would you like to do?")
        say(patient, "3", "A clinician will reply here")
        contact = store.find_contact("web", address)
        assert contact is not None and store.contact_row(contact.id).test  # type: ignore[union-attr]

        # 2. A clinician sees it in the console, labelled TEST, claims it and replies.
        clinician = log_in(browser, url, "dr.rao")
        row = clinician.locator("#queue-body tr[data-href]")
        expect(row).to_have_count(1, timeout=WAIT)
        expect(row).to_contain_text("TEST")
        row.locator("a").click()
        clinician.click("#claim")
        expect(clinician.locator("#ticket-status")).to_contain_text("claimed")
        reply = "Hello, this is Dr Rao. How can I help?"
        clinician.fill("#reply-text", reply)
        clinician.click("#send")

        # ... and the patient sees it in the simulator, without a reload.
        bot_says(patient, reply)
        say(patient, "I have had a cough for a week", reply)  # the bot stays quiet meanwhile
        expect(clinician.locator("#transcript")).to_contain_text(
            "I have had a cough for a week", timeout=WAIT
        )
        clinician.click("#resolve")
        expect(clinician.locator("#ticket-status")).to_contain_text("resolved")

        # 3. A coordinator broadcasts; the preview says plainly which channels are off.
        asha = log_in(browser, url, "asha")
        asha.goto(f"{url}/console/broadcasts/new")
        expect(asha.locator("#include-test")).to_be_checked()  # the simulator is on
        asha.fill("#name", "Heat wave advice")
        advice = "Heat wave this week: drink water often and stay in the shade at midday."
        asha.fill("textarea[name=text_en]", advice)
        asha.click("#create")
        preview = asha.locator("#preview")
        expect(preview).to_contain_text("sms is off (TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN")
        expect(preview).to_contain_text("telegram is off (TELEGRAM_BOT_TOKEN not set)")
        expect(asha.locator("#preview-channels tr[data-channel=web]")).to_contain_text("1")
        draft = asha.url

        ravi = log_in(browser, url, "ravi")
        ravi.goto(draft)
        ravi.click("#approve")
        ravi.click("#send")
        bot_says(patient, advice)

        # 4. A check-in, enrolled and started from the command line, arrives in the open page.
        cli = CliRunner()
        enrolled = cli.invoke(
            patients,
            [
                *("enroll", "--channel", "web", "--address", address, "--conditions", "diabetes"),
                *("--language", "en", "--glucose-unit", "mg/dL", "--team", "Clinic A"),
            ],
            obj={"config": newcomer.config},
        )
        assert enrolled.exit_code == 0, enrolled.output
        assert "see it in: the browser simulator at" in enrolled.output
        bot_says(patient, "Do you agree to get check-in messages")
        say(patient, "yes", "Would you like these messages too?")
        say(patient, "yes", "you are enrolled")

        checkin = cli.invoke(
            patients, ["checkin", str(contact.id)], obj={"config": newcomer.config}
        )
        assert checkin.exit_code == 0, checkin.output
        assert "diabetes_checkin for patient" in checkin.output and "started" in checkin.output
        assert f"the browser simulator at {url}/" in checkin.output
        bot_says(patient, "Diabetes check-in: a few short questions")

        # Every bot message shows once, and a reload keeps the patient's own messages.
        keys = patient.locator(".msg").evaluate_all("els => els.map(e => e.dataset.key)")
        assert len(keys) == len(set(keys))
        patient.reload()
        expect(patient.locator(".msg.me", has_text="I have had a cough for a week")).to_be_visible(
            timeout=WAIT
        )

    ticket = store.escalations(contact_id=contact.id)[0]
    assert ticket.announcements == 0 and ticket.status == "resolved"  # on-call never told


@pytest.mark.xfail(
    not menu_hands_over(), strict=True, reason="needs the menu hand-over fix (issue-14-journeys)"
)
def test_after_talk_to_a_person_the_next_message_waits_for_the_clinician(
    newcomer: Newcomer,
) -> None:
    with chromium() as browser:
        patient = browser.new_page()
        patient.goto(newcomer.url + "/")
        address = patient.locator("#address").inner_text()
        say(patient, "hi", "Which language would you like?")
        say(patient, "1", "Do you agree to continue?")
        say(patient, "yes", "What would you like to do?")
        say(patient, "3", "A clinician will reply here")
        patient.fill("#text", "are you there?")
        patient.press("#text", "Enter")
        expect(patient.locator(".msg.me", has_text="are you there?")).to_be_visible(timeout=WAIT)
    store = newcomer.bridge.store
    contact = store.find_contact("web", address)
    assert contact is not None
    assert store.current_session(contact).status is SessionStatus.HANDED_OFF
    assert store.transcript(contact.id)[-1].direction == "in"  # no menu again
