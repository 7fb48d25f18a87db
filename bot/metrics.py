"""Prometheus metrics (GET /metrics, docs/operations.md): counters and histograms the web app
feeds (inbound messages, sends per channel and result, NLU latency, sweep durations, time to
claim a ticket), and gauges read from the store at each scrape (outbox depth and oldest age per
channel and lane, open tickets and the longest wait). Labels carry channels, lanes, statuses and
priorities, never text or numbers. Imports prometheus_client and bot (store, errors, messages).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.errors import PermanentChannelError, TransientChannelError
from bot.messages import Outbound
from bot.store import Lane, Store
from bot.store.api import ApiStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LANES = {
    int(Lane.EMERGENCY): "emergency",
    int(Lane.CONVERSATION): "conversation",
    int(Lane.BULK): "bulk",
}
T = TypeVar("T")


class StoreCollector(Collector):
    """Gauges computed from the store at scrape time (every process sees the same numbers)."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store: ApiStore = store  # type: ignore[assignment]
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        depth = GaugeMetricFamily(
            "carebridge_outbox_queue_depth",
            "Outbox rows queued or being sent, per channel and lane",
            labels=["channel", "lane"],
        )
        age = GaugeMetricFamily(
            "carebridge_outbox_oldest_age_seconds",
            "Age of the oldest outbox row queued or being sent, per channel and lane",
            labels=["channel", "lane"],
        )
        for stat in self.store.outbox_queue_stats():
            lane = LANES.get(stat.priority, str(stat.priority))
            depth.add_metric([stat.channel, lane], stat.depth)
            oldest = stat.oldest_created_at
            age.add_metric(
                [stat.channel, lane], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
            )
        tickets = GaugeMetricFamily(
            "carebridge_escalations_open",
            "Open clinician tickets, per status and priority",
            labels=["status", "priority"],
        )
        wait = GaugeMetricFamily(
            "carebridge_escalation_oldest_wait_seconds",
            "How long the oldest unclaimed ticket has waited, per priority",
            labels=["priority"],
        )
        for t in self.store.open_ticket_stats():
            priority = t.priority or "unplanned"
            tickets.add_metric([t.status, priority], t.count)
            if t.status == "waiting" and t.oldest_opened_at is not None:
                wait.add_metric([priority], max(0.0, (now - t.oldest_opened_at).total_seconds()))
        yield depth
        yield age
        yield tickets
        yield wait


class Metrics:
    """One registry per app (so several apps in one test process never clash)."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.inbound = Counter(
            "carebridge_inbound_messages",
            "Inbound patient messages, per channel and outcome (handled, duplicate, store_error)",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.sends = Counter(
            "carebridge_outbox_sends",
            "Provider calls for outbox rows, per channel and result (sent, retry, failed, timeout)",
            ["channel", "result"],
            registry=self.registry,
        )
        self.nlu = Histogram(
            "carebridge_nlu_latency_seconds",
            "Time to interpret one message",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.sweeps = Histogram(
            "carebridge_sweep_duration_seconds",
            "Duration of one run of a scheduled sweep",
            ["sweep"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.claim_wait = Histogram(
            "carebridge_escalation_claim_wait_seconds",
            "Time from a ticket's opening to its claim by a clinician, per priority",
            ["priority"],
            buckets=(30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400),
            registry=self.registry,
        )
        self.registry.register(StoreCollector(store, clock))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- feeding -------------------------------------------------------------------------

    def observe_event(self, event: str, data: Mapping[str, Any]) -> None:
        """An outgoing event (bot.events_out observers): time to claim a ticket."""
        if event == "escalation.claimed" and isinstance(data.get("wait_s"), int | float):
            self.claim_wait.labels(str(data.get("priority") or "unplanned")).observe(
                max(0.0, float(data["wait_s"]))
            )

    def timed(self, sweep: str, fn: Callable[[datetime], T]) -> Callable[[datetime], T]:
        """`fn` (a sweep taking `now`), timed into carebridge_sweep_duration_seconds."""
        histogram = self.sweeps.labels(sweep)

        @functools.wraps(fn)  # keeps fn's name: the scheduler leases each sweep by its name
        def run(now: datetime) -> T:
            with histogram.time():
                return fn(now)

        return run

    def senders(self, senders: Mapping[str, Any]) -> CountingSenders:
        return CountingSenders(senders, self)


class TimedInterpreter:
    """An interpreter whose `interpret` calls are timed; everything else is the wrapped one's."""

    def __init__(self, inner: Any, histogram: Histogram) -> None:
        self._inner = inner
        self._histogram = histogram

    def interpret(self, text: str, expecting: Any, language: str = "en") -> Any:
        start = time.perf_counter()
        try:
            return self._inner.interpret(text, expecting, language)
        finally:
            self._histogram.observe(time.perf_counter() - start)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CountingSender:
    """A sender whose results are counted per channel (the dispatcher sees the same outcomes)."""

    def __init__(self, inner: Any, counter: Counter) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.counter = counter

    async def send(self, msg: Outbound) -> str:
        try:
            result: str = await self.inner.send(msg)
        except TransientChannelError:
            self.counter.labels(self.name, "retry").inc()
            raise
        except PermanentChannelError:
            self.counter.labels(self.name, "failed").inc()
            raise
        except asyncio.CancelledError:  # the dispatcher's send timeout
            self.counter.labels(self.name, "timeout").inc()
            raise
        except Exception:
            self.counter.labels(self.name, "retry").inc()
            raise
        self.counter.labels(self.name, "sent").inc()
        return result


class CountingSenders(Mapping[str, Any]):
    """A live view of the app's senders (channels that fail to start drop out of it) whose
    senders are counted."""

    def __init__(self, senders: Mapping[str, Any], metrics: Metrics) -> None:
        self._senders = senders
        self._metrics = metrics
        self._wrapped: dict[str, tuple[Any, CountingSender]] = {}

    def __getitem__(self, name: str) -> Any:
        inner = self._senders[name]
        cached = self._wrapped.get(name)
        if cached is None or cached[0] is not inner:
            cached = (inner, CountingSender(inner, self._metrics.sends))
            self._wrapped[name] = cached
        return cached[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._senders)

    def __len__(self) -> int:
        return len(self._senders)
