"""Telegram buttons as a patient meets them, through the real webhook, outbox, dispatcher and
python-telegram-bot against the fake Bot API: numbered options, and a multi-select whose
options tick on the keyboard, with None and Done, every press answered."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fakes import FakeServer, wait_for
from fakes.telegram_server import FakeTelegram, message_update
from starlette.applications import Starlette

from bot.app import CareBridge
from bot.config import Config
from bot.messages import Outbound
from bot.web import create_app
from channels.render import DONE_EMPTY, render, select_multi
from channels.telegram import TelegramChannel

SECRET = "tg-webhook-secret"
CHAT = 777301


class Served(FakeServer):
    """The web app on a real socket with its lifespan (the dispatcher runs)."""

    lifespan = "on"

    def __init__(self, build: Callable[[str], Starlette]) -> None:
        super().__init__()
        self.build = build

    def app(self) -> Starlette:
        return self.build(self.url)


@dataclass
class Chat:
    """One Telegram patient and what the fake Bot API saw."""

    server: Served
    api: FakeTelegram
    bridge: CareBridge

    def post(self, update: dict[str, Any]) -> None:
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        url = f"{self.server.url}/webhooks/telegram"
        assert httpx.post(url, json=update, headers=headers, timeout=10).status_code == 200

    def sent(self) -> list[dict[str, Any]]:
        with self.api.lock:
            return list(self.api.sent)

    def type(self, text: str) -> dict[str, Any]:
        """Send a message; return the bot's last reply once it has arrived."""
        return self._after(lambda: self.post(message_update(CHAT, text)))

    def tap(self, label: str, message: dict[str, Any] | None = None) -> dict[str, Any]:
        """Tap a button of `message` (default: the last one); return the bot's last reply."""
        target = message or self.last()
        return self._after(lambda: self.post(self.api.press(target["message_id"], label)))

    def tick(self, label: str, message: dict[str, Any]) -> None:
        """Tap an option of a multi-select: no reply, only the keyboard changes."""
        before, answered = len(self.sent()), len(self.api.answered)
        self.post(self.api.press(message["message_id"], label))
        assert len(self.api.answered) == answered + 1  # the press is answered at once
        assert len(self.sent()) == before  # ... and no message is sent for it

    def last(self) -> dict[str, Any]:
        with self.api.lock:
            return list(self.api.messages.values())[-1]

    def _after(self, act: Callable[[], None]) -> dict[str, Any]:
        before = len(self.sent())
        act()
        wait_for(lambda: len(self.sent()) > before)
        wait_for(lambda: self.bridge.store.outbox(status="queued") == [])
        return self.last()


@pytest.fixture
def chat(tmp_config: Config) -> Iterator[Chat]:
    with FakeTelegram() as api:
        holder: dict[str, CareBridge] = {}

        def build(url: str) -> Starlette:
            config = tmp_config.model_copy(
                update={"server": tmp_config.server.model_copy(update={"public_url": url})}
            )
            bridge = CareBridge(config, clock=lambda: datetime(2020, 4, 1, 9, tzinfo=UTC))
            holder["bridge"] = bridge
            senders = {"telegram": TelegramChannel(api.token, api_base_url=api.url, timeout=2)}
            app = create_app(
                config, bridge=bridge, env={"TELEGRAM_WEBHOOK_SECRET": SECRET}, senders=senders
            )
            app.state.web.dispatcher.rates = {"telegram": 200.0}
            app.state.web.dispatcher.per_chat_rates = {}
            return app

        server = Served(build).start()
        try:
            yield Chat(server, api, holder["bridge"])
        finally:
            server.stop()


def keyboard(message: dict[str, Any]) -> list[list[tuple[str, str]]]:
    rows = message["reply_markup"]["inline_keyboard"]
    return [[(b["text"], b["callback_data"]) for b in row] for row in rows]


def answers(chat: Chat) -> dict[str, Any]:
    contact = chat.bridge.store.find_contact("telegram", str(CHAT))
    assert contact is not None
    return dict(chat.bridge.store.current_session(contact).answers)


def test_a_multi_select_ticks_on_the_keyboard_and_done_sends_the_ticks(chat: Chat) -> None:
    chat.type("/start")  # English from Telegram's language_code: the consent question
    menu = chat.type("yes")
    assert keyboard(menu)[0] == [("1. COVID-19 check", "1")]  # numbered, like the hint says

    signs = chat.tap("COVID-19 check")
    rows = keyboard(signs)
    assert rows[0] == [("1. Severe difficulty breathing (struggling to breathe or speak)", "t:1")]
    assert rows[-1] == [("None", "0"), ("Done", DONE_EMPTY)]

    # Done with nothing ticked is not an answer: the question again, in Telegram's words
    again = chat.tap("Done", signs)
    assert "Tap each answer that applies, then Done. If none applies, tap None." in again["text"]
    assert "0 for none" not in again["text"] and "numbers" not in again["text"]
    assert keyboard(again)[-1] == [("None", "0"), ("Done", DONE_EMPTY)]

    age = chat.tap("None", again)
    assert "How old are you?" in age["text"]
    symptoms = chat.type("34")
    assert "symptoms" in symptoms["text"]

    chat.tick("Fever or feeling hot", symptoms)
    chat.tick("Cough", symptoms)
    chat.tick("Headache", symptoms)
    chat.tick("Cough", symptoms)  # untick
    rows = chat.api.keyboard(symptoms["message_id"])
    assert rows[0][0]["text"] == "✓ 1. Fever or feeling hot"
    assert rows[1][0]["text"] == "2. Cough"
    assert rows[-1][1] == {"text": "Done", "callback_data": "1 8"}

    temperature = chat.tap("Done", symptoms)
    assert "temperature" in temperature["text"]
    given = answers(chat)
    assert (given["fever"], given["headache"], given["cough"], given["sore_throat"]) == (
        True,
        True,
        False,
        False,
    )
    # every press got its callback answer: menu, Done, None, 4 ticks, Done
    assert len(chat.api.answered) == 8


def test_a_typed_answer_still_works_on_telegram(chat: Chat) -> None:
    chat.type("/start")
    chat.type("yes")
    chat.tap("COVID-19 check")
    assert "How old are you?" in chat.type("0")["text"]


def test_render_numbers_telegram_buttons_and_adds_none_and_done_to_a_multi_select() -> None:
    msg = Outbound(
        "telegram", "1", "Any of these?", ("Fever", "Cough"), meta=select_multi("Ninguna", "Listo")
    )
    shown = render(msg)
    assert shown.multi
    assert [(b.label, b.data) for b in shown.buttons] == [
        ("1. Fever", "1"),
        ("2. Cough", "2"),
        ("Ninguna", "0"),
        ("Listo", DONE_EMPTY),
    ]
    single = render(Outbound("telegram", "1", "Pick one", ("Yes", "No")))
    assert not single.multi and [b.label for b in single.buttons] == ["1. Yes", "2. No"]
