"""Log-in under attack, against a running `carebridge serve` (SQLite, production argon2):

1. the signed-webhook median with nobody at the log-in, then while 8 clients hammer the log-in
   from ever-new addresses (a distributed guesser: no per-address throttle helps), and
2. how long an unknown user, a wrong password and a throttled try take (medians of repeated
   tries: their ratio is the timing oracle an attacker could use).

    .venv/bin/python bench/login.py [--patients 16] [--tries 10]

Prints a table and rewrites the "login" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from fakes.twilio_server import FakeTwilio, inbound_params  # noqa: E402
from patients import COVID_SCREENING as SCREENING  # noqa: E402
from report import write_section  # noqa: E402
from webhook import free_port, run_server  # noqa: E402

TOKEN = "bench-token"
SID = "AC" + "0" * 32
HAMMERS = 8


async def webhooks(base: str, patients: int, first: int) -> list[float]:
    """Patients screen over signed webhooks, 4 at a time; returns each request's latency."""
    url = f"{base}/webhooks/twilio/sms"
    validator = RequestValidator(TOKEN)
    latencies: list[float] = []
    sem = asyncio.Semaphore(4)

    async def patient(client: httpx.AsyncClient, n: int) -> None:
        for i, line in enumerate(SCREENING):
            params = inbound_params(f"+1555{n:07d}", line, message_sid=f"SM{n:016d}{i:016d}")
            headers = {"X-Twilio-Signature": validator.compute_signature(url, params)}
            async with sem:
                started = time.perf_counter()
                r = await client.post(url, data=params, headers=headers)
                latencies.append(time.perf_counter() - started)
            if r.status_code != 200:
                raise RuntimeError(f"webhook answered {r.status_code}")

    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(patient(client, n) for n in range(first, first + patients)))
    return latencies


async def login_try(
    client: httpx.AsyncClient, username: str, password: str, address: str
) -> tuple[int, float]:
    headers = {"X-Forwarded-For": address}
    form = await client.get("/console/login", headers=headers)
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    started = time.perf_counter()
    r = await client.post(
        "/console/login",
        data={"csrf": token[1], "username": username, "password": password},
        headers=headers,
        cookies=form.cookies,
    )
    return r.status_code, time.perf_counter() - started


async def hammer(base: str, stop: asyncio.Event, counter: list[int]) -> None:
    addresses = (f"10.{a}.{b}.{c}" for a, b, c in itertools.product(range(256), repeat=3))
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        while not stop.is_set():
            await login_try(client, "admin", "Password123!", next(addresses))
            counter[0] += 1


async def under_attack(base: str, patients: int) -> tuple[list[float], int, float]:
    stop = asyncio.Event()
    counter = [0]
    tasks = [asyncio.create_task(hammer(base, stop, counter)) for _ in range(HAMMERS)]
    await asyncio.sleep(1.0)  # the hammering is under way
    started = time.perf_counter()
    latencies = await webhooks(base, patients, first=10_000)
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*tasks)
    return latencies, counter[0], elapsed


async def answer_times(base: str, tries: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"unknown user": [], "wrong password": [], "throttled": []}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for i in range(12):  # this address goes over login_limits_address (10/minute)
            await login_try(client, f"spray{i}", "x", "192.0.2.200")
        for i in range(tries):
            for kind, (user, address) in {
                "unknown user": ("nobody_here", f"198.51.100.{i}"),
                "wrong password": ("admin", f"203.0.113.{i}"),
                "throttled": ("admin", "192.0.2.200"),
            }.items():
                status, took = await login_try(client, user, f"guess {i}", address)
                assert status == 401, status
                times[kind].append(took)
    return {kind: statistics.median(v) for kind, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=16)
    ap.add_argument("--tries", type=int, default=10)
    args = ap.parse_args()
    py = str(ROOT / ".venv" / "bin" / "python")
    with (
        FakeTwilio(account_sid=SID, auth_token=TOKEN) as twilio,
        tempfile.TemporaryDirectory() as tmp,
    ):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        config = yaml.safe_load((ROOT / "config.yaml").read_text())
        config["storage"]["url"] = f"sqlite:///{tmp}/bench.db"
        config["server"].update({"public_url": base, "port": port})
        config["twilio"].update({"api_base_url": twilio.url, "sms_from": "+15550009999"})
        cfg_path = Path(tmp) / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(config))
        env = {
            **os.environ,
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "CAREBRIDGE_CONFIG": str(cfg_path),
        }
        proc, _ = run_server(
            [py, "-m", "bot.cli", "serve", "--port", str(port)], env, f"{base}/healthz"
        )
        try:
            quiet = asyncio.run(webhooks(base, args.patients, first=0))
            loud, tries, elapsed = asyncio.run(under_attack(base, args.patients))
            medians = asyncio.run(answer_times(base, args.tries))
        finally:
            proc.terminate()
            proc.wait(10)
    ratio = max(medians.values()) / min(medians.values())
    lines = [
        f"{args.patients} patients x {len(SCREENING)} signed webhooks (4 at a time); then the "
        f"same while {HAMMERS} clients post log-in guesses for `admin` from ever-new addresses; "
        f"then {args.tries} tries of each failing kind. One uvicorn worker, SQLite, production "
        "argon2id, `console.login_hash_threads: 2`.",
        "",
        "| webhooks | p50 ms | p90 ms |",
        "|---|---|---|",
        f"| nobody at the log-in | {statistics.median(quiet) * 1000:.0f} | "
        f"{statistics.quantiles(quiet, n=10)[-1] * 1000:.0f} |",
        f"| log-in hammered ({tries / elapsed:.1f} guesses/s) | "
        f"{statistics.median(loud) * 1000:.0f} | "
        f"{statistics.quantiles(loud, n=10)[-1] * 1000:.0f} |",
        "",
        "| failed log-in | median ms |",
        "|---|---|",
        *(f"| {kind} | {value * 1000:.0f} |" for kind, value in medians.items()),
        "",
        f"Slowest / fastest median: **{ratio:.2f}** (1.00 = no timing oracle).",
    ]
    text = "\n".join(lines)
    print(text)
    write_section("login", "Log-in under attack (`bench/login.py`)", text)


if __name__ == "__main__":
    main()
