"""Telegram adapter: python-telegram-bot's Bot over real HTTP against the fake Bot API, and
update parsing behind the webhook secret."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fakes.telegram_server import FakeTelegram, callback_update, message_update

from bot.errors import ChannelError, ConfigError, PermanentChannelError, TransientChannelError
from bot.messages import Outbound
from channels.base import Channel, SignatureError
from channels.render import select_multi
from channels.telegram import (
    TelegramChannel,
    callback_query_id,
    parse_telegram_payload,
    parse_telegram_update,
)

pytestmark = pytest.mark.anyio

CHAT = 555000111
SECRET = "s3cret-Token_1"
QUESTION = Outbound("telegram", str(CHAT), "Do you have a fever?", ("Yes", "No"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture
async def telegram(fake: FakeTelegram) -> AsyncIterator[TelegramChannel]:
    channel = TelegramChannel(fake.token, api_base_url=fake.api_base_url, timeout=0.5)
    await channel.start()
    yield channel
    await channel.stop()


# sending -----------------------------------------------------------------------------------


async def test_start_checks_the_token_with_get_me(
    fake: FakeTelegram, telegram: TelegramChannel
) -> None:
    assert isinstance(telegram, Channel)
    assert [r.path for r in fake.requests] == [f"/bot{fake.token}/getMe"]
    assert telegram.bot.username == "carebridge_test_bot"


async def test_choices_are_sent_as_an_inline_keyboard(
    fake: FakeTelegram, telegram: TelegramChannel
) -> None:
    message_id = await telegram.send(QUESTION)

    [sent] = fake.sent
    assert message_id == f"{CHAT}:100"
    assert (sent["chat_id"], sent["text"]) == (str(CHAT), "Do you have a fever?")
    assert sent["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "1. Yes", "callback_data": "1"}],
            [{"text": "2. No", "callback_data": "2"}],
        ]
    }


async def test_a_tick_edits_the_keyboard_and_is_not_a_message_a_plain_press_is(
    fake: FakeTelegram, telegram: TelegramChannel
) -> None:
    multi = Outbound(
        "telegram",
        str(CHAT),
        "Any of these?",
        ("Fever", "Cough"),
        meta=select_multi("None", "Done"),
    )
    message_id = int((await telegram.send(multi)).split(":")[1])
    assert await telegram.on_callback(fake.press(message_id, "Cough", query_id="q-tick"))
    assert fake.keyboard(message_id)[1][0]["text"] == "✓ 2. Cough"
    assert fake.keyboard(message_id)[-1][1]["callback_data"] == "2"
    assert not await telegram.on_callback(fake.press(message_id, "Done", query_id="q-done"))
    assert fake.answered == ["q-tick", "q-done"]
    plain = int((await telegram.send(QUESTION)).split(":")[1])
    assert not await telegram.on_callback(fake.press(plain, "Yes", query_id="q-yes"))
    assert len(fake.edits) == 1 and fake.answered[-1] == "q-yes"


async def test_a_plain_message_has_no_keyboard(
    fake: FakeTelegram, telegram: TelegramChannel
) -> None:
    await telegram.send(Outbound("telegram", str(CHAT), "Thank you."))

    assert "reply_markup" not in fake.sent[0]


async def test_a_wrong_token_fails_start_permanently(fake: FakeTelegram) -> None:
    channel = TelegramChannel("999:wrong", api_base_url=fake.api_base_url)
    with pytest.raises(PermanentChannelError):
        await channel.start()
    await channel.stop()


@pytest.mark.parametrize(
    ("kind", "error", "code", "opt_out"),
    [
        ("403", PermanentChannelError, "403", True),
        ("400", PermanentChannelError, "400", False),
        ("500", TransientChannelError, "network", None),
        ("timeout", TransientChannelError, "timeout", None),
    ],
)
async def test_send_failures_map_to_channel_errors(
    fake: FakeTelegram,
    telegram: TelegramChannel,
    kind: str,
    error: type[ChannelError],
    code: str,
    opt_out: bool | None,
) -> None:
    fake.fail_next(kind)
    started = time.monotonic()
    with pytest.raises(error) as caught:
        await telegram.send(QUESTION)

    assert caught.value.code == code
    assert getattr(caught.value, "opt_out", None) == opt_out
    assert time.monotonic() - started < 3
    assert (await telegram.send(QUESTION)).startswith(f"{CHAT}:")


async def test_429_carries_retry_after(fake: FakeTelegram, telegram: TelegramChannel) -> None:
    fake.fail_next("429", retry_after=3)
    with pytest.raises(TransientChannelError) as caught:
        await telegram.send(QUESTION)

    assert (caught.value.code, caught.value.retry_after) == ("429", 3.0)


async def test_an_outage_fails_every_send_until_it_ends(
    fake: FakeTelegram, telegram: TelegramChannel
) -> None:
    fake.outage("500")
    with pytest.raises(TransientChannelError):
        await telegram.send(QUESTION)
    fake.outage(None)

    assert await telegram.send(QUESTION)


async def test_channel_logs_carry_neither_text_nor_chat_ids(
    fake: FakeTelegram, telegram: TelegramChannel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="channels")
    await telegram.send(QUESTION)
    fake.fail_next("403")
    with pytest.raises(PermanentChannelError):
        await telegram.send(QUESTION)

    ours = [r.getMessage() for r in caplog.records if r.name.startswith("channels")]
    assert len(ours) == 2
    assert not [line for line in ours if str(CHAT) in line or "fever" in line]


async def test_answer_callback_and_set_webhook_reach_the_api(
    fake: FakeTelegram, telegram: TelegramChannel
) -> None:
    await telegram.answer_callback("q-77")
    await telegram.set_webhook("https://care.example.org/webhooks/telegram", SECRET)

    assert fake.answered == ["q-77"]
    assert fake.webhook["url"] == "https://care.example.org/webhooks/telegram"
    assert fake.webhook["secret_token"] == SECRET
    assert fake.webhook["allowed_updates"] == ["message", "callback_query"]
    request = fake.webhook_request(message_update(CHAT, "hi"))
    assert request.headers["X-Telegram-Bot-Api-Secret-Token"] == SECRET


async def test_poll_hands_over_updates_in_order_and_confirms_them(
    fake: FakeTelegram, telegram: TelegramChannel
) -> None:
    await telegram.set_webhook("https://care.example.org/webhooks/telegram", SECRET)
    fake.push_update(message_update(CHAT, "/start", update_id=41))
    fake.push_update(callback_update(CHAT, "2", update_id=42))
    fake.fail_next("500", method="getUpdates")  # poll backs off and carries on
    received: list[dict[str, Any]] = []

    async def handler(payload: dict[str, Any]) -> None:
        received.append(payload)
        if payload["update_id"] == 41:
            raise RuntimeError("a failing handler does not stop polling")

    task = asyncio.create_task(telegram.poll(handler, poll_timeout=1))
    deadline = time.monotonic() + 5
    while len(received) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # one more getUpdates confirms the offset
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert fake.webhook == {}  # deleted so that getUpdates is allowed
    assert [p["update_id"] for p in received] == [41, 42]
    inbounds = [parse_telegram_payload(p) for p in received]
    assert [i.text for i in inbounds if i] == ["START", "2"]
    offsets = [r.params.get("offset") for r in fake.requests if r.path.endswith("/getUpdates")]
    assert "43" in offsets


# parsing -----------------------------------------------------------------------------------


def test_a_message_with_the_right_secret_becomes_an_inbound() -> None:
    payload = message_update(CHAT, " I have a cough ", update_id=9, language_code="hi")

    inbound = parse_telegram_update(payload, SECRET, SECRET)

    assert inbound is not None
    assert (inbound.channel, inbound.address, inbound.text) == (
        "telegram",
        str(CHAT),
        "I have a cough",
    )
    assert (inbound.provider_id, inbound.language_hint) == ("9", "hi")
    assert inbound.received_at == datetime.fromtimestamp(1_700_000_000, UTC)


@pytest.mark.parametrize("header", [None, "", "s3cret-Token_2", "S3CRET-TOKEN_1", "ünïcode"])
def test_a_wrong_or_missing_secret_is_refused(header: str | None) -> None:
    with pytest.raises(SignatureError):
        parse_telegram_update(message_update(CHAT, "hi"), header, SECRET)


def test_an_unset_secret_is_a_config_error_not_an_open_door() -> None:
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        parse_telegram_update(message_update(CHAT, "hi"), "", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/start", "START"),
        ("/stop", "STOP"),
        ("/help", "HELP"),
        ("/stop@carebridge_test_bot", "STOP"),
        ("/start deeplink-42", "START"),
        ("/weather", "/weather"),
        ("/", "/"),
        ("stop", "stop"),
    ],
)
def test_commands_become_keywords(text: str, expected: str) -> None:
    inbound = parse_telegram_payload(message_update(CHAT, text))

    assert inbound is not None and inbound.text == expected


def test_a_callback_query_gives_the_choice_number_and_its_query_id() -> None:
    payload = callback_update(CHAT, "2", update_id=77, query_id="q-1", language_code="hi")
    now = datetime(2024, 5, 1, tzinfo=UTC)

    inbound = parse_telegram_update(payload, SECRET, SECRET, now=now)

    assert inbound is not None
    assert (inbound.address, inbound.text, inbound.provider_id) == (str(CHAT), "2", "77")
    assert (inbound.language_hint, inbound.received_at) == ("hi", now)
    assert callback_query_id(payload) == "q-1"
    assert callback_query_id(message_update(CHAT, "hi")) is None


def test_updates_carebridge_does_not_handle_give_none() -> None:
    group = message_update(-100123, "hello", chat_type="group")
    edited = {"update_id": 5, "edited_message": message_update(CHAT, "x")["message"]}

    assert parse_telegram_payload(group) is None
    assert parse_telegram_payload(edited) is None


def test_a_media_message_without_caption_has_empty_text() -> None:
    payload = message_update(CHAT, "x")
    del payload["message"]["text"]
    payload["message"]["sticker"] = {
        "file_id": "f", "file_unique_id": "u", "width": 1, "height": 1,
        "is_animated": False, "is_video": False, "type": "regular",
    }  # fmt: skip

    inbound = parse_telegram_payload(payload)

    assert inbound is not None and inbound.text == ""


def test_a_malformed_update_is_a_channel_error() -> None:
    with pytest.raises(ChannelError):
        parse_telegram_payload({"message": {"text": "no update id"}})


# the fake itself ---------------------------------------------------------------------------


def test_the_fake_accepts_json_form_and_multipart_bodies(fake: FakeTelegram) -> None:
    url = f"{fake.url}/bot{fake.token}/sendMessage"
    keyboard = {"inline_keyboard": [[{"text": "Yes", "callback_data": "1"}]]}
    with httpx.Client() as client:
        as_json = client.post(url, json={"chat_id": CHAT, "text": "a", "reply_markup": keyboard})
        as_form = client.post(
            url, data={"chat_id": str(CHAT), "text": "b", "reply_markup": json.dumps(keyboard)}
        )
        as_multipart = client.post(
            url,
            data={"chat_id": str(CHAT), "text": "c"},
            files={"document": ("a.txt", b"hello", "text/plain")},
        )

    assert [r.status_code for r in (as_json, as_form, as_multipart)] == [200, 200, 200]
    assert [s["text"] for s in fake.sent] == ["a", "b", "c"]
    assert fake.sent[0]["reply_markup"] == fake.sent[1]["reply_markup"] == keyboard
    assert [r.content_type for r in fake.requests] == [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ]
