"""Telegram through python-telegram-bot: verify and parse webhook updates, send with inline
keyboards (numbered options; a multi-select ticks options on the keyboard itself and sends
them with Done), answer callback queries, set the webhook, and long-poll for development.
Imports python-telegram-bot, `bot.messages`, `bot.errors` and the rest of `channels`.

Addresses are chat ids as strings ("123456789"); only private chats are handled.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import (
    BadRequest,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from bot.errors import (
    ChannelError,
    ConfigError,
    PermanentChannelError,
    TransientChannelError,
)
from bot.messages import Inbound, Outbound
from channels.base import SignatureError
from channels.render import DONE_EMPTY, TELEGRAM_MAX_CHARS, Rendered, render

log = logging.getLogger(__name__)

# Opt in to python-telegram-bot's announced behaviour (durations as timedelta, read when an
# error is built); without it every RetryAfter emits a PTBDeprecationWarning.
os.environ.setdefault("PTB_TIMEDELTA", "true")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ("message", "callback_query")
# Commands that become the global interrupt keywords (/stop -> STOP, /start@MyBot -> START).
COMMAND_KEYWORDS = frozenset({"start", "stop", "help", "agent", "restart", "menu", "language"})
_UNREACHABLE = ("blocked", "deactivated", "kicked")  # 403 descriptions meaning: never again

UpdateHandler = Callable[[dict[str, Any]], Awaitable[None]]


class TelegramChannel:
    """Sends Telegram messages with python-telegram-bot's `Bot`; `start()` before use."""

    name = "telegram"

    def __init__(
        self, token: str, *, api_base_url: str | None = None, timeout: float = 10.0
    ) -> None:
        if not token:
            raise ConfigError("set TELEGRAM_BOT_TOKEN in the environment")
        root = (api_base_url or "https://api.telegram.org").rstrip("/")
        self.bot = Bot(
            token,
            base_url=f"{root}/bot{{token}}",
            base_file_url=f"{root}/file/bot{{token}}",
            request=_request(timeout, pool=64),
            get_updates_request=_request(timeout, pool=1),
        )

    async def start(self) -> None:
        """Open the HTTP pools and check the token (calls getMe)."""
        try:
            await self.bot.initialize()
        except TelegramError as exc:
            raise _channel_error(exc, "getMe") from exc

    async def stop(self) -> None:
        """Close the HTTP pools."""
        await self.bot.shutdown()

    async def send(self, msg: Outbound) -> str:
        """Send one message, choices as an inline keyboard; return "chat_id:message_id"."""
        rendered = render(msg, self.name)
        if len(rendered.text) > TELEGRAM_MAX_CHARS:
            raise PermanentChannelError(
                f"telegram text has {len(rendered.text)} characters, over {TELEGRAM_MAX_CHARS}; "
                "split it with channels.render.split_outbound",
                code="too_long",
            )
        keyboard = keyboard_for(rendered) if rendered.buttons else None
        try:
            sent = await self.bot.send_message(
                chat_id=msg.address, text=rendered.text, reply_markup=keyboard
            )
        except TelegramError as exc:
            error = _channel_error(exc, "sendMessage")
            log.warning("telegram send failed: %s", error)
            raise error from exc
        log.debug("telegram sent message %s", sent.message_id)  # no chat id: it names a person
        return f"{sent.chat.id}:{sent.message_id}"

    async def on_callback(self, payload: Mapping[str, Any]) -> bool:
        """Acknowledge a pressed button (answerCallbackQuery, for every press). A press on a
        multi-select option only ticks or unticks it on the keyboard (editMessageReplyMarkup)
        and returns True: it is not a patient message. Never raises: a failed call is logged."""
        query = payload.get("callback_query")
        if not isinstance(query, Mapping) or not isinstance(query.get("id"), str):
            return False
        data = str(query.get("data") or "")
        toggle = data.startswith(TOGGLE)
        message = query.get("message")
        if toggle and isinstance(message, Mapping):
            markup = toggled(message.get("reply_markup"), data)
            chat = message.get("chat")
            if markup is not None and isinstance(chat, Mapping):
                try:
                    await self.bot.edit_message_reply_markup(
                        chat_id=chat.get("id"),
                        message_id=message.get("message_id"),
                        reply_markup=markup,
                    )
                except TelegramError as exc:
                    log.warning("telegram keyboard edit failed: %s", _channel_error(exc, "edit"))
        try:
            await self.answer_callback(str(query["id"]))
        except ChannelError as exc:
            log.warning("telegram callback answer failed: %s", exc)
        return toggle

    async def answer_callback(self, query_id: str) -> None:
        """Stop the pressed button's spinner; a stale query id raises PermanentChannelError."""
        try:
            await self.bot.answer_callback_query(query_id)
        except TelegramError as exc:
            raise _channel_error(exc, "answerCallbackQuery") from exc

    async def set_webhook(self, url: str, secret: str) -> None:
        """Ask Telegram to POST updates to `url` with `secret` in the secret-token header."""
        if not secret:
            raise ConfigError("set TELEGRAM_WEBHOOK_SECRET in the environment")
        try:
            await self.bot.set_webhook(
                url=url, secret_token=secret, allowed_updates=list(ALLOWED_UPDATES)
            )
        except TelegramError as exc:
            raise _channel_error(exc, "setWebhook") from exc

    async def poll(self, handler: UpdateHandler, *, poll_timeout: int = 25) -> None:
        """Long-poll getUpdates and await `handler(update_dict)` for each, until cancelled.

        Removes any webhook first (Telegram refuses getUpdates while one is set). Network
        errors and 429s back off and retry; a handler's exception is logged and the update
        is skipped. Pass each dict to `parse_telegram_payload`.
        """
        try:
            await self.bot.delete_webhook()
        except TelegramError as exc:
            raise _channel_error(exc, "deleteWebhook") from exc
        offset: int | None = None
        delay = 1.0
        while True:
            try:
                updates = await self.bot.get_updates(
                    offset=offset, timeout=poll_timeout, allowed_updates=list(ALLOWED_UPDATES)
                )
            except TelegramError as exc:
                error = _channel_error(exc, "getUpdates")
                if not isinstance(error, TransientChannelError):
                    raise error from exc
                wait = error.retry_after if error.retry_after is not None else delay
                log.warning("telegram getUpdates failed (%s); retrying in %.1f s", error, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, 30.0)
                continue
            delay = 1.0
            for update in updates:
                offset = update.update_id + 1
                try:
                    await handler(update.to_dict())
                except Exception as exc:  # keep polling: one bad update must not stop the bot
                    log.error(
                        "telegram update %s: handler raised %s",
                        update.update_id,
                        type(exc).__name__,
                    )


