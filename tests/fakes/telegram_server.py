"""A fake Telegram Bot API on loopback (getMe, sendMessage, editMessageReplyMarkup,
answerCallbackQuery, setWebhook, deleteWebhook, getWebhookInfo, getUpdates), plus builders for
update payloads (`press` builds the callback query of a button on a sent message, carrying the
message's current keyboard as Telegram does).
Imports starlette and the fakes package. Accepts JSON, form and multipart bodies.

Failure kinds for `fail_next`/`outage`: "429" (with `retry_after=` seconds), "403" (bot
blocked), "400" (chat not found), "500", "timeout". `fail_next` applies to sendMessage unless
`method=` says otherwise (None: any method).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import FakeServer, SignedRequest

BOT_USER = {
    "id": 7000000001,
    "is_bot": True,
    "first_name": "CareBridge",
    "username": "carebridge_test_bot",
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
_ERRORS: dict[str, tuple[int, str]] = {
    "403": (403, "Forbidden: bot was blocked by the user"),
    "400": (400, "Bad Request: chat not found"),
    "500": (500, "Internal Server Error"),
}
_JSON_FIELDS = ("reply_markup", "allowed_updates", "entities", "link_preview_options")
_next_update_id = itertools.count(1000).__next__  # update ids unique across a test session


class FakeTelegram(FakeServer):
    """Serves `/bot{token}/{method}`; a wrong token gets 401 like the real API."""

    def __init__(self, token: str = "123456:TEST-token") -> None:
        super().__init__()
        self.token = token
        self.sent: list[dict[str, Any]] = []  # sendMessage params, reply_markup decoded
        self.answered: list[str] = []  # callback query ids
        self.messages: dict[int, dict[str, Any]] = {}  # sent messages by id, keyboards edited
        self.edits: list[dict[str, Any]] = []  # editMessageReplyMarkup params
        self.webhook: dict[str, Any] = {}
        self._updates: list[dict[str, Any]] = []
        self._message_ids = itertools.count(100)
        self._methods: dict[str, Callable[[dict[str, Any]], Awaitable[Response]]] = {
            "getMe": self._get_me,
            "sendMessage": self._send_message,
            "answerCallbackQuery": self._answer_callback_query,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "getUpdates": self._get_updates,
            "close": self._true,
            "logOut": self._true,
        }

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/bot{token}/{method}", self._dispatch, methods=["GET", "POST"])]
        )

    @property
    def api_base_url(self) -> str:
        """What `telegram.api_base_url` should be set to."""
        return self.url

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates."""
        with self.lock:
            self._updates.append(update)
        return update

    def webhook_request(self, update: dict[str, Any]) -> SignedRequest:
        """The request Telegram would POST to the registered webhook for `update`."""
        headers = {"Content-Type": "application/json"}
        if self.webhook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook["secret_token"]
        return SignedRequest(self.webhook["url"], update, headers)

    async def _dispatch(self, request: Request) -> Response:
        method = request.path_params["method"]
        failure = None
        if request.path_params["token"] == self.token:
            failure = self._take_failure(method)
        recorded = await self._record(request, failure.kind if failure else "ok")
        if request.path_params["token"] != self.token:
            return _error(401, "Unauthorized")
        if failure is not None:
            if failure.kind == "timeout":
                await self._hang()
                return _error(504, "Gateway Timeout")
            if failure.kind == "429":
                retry_after = int(failure.options.get("retry_after", 1))
                return _error(
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    {"retry_after": retry_after},
                )
            status, description = _ERRORS[failure.kind]
            return _error(status, description)
        handler = self._methods.get(method)
        if handler is None:
            return _error(404, "Not Found")
        return await handler(_decoded(recorded.params))

    async def _get_me(self, params: dict[str, Any]) -> Response:
        return _ok(BOT_USER)

    async def _true(self, params: dict[str, Any]) -> Response:
        return _ok(True)

    async def _send_message(self, params: dict[str, Any]) -> Response:
        if not params.get("chat_id") or not params.get("text"):
            return _error(400, "Bad Request: message text is empty")
        chat_id = int(params["chat_id"])
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Patient"},
            "from": BOT_USER,
            "text": params["text"],
        }
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        with self.lock:
            self.sent.append(params)
            self.messages[message["message_id"]] = message
        return _ok(message)

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> Response:
        with self.lock:
            message = self.messages.get(int(params.get("message_id") or 0))
            if message is None or int(params.get("chat_id") or 0) != message["chat"]["id"]:
                return _error(400, "Bad Request: message to edit not found")
            if params.get("reply_markup") == message.get("reply_markup"):
                return _error(400, "Bad Request: message is not modified")
            message["reply_markup"] = params.get("reply_markup")
            self.edits.append(params)
        return _ok(message)

    def keyboard(self, message_id: int) -> list[list[dict[str, Any]]]:
        """A sent message's inline keyboard as the patient sees it now."""
        with self.lock:
            markup = self.messages[message_id].get("reply_markup") or {}
        return [list(row) for row in markup.get("inline_keyboard", [])]

    def press(self, message_id: int, label: str, query_id: str | None = None) -> dict[str, Any]:
        """The update Telegram sends when the patient taps the button labelled `label` (exactly,
        or after its number: "Fever" finds "1. Fever") on message `message_id`."""
        with self.lock:
            message = json.loads(json.dumps(self.messages[message_id]))
        buttons = [b for row in message["reply_markup"]["inline_keyboard"] for b in row]
        [button] = [b for b in buttons if label in (b["text"], b["text"].split(". ", 1)[-1])]
        chat_id = message["chat"]["id"]
        update_id = _next_update_id()
        sender = {"id": chat_id, "is_bot": False, "first_name": "Patient", "language_code": "en"}
        return {
            "update_id": update_id,
            "callback_query": {
                "id": query_id or f"q-{update_id}",
                "from": sender,
                "chat_instance": "-1234567890",
                "data": button["callback_data"],
                "message": message,
            },
        }

    async def _answer_callback_query(self, params: dict[str, Any]) -> Response:
        with self.lock:
            self.answered.append(str(params.get("callback_query_id")))
        return _ok(True)

    async def _set_webhook(self, params: dict[str, Any]) -> Response:
        self.webhook = params
        return _ok(True)

    async def _delete_webhook(self, params: dict[str, Any]) -> Response:
        self.webhook = {}
        return _ok(True)

    async def _get_webhook_info(self, params: dict[str, Any]) -> Response:
        with self.lock:
            pending = len(self._updates)
        info = {"url": self.webhook.get("url", ""), "has_custom_certificate": False}
        return _ok({**info, "pending_update_count": pending})

    async def _get_updates(self, params: dict[str, Any]) -> Response:
        if self.webhook.get("url"):
            return _error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), 10.0)
        while True:
            with self.lock:
                if offset:  # confirms every update before `offset`
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = list(self._updates)
            if ready or time.monotonic() >= deadline or self._stopping.is_set():
                return _ok(ready)
            await asyncio.sleep(0.02)


