"""The outbox dispatcher: claim due rows, send them through their channel, record the outcome.

Rate-limited per channel (and per chat where a provider requires it), retried with exponential
backoff and jitter, final statuses recorded. A broadcast row is checked again just before it goes
(kill switch, opt-out, consent, the recipient's quiet hours). Imports bot.store, bot.messages,
bot.errors, bot.schedules (pure) and the `Channel` protocol shape (duck-typed: anything with
`name` and `async send(Outbound) -> str`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from aiolimiter import AsyncLimiter

from bot.errors import ChannelError, PermanentChannelError, TransientChannelError
from bot.messages import Outbound
from bot.schedules import QuietHours, defer_quiet, parse_clock, zone
from bot.store import BULK_KINDS, BroadcastStatus, OutboxRow, OutboxStatus, Store

log = logging.getLogger(__name__)

WHATSAPP_WINDOW = timedelta(hours=24)


class Sender(Protocol):
    name: str

    async def send(self, msg: Outbound) -> str: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; `retry_after` from the provider wins when longer."""

    base_s: float = 2.0
    cap_s: float = 300.0
    max_attempts: int = 12  # about 30 minutes of retries at the defaults

    def delay(self, attempts: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1))
        jittered = backoff / 2 + rng.uniform(0, backoff / 2)
        return float(max(jittered, retry_after or 0.0))


