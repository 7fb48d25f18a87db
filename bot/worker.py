"""`carebridge worker`: the outbox dispatcher, the scheduled sweeps (each under its lease in the
store) and the recovery of messages a crashed `serve` left unhandled, without the web app. Any
number may run beside any number of `serve` processes (docs/deploy.md). Optionally answers
`GET /healthz` and `GET /readyz` on a port of its own.

A composition root: may import bot and channels (through bot.app's builders).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from bot.app import CareBridge, build_broadcasts, build_channels, build_dispatcher
from bot.dispatch import Dispatcher, Sender
from bot.errors import ChannelError
from bot.scheduler import SweepScheduler
from bot.store.work import WorkStore

log = logging.getLogger(__name__)

RECOVER_AFTER = timedelta(seconds=30)  # a message unhandled this long lost its serve process
RECOVER_WITHIN = timedelta(hours=1)  # older ones are left alone (and counted in the log)


def process_name(kind: str) -> str:
    """A name unique to this process: kind, host, pid and a random tag (pids are reused)."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def work_store(bridge: CareBridge) -> WorkStore:
    """The bridge's store as the worker processes use it."""
    return cast(WorkStore, bridge.store)


@dataclass
class Heartbeat:
    """Writes this process's heartbeat row every `every_s` (and a last one when it stops)."""

    bridge: CareBridge
    kind: str
    every_s: float
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or process_name(self.kind)

    def beat(self, *, stopped: bool = False) -> None:
        work_store(self.bridge).heartbeat(
            self.name,
            self.kind,
            socket.gethostname(),
            os.getpid(),
            self.bridge.clock(),
            stopped=stopped,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Beat until `stop` is set; a failed beat is logged and the next one tried."""
        while not stop.is_set():
            try:
                await self.bridge.owner.run(self.beat)
            except Exception as exc:  # the database is down: readiness says so elsewhere
                log.warning("heartbeat failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)
        with contextlib.suppress(Exception):
            await self.bridge.owner.run(lambda: self.beat(stopped=True))


class InboxRecovery:
    """A leased sweep: messages recorded but left unhandled for `RECOVER_AFTER` (their `serve`
    process died between recording and committing them; not every provider retries) are
    handled now, oldest first; exactly once, because handling commits only a message still
    unprocessed."""

    def __init__(self, bridge: CareBridge) -> None:
        self.bridge = bridge
        self.recovered = 0

    def sweep(self, now: datetime) -> int:
        rows = self.bridge.owner.call(self.bridge.store.unprocessed_inbound)
        stale = [r for r in rows if r.inbound.received_at <= now - RECOVER_AFTER]
        fresh = [r for r in stale if r.inbound.received_at >= now - RECOVER_WITHIN]
        if len(fresh) < len(stale):
            log.warning("inbox: %d unhandled messages older than 1 h left", len(stale) - len(fresh))
        done = sum(not self.bridge.handle(r.inbound).duplicate for r in fresh)
        if done:
            log.warning("inbox: handled %d messages a crashed process had left", done)
        self.recovered += done
        return done


@dataclass
class Worker:
    """Dispatcher + leased sweeps + heartbeat for one CareBridge, until `stop` is set."""

    bridge: CareBridge
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    senders: dict[str, Sender] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    dispatcher: Dispatcher | None = None
    scheduler: SweepScheduler | None = None
    heartbeat: Heartbeat | None = None
    recovery: InboxRecovery | None = None
    disabled: dict[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        """True while the dispatcher's lanes and the scheduler run."""
        return bool(
            self.dispatcher is not None
            and self.dispatcher.running
            and self.scheduler is not None
            and self.scheduler.running
        )

    @contextlib.asynccontextmanager
    async def started(self) -> AsyncIterator[Worker]:
        """Start the channels, the dispatcher, the sweeps and the heartbeat; stop them all on
        the way out (the dispatcher finishes or hands back what it has in flight)."""
        cfg = self.bridge.config
        if self.senders is None:
            self.senders, self.disabled = build_channels(cfg, self.env)
        self.senders.pop("web", None)  # the simulator's messages live in a serve process
        await _start_senders(self.senders, self.disabled)
        self.dispatcher = build_dispatcher(cfg, self.bridge.store, self.senders, self.bridge.owner)
        off = {**self.disabled, "web": "the simulator is not run by a worker"}
        loop = asyncio.get_running_loop()
        dispatcher = self.dispatcher
        self.heartbeat = Heartbeat(self.bridge, "worker", cfg.processes.heartbeat_s)
        self.recovery = InboxRecovery(self.bridge)
        self.scheduler = SweepScheduler(
            self.bridge,
            also=(
                self.recovery.sweep,
                self.bridge.tickets.sweep_deadlines,
                build_broadcasts(cfg, self.bridge.store, self.bridge.clock, off).sweep,
                self.bridge.privacy.sweep,
            ),
            on_sweep=lambda report: loop.call_soon_threadsafe(dispatcher.wake),
            holder=self.heartbeat.name,
        )
        tasks = [
            asyncio.create_task(
                dispatcher.run_forever(idle_s=cfg.processes.poll_s, stop=self.stop),
                name="dispatcher",
            ),
            asyncio.create_task(self.heartbeat.run(self.stop), name="heartbeat"),
            asyncio.create_task(self._share_rates(), name="rate-share"),
        ]
        self.scheduler.start()
        try:
            yield self
        finally:
            self.scheduler.shutdown()
            self.stop.set()
            for task in tasks:
                with contextlib.suppress(Exception):
                    await task
            for sender in self.senders.values():
                stopper = getattr(sender, "stop", None)
                if stopper is not None:
                    with contextlib.suppress(Exception):
                        await stopper()

    async def _share_rates(self) -> None:
        """Every heartbeat: count the live workers and keep this one's share of each
        channel's rate (`channels.*.rate_per_s` is the provider's limit for all of them)."""
        every = self.bridge.config.processes.heartbeat_s
        while not self.stop.is_set():
            try:
                live = await self.bridge.owner.run(self.live_workers)
                if self.dispatcher is not None:
                    self.dispatcher.share(live)
            except Exception as exc:  # keep the last share; the database may be back soon
                log.warning("counting workers failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), every)

    def live_workers(self) -> int:
        """Workers that sent a heartbeat within 3 heartbeats and have not stopped (>= 1)."""
        cutoff = self.bridge.clock() - timedelta(
            seconds=3 * self.bridge.config.processes.heartbeat_s
        )
        rows = work_store(self.bridge).workers("worker")
        return max(1, sum(1 for w in rows if w.stopped_at is None and w.seen_at >= cutoff))

    async def run(self, on_ready: Callable[[], object] | None = None) -> None:
        """Run until `stop` is set (SIGTERM and SIGINT set it)."""
        async with self.started():
            while not self.running and not self.stop.is_set():
                await asyncio.sleep(0.05)
            if on_ready is not None:
                on_ready()
            await self.stop.wait()


async def _start_senders(senders: dict[str, Sender], disabled: dict[str, str]) -> None:
    for name, sender in list(senders.items()):
        start = getattr(sender, "start", None)
        if start is None:
            continue
        try:
            await start()
        except ChannelError as exc:  # e.g. a bad TELEGRAM_BOT_TOKEN: the others carry on
            log.error("channel %s is off: it cannot start (%s)", name, exc)
            del senders[name]
            disabled[name] = f"cannot start: {exc}"


async def serve_health(worker: Worker, sock: socket.socket) -> None:
    """Answer /healthz and /readyz on `sock` until the worker stops (signals stay the
    worker's: uvicorn does not take them)."""
    import uvicorn

    class Quiet(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server = Quiet(uvicorn.Config(health_app(worker), log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await worker.stop.wait()
    server.should_exit = True
    await task


def health_app(worker: Worker) -> Any:
    """`GET /healthz` (alive) and `GET /readyz` (database writable, dispatcher and sweeps
    running) for a worker, for a supervisor or load balancer to poll."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "kind": "worker"})

    async def readyz(request: Request) -> JSONResponse:
        checks = {"database": "ok", "dispatcher": "ok", "scheduler": "ok"}
        try:
            await asyncio.wait_for(asyncio.to_thread(worker.bridge.store.check_writable), 2.0)
        except Exception as exc:
            checks["database"] = f"not writable: {type(exc).__name__}"
        if worker.dispatcher is None or not worker.dispatcher.running:
            checks["dispatcher"] = "not running"
        if worker.scheduler is None or not worker.scheduler.running:
            checks["scheduler"] = "not running"
        waiting = [k for k, v in checks.items() if v != "ok"]
        body = {"status": "not ready" if waiting else "ready", "checks": checks}
        return JSONResponse(body, status_code=503 if waiting else 200)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz)])
