"""The fault suite (issue 12): `carebridge serve` as a real process, signed Twilio webhooks,
fake providers on loopback. kill -9 under load, provider outages of every kind, the emergency
lane. Each test prints its counts (pytest -s shows them). Bounded waits ("within 10 s") are
the behaviour asked for, with room to spare; the duplicate bound is docs/channels.md's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fakes.telegram_server import FakeTelegram
from fakes.twilio_server import FakeTwilio
from fault_helpers import (
    EMERGENCY_NUMBER,
    RED_FLAG,
    Patients,
    Serve,
    arrival,
    ledger,
    serving,
    telegram_post,
    wait_until,
)
from patients import COVID_SCREENING
from pg import ENGINES

# Short leases and backoff so that a test waits seconds, not minutes.
FAST = {"lease_s": 4, "send_timeout_s": 1.5, "order_hold_s": 6, "retry_cap_s": 2}
EMERGENCY_WITHIN_S = 10.0

# Many `carebridge serve` processes each, timed against the wall clock: these tests share one
# xdist worker (`make test` runs --dist loadgroup), so they never overlap one another.
pytestmark = pytest.mark.xdist_group("processes")


def test_make_test_runs_this_file_in_its_xdist_group(request: pytest.FixtureRequest) -> None:
    """Under `make test` (--dist loadgroup) xdist marks a grouped test's id with its group;
    pytest 9.2 silently dropped that (pytest-xdist#1386), and the groups were spread again."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run with --dist loadgroup")
    assert request.node.nodeid.endswith("@processes")


def emergency_times(
    twilio: FakeTwilio, patients: Patients, who: list[int], sent: dict[int, float], timeout: float
) -> dict[int, float]:
    """Seconds from each patient's red-flag POST to the emergency reply at the provider."""
    got: dict[int, float] = {}

    def all_arrived() -> bool:
        for n in who:
            if n not in got:
                at = arrival(twilio, patients.number(n), EMERGENCY_NUMBER, sent[n])
                if at is not None:
                    got[n] = at - sent[n]
        return len(got) == len(who)

    deadline = time.monotonic() + timeout
    while not all_arrived() and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def test_kill_9_under_load_loses_nothing_and_emergencies_still_go_out_at_once(
    tmp_path: Path, store_url: str
) -> None:
    patients_n, kills = 12, 3
    with FakeTwilio() as twilio:
        serve = Serve(tmp_path, twilio, delivery=FAST, sms_rate=40, store_url=store_url)
        patients = Patients(serve)
        serve.start()
        try:
            total = patients_n * len(COVID_SCREENING)
            load = ThreadPoolExecutor(8)
            futures = [
                load.submit(patients.run_script, n, COVID_SCREENING) for n in range(patients_n)
            ]
            for k in range(1, kills):  # kills at about 1/3 and 2/3 of the load
                wait_until(lambda k=k: len(patients.acked) >= total * k // kills, 90, "load")
                serve.kill9()
                serve.start()
            for f in futures:
                f.result()
            serve.kill9()  # the last kill with replies still in flight, then at once:
            serve.start()
            sent: dict[int, float] = {}

            def red_flag(n: int) -> None:
                sent[n] = patients.post(n, RED_FLAG)

            list(load.map(red_flag, range(patients_n)))
            times = emergency_times(twilio, patients, list(range(patients_n)), sent, 30)
            wait_until(lambda: ledger(serve).not_sent == 0, 60, "every reply sent")
            counts = ledger(serve)
        finally:
            serve.stop()
    bound = 2 * (16 + 10)  # docs/channels.md: 2 x (max_in_flight + emergency in flight)
    print(
        f"\nkill -9 x{kills}: acknowledged={len(patients.acked)} {counts}"
        f" emergency s: max={max(times.values(), default=-1):.2f}"
    )
    assert counts.inbound == len(patients.acked) == total + patients_n
    assert counts.unprocessed == 0 and counts.transcript_in == counts.inbound  # exactly once
    assert counts.missing == 0 and counts.not_sent == 0  # every reply delivered
    assert counts.duplicates <= kills * bound  # the documented bound, per crash
    assert sorted(times) == list(range(patients_n)), "some emergency replies never arrived"
    assert max(times.values()) <= EMERGENCY_WITHIN_S


# -- provider faults: four outages of 60 s at once, each on its own server ------------------

OUTAGE_S = 60.0
KINDS = ("500", "429", "timeout", "refuse")
RETRY_AFTER_S = 5  # what the 429 provider asks for
IN_FLIGHT_GRACE_S = 1.0  # a request already on its way when the 429 came back is no breach
WAVES = (0.0, 20.0, 40.0)  # seconds into the outage when patients write
# Backoff capped at 3 s so that replies go seconds after the outage; 100 attempts at >= 1.5 s
# each outlast it (the default budget, about 12 min at least, is unit-tested in
# test_outbox_leases.py).
OUTAGE_DELIVERY = {**FAST, "retry_cap_s": 3, "max_attempts": 100}


@dataclass
class Site:
    """One `carebridge serve` with its own fake Twilio in one fault mode and a healthy fake
    Telegram."""

    kind: str
    serve: Serve
    patients: Patients
    telegram_lag_s: list[float] = field(default_factory=list)

    @property
    def twilio(self) -> FakeTwilio:
        return self.serve.twilio

    def outage(self, on: bool) -> None:
        if self.kind == "refuse":
            self.twilio.refuse() if on else self.twilio.resume()
        else:
            self.twilio.outage(self.kind if on else None, retry_after=RETRY_AFTER_S)

    def rows(self, channel: str, where: str = "1 = 1") -> int:
        sql = f"SELECT count(*) FROM outbox WHERE channel = ? AND {where}"
        return int(self.serve.query(sql, (channel,))[0][0])

    def telegram_all_delivered(self) -> bool:
        telegram = self.serve.telegram
        assert telegram is not None
        rows = self.rows("telegram")
        pending = self.rows("telegram", "status NOT IN ('sent', 'delivered')")
        return rows > 0 and pending == 0 and len(telegram.sent) >= rows

    def retry_after_breaches(self) -> tuple[int, int]:
        """(requests that came back 429, requests that arrived after a 429 had told the
        dispatcher to wait and before the time it named)."""
        with self.twilio.lock:
            arrivals = sorted((r.at, r.outcome) for r in self.twilio.requests)
        told = [at for at, outcome in arrivals if outcome == "429"]
        breaches = sum(
            1
            for at, _ in arrivals
            if any(t + IN_FLIGHT_GRACE_S <= at < t + RETRY_AFTER_S for t in told)
        )
        return len(told), breaches


def test_60_s_provider_outages_lose_nothing_and_never_stall_another_channel(
    tmp_path: Path, new_store_url: Callable[[], str]
) -> None:
    with ExitStack() as stack:
        sites: list[Site] = []
        for kind in KINDS:
            twilio = stack.enter_context(FakeTwilio())
            twilio.hang_seconds = 3 * FAST["send_timeout_s"]  # the dispatcher gives up first
            telegram = stack.enter_context(FakeTelegram())
            (tmp_path / kind).mkdir()
            serve = Serve(
                tmp_path / kind,
                twilio,
                telegram,
                delivery=OUTAGE_DELIVERY,
                store_url=new_store_url(),
            )
            stack.callback(serve.stop)
            sites.append(Site(kind, serve, Patients(serve)))
        pool = stack.enter_context(ThreadPoolExecutor(16))
        list(pool.map(lambda site: site.serve.start(240), sites))  # all four start at once

        for site in sites:
            site.outage(True)
        began = time.monotonic()
        outage_ends = began + OUTAGE_S
        chat = {site.kind: 7_000_000 + 1000 * i for i, site in enumerate(sites)}
        for w, at in enumerate(WAVES):
            time.sleep(max(0.0, began + at - time.monotonic()))
            posts: list[Any] = []
            for site in sites:  # new patients say hi; the last wave's answer the language menu
                posts += [pool.submit(site.patients.post, 10 * w + i, "hi") for i in range(4)]
                if w:
                    answer = site.patients.post
                    posts += [pool.submit(answer, 10 * (w - 1) + i, "1") for i in range(4)]
            list(f.result() for f in posts)
            posted = time.monotonic()
            for site in sites:
                assert telegram_post(site.serve, chat[site.kind] + w, "hi") == 200
                if w:
                    assert telegram_post(site.serve, chat[site.kind] + w - 1, "1") == 200
            for site in sites:  # every Telegram reply so far, while Twilio is still down
                wait_until(
                    site.telegram_all_delivered,
                    outage_ends - time.monotonic() - 1.0,
                    f"the Telegram replies during the Twilio {site.kind} outage",
                )
                site.telegram_lag_s.append(time.monotonic() - posted)
            for site in sites:  # and Twilio really is down: it accepted nothing
                assert site.rows("sms", "status NOT IN ('sent', 'delivered')") > 0
                assert not site.twilio.messages, f"{site.kind}: Twilio accepted during its outage"
        time.sleep(max(0.0, outage_ends - time.monotonic()))
        for site in sites:
            site.outage(False)
        lifted = time.monotonic()
        for site in sites:
            wait_until(
                lambda site=site: ledger(site.serve).not_sent == 0,
                60,
                f"every SMS reply after the {site.kind} outage",
            )
        recovered_s = time.monotonic() - lifted
        print(f"\n60 s Twilio outages, all four at once; every SMS reply {recovered_s:.1f}s after")
        for site in sites:
            counts = ledger(site.serve)
            gave_up = site.rows("sms", "status IN ('failed', 'undelivered')")
            ((most_attempts,),) = site.serve.query(
                "SELECT max(attempts) FROM outbox WHERE channel = 'sms'"
            )
            told, breaches = site.retry_after_breaches()
            print(
                f"  {site.kind:>7}: inbound={counts.inbound} sms replies={counts.replies}"
                f" delivered={counts.delivered} missing={counts.missing}"
                f" duplicates={counts.duplicates} given up={gave_up}"
                f" most attempts={most_attempts} provider calls={len(site.twilio.requests)}"
                f" telegram replies={site.rows('telegram')} all delivered"
                f" {', '.join(f'{s:.1f}' for s in site.telegram_lag_s)}s after each wave"
                + (f" 429s={told} sends before Retry-After={breaches}" * (site.kind == "429"))
            )
            assert counts.inbound == len(site.patients.acked) + 2 * len(WAVES) - 1
            assert counts.unprocessed == 0
            assert counts.replies >= 4 * (2 * len(WAVES) - 1)  # a reply to every SMS at least
            assert counts.missing == 0 and counts.delivered == counts.replies
            assert counts.duplicates == 0  # an outage is not a crash: nothing went twice
            assert gave_up == 0  # the retry budget outlasted the outage
            assert most_attempts >= 3  # retried through it, not parked
            assert len(site.telegram_lag_s) == len(WAVES)
            # other channels unaffected: quiet, each wave's Telegram replies take 0.1-0.5 s (a
            # dispatcher spinning on the held SMS rows once starved the webhooks: 19 s)
            assert max(site.telegram_lag_s) < 10, f"{site.kind}: Telegram waited on Twilio"
            if site.kind == "429":
                assert told > 0 and breaches == 0


# -- the emergency lane ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=ENGINES)
def slow_sms(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One serve for the lane tests, on each engine in turn."""
    url = ""
    if request.param == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        name = cluster.fresh_database()
        request.addfinalizer(lambda: cluster.drop(name))
        url = cluster.url(name)
    with FakeTwilio() as twilio:
        folder = tmp_path_factory.mktemp("lanes")
        serve = Serve(folder, twilio, delivery=FAST, sms_rate=0.5, store_url=url)
        with serving(serve):
            yield serve


def test_a_permanently_failing_reply_does_not_delay_the_same_patients_emergency_reply(
    slow_sms: Serve,
) -> None:
    twilio, patients = slow_sms.twilio, Patients(slow_sms)
    number = patients.number(900)
    twilio.fail_when(lambda form: form.get("To") == number and "112" not in form.get("Body", ""))
    patients.post(900, "hi")

    def attempts() -> int:
        rows = slow_sms.query(
            "SELECT max(attempts) FROM outbox WHERE address = ? AND status != 'sent'", (number,)
        )
        return int(rows[0][0] or 0)

    wait_until(lambda: attempts() >= 2, 20, "the reply to fail twice")
    sent_at = patients.post(900, RED_FLAG)
    wait_until(
        lambda: arrival(twilio, number, EMERGENCY_NUMBER, sent_at) is not None,
        EMERGENCY_WITHIN_S,
        "the emergency reply",
    )
    at = arrival(twilio, number, EMERGENCY_NUMBER, sent_at)
    assert at is not None
    print(
        f"\nfailing reply (attempts so far {attempts()}): the same patient's emergency reply"
        f" in {at - sent_at:.2f}s"
    )
    assert attempts() >= 2  # still failing, still retried


def test_an_emergency_reply_queued_behind_100_ordinary_replies_goes_out_first(
    slow_sms: Serve,
) -> None:
    twilio, patients = slow_sms.twilio, Patients(slow_sms)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: patients.post(n, "hi"), range(100)))
    queued = ledger(slow_sms).not_sent
    sent_at = patients.post(500, RED_FLAG)
    number = patients.number(500)
    wait_until(
        lambda: arrival(twilio, number, EMERGENCY_NUMBER, sent_at) is not None,
        EMERGENCY_WITHIN_S,
        "the emergency reply",
    )
    at = arrival(twilio, number, EMERGENCY_NUMBER, sent_at)
    assert at is not None
    overtaken = ledger(slow_sms).not_sent  # ordinary replies still waiting when it arrived
    print(
        f"\nemergency lane: {queued} ordinary replies queued, emergency reply in"
        f" {at - sent_at:.2f}s, {overtaken} ordinary replies still queued behind it"
    )
    assert queued >= 90  # it really was queued behind them (0.5/s drains 100 in 200 s)
    assert overtaken >= 85
