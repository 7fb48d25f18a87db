"""Scale-out as an operator runs it: two `carebridge serve` and two `carebridge worker` processes
on one store, patients running whole screenings over signed Twilio webhooks spread across both
serves (two messages of one patient at the same moment on two processes, too), and one worker
`kill -9`ed mid-run and started again. Counted, not timed: 0 messages lost, 0 handled twice,
every conversation in order and as a single process would have had it, every reply delivered,
duplicates within the documented bound (docs/channels.md, Delivery).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakes import wait_for
from fakes.twilio_server import FakeTwilio
from patients import COVID_SCREENING
from workers_cluster import (
    Load,
    Tally,
    cluster,
    number,
    run_patients,
    settled,
    tally,
)

from bot.app import CareBridge
from bot.config import Config
from bot.flow import Library
from bot.messages import Inbound

PATIENTS = 10
PAIRS = (9, 11)  # "no", "no" and "no", "no": each pair at once, on two serves
SETTINGS = {
    "processes": {"worker": "separate", "poll_s": 0.1, "heartbeat_s": 1},
    "delivery": {"lease_s": 4, "send_timeout_s": 2},  # a killed worker's rows return in 4 s
    "channels": {"sms": {"enabled": True, "rate_per_s": 1000.0}},
    "checkins": {"sweep_every_s": 2},
}
BOUND = 2 * (16 + 10)  # docs/channels.md: 2 x (max_in_flight + 10) per channel per crash

# Many `carebridge serve` processes each, timed against the wall clock: these tests share one
# xdist worker (`make test` runs --dist loadgroup), so they never overlap one another.
pytestmark = pytest.mark.xdist_group("processes")


def reference_answers(tmp_config: Config, lib: Library) -> dict[str, object]:
    """The screening's answers as one process handles it, one message after another."""
    bridge = CareBridge(tmp_config, library=lib)
    try:
        for i, text in enumerate(COVID_SCREENING):
            at = datetime.now(UTC)
            bridge.handle(Inbound("sms", number(9_000_000), text, at, f"SMref{i:030d}"))
        contact = bridge.store.find_contact("sms", number(9_000_000))
        assert contact is not None
        return dict(bridge.store.current_session(contact).answers)
    finally:
        bridge.close()


def test_two_serves_two_workers_and_a_kill_9_lose_nothing_and_double_nothing(
    store_url: str, tmp_path: Path, tmp_config: Config, lib: Library
) -> None:
    """On each engine (tests/pg.py's `store_url`: SQLite, then a throw-away PostgreSQL)."""
    expected = reference_answers(tmp_config, lib)
    counts, load = scenario(tmp_path, store_url)
    total = PATIENTS * len(COVID_SCREENING)
    assert load.ok == total and load.refused == 0
    assert counts.as_dict() | {"duplicates": 0} == {
        "messages": total,
        "lost": 0,
        "twice": 0,
        "disordered": 0,
        "unfinished": 0,
        "replies": counts.replies,
        "undelivered": 0,
        "duplicates": 0,
    }
    assert counts.replies >= total  # every message had at least one reply
    assert counts.duplicates <= BOUND
    assert all(answers == expected for answers in counts.answers.values()), counts.answers


def scenario(tmp_path: Path, url: str) -> tuple[Tally, Load]:
    """2 serves + 2 workers; the patients; a worker kill -9ed at 40 % and replaced."""
    total = PATIENTS * len(COVID_SCREENING)
    killed = threading.Event()
    once = threading.Lock()
    with FakeTwilio() as twilio, cluster(tmp_path, twilio, url, 2, 2, SETTINGS) as running:
        victim = running.of("worker")[0]

        def kill_mid_run(sent: int) -> None:
            if sent < total * 0.4 or not once.acquire(blocking=False):
                return
            killed.set()
            victim.kill9()  # whatever it had claimed stays claimed until its lease ends
            running.start("worker")  # and a new one takes its place

        load = run_patients(
            running, PATIENTS, COVID_SCREENING, pairs=PAIRS, on_message=kill_mid_run
        )
        assert killed.is_set() and victim.proc.returncode == -9
        wait_for(lambda: settled(url), timeout=120)
        counts = tally(url, twilio, load, PAIRS)
        workers = running.of("worker")
        assert len(workers) == 2
        running.wait_ready(workers)
    return counts, load
