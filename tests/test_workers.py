"""The pieces of scale-out in one process: sweep leases (one holder at a time, about once per
interval, taken over when a holder dies), heartbeats and queue depth for monitoring, two
schedulers on one database, the recovery of messages a dead `serve` left, and the
`processes.worker` setting. The processes themselves: tests/test_workers_cluster.py.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from checkin_helpers import Clock
from click.testing import CliRunner

from bot.app import CareBridge
from bot.cli import main
from bot.config import Config
from bot.dispatch import Dispatcher
from bot.flow import Library
from bot.messages import Inbound, Outbound
from bot.scheduler import SweepScheduler, sweep_name
from bot.store import Lane, Store
from bot.store.work import WorkStore
from bot.worker import RECOVER_AFTER, InboxRecovery, Worker, work_store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


@pytest.fixture
def store(any_store: Store) -> WorkStore:
    """An empty store on each engine (tests/pg.py), as the worker processes see it."""
    return cast(WorkStore, any_store)


# --- sweep leases -------------------------------------------------------------------------


def test_one_process_holds_a_sweep_and_the_others_wait_until_the_next_interval(
    store: WorkStore,
) -> None:
    assert store.claim_sweep("checkins", "a", T0, LEASE)
    assert not store.claim_sweep("checkins", "b", T0, LEASE)  # a is running it
    assert not store.claim_sweep("checkins", "a", T0, LEASE)  # nor twice by the same holder
    assert store.claim_sweep("broadcasts", "b", T0, LEASE)  # another sweep is free
    store.release_sweep("checkins", "a", T0 + timedelta(seconds=2), T0 + timedelta(seconds=54))
    assert not store.claim_sweep("checkins", "b", T0 + timedelta(seconds=30), LEASE)
    assert store.claim_sweep("checkins", "b", T0 + timedelta(seconds=54), LEASE)
    (lease,) = [x for x in store.sweep_leases() if x.name == "checkins"]
    assert (lease.holder, lease.runs, lease.finished_at) == ("b", 2, None)


def test_a_dead_holders_sweep_is_taken_over_when_its_lease_runs_out(store: WorkStore) -> None:
    assert store.claim_sweep("checkins", "dead", T0, LEASE)  # then kill -9: never released
    assert not store.claim_sweep("checkins", "b", T0 + LEASE - timedelta(seconds=1), LEASE)
    assert store.claim_sweep("checkins", "b", T0 + LEASE, LEASE)
    store.release_sweep("checkins", "dead", T0 + LEASE, T0 + LEASE)  # a late release: ignored
    assert not store.claim_sweep("checkins", "c", T0 + LEASE, LEASE)


def test_many_threads_ticking_at_once_let_exactly_one_run(store: WorkStore) -> None:
    won: list[str] = []
    barrier = threading.Barrier(8)

    def tick(name: str) -> None:
        barrier.wait()
        if store.claim_sweep("checkins", name, T0, LEASE):
            won.append(name)

    threads = [threading.Thread(target=tick, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


# --- monitoring ---------------------------------------------------------------------------


def test_heartbeats_show_the_processes_and_the_queue_shows_each_lane(
    store: WorkStore, any_store: Store
) -> None:
    store.heartbeat("serve:h:1:a", "serve", "h", 1, T0)
    store.heartbeat("worker:h:2:b", "worker", "h", 2, T0)
    store.heartbeat("worker:h:2:b", "worker", "h", 2, T0 + timedelta(seconds=5))
    store.heartbeat("worker:h:3:c", "worker", "h", 3, T0 + timedelta(seconds=6), stopped=True)
    rows = store.workers("worker")
    assert [(w.name, w.seen_at - w.started_at, w.stopped_at is not None) for w in rows] == [
        ("worker:h:3:c", timedelta(0), True),
        ("worker:h:2:b", timedelta(seconds=5), False),
    ]
    store.heartbeat("serve:h:9:z", "serve", "h", 9, T0 + timedelta(days=2))  # a day later...
    assert [w.name for w in store.workers()] == ["serve:h:9:z"]  # ...the gone ones are dropped

    reply = Outbound("sms", "+15550000001", "hello", kind="reply")
    any_store.enqueue(reply, T0)
    any_store.enqueue(reply, T0 + timedelta(seconds=3))
    any_store.enqueue(reply, T0 + timedelta(seconds=1), lane=Lane.EMERGENCY)
    any_store.enqueue(Outbound("telegram", "42", "news", kind="broadcast"), T0)
    depth = {(q.channel, q.lane): (q.waiting, q.oldest_due_at) for q in store.queue_depth()}
    assert depth == {
        ("sms", Lane.EMERGENCY): (1, T0 + timedelta(seconds=1)),
        ("sms", Lane.CONVERSATION): (2, T0),
        ("telegram", Lane.BULK): (1, T0),
    }


def test_worker_status_prints_processes_sweeps_and_queues(
    tmp_config: Config, tmp_path: Path
) -> None:
    bridge = CareBridge(tmp_config)
    try:
        work_store(bridge).heartbeat("worker:h:1:a", "worker", "h", 1, datetime.now(UTC))
        bridge.store.enqueue(Outbound("sms", "+15550000001", "hi"), datetime.now(UTC))
    finally:
        bridge.close()
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"storage": {"url": tmp_config.storage_url()}}))
    result = CliRunner().invoke(main, ["--config", str(config), "worker", "--status"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert [p["name"] for p in status["processes"]] == ["worker:h:1:a"]
    assert status["queues"][0] | {"oldest_due_s_ago": 0} == {
        "channel": "sms",
        "lane": "conversation",
        "waiting": 1,
        "oldest_due_s_ago": 0,
    }


# --- the scheduler as a trigger only --------------------------------------------------------


class Slow:
    """A sweep that takes a while and counts its runs."""

    def __init__(self) -> None:
        self.runs = 0

    def sweep(self, now: datetime) -> None:
        self.runs += 1
        time.sleep(0.2)


def test_two_schedulers_on_one_database_run_each_sweep_once_per_interval(
    tmp_config: Config, lib: Library
) -> None:
    clock = Clock(T0)
    bridges = [CareBridge(tmp_config, library=lib, clock=clock) for _ in range(2)]
    slow = Slow()
    metronomes = [
        SweepScheduler(b, interval_s=60, also=(slow.sweep,), holder=f"node{i}")
        for i, b in enumerate(bridges)
    ]
    try:
        for _ in range(2):  # the same instant twice: the second round finds the sweeps done
            threads = [threading.Thread(target=m.tick) for m in metronomes]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert slow.runs == 1
        assert sum(m.ran.get("checkins", 0) for m in metronomes) == 1
        clock.advance(timedelta(seconds=54))  # 0.9 of the interval: due again
        metronomes[1].tick()
        metronomes[0].tick()
        assert slow.runs == 2
        assert sum(m.ran.get("checkins", 0) for m in metronomes) == 2
        assert sum(m.ran.get(sweep_name(slow.sweep), 0) for m in metronomes) == 2
    finally:
        for b in bridges:
            b.close()


def test_every_timed_sweep_runs_in_one_tick_under_its_own_lease(
    tmp_config: Config, lib: Library
) -> None:
    """serve wraps its sweeps for /metrics; each keeps its own lease name, so one tick runs
    them all (a shared wrapper name once let the first starve retention and broadcasts)."""
    from bot.metrics import Metrics

    bridge = CareBridge(tmp_config, library=lib, clock=Clock(T0))
    metrics = Metrics(bridge.store, bridge.clock)
    runs: list[str] = []

    class Ops:
        def deadlines(self, now: datetime) -> None:
            runs.append("deadlines")

        def retention(self, now: datetime) -> None:
            runs.append("retention")

    ops = Ops()
    try:
        timed = (metrics.timed("a", ops.deadlines), metrics.timed("b", ops.retention))
        SweepScheduler(bridge, interval_s=60, also=timed).tick()
        assert runs == ["deadlines", "retention"]
        with pytest.raises(ValueError, match="distinct lease names"):
            SweepScheduler(bridge, interval_s=60, also=(ops.deadlines, ops.deadlines))
    finally:
        bridge.close()


# --- what a dead serve left -------------------------------------------------------------------


def test_a_message_a_dead_serve_left_unhandled_is_handled_once_by_a_worker(
    tmp_config: Config, lib: Library
) -> None:
    clock = Clock(T0)
    bridge = CareBridge(tmp_config, library=lib, clock=clock)
    try:
        # recorded, then the process died before handling it (between _begin and _commit)
        bridge.store.record_inbound(Inbound("sms", "+15550000007", "hi", T0, "SMdead"))
        recovery = InboxRecovery(bridge)
        assert recovery.sweep(T0 + RECOVER_AFTER - timedelta(seconds=1)) == 0  # maybe in flight
        assert bridge.store.outbox() == []
        assert recovery.sweep(T0 + RECOVER_AFTER) == 1
        assert recovery.sweep(T0 + RECOVER_AFTER * 2) == 0
        assert bridge.store.unprocessed_inbound() == []
        contact = bridge.store.find_contact("sms", "+15550000007")
        assert contact is not None
        lines = bridge.store.transcript(contact.id)
        assert [e.direction for e in lines][:2] == ["in", "out"]
        assert sum(e.direction == "in" for e in lines) == 1
    finally:
        bridge.close()


# --- the setting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "mode", "separate"),
    [
        ("sqlite:///data/x.db", "auto", False),
        ("postgresql://cb@db/cb", "auto", True),
        ("sqlite:///data/x.db", "separate", True),
        ("postgresql://cb@db/cb", "inline", False),
    ],
)
def test_who_dispatches_follows_processes_worker(url: str, mode: str, separate: bool) -> None:
    cfg = Config.model_validate({"storage": {"url": url}, "processes": {"worker": mode}})
    assert cfg.separate_worker() is separate


def test_a_bad_processes_setting_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("processes: {worker: sometimes}\n")
    result = CliRunner().invoke(main, ["--config", str(path), "worker"])
    assert result.exit_code == 1
    assert "processes.worker" in result.output and "Traceback" not in result.output


# --- one provider account, many workers -------------------------------------------------------


def test_workers_share_each_channels_rate_among_the_live_ones(
    tmp_config: Config, lib: Library
) -> None:
    bridge = CareBridge(tmp_config, library=lib)
    try:
        now = datetime.now(UTC)
        beats = work_store(bridge)
        beats.heartbeat("worker:a", "worker", "h", 1, now)
        beats.heartbeat("worker:b", "worker", "h", 2, now - timedelta(seconds=2))
        beats.heartbeat("worker:gone", "worker", "h", 3, now - timedelta(minutes=5))  # kill -9
        beats.heartbeat("worker:done", "worker", "h", 4, now, stopped=True)
        beats.heartbeat("serve:x", "serve", "h", 5, now)  # serves do not send
        worker = Worker(bridge)
        assert worker.live_workers() == 2
    finally:
        bridge.close()
    dispatcher = Dispatcher(cast(Store, None), {}, rates={"sms": 10.0})
    full = dispatcher._limiter("sms", True)
    assert full.max_rate / full.time_period == 10.0
    dispatcher.share(2)
    half = dispatcher._limiter("sms", True)  # the emergency lane: the channel's whole share
    assert half.max_rate / half.time_period == 5.0
    ordinary = dispatcher._limiter("sms", False)  # less the emergency headroom (20 %)
    assert ordinary.max_rate / ordinary.time_period == pytest.approx(4.0)
