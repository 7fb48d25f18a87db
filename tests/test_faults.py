"""The fault suite (issue 12): `carebridge serve` as a real process, signed Twilio webhooks,
fake providers on loopback. kill -9 under load, provider outages of every kind, the emergency
lane. Each test prints its counts (pytest -s shows them). Bounded waits ("within 10 s") are
the behaviour asked for, with room to spare; the duplicate bound is docs/channels.md's.
"""

from __future__ import annotations

import threading
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


def emergency_times(twilio: FakeTwilio, patients: Patients, who: list[int], sent: dict[int, float],
                    timeout: float) -> dict[int, float]:
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
    patients_n, kills = 16, 3
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
    in_flight_cap = 40 + 10  # one second of sending at 40/s + the emergency lane's 10
    print(
        f"\nkill -9 x{kills}: acknowledged={len(patients.acked)} {counts}"
        f" emergency s: max={max(times.values(), default=-1):.2f}"
    )
    assert counts.inbound == len(patients.acked) == total + patients_n
    assert counts.unprocessed == 0 and counts.transcript_in == counts.inbound  # exactly once
    assert counts.missing == 0 and counts.not_sent == 0  # every reply delivered
    assert counts.duplicates <= kills * in_flight_cap  # the documented bound
    assert sorted(times) == list(range(patients_n)), "some emergency replies never arrived"
    assert max(times.values()) <= EMERGENCY_WITHIN_S