def _decoded(params: dict[str, Any]) -> dict[str, Any]:
    """Form and multipart bodies carry objects as JSON strings: decode the known ones."""
    out = dict(params)
    for key in _JSON_FIELDS:
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


def _ok(result: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "result": result})


def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=status)


def message_update(
    chat_id: int,
    text: str,
    *,
    update_id: int | None = None,
    language_code: str | None = "en",
    chat_type: str = "private",
    date: int = 1_700_000_000,
) -> dict[str, Any]:
    """An update carrying a text message from a patient."""
    sender: dict[str, Any] = {"id": chat_id, "is_bot": False, "first_name": "Patient"}
    if language_code:
        sender["language_code"] = language_code
    update_id = update_id if update_id is not None else _next_update_id()
    return {
        "update_id": update_id,
        "message": {
            "message_id": 10 + update_id,
            "date": date,
            "chat": {"id": chat_id, "type": chat_type, "first_name": "Patient"},
            "from": sender,
            "text": text,
        },
    }


def callback_update(
    chat_id: int,
    data: str,
    *,
    update_id: int | None = None,
    query_id: str = "4382bfdwdsb323b2d9",
    language_code: str | None = "hi",
    message_id: int = 100,
) -> dict[str, Any]:
    """An update carrying a pressed inline button (`data` is its callback data)."""
    sender: dict[str, Any] = {"id": chat_id, "is_bot": False, "first_name": "Patient"}
    if language_code:
        sender["language_code"] = language_code
    return {
        "update_id": update_id if update_id is not None else _next_update_id(),
        "callback_query": {
            "id": query_id,
            "from": sender,
            "chat_instance": "-1234567890",
            "data": data,
            "message": {
                "message_id": message_id,
                "date": 1_700_000_000,
                "chat": {"id": chat_id, "type": "private", "first_name": "Patient"},
                "from": BOT_USER,
                "text": "Do you have a fever?",
            },
        },
    }
