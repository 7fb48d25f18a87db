"""`carebridge serve` over real HTTP, with the real Twilio and Telegram client libraries talking
to fake providers on loopback: screenings on every channel, signatures, replays, outages, opt-out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import FakeServer, wait_for
from fakes.telegram_server import FakeTelegram, callback_update, message_update
from fakes.twilio_server import FakeTwilio, inbound_params, signed_request
from patients import COVID_SCREENING as SCREENING
from starlette.applications import Starlette

from bot.app import CareBridge
from bot.config import Config
from bot.dispatch import DeliveryPolicy, RetryPolicy
from bot.store import OutboxStatus
from bot.web import create_app
from channels.simulator import SimulatorChannel
from channels.telegram import TelegramChannel
from channels.twilio import TwilioChannel

SECRET = "tg-webhook-secret"
SMS_FROM, WA_FROM = "+15550009999", "+15550008888"


class FastClock:
    """Bot time that runs `speed` times faster than real time (retries and backoff)."""

    def __init__(self, speed: float) -> None:
        self.start, self.m0, self.speed = (
            datetime(2020, 4, 1, 9, tzinfo=UTC),
            time.monotonic(),
            speed,
        )

    def __call__(self) -> datetime:
        from datetime import timedelta

        return self.start + timedelta(seconds=(time.monotonic() - self.m0) * self.speed)


class Served(FakeServer):
    """`carebridge serve`'s ASGI app on a real socket, with its lifespan (the dispatcher)."""

    lifespan = "on"

    def __init__(self, build: Callable[[str], Starlette]) -> None:
        super().__init__()
        self.build = build

    def app(self) -> Starlette:
        return self.build(self.url)


@dataclass
class Stack:
    server: Served
    twilio: FakeTwilio
    telegram: FakeTelegram
    bridge: CareBridge

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.server.url + path, timeout=10, **kwargs)

    def sms(self, sender: str, body: str, kind: str = "sms", sid: str | None = None) -> int:
        url = f"{self.server.url}/webhooks/twilio/{kind}"
        req = signed_request(
            url, inbound_params(sender, body, kind=kind, message_sid=sid), self.twilio.auth_token
        )
        return self.post(f"/webhooks/twilio/{kind}", data=req.data, headers=req.headers).status_code

    def telegram_update(self, update: dict[str, Any], secret: str = SECRET) -> int:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
        return self.post("/webhooks/telegram", json=update, headers=headers).status_code

    def sent_to(self, number: str) -> list[str]:
        with self.twilio.lock:
            return [m["body"] for m in self.twilio.messages if m["to"].endswith(number)]


