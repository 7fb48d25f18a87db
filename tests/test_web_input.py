"""Bad input at the webhooks, sent as a provider (or an attacker) would over real HTTP to
`carebridge serve`'s app: never a 500. Every Twilio MessageStatus is accepted; the Telegram
secret is checked before the body is read; bodies over the limit get 413 from the headers alone;
malformed authenticated updates are dropped with 200; a long message is read only up to
MAX_TEXT_CHARS. Bodies the server must not read are sent on a raw socket, headers first, so a
test can show the answer came before the body.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from fakes import wait_for
from fakes.telegram_server import message_update
from fakes.twilio_server import inbound_params, signed_request
from test_web import SECRET, Stack, stack  # noqa: F401  (the served app and fake providers)

from bot.messages import MAX_TEXT_CHARS
from bot.store import OutboxStatus
from bot.web import SIM_MAX_BODY, TELEGRAM_MAX_BODY, TWILIO_MAX_BODY

DEEP = b"[" * 100_000  # json.loads gives up (RecursionError) long before the end


def raw_request(
    url: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
    *,
    chunks: list[bytes] | None = None,
) -> int:
    """Send a POST's headers and `body` (or `chunks` in chunked encoding, without the final
    chunk), then read the status line: the server answered without the rest."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((host, port), timeout=30) as sock:
        if chunks is not None:
            head.append("Transfer-Encoding: chunked")
            body = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks)
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        data = b""
        while b"\r\n" not in data:
            piece = sock.recv(4096)
            if not piece:
                break
            data += piece
    return int(data.split(b" ", 2)[1])


# --- Twilio status callbacks ---------------------------------------------------------------

EXPECTED_STATUS = {  # Twilio's 13 MessageStatus values -> the reply's outbox status afterwards
    "accepted": OutboxStatus.SENT,
    "scheduled": OutboxStatus.SENT,
    "queued": OutboxStatus.SENT,
    "sending": OutboxStatus.SENT,
    "sent": OutboxStatus.SENT,
    "receiving": OutboxStatus.SENT,
    "received": OutboxStatus.SENT,
    "delivered": OutboxStatus.DELIVERED,
    "read": OutboxStatus.DELIVERED,
    "undelivered": OutboxStatus.UNDELIVERED,
    "partially_delivered": OutboxStatus.UNDELIVERED,
    "failed": OutboxStatus.FAILED,
    "canceled": OutboxStatus.FAILED,
}


