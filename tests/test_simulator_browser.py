"""The browser simulator in a real headless Chromium: a visitor completes the screening."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser import chromium
from fakes import FakeServer
from starlette.applications import Starlette

from bot.app import CareBridge
from bot.config import Config
from bot.web import create_app
from channels.simulator import SimulatorChannel


class Served(FakeServer):
    lifespan = "on"

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config

    def app(self) -> Starlette:
        return create_app(
            self.config, bridge=CareBridge(self.config), env={}, senders={"web": SimulatorChannel()}
        )


@pytest.fixture
def server(tmp_config: Config) -> Iterator[Served]:
    with Served(tmp_config) as served:
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
