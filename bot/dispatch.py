"""The outbox dispatcher: lease due rows, send them through their channel, record the outcomes.

Per channel, two lanes run as tasks of their own: the emergency lane (claimed first, full rate)
and everything else (replies, reminders, broadcasts; a share of the rate, leaving headroom for
emergencies). A slow or hanging provider stalls only its own channel: every send has a timeout
shorter than the lease; a provider's Retry-After pauses its channel until then. Store work is
batched (one claim per sweep of many rows, one result transaction for every outcome that
finished meanwhile) and runs off the event loop, on the store's owner thread when one is given.
Delivery is at-least-once: docs/channels.md, Delivery.
Imports bot.store, bot.messages, bot.errors, bot.schedules (pure) and the `Channel` protocol
shape (duck-typed: anything with `name` and `async send(Outbound) -> str`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiolimiter import AsyncLimiter

from bot.errors import ChannelError, PermanentChannelError, TransientChannelError
from bot.messages import Outbound
from bot.schedules import QuietHours, defer_quiet, parse_clock, zone
from bot.store import BULK_KINDS, BroadcastStatus, Lane, OutboxRow, OutboxStatus, Store

log = logging.getLogger(__name__)

WHATSAPP_WINDOW = timedelta(hours=24)

Outcome = Callable[[], None]  # one store write, run inside the batch's result transaction
StoreRunner = Callable[..., Awaitable[Any]]


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


@dataclass(frozen=True)
class DeliveryPolicy:
    """Leases, timeouts and lanes (config `delivery`; docs/channels.md, Delivery)."""

    lease_s: float = 15.0  # a claimed row is claimed again this long after a crash
    send_timeout_s: float = 5.0  # one provider call; must be well under the lease
    order_hold_s: float = 20.0  # the longest a failing row holds its contact's later rows
    headroom: float = 0.2  # share of each channel's rate kept for the emergency lane
    emergency_in_flight: int = 10  # emergency rows one channel sends at once
    max_in_flight: int = 16  # other rows one channel sends at once (each holds a connection)
    admit_wait_s: float = 1.0  # longest a new message waits for a channel that is behind

    def __post_init__(self) -> None:
        if self.send_timeout_s * 2 > self.lease_s:
            raise ValueError("delivery.send_timeout_s must be at most half of delivery.lease_s")


async def _to_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


@dataclass
class Dispatcher:
    """Moves outbox rows to providers. `run_forever` runs the lanes concurrently; `run_once`
    is one sweep that sends what is due in turn (CLIs, tests, benchmarks)."""

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
    delivery: DeliveryPolicy = DeliveryPolicy()
    run_store: StoreRunner = _to_thread  # where store calls run (the store's owner thread)
    _limiters: dict[tuple[str, bool], AsyncLimiter] = field(default_factory=dict, init=False)
    _share: int = field(default=1, init=False)  # dispatchers sending on the same accounts
    _chat_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict, init=False)
    _last_chat_send: dict[tuple[str, str], float] = field(default_factory=dict, init=False)
    _wakes: list[asyncio.Event] = field(default_factory=list, init=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _outcomes: list[Outcome] = field(default_factory=list, init=False)
    _recorded: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False)
    _caught_up: dict[str, asyncio.Event] = field(default_factory=dict, init=False)
    _failing: dict[tuple[str, str, Lane], tuple[int, datetime]] = field(
        default_factory=dict, init=False
    )
    _paused: dict[str, datetime] = field(default_factory=dict, init=False)  # per Retry-After

    # -- running -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while every lane and the result writer are alive (for /readyz)."""
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    def share(self, dispatchers: int) -> None:
        """With `dispatchers` processes sending on the same provider accounts (`carebridge
        worker` x M), keep 1/M of each channel's rate, so together they stay within it."""
        dispatchers = max(1, dispatchers)
        if dispatchers != self._share:
            self._share = dispatchers
            self._limiters.clear()  # rebuilt at the new rate on the next send
            log.info("dispatcher: sending at 1/%d of each channel's rate", dispatchers)

    def wake(self) -> None:
        """Claim now rather than at the next idle tick (call from the event loop)."""
        for event in self._wakes:
            event.set()

    async def admit(self, channel: str) -> None:
        """Back-pressure for the webhooks: while `channel`'s ordinary lane has more due rows
        than it can send although its rate limit would allow more (the process is short of
        CPU), a new message waits for it to catch up, at most `admit_wait_s`; so replies
        never fall far behind the messages the server accepts. A channel held back only by
        its provider's rate is not behind."""
        caught_up = self._caught_up.get(channel)
        if caught_up is None or caught_up.is_set() or not self.running:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(caught_up.wait(), self.delivery.admit_wait_s)

    async def run_forever(self, idle_s: float = 0.5, stop: asyncio.Event | None = None) -> None:
        """Run every channel's two lanes and the result writer until `stop` is set."""
        stop = stop or asyncio.Event()
        self._stop = stop
        lanes = [
            asyncio.create_task(self._lane(channel, urgent, idle_s), name=f"{channel}-{urgent}")
            for channel in self.senders
            for urgent in (True, False)
        ]
        writer = asyncio.create_task(self._writer(), name="outbox-writer")
        self._tasks = [*lanes, writer]
        try:
            await stop.wait()
        finally:
            self._stop.set()
            self.wake()
            await asyncio.gather(*lanes, return_exceptions=True)
            self._recorded.set()
            await asyncio.gather(writer, return_exceptions=True)
            self._tasks = []

    async def run_once(self) -> int:
        """Claim what is due on every channel (emergency lane first), send it, record the
        outcomes; returns how many rows were attempted."""
        now = self.clock()
        rows: list[OutboxRow] = []
        for channel in self.senders:
            for urgent in (True, False):
                rows += await self.run_store(self._claim, channel, urgent, now, self.batch)
        for row in rows:  # in turn: a sweep is a deterministic order of sends
            await self._deliver(row)
        await self._flush()
        return len(rows)

    def _claim(self, channel: str, urgent: bool, now: datetime, limit: int) -> list[OutboxRow]:
        return self.store.claim_outbox(
            now,
            limit,
            channel,
            lease=timedelta(seconds=self.delivery.lease_s),
            urgent=urgent,
            order_hold=timedelta(seconds=self.delivery.order_hold_s),
        )

    def _in_flight(self, channel: str, urgent: bool) -> int:
        """About one second of sending: rows never wait long behind the limiter."""
        if urgent:
            return self.delivery.emergency_in_flight
        cap = min(self.batch, self.delivery.max_in_flight)
        return max(1, min(cap, math.ceil(self.rates.get(channel, 1.0))))

    async def _lane(self, channel: str, urgent: bool, idle_s: float) -> None:
        """Keep up to `_in_flight` rows of one lane of one channel in flight."""
        wake = asyncio.Event()
        self._wakes.append(wake)
        in_flight: set[asyncio.Task[None]] = set()
        cap = self._in_flight(channel, urgent)
        caught_up = asyncio.Event()
        caught_up.set()
        if not urgent:
            self._caught_up[channel] = caught_up
        while not self._stop.is_set():
            pause = self._pause_left(channel)
            if pause > 0:  # the provider asked for no sends until then: claim nothing
                caught_up.set()  # held by the provider, not short of CPU
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), pause)
                continue
            free = cap - len(in_flight)
            rows: list[OutboxRow] = []
            if free > 0:
                wake.clear()
                try:
                    rows = await self.run_store(self._claim, channel, urgent, self.clock(), free)
                except Exception:  # keep dispatching; claimed rows come back with their lease
                    log.exception("outbox claim failed channel=%s", channel)
            if free > 0 and (len(rows) < free or not self._limiter(channel, False).has_capacity()):
                caught_up.set()  # drained, or held by the provider's rate: waiting helps nothing
            elif free > 0:
                caught_up.clear()  # more due than it can send, with the rate to spare: CPU-bound
            for row in rows:
                task = asyncio.create_task(self._deliver(row))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if rows and len(rows) == free:
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                continue
            # drained: wait for new work (a wake), a finished row, or the idle tick
            waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(self._stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _writer(self) -> None:
        """Record every outcome that finished since the last write in one transaction."""
        while True:
            await self._recorded.wait()
            self._recorded.clear()
            if self._outcomes:
                await self._flush()
                self.wake()  # a contact's next row may be claimable now
            if self._stop.is_set() and not self._outcomes and self._lanes_done():
                return

    def _lanes_done(self) -> bool:
        return all(t.done() for t in self._tasks if t.get_name() != "outbox-writer")

    async def _flush(self) -> None:
        batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        try:
            await self.run_store(self._apply, batch)
        except Exception:  # the rows keep their leases and are sent again (at-least-once)
            log.exception("recording %d outbox outcomes failed", len(batch))

    def _apply(self, batch: list[Outcome]) -> None:
        with self.store.transaction():
            for outcome in batch:
                outcome()

    def _record(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        self._recorded.set()

    # -- one row ---------------------------------------------------------------------------

    def _limiter(self, channel: str, urgent: bool) -> AsyncLimiter:
        """The channel's whole rate for the emergency lane; the rest share all but the
        headroom of it (and also take from the whole, so together they never exceed it)."""
        key = (channel, urgent)
        if key not in self._limiters:
            whole = self.rates.get(channel, 1.0) / self._share
            rate = whole * (1.0 if urgent else 1 - self.delivery.headroom)
            burst = max(1.0, rate)
            self._limiters[key] = AsyncLimiter(burst, burst / rate)
        return self._limiters[key]

    async def _deliver(self, row: OutboxRow) -> None:
        msg = row.outbound
        urgent = row.lane is Lane.EMERGENCY
        lock = self._chat_locks.setdefault((msg.channel, msg.address), asyncio.Lock())
        async with lock:  # one chat's messages go one at a time, in claim order
            try:
                if self._behind_failure(row):
                    self._record(lambda: self.store.release_outbox(row.id, self.clock()))
                else:
                    await self._send_one(row, urgent)
            except Exception:  # never lose the lane task; the row comes back with its lease
                log.exception("outbox=%s delivery failed", row.id)
        if len(self._chat_locks) > 10_000 and not lock.locked():
            self._chat_locks.pop((msg.channel, msg.address), None)

    def _behind_failure(self, row: OutboxRow) -> bool:
        """True when an earlier row of this chat in the same or a more urgent lane has just
        failed and waits for a retry: this one goes back unsent, so the chat's messages keep
        their order (for at most the order hold, as in the claim). An emergency row is never
        held behind an ordinary one."""
        key = (row.outbound.channel, row.outbound.address, row.lane)
        failing = self._failing.get(key)
        if failing is None or row.outbound.contact_id is None:
            return False
        failed_id, created_at = failing
        # the claim's rule exactly (the failing row's age, not its last failure): were the two
        # to differ, the row handed back would be claimed again at once, and again, spinning
        hold = timedelta(seconds=self.delivery.order_hold_s)
        return failed_id < row.id and self.clock() - created_at <= hold

    def _note(self, row: OutboxRow, failed: bool) -> None:
        key = (row.outbound.channel, row.outbound.address, row.lane)
        if failed:
            self._failing[key] = (row.id, row.created_at)
        elif key in self._failing and self._failing[key][0] == row.id:
            del self._failing[key]

    async def _send_one(self, row: OutboxRow, urgent: bool) -> None:
        msg = row.outbound
        sender = self.senders.get(msg.channel)
        if sender is None:
            self._record(lambda: self._fail(row, OutboxStatus.FAILED, "no_channel"))
            log.error("outbox=%s channel=%s not configured", row.id, msg.channel)
            return
        if msg.channel == "whatsapp" and await self.run_store(self._hold_for_reply, row):
            return
        await self._pace_chat(msg.channel, msg.address)
        if not urgent:
            await self._limiter(msg.channel, False).acquire()
        await self._limiter(msg.channel, True).acquire()
        if msg.kind in BULK_KINDS and not await self.run_store(self._cleared, row):
            return
        if self._stop.is_set() and not urgent:  # shutting down: hand the row back, due at once
            self._record(lambda: self.store.mark_retry(row.id, "shutdown", self.clock()))
            return
        pause = self._pause_left(msg.channel)
        if pause > 0:  # a 429 came back while this row waited: hand it back, due after it
            due = self.clock() + timedelta(seconds=pause)
            self._record(lambda: self.store.release_outbox(row.id, due))
            return
        prepared = await self.run_store(self._prepare, msg) if msg.channel == "whatsapp" else msg
        try:
            provider_id = await asyncio.wait_for(
                sender.send(prepared), timeout=self.delivery.send_timeout_s
            )
        except TimeoutError:
            self._retry(row, TransientChannelError("send timed out", code="timeout"))
            return
        except TransientChannelError as exc:
            self._retry(row, exc)
            return
        except PermanentChannelError as exc:
            self._give_up(row, exc)
            return
        except ChannelError as exc:
            self._retry(row, TransientChannelError(str(exc), code=exc.code))
            return
        now = self.clock()
        self._note(row, failed=False)
        self._record(lambda: self.store.mark_sent(row.id, provider_id, now))
        log.info(
            "outbox=%s sent channel=%s attempts=%s lane=%s",
            row.id,
            msg.channel,
            row.attempts,
            "emergency" if urgent else "ordinary",
        )

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

    def _pause_left(self, channel: str) -> float:
        """Seconds until `channel`'s provider accepts sends again (its last Retry-After)."""
        until = self._paused.get(channel)
        if until is None:
            return 0.0
        left = (until - self.clock()).total_seconds()
        if left <= 0:
            del self._paused[channel]
            return 0.0
        return left

    # -- store-side checks (run on the store's thread) ---------------------------------------

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
        notice = Outbound(
            msg.channel,
            msg.address,
            self.notice_text,
            contact_id=msg.contact_id,
            kind="notice",
            meta={"template": "1"},
        )
        with self.store.transaction():
            self.store.hold_outbox(row.id)
            self.store.enqueue(notice, self.clock(), lane=row.lane)
        log.info("outbox=%s held until the patient replies (whatsapp window)", row.id)
        return True

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

    # -- outcomes --------------------------------------------------------------------------

    def _fail(self, row: OutboxRow, status: OutboxStatus, error: str) -> None:
        self.store.mark_failed(row.id, status, error, self.clock())

    def _retry(self, row: OutboxRow, exc: TransientChannelError) -> None:
        if exc.retry_after:  # the provider said when: nothing goes to it before then
            until = self.clock() + timedelta(seconds=exc.retry_after)
            channel = row.outbound.channel
            self._paused[channel] = max(self._paused.get(channel, until), until)
        self._note(row, failed=row.attempts < self.policy.max_attempts)
        if row.attempts >= self.policy.max_attempts:
            self._record(lambda: self._fail(row, OutboxStatus.FAILED, exc.code or "retries"))
            log.warning("outbox=%s failed after %s attempts", row.id, row.attempts)
            return
        delay = self.policy.delay(row.attempts, exc.retry_after, self.rng)
        due = self.clock() + timedelta(seconds=delay)
        self._record(lambda: self.store.mark_retry(row.id, exc.code or "transient", due))
        log.info("outbox=%s retry in %.1fs code=%s", row.id, delay, exc.code)

    def _give_up(self, row: OutboxRow, exc: PermanentChannelError) -> None:
        self._note(row, failed=False)
        status = OutboxStatus.UNDELIVERED if exc.code == "63016" else OutboxStatus.FAILED
        contact_id = row.outbound.contact_id

        def outcome() -> None:
            now = self.clock()
            self.store.mark_failed(row.id, status, exc.code or "permanent", now)
            if exc.opt_out and contact_id is not None:
                self.store.update_contact(contact_id, opted_out=True, now=now)

        self._record(outcome)
        log.warning("outbox=%s %s code=%s opt_out=%s", row.id, status, exc.code, exc.opt_out)


def _quiet_release(meta: Mapping[str, str], now: datetime) -> datetime:
    """When a row carrying `quiet` ("21:00-08:00") and `tz` may go: now, or the end of the
    recipient's quiet hours (bot.broadcasts.service writes both; urgent broadcasts carry no
    `quiet`)."""
    quiet, tz = meta.get("quiet"), meta.get("tz")
    if not quiet or not tz:
        return now
    try:
        start, end = (parse_clock(part) for part in quiet.split("-", 1))
        return defer_quiet(now, zone(tz), QuietHours(start, end))
    except ValueError:  # bot.broadcasts.service wrote it: never expected; send, do not stall
        log.warning("outbox meta has unreadable quiet hours; sending")
        return now