TOGGLE = "t:"  # callback data of a multi-select option: "t:3" ticks or unticks option 3
TICK = "✓ "  # shown before a ticked option's label


def keyboard_for(rendered: Rendered) -> InlineKeyboardMarkup:
    """The inline keyboard: one button per row; a multi-select's options tick on press and
    its None and Done buttons share the last row (Done sends the ticked numbers)."""
    if not rendered.multi:
        return InlineKeyboardMarkup(
            [[InlineKeyboardButton(b.label, callback_data=b.data)] for b in rendered.buttons]
        )
    *options, none, done = rendered.buttons
    rows = [[InlineKeyboardButton(b.label, callback_data=TOGGLE + b.data)] for b in options]
    last = [InlineKeyboardButton(b.label, callback_data=b.data) for b in (none, done)]
    return InlineKeyboardMarkup([*rows, last])


def toggled(markup: Any, data: str) -> InlineKeyboardMarkup | None:
    """The keyboard after a press on option `data` ("t:3"): that option ticked or unticked,
    and Done's callback data the ticked numbers ("1 3", or "done" when none is ticked).
    None when `markup` is not a multi-select keyboard of ours."""
    rows = markup.get("inline_keyboard") if isinstance(markup, Mapping) else None
    if not isinstance(rows, list) or len(rows) < 2 or not all(isinstance(r, list) for r in rows):
        return None
    buttons = [b for row in rows for b in row]
    if not all(isinstance(b, Mapping) and isinstance(b.get("callback_data"), str) for b in buttons):
        return None
    picked: list[str] = []
    options = []
    for row in rows[:-1]:
        new_row = []
        for b in row:
            label, key = str(b.get("text", "")), str(b["callback_data"])
            if not key.startswith(TOGGLE):
                return None
            ticked = label.startswith(TICK)
            if key == data:
                ticked = not ticked
            plain = label.removeprefix(TICK)
            new_row.append(
                InlineKeyboardButton(TICK + plain if ticked else plain, callback_data=key)
            )
            if ticked:
                picked.append(key.removeprefix(TOGGLE))
        options.append(new_row)
    if len(rows[-1]) != 2:
        return None
    none, done = rows[-1]
    last = [
        InlineKeyboardButton(str(none.get("text", "")), callback_data=str(none["callback_data"])),
        InlineKeyboardButton(
            str(done.get("text", "")), callback_data=" ".join(picked) or DONE_EMPTY
        ),
    ]
    return InlineKeyboardMarkup([*options, last])


