"""Twilio SMS/WhatsApp adapter: the real twilio client over real HTTP against the fake REST API,
and webhook/status parsing with real signatures."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from fakes.twilio_server import FakeTwilio, inbound_params, signed_request

from bot.errors import ConfigError, PermanentChannelError, TransientChannelError
from bot.messages import Outbound
from channels.base import Channel, SignatureError
from channels.twilio import (
    DeliveryStatus,
    TwilioChannel,
    parse_twilio_status,
    parse_twilio_webhook,
)

pytestmark = pytest.mark.anyio

PATIENT = "+15557654321"
SMS_FROM = "+15550001111"
WA_FROM = "+14155238886"
CALLBACK = "https://care.example.org/webhooks/twilio/status"
PUBLIC_SMS_URL = "https://care.example.org/webhooks/twilio/sms"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


def _channel(fake: FakeTwilio, kind: str = "sms", **options: object) -> TwilioChannel:
    return TwilioChannel(
        kind,  # type: ignore[arg-type]
        fake.account_sid,
        fake.auth_token,
        SMS_FROM if kind == "sms" else WA_FROM,
        api_base_url=fake.api_base_url,
        status_callback_url=CALLBACK,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def sms(fake: FakeTwilio) -> AsyncIterator[TwilioChannel]:
    channel = _channel(fake, "sms", timeout=0.5)
    await channel.start()
    yield channel
    await channel.stop()


@pytest.fixture
async def whatsapp(fake: FakeTwilio) -> AsyncIterator[TwilioChannel]:
    channel = _channel(fake, "whatsapp", whatsapp_template_sid="HX" + "1" * 32)
    yield channel
    await channel.stop()


QUESTION = Outbound("sms", PATIENT, "Do you have a fever?", ("Yes", "No"))


# sending -----------------------------------------------------------------------------------


async def test_sms_send_posts_the_rendered_form_with_basic_auth(
    fake: FakeTwilio, sms: TwilioChannel
) -> None:
    sid = await sms.send(QUESTION)

    assert isinstance(sms, Channel)
    assert sid.startswith("SM") and len(sid) == 34
    [request] = fake.requests
    assert request.path == f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json"
    assert request.content_type == "application/x-www-form-urlencoded"
    expected = base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.params == {
        "To": PATIENT,
        "From": SMS_FROM,
        "Body": "Do you have a fever?\n1. Yes\n2. No",
        "StatusCallback": CALLBACK,
    }
    assert fake.message(sid)["status"] == "queued"


async def test_whatsapp_addresses_carry_the_prefix_on_the_wire_only(
    fake: FakeTwilio, whatsapp: TwilioChannel
) -> None:
    await whatsapp.send(Outbound("whatsapp", PATIENT, "Do you have a fever?", ("Yes", "No")))

    [request] = fake.requests
    assert request.params["To"] == f"whatsapp:{PATIENT}"
    assert request.params["From"] == f"whatsapp:{WA_FROM}"
    assert request.params["Body"] == "*Do you have a fever?*\n\n1. Yes\n2. No"


async def test_whatsapp_outside_the_window_sends_the_template(
    fake: FakeTwilio, whatsapp: TwilioChannel
) -> None:
    reminder = Outbound(
        "whatsapp", PATIENT, "Time for your\nweekly check-in.", kind="reminder",
        meta={"template": "1"},
    )  # fmt: skip
    await whatsapp.send(reminder)

    [request] = fake.requests
    assert "Body" not in request.params
    assert request.params["ContentSid"] == "HX" + "1" * 32
    assert json.loads(request.params["ContentVariables"]) == {"1": "Time for your weekly check-in."}


async def test_template_send_without_a_template_sid_fails_before_calling_twilio(
    fake: FakeTwilio,
) -> None:
    channel = _channel(fake, "whatsapp")
    with pytest.raises(PermanentChannelError) as caught:
        await channel.send(Outbound("whatsapp", PATIENT, "hello", meta={"template": "1"}))
    await channel.stop()

    assert caught.value.code == "63016"
    assert "twilio.whatsapp_template_sid" in str(caught.value)
    assert fake.requests == []


# failures ----------------------------------------------------------------------------------


async def test_21610_unsubscribed_is_permanent_and_opts_out(
    fake: FakeTwilio, sms: TwilioChannel
) -> None:
    fake.fail_next("21610")
    with pytest.raises(PermanentChannelError) as caught:
        await sms.send(QUESTION)

    assert (caught.value.code, caught.value.opt_out) == ("21610", True)


async def test_63016_outside_window_is_permanent_without_opt_out(
    fake: FakeTwilio, whatsapp: TwilioChannel
) -> None:
    fake.fail_next("63016")
    with pytest.raises(PermanentChannelError) as caught:
        await whatsapp.send(Outbound("whatsapp", PATIENT, "hello"))

    assert (caught.value.code, caught.value.opt_out) == ("63016", False)


async def test_429_is_transient_and_carries_retry_after(
    fake: FakeTwilio, sms: TwilioChannel
) -> None:
    fake.fail_next("429", retry_after=7)
    with pytest.raises(TransientChannelError) as caught:
        await sms.send(QUESTION)

    assert (caught.value.code, caught.value.retry_after) == ("20429", 7.0)


async def test_500_is_transient_and_the_next_send_succeeds(
    fake: FakeTwilio, sms: TwilioChannel
) -> None:
    fake.fail_next("500")
    with pytest.raises(TransientChannelError) as caught:
        await sms.send(QUESTION)
    assert caught.value.retry_after is None

    assert (await sms.send(QUESTION)).startswith("SM")
    assert [r.outcome for r in fake.requests] == ["500", "ok"]


async def test_a_hanging_request_times_out_as_transient(
    fake: FakeTwilio, sms: TwilioChannel
) -> None:
    fake.fail_next("timeout")
    started = time.monotonic()
    with pytest.raises(TransientChannelError) as caught:
        await sms.send(QUESTION)

    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 3


async def test_an_outage_fails_every_send_until_it_ends(
    fake: FakeTwilio, sms: TwilioChannel
) -> None:
    fake.outage("500")
    for _ in range(3):
        with pytest.raises(TransientChannelError):
            await sms.send(QUESTION)
    fake.outage("mixed")
    for expected in ("20500", "timeout"):
        with pytest.raises(TransientChannelError) as caught:
            await sms.send(QUESTION)
        assert caught.value.code == expected
    fake.outage(None)

    assert (await sms.send(QUESTION)).startswith("SM")
    assert len(fake.messages) == 1


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = TwilioChannel(
        "sms", "AC" + "0" * 32, "token", SMS_FROM, api_base_url=f"http://127.0.0.1:{port}"
    )
    with pytest.raises(TransientChannelError) as caught:
        await channel.send(QUESTION)
    await channel.stop()

    assert caught.value.code == "network"


async def test_a_wrong_auth_token_is_permanent_and_names_the_settings(fake: FakeTwilio) -> None:
    channel = TwilioChannel(
        "sms", fake.account_sid, "wrong", SMS_FROM, api_base_url=fake.api_base_url
    )
    with pytest.raises(PermanentChannelError) as caught:
        await channel.send(QUESTION)
    await channel.stop()

    assert caught.value.code == "20003"
    assert "TWILIO_AUTH_TOKEN" in str(caught.value)


async def test_logs_carry_neither_text_nor_phone_numbers(
    fake: FakeTwilio, sms: TwilioChannel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await sms.send(QUESTION)
    for kind in ("21610", "500", "429"):
        fake.fail_next(kind)
        with pytest.raises((PermanentChannelError, TransientChannelError)) as caught:
            await sms.send(QUESTION)
        assert PATIENT not in str(caught.value)

    assert caplog.records
    assert PATIENT not in caplog.text
    assert "fever" not in caplog.text


def test_missing_credentials_fail_loudly_naming_the_keys() -> None:
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        TwilioChannel("sms", "AC1", "", SMS_FROM)
    with pytest.raises(ConfigError, match=r"twilio\.whatsapp_from"):
        TwilioChannel("whatsapp", "AC1", "token", "")


# webhooks ----------------------------------------------------------------------------------

TOKEN = "webhook-auth-token"


def test_a_signed_sms_webhook_becomes_an_inbound() -> None:
    params = inbound_params(PATIENT, "  yes  ", message_sid="SM" + "a" * 32)
    request = signed_request(PUBLIC_SMS_URL, params, TOKEN)
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)

    inbound = parse_twilio_webhook(
        request.data, request.headers["X-Twilio-Signature"], PUBLIC_SMS_URL, TOKEN, "sms", now=now
    )

    assert (inbound.channel, inbound.address, inbound.text) == ("sms", PATIENT, "yes")
    assert (inbound.provider_id, inbound.received_at) == ("SM" + "a" * 32, now)


def test_a_whatsapp_webhook_address_loses_the_prefix() -> None:
    url = "https://care.example.org/webhooks/twilio/whatsapp"
    request = signed_request(url, inbound_params(PATIENT, "2", kind="whatsapp"), TOKEN)

    inbound = parse_twilio_webhook(
        request.data, request.headers["X-Twilio-Signature"], url, TOKEN, "whatsapp"
    )

    assert (inbound.channel, inbound.address, inbound.text) == ("whatsapp", PATIENT, "2")


@pytest.mark.parametrize(
    "tamper",
    ["forged", "missing", "empty", "body changed", "proxy url", "other token"],
)
def test_a_bad_signature_is_refused(tamper: str) -> None:
    params = inbound_params(PATIENT, "yes")
    signature: str | None = signed_request(PUBLIC_SMS_URL, params, TOKEN).headers[
        "X-Twilio-Signature"
    ]
    if tamper == "forged":
        signature = base64.b64encode(b"x" * 20).decode()
    elif tamper == "missing":
        signature = None
    elif tamper == "empty":
        signature = ""
    elif tamper == "body changed":
        params = {**params, "Body": "no"}
    elif tamper == "proxy url":
        signature = signed_request(
            "http://10.0.0.5:8000/webhooks/twilio/sms", params, TOKEN
        ).headers["X-Twilio-Signature"]
    elif tamper == "other token":
        signature = signed_request(PUBLIC_SMS_URL, params, "other").headers["X-Twilio-Signature"]

    with pytest.raises(SignatureError):
        parse_twilio_webhook(params, signature, PUBLIC_SMS_URL, TOKEN, "sms")


def test_a_status_callback_is_verified_and_parsed() -> None:
    params = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    request = signed_request(CALLBACK, params, TOKEN)

    status = parse_twilio_status(
        request.data, request.headers["X-Twilio-Signature"], CALLBACK, TOKEN
    )

    assert status == DeliveryStatus("SM" + "b" * 32, "undelivered", "30003")
    with pytest.raises(SignatureError):
        parse_twilio_status(
            {**params, "MessageStatus": "delivered"},
            request.headers["X-Twilio-Signature"],
            CALLBACK,
            TOKEN,
        )


@pytest.mark.parametrize(
    ("status", "outbox"),
    [
        ("accepted", "sent"),
        ("scheduled", "sent"),
        ("queued", "sent"),
        ("sending", "sent"),
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("read", "delivered"),
        ("partially_delivered", "undelivered"),
        ("undelivered", "undelivered"),
        ("failed", "failed"),
        ("canceled", "failed"),
        ("receiving", None),
        ("received", None),
    ],
)
def test_every_documented_message_status_has_a_meaning(status: str, outbox: str | None) -> None:
    params = {"MessageSid": "SM" + "c" * 32, "MessageStatus": status.upper()}
    request = signed_request(CALLBACK, params, TOKEN)
    parsed = parse_twilio_status(
        request.data, request.headers["X-Twilio-Signature"], CALLBACK, TOKEN
    )
    assert parsed.known and parsed.status == status and parsed.outbox_status == outbox


def test_an_unknown_message_status_is_parsed_but_not_known() -> None:
    params = {"MessageSid": "SM" + "d" * 32, "MessageStatus": "exploded"}
    request = signed_request(CALLBACK, params, TOKEN)
    parsed = parse_twilio_status(
        request.data, request.headers["X-Twilio-Signature"], CALLBACK, TOKEN
    )
    assert not parsed.known and parsed.outbox_status is None


async def test_the_fakes_status_callback_round_trips(fake: FakeTwilio, sms: TwilioChannel) -> None:
    sid = await sms.send(QUESTION)
    request = fake.status_callback(sid, "delivered")

    status = parse_twilio_status(
        request.data, request.headers["X-Twilio-Signature"], request.url, fake.auth_token
    )

    assert request.url == CALLBACK
    assert status == DeliveryStatus(sid, "delivered", None)
