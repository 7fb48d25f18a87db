"""Group commit (issue 12): inbound messages that queue up on the store's owner thread are
handled together, two commits per group instead of two per message, with the same outcome as
one at a time; a failure in a group rolls it back whole and each message is handled alone."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pg import with_store

from bot.app import CareBridge, Handled
from bot.config import Config
from bot.messages import Inbound
from bot.store.owner import URGENT_RUN, StoreOwner

T0 = datetime(2024, 5, 1, 9, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def sms(n: int, text: str, sid: str) -> Inbound:
    return Inbound("sms", f"+1555000{n:04d}", text, T0, sid)


# Patients 1-3 write at once; patient 1 twice (its second message waits for its first), and
# Twilio retries patient 2's first webhook (a duplicate).
MESSAGES = [
    sms(1, "hi", "SM1a"),
    sms(2, "hi", "SM2a"),
    sms(1, "1", "SM1b"),
    sms(3, "hi", "SM3a"),
    sms(2, "hi", "SM2a"),
]


def outcome(bridge: CareBridge) -> dict[str, Any]:
    """Everything the messages left behind, comparable across databases."""
    store = bridge.store
    contacts = {n: store.find_contact("sms", f"+1555000{n:04d}") for n in (1, 2, 3)}
    return {
        n: {
            "transcript": [(e.direction, e.text) for e in store.transcript(c.id)],
            "outbox": [r.outbound.text for r in store.outbox(c.id)],
        }
        for n, c in contacts.items()
        if c is not None
    } | {"unprocessed": len(store.unprocessed_inbound())}


def commits(bridge: CareBridge) -> Counter[str]:
    """Counts the store's committed transactions from now on (either engine)."""
    seen: Counter[str] = Counter()
    store: Any = bridge.store
    begun = store._begun

    @contextmanager
    def counted(conn: Any, op: str) -> Iterator[Any]:
        with begun(conn, op) as inside:
            yield inside
        seen["COMMIT"] += 1

    store._begun = counted
    return seen


@pytest.fixture
def two_bridges(tmp_config: Config, new_store_url: Callable[[], str]) -> Any:
    def bridge() -> CareBridge:
        return CareBridge(with_store(tmp_config, new_store_url()), clock=Clock())

    grouped, alone = bridge(), bridge()
    yield grouped, alone
    grouped.close()
    alone.close()


def test_a_group_is_handled_as_one_at_a_time_would_be_with_two_commits(two_bridges: Any) -> None:
    grouped, alone = two_bridges
    statements = commits(grouped)
    results = grouped.owner.call(grouped.handle_group, MESSAGES)
    one_by_one = [alone.owner.call(alone.handle, m) for m in MESSAGES]

    assert [type(r) for r in results] == [Handled] * len(MESSAGES)
    assert [r.duplicate for r in results] == [d.duplicate for d in one_by_one]
    assert [r.duplicate for r in results] == [False, False, False, False, True]
    assert outcome(grouped) == outcome(alone)
    assert outcome(grouped)["unprocessed"] == 0
    # patients 1, 2, 3 in one group (2 commits); patient 1's second message and the
    # retried webhook alone afterwards (2 commits each; the duplicate stops after the first)
    assert statements["COMMIT"] == 2 + 2 + 1


def test_a_failure_in_a_group_rolls_it_back_and_each_message_is_handled_alone(
    two_bridges: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    grouped, alone = two_bridges
    real_commit, failed = grouped._commit, []

    def commit_failing_once(begun: Any, plan: Any, inbound: Inbound) -> Any:
        if inbound.provider_id == "SM3a" and not failed:
            failed.append(inbound.provider_id)  # after patients 1 and 2 were saved
            raise RuntimeError("disk trouble")
        return real_commit(begun, plan, inbound)

    monkeypatch.setattr(grouped, "_commit", commit_failing_once)
    results = grouped.owner.call(grouped.handle_group, MESSAGES)
    for m in MESSAGES:
        alone.owner.call(alone.handle, m)

    assert failed == ["SM3a"]
    assert [type(r) for r in results] == [Handled] * len(MESSAGES)
    assert outcome(grouped) == outcome(alone)  # exactly once: nothing saved twice or lost


def test_an_error_reaches_only_the_caller_whose_message_raised(two_bridges: Any) -> None:
    grouped, _ = two_bridges
    bad = Inbound("sms", "+15550001234", "hi", datetime(2024, 5, 1, 9), "SMbad")  # naive time
    results = grouped.owner.call(grouped.handle_group, [MESSAGES[0], bad, MESSAGES[3]])
    assert isinstance(results[1], Exception)
    assert [type(results[0]), type(results[2])] == [Handled, Handled]
    assert outcome(grouped)["unprocessed"] == 0


def test_grouped_calls_queued_while_the_owner_is_busy_run_as_one_call() -> None:
    owner, release, calls = StoreOwner(), threading.Event(), []

    def many(args: list[int]) -> list[int | Exception]:
        calls.append(list(args))
        return [ValueError("odd") if a % 2 else a * 10 for a in args]

    async def scenario() -> list[Any]:
        busy = owner.submit(release.wait)  # the owner is busy while five callers queue up
        calls_ = [asyncio.ensure_future(owner.run_grouped(many, a)) for a in range(5)]
        await asyncio.sleep(0)  # each has queued its call
        release.set()
        busy.result()
        return await asyncio.gather(*calls_, return_exceptions=True)

    try:
        results = asyncio.run(scenario())
    finally:
        owner.close()
    assert calls == [[0, 1, 2, 3, 4]]  # one call for all five
    assert [r if isinstance(r, int) else type(r) for r in results] == [
        0,
        ValueError,
        20,
        ValueError,
        40,
    ]


def test_urgent_work_goes_first_but_never_starves_the_webhooks() -> None:
    """A dispatcher that keeps claiming (urgent) must not hold a webhook's message (normal)
    for ever: after URGENT_RUN urgent items in a row, the waiting one runs."""
    owner, started, release, order = StoreOwner(), threading.Event(), threading.Event(), []
    busy = owner.submit(lambda: started.set() or release.wait())
    assert started.wait(10)  # everything below queues while the owner is busy
    normal = owner.submit(order.append, "webhook")
    urgent = [owner.submit(order.append, n, urgent=True) for n in range(3 * URGENT_RUN)]
    release.set()
    try:
        busy.result()
        normal.result(timeout=10)
        for future in urgent:
            future.result(timeout=10)
    finally:
        owner.close()
    assert order.index("webhook") == URGENT_RUN  # first URGENT_RUN claims, then the webhook
    assert [n for n in order if n != "webhook"] == list(range(3 * URGENT_RUN))  # in order