@pytest.fixture
def stack(tmp_config: Config, tmp_path: Path) -> Iterator[Stack]:
    """The served bot on each engine in turn (tests/pg.py): SQLite and PostgreSQL."""
    clock = FastClock(speed=10.0)
    with FakeTwilio() as twilio, FakeTelegram() as telegram:
        holder: dict[str, CareBridge] = {}

        def build(url: str) -> Starlette:
            config = tmp_config.model_copy(
                update={
                    "server": tmp_config.server.model_copy(update={"public_url": url}),
                    "twilio": tmp_config.twilio.model_copy(
                        update={
                            "api_base_url": twilio.url,
                            "sms_from": SMS_FROM,
                            "whatsapp_from": WA_FROM,
                            "whatsapp_template_sid": "HX123",
                        }
                    ),
                }
            )
            bridge = CareBridge(config, clock=clock)
            holder["bridge"] = bridge
            status_url = f"{url}/webhooks/twilio/status"
            senders = {
                "web": SimulatorChannel(),
                "sms": TwilioChannel(
                    "sms",
                    twilio.account_sid,
                    twilio.auth_token,
                    SMS_FROM,
                    api_base_url=twilio.url,
                    status_callback_url=status_url,
                    timeout=0.5,
                ),
                "whatsapp": TwilioChannel(
                    "whatsapp",
                    twilio.account_sid,
                    twilio.auth_token,
                    WA_FROM,
                    api_base_url=twilio.url,
                    status_callback_url=status_url,
                    whatsapp_template_sid="HX123",
                    timeout=0.5,
                ),
                "telegram": TelegramChannel(telegram.token, api_base_url=telegram.url, timeout=0.5),
            }
            env = {"TWILIO_AUTH_TOKEN": twilio.auth_token, "TELEGRAM_WEBHOOK_SECRET": SECRET}
            app = create_app(config, bridge=bridge, env=env, senders=senders)
            state = app.state.web
            state.dispatcher.policy = RetryPolicy(base_s=2.0, cap_s=20.0, max_attempts=50)
            # bot time runs 10x: a 300 s lease is 30 s of real time, so a busy machine never
            # lets one run out (and send a reply twice) mid-test
            state.dispatcher.delivery = DeliveryPolicy(lease_s=300.0, order_hold_s=200.0)
            state.dispatcher.clock = clock
            # provider pacing is tested in test_dispatch; here it would only slow the suite
            state.dispatcher.rates = dict.fromkeys(("sms", "whatsapp", "telegram", "web"), 200.0)
            state.dispatcher.per_chat_rates = {}
            return app

        server = Served(build).start()
        try:
            yield Stack(server, twilio, telegram, holder["bridge"])
        finally:
            server.stop()


@pytest.mark.parametrize("kind", ["sms", "whatsapp"])
def test_a_complete_screening_over_twilio(stack: Stack, kind: str) -> None:
    number = "+15551230001"
    for n, line in enumerate(SCREENING, 1):
        assert stack.sms(number, line, kind=kind) == 200
        wait_for(lambda n=n: len(stack.sent_to(number)) >= n)
    last = stack.sent_to(number)[-1]
    assert "Stay home away from others" in last
    with stack.twilio.lock:
        forms = [m["_form"] for m in stack.twilio.messages]
    assert all(f["From"].endswith(SMS_FROM if kind == "sms" else WA_FROM) for f in forms)
    assert all(f["StatusCallback"].endswith("/webhooks/twilio/status") for f in forms)


def test_a_complete_screening_over_telegram_with_buttons(stack: Stack) -> None:
    chat = 777001
    script: list[dict[str, Any]] = [
        message_update(chat, "/start"),
        message_update(chat, "yes"),
        callback_update(chat, "1", query_id="q-menu"),  # the COVID-19 check button
    ]
    script += [message_update(chat, text) for text in SCREENING[4:]]  # language known
    for n, update in enumerate(script, 1):
        assert stack.telegram_update(update) == 200
        wait_for(lambda n=n: len(stack.telegram.sent) >= n)
    assert "q-menu" in stack.telegram.answered
    menu = stack.telegram.sent[1]
    buttons = menu["reply_markup"]["inline_keyboard"]
    assert buttons[0][0]["text"] == "1. COVID-19 check"
    assert "Stay home away from others" in stack.telegram.sent[-1]["text"]


def test_a_forged_twilio_signature_gets_403_and_nothing_is_stored(stack: Stack) -> None:
    params = inbound_params("+15551230002", "hi")
    bad = signed_request(f"{stack.server.url}/webhooks/twilio/sms", params, "wrong-token")
    assert stack.post("/webhooks/twilio/sms", data=params, headers=bad.headers).status_code == 403
    assert stack.post("/webhooks/twilio/sms", data=params).status_code == 403
    assert stack.bridge.store.unprocessed_inbound() == []
    assert stack.bridge.store.find_contact("sms", "+15551230002") is None


def test_a_wrong_telegram_secret_gets_403(stack: Stack) -> None:
    assert stack.telegram_update(message_update(777002, "hi"), secret="nope") == 403
    assert stack.post("/webhooks/telegram", json=message_update(777002, "hi")).status_code == 403
    assert stack.bridge.store.find_contact("telegram", "777002") is None


