"""Scale-out benchmark, all in one run on loopback: full COVID-19 screenings from 64 concurrent
patients over signed Twilio webhooks (wrk + LuaJIT as in bench/webhook.py, one wrk per serve
port, patients spread across the serves as a load balancer would), replies through the fake
Twilio, against

  1. SQLite, one `carebridge serve` (dispatcher and sweeps inline: the embedded default);
  2. PostgreSQL, 1 `serve` + 1 `worker`;
  3. PostgreSQL, 2 `serve` + 2 `worker`;
  4. PostgreSQL, 2 + 2 again, one worker `kill -9`ed mid-run and started again: the counts
     (lost, handled twice, undelivered, duplicates against the documented bound).

PostgreSQL is a throw-away cluster of its own (tests/workers_cluster.py: initdb + pg_ctl on a
free port, as `postgres` when run as root; synchronous_commit=off, as SQLite's
synchronous=NORMAL). Reports messages/s, reply-at-provider p50/p99 and CPU per message; prints
the table and rewrites the "scale" section of docs/benchmarks.md.

    .venv/bin/python bench/scale.py [--patients 64] [--concurrency 32] [--no-doc]
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from fakes.twilio_server import FakeTwilio, inbound_params  # noqa: E402
from patients import COVID_SCREENING as SCREENING  # noqa: E402
from report import write_section  # noqa: E402
from webhook import PATH, Run, cpu_seconds, drive, pct  # noqa: E402
from workers_cluster import (  # noqa: E402
    Cluster,
    Load,
    Proc,
    number,
    pg_bin,
    postgres,
    settled,
    tally,
)

from bot.store import open_store  # noqa: E402

BOUND = 2 * (16 + 10)  # docs/channels.md: 2 x (max_in_flight + 10) per channel per crash
SETTINGS = {"channels": {"sms": {"enabled": True, "rate_per_s": 1000.0}}}  # ours, not Twilio's


@dataclass
class Result:
    name: str
    messages: int
    rate: float
    p50: float
    p99: float
    errors: int
    cpu_ms: float
    replies: int
    counts: dict[str, int] | None = None


def write_lanes(public: str, token: str, patients: list[int], lanes: int, into: Path) -> int:
    """Every signed request of `patients`, in `lanes` lanes of whole patients, for wrk."""
    into.mkdir(parents=True, exist_ok=True)
    validator = RequestValidator(token)
    rows: list[list[str]] = [[] for _ in range(lanes)]
    for k, n in enumerate(patients):
        for i, line in enumerate(SCREENING):
            sid = f"SM{n:016d}{i:016d}"
            params = inbound_params(number(n), line, message_sid=sid)
            sig = validator.compute_signature(public + PATH, params)
            rows[k % lanes].append(f"{sid}\t{urlencode(params)}\t{sig}")
    for k, lines in enumerate(rows, 1):
        (into / f"lane{k}.txt").write_text("\n".join(lines) + "\n")
    return sum(len(r) for r in rows)


def spread(
    running: Cluster, patients: int, concurrency: int, tmp: Path
) -> list[tuple[str, int, Path, int]]:
    """One wrk per serve: its share of the patients and lanes (the balancer's job)."""
    serves = running.of("serve")
    public = f"http://127.0.0.1:{running.public_port}"
    plans = []
    for s, serve in enumerate(serves):
        mine = [n for n in range(patients) if n % len(serves) == s]
        lanes = max(1, concurrency // len(serves))
        folder = tmp / f"wrk-{serve.port}"
        token = running.twilio.auth_token
        plans.append((serve.url, lanes, folder, write_lanes(public, token, mine, lanes, folder)))
    return plans


def load(plans: list[tuple[str, int, Path, int]]) -> Run:
    """Run every wrk at once; one Run over all of them."""
    runs: list[Run] = []
    errors: list[BaseException] = []

    def one(plan: tuple[str, int, Path, int]) -> None:
        try:
            runs.append(drive(*plan))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    first = min(r.first for r in runs)
    last = max(r.last for r in runs)
    sent: dict[str, float] = {}
    for r in runs:
        sent.update(r.sent or {})
    return Run(
        messages=sum(r.messages for r in runs),
        elapsed=last - first,
        first=first,
        last=last,
        errors=sum(r.errors for r in runs),
        sent=sent,
    )


def reply_latency(url: str, twilio: FakeTwilio, sent: dict[str, float]) -> list[float]:
    """Per reply: its arrival at the fake provider minus the POST of the message it answers
    (the patient's latest message received before the reply was queued)."""
    store = open_store(url)
    try:
        inbox = store._rows("SELECT address, provider_id, received_at FROM inbox")  # type: ignore[attr-defined]
        outbox = store._rows(  # type: ignore[attr-defined]
            "SELECT address, created_at, provider_id FROM outbox WHERE provider_id IS NOT NULL"
        )
    finally:
        store.close()
    by_address: dict[str, list[tuple[float, str]]] = {}
    for address, sid, received in inbox:
        by_address.setdefault(address, []).append((_epoch(received), sid))
    for items in by_address.values():
        items.sort()
    with twilio.lock:
        arrived = {m["sid"]: m["_at"] for m in twilio.messages}
    out = []
    for address, created, provider_id in outbox:
        items = by_address.get(address, [])
        i = bisect.bisect_right(items, (_epoch(created), "\uffff")) - 1
        if i < 0 or provider_id not in arrived or items[i][1] not in sent:
            continue
        out.append((arrived[provider_id] - sent[items[i][1]]) * 1000)
    return out


def _epoch(value: Any) -> float:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when.timestamp()


def cpu(procs: list[Proc]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_seconds(p.proc.pid)
    return total


def setup(
    name: str,
    url: str,
    serves: int,
    workers: int,
    args: argparse.Namespace,
    tmp: Path,
    *,
    kill: bool = False,
) -> Result:
    """Start the processes, run the screenings, wait for every reply, measure (and count)."""
    tmp.mkdir(parents=True, exist_ok=True)
    mode = "separate" if workers else "inline"
    settings = {**SETTINGS, "processes": {"worker": mode}}
    with FakeTwilio() as twilio:
        running = Cluster(tmp, twilio, url, settings)
        try:
            for _ in range(serves):
                running.start("serve")
            for _ in range(workers):
                running.start("worker")
            running.wait_ready()
            plans = spread(running, args.patients, args.concurrency, tmp)
            total = sum(p[3] for p in plans)
            procs = list(running.procs)
            cpu0 = cpu(procs)
            killer = None
            if kill:
                killer = threading.Thread(target=kill_mid_run, args=(running, url, total))
                killer.start()
            run = load(plans)
            if killer is not None:
                killer.join()
            deadline = time.monotonic() + 180
            while not settled(url):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name}: replies still pending 180 s after the load")
                time.sleep(0.1)
            used = cpu([p for p in running.procs if p.proc.poll() is None]) - cpu0
            assert run.sent is not None
            visible = reply_latency(url, twilio, run.sent)
            counts = None
            if kill:
                sent = Load(sent={number(n): list(SCREENING) for n in range(args.patients)})
                sent.ok = run.messages - run.errors
                counts = tally(url, twilio, sent).as_dict()
        finally:
            running.stop()
    return Result(
        name,
        run.messages,
        run.rate,
        pct(visible, 0.5) if visible else 0.0,
        pct(visible, 0.99) if visible else 0.0,
        run.errors,
        max(0.0, used) * 1000 / max(1, run.messages),
        len(visible),
        counts,
    )


def kill_mid_run(running: Cluster, url: str, total: int) -> None:
    """When 40 % of the messages are in, kill -9 a worker and start another."""
    store = open_store(url)
    try:
        while True:
            (count,) = store._rows("SELECT count(*) FROM inbox")[0]  # type: ignore[attr-defined]
            if int(count) >= total * 0.4:
                break
            time.sleep(0.05)
    finally:
        store.close()
    running.of("worker")[0].kill9()
    running.start("worker")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/ alone")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: sh scripts/install-system-deps.sh")
    if pg_bin() is None:
        raise SystemExit("PostgreSQL is not installed: sh scripts/install-system-deps.sh")
    py = str(ROOT / ".venv" / "bin" / "python")
    subprocess.run(  # warm the NLU cache so start-up measures the server, not a first training
        [py, "-c", "from nlu.interpreter import default_interpreter as d; d().warm('en')"],
        cwd=ROOT,
        check=True,
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        results.append(
            setup("SQLite, 1 serve (inline)", f"sqlite:///{tmp}/a/bench.db", 1, 0, args, tmp / "a")
        )
        for key, (serves, workers, kill) in {
            "b": (1, 1, False),
            "c": (2, 2, False),
            "d": (2, 2, True),
        }.items():
            with postgres() as url:
                name = f"PostgreSQL, {serves} serve + {workers} worker"
                if kill:
                    name += ", kill -9 of a worker"
                results.append(setup(name, url, serves, workers, args, tmp / key, kill=kill))
    print_and_write(results, args)


def print_and_write(results: list[Result], args: argparse.Namespace) -> None:
    base = next(r for r in results if r.name.startswith("PostgreSQL, 1 serve"))
    two = next(r for r in results if r.name == "PostgreSQL, 2 serve + 2 worker")
    killed = next(r for r in results if r.counts is not None)
    counts = killed.counts or {}
    load_avg = os.getloadavg()[0]
    lines = [
        f"{args.patients} patients x {len(SCREENING)} signed webhooks (full COVID-19"
        f" screenings), {args.concurrency} concurrent patients (wrk, one per serve port, whole"
        " patients spread across the serves as a balancer would), fake Twilio on loopback, every"
        " process on this machine (the load generator and PostgreSQL too), one run."
        f" {os.cpu_count()} CPUs; load average at the end {load_avg:.1f} (a shared machine).",
        "",
        "| setup | messages/s | reply at provider p50 / p99 ms | CPU ms/msg (all processes)"
        " | replies | webhook errors |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.rate:.0f} | {r.p50:.0f} / {r.p99:.0f} | {r.cpu_ms:.1f}"
            f" | {r.replies} | {r.errors} |"
        )
    lines += [
        "",
        f"2 + 2 over 1 + 1 on PostgreSQL: **{two.rate / base.rate:.2f}x** messages/s.",
        "",
        f"Kill -9 of one worker mid-run (then a new one started): {counts.get('messages', 0)}"
        f" messages, **{counts.get('lost', 0)} lost, {counts.get('twice', 0)} handled twice,"
        f" {counts.get('undelivered', 0)} replies undelivered,"
        f" {counts.get('duplicates', 0)} duplicates** (bound: {BOUND} per channel per crash,"
        f" docs/channels.md), {counts.get('disordered', 0)} conversations out of order,"
        f" {counts.get('unfinished', 0)} screenings unfinished. Replies the killed worker had"
        " claimed wait for their lease (`delivery.lease_s`, 15 s) before another worker takes"
        " them; duplicates are replies it had sent but not yet recorded.",
        "",
        "**Reading this on this machine.** It has 2 cores, shared by everything in the run (wrk,"
        " the fake Twilio, PostgreSQL and every carebridge process) and by other jobs (the load"
        " average above). Handling a message is CPU work in one Python interpreter (NLU, engine,"
        " rendering), so one serve uses at most one core. With the machine otherwise quiet,"
        " 2 serves use both cores and 2 + 2 comes near twice 1 + 1; with the cores taken by"
        " other jobs, more processes only take turns on what is left and pay for the switching"
        " (0.57x at load 18.6 on 2026-12-03). So compare the ratio with the load average. A"
        " separate worker adds up to `processes.poll_s` (0.2 s) to each reply, where an inline"
        " dispatcher is woken at once, and PostgreSQL costs a network round trip per statement"
        " where SQLite is a function call: that is why 1 + 1 on PostgreSQL is slower than one"
        " SQLite process, and why the embedded default (SQLite, one process) stays the default"
        " for one small machine.",
        "",
        "**What more cores give** (expected, not measured here). The serve processes share"
        " nothing but the database, so with a core for each and PostgreSQL on a machine of its"
        " own, messages/s grows with the number of serves until PostgreSQL's commits are the"
        " limit (each message is two short transactions; one PostgreSQL core commits several"
        " thousand such transactions a second). Workers scale the same way for sending, up to"
        " the providers' rate limits (`channels.*.rate_per_s`, shared among the live workers:"
        " docs/deploy.md)."
        " SQLite cannot follow: one writer per file, one machine.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_doc:
        write_section("scale", "Scale-out: serve x N, worker x M (`bench/scale.py`)", text)


if __name__ == "__main__":
    main()