@dataclass
class Dispatcher:
    """Moves outbox rows to providers; one `run_once` is one idempotent sweep."""

    store: Store
    senders: Mapping[str, Sender]
    rates: Mapping[str, float] = field(default_factory=dict)  # messages per second per channel
    per_chat_rates: Mapping[str, float] = field(default_factory=lambda: {"telegram": 1.0})
    policy: RetryPolicy = RetryPolicy()
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    batch: int = 50
    notice_text: str = (
        "You have a new message from your care team. Reply to this message to read it."
    )
    rng: random.Random = field(default_factory=random.Random)
    _limiters: dict[str, AsyncLimiter] = field(default_factory=dict, init=False)
    _last_chat_send: dict[tuple[str, str], float] = field(default_factory=dict, init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def wake(self) -> None:
        """Sweep now rather than at the next idle tick (call from the event loop)."""
        self._wake.set()

    def _limiter(self, channel: str) -> AsyncLimiter:
        if channel not in self._limiters:
            rate = self.rates.get(channel, 1.0)
            self._limiters[channel] = AsyncLimiter(max(1.0, rate), 1.0)
        return self._limiters[channel]

    def _claim_size(self, channel: str) -> int:
        """About one second of sending: rows never wait long in `sending` behind the limiter."""
        return max(1, min(self.batch, math.ceil(self.rates.get(channel, 1.0))))

    async def run_once(self) -> int:
        """Claim due rows per channel and send them; returns how many rows were attempted."""
        now = self.clock()
        rows = [
            row
            for channel in self.senders
            for row in self.store.claim_outbox(now, self._claim_size(channel), channel)
        ]
        if not rows:
            return 0
        by_chat: dict[tuple[str, str], list[OutboxRow]] = {}
        for row in rows:
            by_chat.setdefault((row.outbound.channel, row.outbound.address), []).append(row)
        # Chats run concurrently; messages within one chat go in order.
        await asyncio.gather(*(self._send_chat(chat_rows) for chat_rows in by_chat.values()))
        return len(rows)

    async def run_forever(self, idle_s: float = 0.2, stop: asyncio.Event | None = None) -> None:
        """Sweep until `stop` is set; sleep `idle_s` when nothing was due."""
        stop = stop or asyncio.Event()
        self._stop = stop
        self.store.requeue_stuck(self.clock(), timedelta(minutes=5))
        while not stop.is_set():
            try:
                sent = await self.run_once()
            except Exception:  # keep dispatching; the row stays claimed and is requeued
                log.exception("dispatcher sweep failed")
                sent = 0
            if not sent:
                await self._idle(idle_s, stop)

    async def _idle(self, idle_s: float, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            self._wake.clear()

    async def _send_chat(self, rows: list[OutboxRow]) -> None:
        for row in rows:
            if self._stop.is_set():  # shutting down: hand the row back, due at once
                self.store.mark_retry(row.id, "shutdown", self.clock())
                continue
            await self._send_one(row)

    async def _pace_chat(self, channel: str, address: str) -> None:
        rate = self.per_chat_rates.get(channel)
        if not rate:
            return
        loop = asyncio.get_running_loop()
        key = (channel, address)
        wait = self._last_chat_send.get(key, -1e9) + 1.0 / rate - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_chat_send[key] = loop.time()

    def _outside_window(self, msg: Outbound) -> bool:
        """WhatsApp allows free text only within 24 hours of the patient's last message."""
        if msg.channel != "whatsapp" or msg.contact_id is None:
            return False
        contact = self.store.contact_row(msg.contact_id)
        last = contact.last_inbound_at if contact else None
        return last is None or self.clock() - last > WHATSAPP_WINDOW

    def _prepare(self, msg: Outbound) -> Outbound:
        """Outside the WhatsApp window a message may only go as an approved template."""
        if self._outside_window(msg):
            return replace(msg, meta={**msg.meta, "template": "1"})
        return msg

    def _hold_for_reply(self, row: OutboxRow) -> bool:
        """A clinician's words outside the WhatsApp window wait: an approved template tells the
        patient there is a message and to reply; their reply releases it (app.handle)."""
        msg = row.outbound
        if msg.kind != "clinician" or not self._outside_window(msg):
            return False
        self.store.hold_outbox(row.id)
        notice = Outbound(
            msg.channel,
            msg.address,
            self.notice_text,
            contact_id=msg.contact_id,
            kind="notice",
            meta={"template": "1"},
        )
        self.store.enqueue(notice, self.clock())
        log.info("outbox=%s held until the patient replies (whatsapp window)", row.id)
        return True

    async def _send_one(self, row: OutboxRow) -> None:
        msg = row.outbound
        sender = self.senders.get(msg.channel)
        if sender is None:
            self.store.mark_failed(row.id, OutboxStatus.FAILED, "no_channel", self.clock())
            log.error("outbox=%s channel=%s not configured", row.id, msg.channel)
            return
        if self._hold_for_reply(row):
            return
        await self._pace_chat(msg.channel, msg.address)
        async with self._limiter(msg.channel):
            if msg.kind in BULK_KINDS and not self._cleared(row):
                return
            try:
                provider_id = await sender.send(self._prepare(msg))
            except TransientChannelError as exc:
                self._retry(row, exc)
                return
            except PermanentChannelError as exc:
                self._give_up(row, exc)
                return
            except ChannelError as exc:
                self._retry(row, TransientChannelError(str(exc), code=exc.code))
                return
        self.store.mark_sent(row.id, provider_id, self.clock())
        log.info("outbox=%s sent channel=%s attempts=%s", row.id, msg.channel, row.attempts)

    def _cleared(self, row: OutboxRow) -> bool:
        """A broadcast row, just before it goes: never after the kill switch, never to a contact
        who opted out or withdrew consent meanwhile, never in the recipient's quiet hours (it
        waits for them to end). False: not sent now (the row says why)."""
        now = self.clock()
        gate = self.store.outbox_gate(row.id)
        if gate is None or gate.status is not OutboxStatus.SENDING:
            return False  # cancelled by the kill switch while it was claimed
        reason = None
        if gate.broadcast_status is BroadcastStatus.CANCELLED:
            reason = "cancelled"
        elif gate.opted_out:
            reason = "opted_out"
        elif gate.consent_broadcast is not True:
            reason = "no_consent"
        if reason is not None:
            self.store.cancel_outbox(row.id, reason, now)
            log.info("outbox=%s not sent: %s", row.id, reason)
            return False
        release = _quiet_release(row.outbound.meta, now)
        if release > now:
            self.store.defer_outbox(row.id, release)
            log.info("outbox=%s deferred to the end of quiet hours", row.id)
            return False
        return True

    def _retry(self, row: OutboxRow, exc: TransientChannelError) -> None:
        if row.attempts >= self.policy.max_attempts:
            self.store.mark_failed(row.id, OutboxStatus.FAILED, exc.code or "retries", self.clock())
            log.warning("outbox=%s failed after %s attempts", row.id, row.attempts)
            return
        delay = self.policy.delay(row.attempts, exc.retry_after, self.rng)
        self.store.mark_retry(
            row.id, exc.code or "transient", self.clock() + timedelta(seconds=delay)
        )
        log.info("outbox=%s retry in %.1fs code=%s", row.id, delay, exc.code)

    def _give_up(self, row: OutboxRow, exc: PermanentChannelError) -> None:
        now = self.clock()
        status = OutboxStatus.UNDELIVERED if exc.code == "63016" else OutboxStatus.FAILED
        self.store.mark_failed(row.id, status, exc.code or "permanent", now)
        if exc.opt_out and row.outbound.contact_id is not None:
            self.store.update_contact(row.outbound.contact_id, opted_out=True, now=now)
        log.warning("outbox=%s %s code=%s opt_out=%s", row.id, status, exc.code, exc.opt_out)


def _quiet_release(meta: Mapping[str, str], now: datetime) -> datetime:
    """When a row carrying `quiet` ("21:00-08:00") and `tz` may go: now, or the end of the
    recipient's quiet hours (bot.broadcast writes both; urgent broadcasts carry no `quiet`)."""
    quiet, tz = meta.get("quiet"), meta.get("tz")
    if not quiet or not tz:
        return now
    try:
        start, end = (parse_clock(part) for part in quiet.split("-", 1))
        return defer_quiet(now, zone(tz), QuietHours(start, end))
    except ValueError:  # written by bot.broadcast, so never expected; send rather than stall
        log.warning("outbox meta has unreadable quiet hours; sending")
        return now