def _request(timeout: float, pool: int) -> HTTPXRequest:
    return HTTPXRequest(
        connection_pool_size=pool,
        read_timeout=timeout,
        write_timeout=timeout,
        connect_timeout=timeout,
        pool_timeout=timeout,
    )


def _channel_error(exc: TelegramError, method: str) -> ChannelError:
    """Map a python-telegram-bot error to a transient or permanent channel error."""
    description = f"Telegram {method}: {exc.message}"
    if isinstance(exc, RetryAfter):
        wait = exc.retry_after
        seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
        return TransientChannelError(description, code="429", retry_after=seconds)
    if isinstance(exc, Forbidden):
        unreachable = any(word in exc.message.lower() for word in _UNREACHABLE)
        return PermanentChannelError(description, code="403", opt_out=unreachable)
    if isinstance(exc, BadRequest):  # a NetworkError subclass: check it first
        return PermanentChannelError(description, code="400")
    if isinstance(exc, TimedOut):
        return TransientChannelError(description, code="timeout")
    if isinstance(exc, NetworkError):  # 5xx, connection refused/reset, bad gateway
        return TransientChannelError(description, code="network")
    return PermanentChannelError(description, code=type(exc).__name__)


def verify_telegram_secret(secret_header: str | None, expected_secret: str) -> None:
    """Raise `SignatureError` unless the secret-token header equals `expected_secret`."""
    if not expected_secret:
        raise ConfigError("set TELEGRAM_WEBHOOK_SECRET in the environment")
    if secret_header is None:
        raise SignatureError(f"missing {SECRET_HEADER} header", code="secret_missing")
    if not hmac.compare_digest(secret_header.encode(), expected_secret.encode()):
        raise SignatureError(f"{SECRET_HEADER} does not match", code="secret_invalid")


def parse_telegram_update(
    payload: Mapping[str, Any],
    secret_header: str | None,
    expected_secret: str,
    *,
    now: datetime | None = None,
) -> Inbound | None:
    """Verify a webhook's secret and parse its update; None for updates carebridge ignores."""
    verify_telegram_secret(secret_header, expected_secret)
    return parse_telegram_payload(payload, now=now)


def parse_telegram_payload(
    payload: Mapping[str, Any], *, now: datetime | None = None
) -> Inbound | None:
    """Parse an already trusted update (from `poll`, or after `verify_telegram_secret`).

    Handles private-chat messages (text or caption; media alone gives text "") and callback
    queries (the button's data becomes the text). `provider_id` is the update_id. Returns
    None for everything else (edits, group chats, membership changes, ...).
    """
    try:
        update = Update.de_json(dict(payload), None)
    except (KeyError, TypeError, ValueError) as exc:
        raise ChannelError("Telegram update is malformed", code="malformed") from exc
    query = update.callback_query
    if query is not None:
        chat = query.message.chat if query.message is not None else None
        if chat is not None and chat.type != "private":
            return None
        return Inbound(
            channel="telegram",
            address=str(chat.id if chat is not None else query.from_user.id),
            text=(query.data or "").strip(),
            received_at=now or datetime.now(UTC),
            provider_id=str(update.update_id),
            language_hint=query.from_user.language_code,
        )
    message = update.message
    if message is None or message.chat.type != "private":
        return None
    sender = message.from_user
    return Inbound(
        channel="telegram",
        address=str(message.chat.id),
        text=_keyword(message.text or message.caption or ""),
        received_at=now or message.date,
        provider_id=str(update.update_id),
        language_hint=sender.language_code if sender is not None else None,
    )


def _keyword(text: str) -> str:
    """`/stop` or `/stop@CareBridgeBot` -> `STOP`; other texts unchanged (stripped)."""
    text = text.strip()
    if not text.startswith("/"):
        return text
    command = text[1:].split(maxsplit=1)[0].split("@", 1)[0].lower() if len(text) > 1 else ""
    return command.upper() if command in COMMAND_KEYWORDS else text


def callback_query_id(payload: Mapping[str, Any]) -> str | None:
    """The callback query's id in an update, for `TelegramChannel.answer_callback`; else None."""
    query = payload.get("callback_query")
    if isinstance(query, Mapping) and isinstance(query.get("id"), str):
        return str(query["id"])
    return None