def test_every_twilio_message_status_is_accepted_and_recorded(
    stack: Stack,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    numbers = {status: f"+1555777{i:04d}" for i, status in enumerate([*EXPECTED_STATUS, "x"])}
    for number in numbers.values():
        assert stack.sms(number, "hi") == 200
    wait_for(lambda: all(stack.sent_to(n) for n in numbers.values()), timeout=30)
    with stack.twilio.lock:
        sids = {m["to"]: m["sid"] for m in stack.twilio.messages}
    caplog.set_level(logging.WARNING, logger="bot.web")
    for status, number in numbers.items():
        sent = "exploded" if status == "x" else status  # not a status Twilio documents
        cb = stack.twilio.status_callback(sids[number], sent)
        response = httpx.post(cb.url, data=cb.data, headers=cb.headers, timeout=10)
        assert response.status_code == 200, (status, response.text)
    store = stack.bridge.store
    got = {}
    for status, number in numbers.items():
        contact = store.find_contact("sms", number)
        assert contact is not None
        [row] = store.outbox(contact_id=contact.id)
        got[status] = row.status
    assert got == {**EXPECTED_STATUS, "x": OutboxStatus.SENT}
    logged = [r.getMessage() for r in caplog.records if "MessageStatus" in r.getMessage()]
    assert logged == ["twilio status callback with unknown MessageStatus exploded ignored"]
    assert not any("+1555" in r.getMessage() for r in caplog.records)


# --- Telegram: the secret first ------------------------------------------------------------


def test_a_wrong_telegram_secret_is_refused_before_the_body_is_read(
    stack: Stack,  # noqa: F811
) -> None:
    url = stack.server.url
    wrong = {"X-Telegram-Bot-Api-Secret-Token": "nope", "Content-Type": "application/json"}
    # 10 MB announced, 1 KB of deep JSON sent: the 403 comes without the rest
    big = {**wrong, "Content-Length": str(10 * 1024 * 1024)}
    assert raw_request(url, "/webhooks/telegram", big, DEEP[:1024]) == 403
    # a complete deep JSON body with a wrong or missing secret is never parsed either
    assert stack.post("/webhooks/telegram", content=DEEP, headers=wrong).status_code == 403
    bare = {"Content-Type": "application/json"}
    assert stack.post("/webhooks/telegram", content=DEEP, headers=bare).status_code == 403


def test_telegram_bodies_over_the_limit_get_413(stack: Stack) -> None:  # noqa: F811
    url = stack.server.url
    right = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    declared = {**right, "Content-Length": str(TELEGRAM_MAX_BODY + 1)}
    assert raw_request(url, "/webhooks/telegram", declared) == 413  # from the header alone
    # no Content-Length: counted while it streams in; the last byte is one too many
    chunks = [b" " * 65536] * (TELEGRAM_MAX_BODY // 65536) + [b" "]
    assert raw_request(url, "/webhooks/telegram", right, chunks=chunks) == 413
    assert stack.telegram_update(message_update(771001, "hi")) == 200  # still serving


# --- Telegram: malformed updates -----------------------------------------------------------


def _with(update: dict[str, Any], **message: Any) -> dict[str, Any]:
    return {**update, "message": {**update["message"], **message}}


MALFORMED: dict[str, Any] = {
    "date 1e20": _with(message_update(772001, "hi"), date=1e20),
    "no chat, no date": {"update_id": 772002, "message": {"message_id": 1, "text": "hi"}},
    "chat id not a number": _with(
        message_update(772003, "hi"), chat={"id": "abc", "type": "private"}
    ),
    "chat not an object": _with(message_update(772004, "hi"), chat=5),
    "no update_id": {"message": message_update(772005, "hi")["message"]},
    "update_id a string": {**message_update(772006, "hi"), "update_id": "x"},
    "a list": [message_update(772007, "hi")],
    "deep reply chain": _with(
        message_update(772008, "hi"),
        reply_to_message=json.loads("{" + '"reply_to_message":{' * 400 + "}" * 401),
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_authenticated_update_is_dropped_with_200(
    stack: Stack,  # noqa: F811
    case: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.web")
    assert stack.telegram_update(MALFORMED[case]) == 200
    assert "telegram update dropped: malformed" in caplog.text
    assert stack.bridge.store.unprocessed_inbound() == []
    assert stack.bridge.store.outbox() == []


@pytest.mark.parametrize("body", [b"not json", DEEP, b'{"update_id": 1, "message": ', b"\xff\xfe"])
def test_an_authenticated_body_that_is_not_json_is_dropped_with_200(
    stack: Stack,  # noqa: F811
    body: bytes,
) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    assert stack.post("/webhooks/telegram", content=body, headers=headers).status_code == 200
    assert stack.bridge.store.outbox() == []


def test_a_lone_surrogate_is_stored_as_a_replacement_character(stack: Stack) -> None:  # noqa: F811
    chat = 773001
    body = json.dumps(message_update(chat, "hi \ud800 there")).encode()  # "\\ud800" escaped
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    assert stack.post("/webhooks/telegram", content=body, headers=headers).status_code == 200
    wait_for(lambda: len(stack.telegram.sent) >= 1)
    contact = stack.bridge.store.find_contact("telegram", str(chat))
    assert contact is not None
    [said] = [t.text for t in stack.bridge.store.transcript(contact.id) if t.direction == "in"]
    assert said == "hi \ufffd there"


# --- Twilio: body limits and the text cap --------------------------------------------------


def test_a_signed_1_mb_sms_gets_413_from_its_headers(stack: Stack) -> None:  # noqa: F811
    url = f"{stack.server.url}/webhooks/twilio/sms"
    params = inbound_params("+15557780001", "I can't breathe " + "x" * 1_000_000)
    req = signed_request(url, params, stack.twilio.auth_token)
    body = urlencode(req.data).encode()
    headers = {
        **req.headers,
        "Content-Type": "application/x-www-form-urlencoded",
        "Content-Length": str(len(body)),
    }
    assert len(body) > TWILIO_MAX_BODY
    assert raw_request(stack.server.url, "/webhooks/twilio/sms", headers) == 413
    # the status callback has the same limit; an unsigned request is refused before reading
    assert raw_request(stack.server.url, "/webhooks/twilio/status", headers) == 413
    unsigned = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "10"}
    assert raw_request(stack.server.url, "/webhooks/twilio/sms", unsigned) == 403
    assert stack.bridge.store.find_contact("sms", "+15557780001") is None


class Spy:
    """The app's interpreter, recording the length of every text it is given."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.lengths = inner, []

    def interpret(self, text: str, *args: Any, **kwargs: Any) -> Any:
        self.lengths.append(len(text))
        return self.inner.interpret(text, *args, **kwargs)


def test_a_long_message_is_read_only_up_to_the_cap(stack: Stack) -> None:  # noqa: F811
    spy = Spy(stack.bridge.interpreter)
    stack.bridge.interpreter = spy
    number = "+15557780002"
    text = "I can't breathe and my lips are blue. " + "so tired " * 5000  # ~45,000 characters
    assert stack.sms(number, text) == 200  # signed, under the 64 KiB body limit
    wait_for(lambda: len(stack.sent_to(number)) >= 1)
    assert spy.lengths == [MAX_TEXT_CHARS]
    assert "112" in stack.sent_to(number)[0]  # the red flag at the start was read
    contact = stack.bridge.store.find_contact("sms", number)
    assert contact is not None
    [said] = [t.text for t in stack.bridge.store.transcript(contact.id) if t.direction == "in"]
    assert said == text[:MAX_TEXT_CHARS]


# --- the browser simulator -----------------------------------------------------------------


def test_the_simulator_refuses_big_and_deep_bodies(stack: Stack) -> None:  # noqa: F811
    big = json.dumps({"address": "sim-12345678", "text": "x" * SIM_MAX_BODY}).encode()
    headers = {"Content-Type": "application/json"}
    assert stack.post("/sim/api/send", content=big, headers=headers).status_code == 413
    deep = DEEP[: SIM_MAX_BODY - 1]
    assert stack.post("/sim/api/send", content=deep, headers=headers).status_code == 400
