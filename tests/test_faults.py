"""The fault suite (issue 12): `carebridge serve` as a real process, signed Twilio webhooks,
fake providers on loopback. kill -9 under load, provider outages of every kind, the emergency
lane. Each test prints its counts (pytest -s shows them). Bounded waits ("within 10 s") are
the behaviour asked for, with room to spare; the duplicate bound is docs/channels.md's.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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

# Short leases and backoff so that a test waits seconds, not minutes.
FAST = {"lease_s": 4, "send_timeout_s": 1.5, "order_hold_s": 6, "retry_cap_s": 2}
EMERGENCY_WITHIN_S = 10.0


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
    tmp_path: Path,
) -> None:
    patients_n, kills = 12, 3
    with FakeTwilio() as twilio:
        serve = Serve(tmp_path, twilio, delivery=FAST, sms_rate=40)
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


# -- provider faults: one server (SMS via Twilio, Telegram) for every kind of outage ---------


@pytest.fixture(scope="module")
def providers(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with FakeTwilio() as twilio, FakeTelegram() as telegram:
        twilio.hang_seconds = 8.0
        serve = Serve(tmp_path_factory.mktemp("outage"), twilio, telegram, delivery=FAST)
        with serving(serve):
            yield serve


OUTAGE_S = 3.0


@pytest.mark.parametrize("mode", ["500", "429", "timeout", "refuse"])
def test_a_provider_outage_loses_nothing_and_never_stalls_another_channel(
    providers: Serve, mode: str
) -> None:
    twilio, telegram = providers.twilio, providers.telegram
    assert telegram is not None
    patients = Patients(providers)
    base = 1000 * (["500", "429", "timeout", "refuse"].index(mode) + 1)
    chat = 7_000_000 + base
    before = ledger(providers)
    if mode == "refuse":
        twilio.refuse()
    else:
        twilio.outage(mode, retry_after=2)
    began = time.monotonic()
    try:
        for n in range(base, base + 5):
            patients.post(n, "hi")  # acknowledged although Twilio is down
        posted = time.monotonic()
        assert telegram_post(providers, chat, "hi") == 200
        wait_until(
            lambda: any(m.get("chat_id") in (chat, str(chat)) for m in telegram.sent),
            OUTAGE_S,
            "the Telegram reply during the Twilio outage",
        )
        telegram_s = time.monotonic() - posted
        assert ledger(providers).not_sent > 0  # Twilio is really down
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - began)))
    finally:
        if mode == "refuse":
            twilio.resume()
        else:
            twilio.outage(None)
    wait_until(lambda: ledger(providers).not_sent == 0, 20, "every SMS reply after the outage")
    after = ledger(providers)
    print(
        f"\noutage {mode} {OUTAGE_S:.0f}s: sms replies={after.replies - before.replies}"
        f" delivered={after.delivered - before.delivered} missing={after.missing}"
        f" duplicates={after.duplicates} telegram reply during it in {telegram_s:.2f}s"
    )
    assert after.missing == 0 and after.replies - before.replies >= 5
    assert after.duplicates == before.duplicates  # an outage is not a crash: no duplicates


# -- the emergency lane ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_sms(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with FakeTwilio() as twilio:
        serve = Serve(tmp_path_factory.mktemp("lanes"), twilio, delivery=FAST, sms_rate=0.5)
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
