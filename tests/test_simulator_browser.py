"""The browser simulator in a real headless Chromium: a visitor completes the screening; each
message shows once however its refreshes overlap; WhatsApp's bold; a reload keeps the whole
conversation; it fits a 375 px phone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import chromium
from fakes import FakeServer
from playwright.sync_api import Page, Route, expect
from starlette.applications import Starlette

from bot.app import CareBridge
from bot.config import Config
from bot.web import create_app
from channels.simulator import SimulatorChannel


class Served(FakeServer):
    lifespan = "on"

    def __init__(self, config: Config, shots: Path) -> None:
        super().__init__()
        self.config = config
        self.shots = shots  # screenshots taken by the tests

    def app(self) -> Starlette:
        return create_app(
            self.config, bridge=CareBridge(self.config), env={}, senders={"web": SimulatorChannel()}
        )


@pytest.fixture
def server(tmp_config: Config, tmp_path: Path) -> Iterator[Served]:
    with Served(tmp_config, tmp_path) as served:
        yield served


def test_a_visitor_completes_the_screening_in_the_simulator(server: Served) -> None:
    with chromium() as browser:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.select_option("#style", "telegram")

        def say(text: str, expect: str) -> None:
            page.fill("#text", text)
            page.press("#text", "Enter")
            page.locator(".msg.bot", has_text=expect).last.wait_for(timeout=10_000)

        say("hi", "Which language would you like?")
        page.get_by_role("button", name="English").click()
        page.locator(".msg.bot", has_text="Do you agree to continue?").wait_for(timeout=10_000)
        say("yes", "What would you like to do?")
        page.get_by_role("button", name="COVID-19 check").click()  # an inline button
        page.locator(".msg.bot", has_text="any of these right now").wait_for(timeout=10_000)
        for text, expect in [
            ("0", "How old are you?"),
            ("34", "symptoms now?"),
            ("fever and cough", "temperature"),
            ("101.3F", "oxygen level"),
            ("97", "unable to drink"),
            ("no", "close contact"),
            ("no", "health facility"),
            ("no", "pregnant"),
            ("no", "long-term conditions"),
            ("0", "Stay home away from others"),
        ]:
            say(text, expect)
        bubbles = page.locator(".msg.me").all_inner_texts()
        # Telegram's buttons carry their numbers (docs/channels.md)
    assert bubbles[1] == "1. English" and bubbles[3] == "1. COVID-19 check" and bubbles[-1] == "0"


def no_sideways_scroll(page: Page) -> bool:
    width = page.viewport_size["width"] if page.viewport_size else 0
    return bool(page.evaluate("document.documentElement.scrollWidth") <= width)


def test_a_message_shows_once_even_when_refreshes_overlap(server: Served) -> None:
    with chromium() as browser:
        page = browser.new_page()
        # Refresh every 50 ms while each answer takes 300 ms: refreshes overlap all the time.
        page.add_init_script(
            "const every = window.setInterval; window.setInterval = (f, ms) => every(f, 50);"
        )

        def slow(route: Route) -> None:
            time.sleep(0.3)
            route.continue_()

        page.route("**/sim/api/messages*", slow)
        page.goto(server.url + "/")
        page.fill("#text", "hi")
        page.press("#text", "Enter")
        menu = page.locator(".msg.bot", has_text="Which language would you like?")
        expect(menu).to_have_count(1, timeout=10_000)
        page.fill("#text", "1")
        page.press("#text", "Enter")
        expect(page.locator(".msg.bot", has_text="Do you agree to continue?")).to_have_count(
            1, timeout=10_000
        )
        expect(menu).to_have_count(1)
        texts = page.locator(".msg").all_inner_texts()
        assert len(texts) == len(set(texts)), texts


def test_whatsapp_bold_a_reload_keeps_the_conversation_and_375_px_fits(server: Served) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 375, "height": 740})
        page.goto(server.url + "/")
        page.select_option("#style", "whatsapp")
        page.fill("#text", "hi")
        page.press("#text", "Enter")
        question = page.locator(".msg.bot strong", has_text="Which language would you like?")
        expect(question).to_have_count(1, timeout=10_000)
        assert "*" not in page.locator(".msg.bot").first.inner_text()  # bold, not raw stars
        page.fill("#text", "English")
        page.press("#text", "Enter")
        expect(page.locator(".msg.bot", has_text="Do you agree to continue?")).to_be_visible(
            timeout=10_000
        )
        assert no_sideways_scroll(page)
        page.screenshot(path=str(server.shots / "simulator-375.png"), full_page=True)

        page.reload()  # the patient's own messages come back with the bot's, in order
        expect(page.locator(".msg.bot", has_text="Do you agree to continue?")).to_be_visible(
            timeout=10_000
        )
        bubbles = page.locator(".msg").all_inner_texts()
        assert bubbles[0] == "hi" and bubbles[2] == "English", bubbles
        assert "Which language" in bubbles[1] and "Do you agree" in bubbles[-1]