def test_one_hundred_replayed_webhooks_produce_one_reply(stack: Stack) -> None:
    number = "+15551230003"
    for _ in range(100):
        assert stack.sms(number, "hi", sid="SMreplay00000000000000000000000001") == 200
    wait_for(lambda: len(stack.sent_to(number)) >= 1)
    time.sleep(0.5)  # give a duplicate every chance to appear
    assert len(stack.sent_to(number)) == 1
    assert len(stack.bridge.store.outbox()) == 1


def test_nothing_is_lost_in_a_sixty_second_provider_outage(stack: Stack) -> None:
    """Bot time runs 10x: 6 real seconds of 500s and timeouts are a 60-second outage."""
    stack.twilio.outage("mixed")
    numbers = [f"+1555124{i:04d}" for i in range(5)]
    for number in numbers:
        for line in ("hi", "1"):
            assert stack.sms(number, line) == 200
    time.sleep(6.0)
    assert all(r.status != OutboxStatus.SENT for r in stack.bridge.store.outbox())
    stack.twilio.outage(None)
    store = stack.bridge.store
    wait_for(lambda: {r.status for r in store.outbox()} == {OutboxStatus.SENT}, timeout=30)
    assert all(len(stack.sent_to(n)) == 2 for n in numbers)
    rows = store.outbox()
    assert len(rows) == 10 and {r.status for r in rows} == {OutboxStatus.SENT}
    assert max(r.attempts for r in rows) > 1
    for number in numbers:  # in order, once each
        first, second = stack.sent_to(number)
        assert "Which language" in first and "Do you agree to continue?" in second


def test_twilio_21610_opts_the_contact_out(stack: Stack) -> None:
    number = "+15551230004"
    stack.twilio.fail_next("21610")
    assert stack.sms(number, "hi") == 200
    store = stack.bridge.store
    wait_for(lambda: store.outbox()[0].status == OutboxStatus.FAILED)
    contact = store.find_contact("sms", number)
    assert contact is not None and contact.opted_out
    assert stack.sms(number, "hello again") == 200
    time.sleep(0.3)
    assert len(store.outbox()) == 1  # nothing more is queued for an opted-out contact


def test_status_callbacks_update_the_same_outbox_row(stack: Stack) -> None:
    number = "+15551230005"
    stack.sms(number, "hi")
    wait_for(lambda: len(stack.sent_to(number)) == 1)
    with stack.twilio.lock:
        sid = stack.twilio.messages[-1]["sid"]
    cb = stack.twilio.status_callback(sid, "delivered")
    assert httpx.post(cb.url, data=cb.data, headers=cb.headers).status_code == 200
    [row] = stack.bridge.store.outbox()
    assert row.status == OutboxStatus.DELIVERED and row.provider_id == sid
    forged = signed_request(cb.url, {**cb.data, "MessageStatus": "failed"}, "wrong")
    assert httpx.post(cb.url, data=forged.data, headers=forged.headers).status_code == 403


def test_healthz_and_the_simulator_round_trip(stack: Stack) -> None:
    assert httpx.get(stack.server.url + "/healthz").json()["status"] == "ok"
    assert "try the bot" in httpx.get(stack.server.url + "/").text
    sim = "sim-test-0001"
    assert stack.post("/sim/api/send", json={"address": sim, "text": "hi"}).status_code == 200

    def got() -> list[dict[str, Any]]:
        url = f"{stack.server.url}/sim/api/messages?address={sim}&style=telegram"
        return [m for m in httpx.get(url).json()["messages"] if m["from"] == "bot"]

    wait_for(lambda: len(got()) == 1)
    assert "Which language would you like?" in got()[0]["text"]
    assert stack.post("/sim/api/send", json={"address": "x", "text": "hi"}).status_code == 400
