"""Webhook benchmark that measures the server, not its client: simulated patients complete the
COVID-19 screening over signed Twilio webhooks sent by wrk (one connection per thread, each
replaying its patients' precomputed signed requests in order; a LuaJIT script logs when each
request went and its answer came), against `carebridge serve` (SQLite) with the fake Twilio on
loopback, and against a bare Starlette form handler on the same stack in the same run.

    .venv/bin/python bench/webhook.py [--patients 64] [--concurrency 32] [--profile out.json]

Reports messages/s and the ratio to the bare handler, webhook latency, the patient-visible
latency (webhook POST -> the reply's arrival at the fake provider, p50 and p99), replies still
queued 2 s after the load stops, CPU per message, peak RSS and time to /readyz (/healthz when
there is no /readyz). Prints a table and rewrites the "webhook" section of docs/benchmarks.md.
Needs `wrk` (Debian package; scripts/install-system-deps.sh installs it).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import httpx
import yaml
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from fakes.twilio_server import FakeTwilio, inbound_params  # noqa: E402
from patients import COVID_SCREENING as SCREENING  # noqa: E402
from report import write_section  # noqa: E402

TOKEN = "bench-token"
SID = "AC" + "0" * 32
PATH = "/webhooks/twilio/sms"
TICKS = os.sysconf("SC_CLK_TCK")

BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def hook(request):
    form = await request.form()
    _ = dict(form)
    twiml = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    return Response(twiml, media_type="application/xml")

app = Starlette(routes=[Route("/webhooks/twilio/sms", hook, methods=["POST"])])
"""

# The least any reply-sending webhook does, with nothing of carebridge in it: check the Twilio
# signature, store the inbound message and one reply in one SQLite transaction (WAL), answer,
# and send the reply to the (fake) provider over one aiohttp session, marking it sent. No NLU,
# no flow, no conversation state. Its messages/s bounds what any implementation of the service
# could reach on this machine and stack.
FLOOR_APP = """
import asyncio, os, sqlite3, time
from urllib.parse import urlencode

import aiohttp
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

SID, TOKEN = os.environ["FLOOR_SID"], os.environ["FLOOR_TOKEN"]
VALIDATOR = RequestValidator(TOKEN)
PUBLIC = os.environ["FLOOR_PUBLIC"]
API = os.environ["FLOOR_API"] + "/2010-04-01/Accounts/" + SID + "/Messages.json"
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
db = sqlite3.connect(os.environ["FLOOR_DB"], isolation_level=None, check_same_thread=False)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=NORMAL")
db.execute("CREATE TABLE inbox (sid TEXT PRIMARY KEY, address TEXT, body TEXT, at REAL)")
db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, address TEXT, body TEXT,"
           " status TEXT, provider_id TEXT)")
state = {}
tasks = set()

async def send(row_id, to, body):
    if "http" not in state:
        state["http"] = aiohttp.ClientSession(auth=aiohttp.BasicAuth(SID, TOKEN))
    form = urlencode({"To": to, "From": "+15550009999", "Body": body})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with state["http"].post(API, data=form, headers=headers) as answer:
        sid = (await answer.json())["sid"]
    db.execute("UPDATE outbox SET status = 'sent', provider_id = ? WHERE id = ?", (sid, row_id))

async def hook(request):
    form = dict(await request.form())
    signature = request.headers.get("X-Twilio-Signature", "")
    if not VALIDATOR.validate(PUBLIC + request.url.path, form, signature):
        return Response(status_code=403)
    reply = "Thank you, we got your message."
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT OR IGNORE INTO inbox VALUES (?, ?, ?, ?)",
               (form["MessageSid"], form["From"], form["Body"], time.time()))
    row = db.execute("INSERT INTO outbox (address, body, status) VALUES (?, ?, 'queued')",
                     (form["From"], reply)).lastrowid
    db.execute("COMMIT")
    task = asyncio.create_task(send(row, form["From"], reply))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return Response(EMPTY, media_type="application/xml")

app = Starlette(routes=[Route("/webhooks/twilio/sms", hook, methods=["POST"])])
"""

# One wrk thread = one connection = one lane of patients, in script order. Each thread reads
# its requests (one per line: sid, body, signature) and logs "sid sent_at answered_at status".
LUA = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } cb_timeval;
int gettimeofday(cb_timeval *tv, void *tz);
]]
local tv = ffi.new("cb_timeval")
local function now()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6
end
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("lane", counter)
end
function init(args)
  dir = args[1]
  reqs, sids, i, sent = {}, {}, 1, 0
  for line in io.lines(dir .. "/lane" .. lane .. ".txt") do
    local sid, body, sig = line:match("([^\t]+)\t([^\t]+)\t([^\t]+)")
    sids[#sids + 1] = sid
    reqs[#reqs + 1] = wrk.format("POST", "__PATH__", {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["X-Twilio-Signature"] = sig,
    }, body)
  end
  out = io.open(dir .. "/log" .. lane .. ".txt", "w")
end
function request()
  sent = now()
  return reqs[i] or reqs[#reqs]
end
function response(status, headers, body)
  if i <= #reqs then
    out:write(string.format("%s %.6f %.6f %d\n", sids[i], sent, now(), status))
    i = i + 1
    if i > #reqs then
      out:close()
      wrk.thread:stop()
    end
  end
end
""".replace("__PATH__", PATH)


@dataclass
class Run:
    """One server under the scripted load."""

    messages: int = 0
    elapsed: float = 0.0
    webhook_ms: tuple[float, float] = (0.0, 0.0)  # p50, p99
    first: float = 0.0
    last: float = 0.0
    errors: int = 0
    sent: dict[str, float] | None = None  # sid -> when the POST went (time.time())

    @property
    def rate(self) -> float:
        return self.messages / self.elapsed if self.elapsed else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))]


def write_lanes(base: str, patients: int, concurrency: int, into: Path) -> int:
    """Precompute every signed request, `concurrency` lanes of whole patients in order."""
    validator = RequestValidator(TOKEN)
    url = base + PATH
    lanes: list[list[str]] = [[] for _ in range(concurrency)]
    for n in range(patients):
        for i, line in enumerate(SCREENING):
            sid = f"SM{n:016d}{i:016d}"
            params = inbound_params(f"+1555{n:07d}", line, message_sid=sid)
            sig = validator.compute_signature(url, params)
            lanes[n % concurrency].append(f"{sid}\t{urlencode(params)}\t{sig}")
    for k, lines in enumerate(lanes, 1):
        (into / f"lane{k}.txt").write_text("\n".join(lines) + "\n")
    return sum(len(lines) for lines in lanes)


def drive(base: str, concurrency: int, into: Path, total: int) -> Run:
    """Run wrk until every lane has logged all its answers; parse the logs."""
    script = into / "screening.lua"
    script.write_text(LUA)
    for old in into.glob("log*.txt"):
        old.unlink()
    wrk = subprocess.Popen(
        [
            "wrk",
            f"-t{concurrency}",
            f"-c{concurrency}",
            "-d600s",
            "--timeout",
            "60s",
            "-s",
            str(script),
            base,
            "--",
            str(into),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while sum(_lines(p) for p in into.glob("log*.txt")) < total:
            if wrk.poll() is not None:
                raise RuntimeError("wrk exited early")
            time.sleep(0.05)
    finally:
        wrk.send_signal(signal.SIGINT)
        wrk.wait(10)
    rows = [line.split() for p in into.glob("log*.txt") for line in p.read_text().splitlines()]
    sent = {sid: float(t0) for sid, t0, _, _ in rows}
    first = min(float(r[1]) for r in rows)
    last = max(float(r[2]) for r in rows)
    lat = [(float(t1) - float(t0)) * 1000 for _, t0, t1, _ in rows]
    return Run(
        messages=len(rows),
        elapsed=last - first,
        webhook_ms=(pct(lat, 0.5), pct(lat, 0.99)),
        first=first,
        last=last,
        errors=sum(1 for r in rows if r[3] != "200"),
        sent=sent,
    )


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[float, str]:
    """Seconds until /readyz answers 200 (or /healthz, when the server has no /readyz)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            ready = httpx.get(base + "/readyz", timeout=0.5).status_code
            if ready == 200:
                return time.monotonic() - start, "/readyz"
            if ready == 404 and httpx.get(base + "/healthz", timeout=0.5).status_code == 200:
                return time.monotonic() - start, "/healthz"
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{base} was not ready in {timeout} s")


def patient_latency(db: Path, twilio: FakeTwilio, sent: dict[str, float]) -> list[float]:
    """Per reply: its arrival at the fake provider minus the POST of the message it answers
    (the patient's latest message handled before the reply was queued)."""
    with sqlite3.connect(db) as conn:
        inbox = conn.execute("SELECT address, provider_id, received_at FROM inbox").fetchall()
        outbox = conn.execute(
            "SELECT address, created_at, provider_id FROM outbox WHERE provider_id IS NOT NULL"
        ).fetchall()
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


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def queued(db: Path) -> int:
    with sqlite3.connect(db, timeout=10) as conn:
        ((n,),) = conn.execute(
            "SELECT count(*) FROM outbox WHERE status IN ('queued', 'sending')"
        ).fetchall()
    return int(n)


def completed_screenings(db: Path) -> int:
    """Patients whose COVID-19 screening reached a triage level."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT contact_id) FROM sessions"
            " WHERE json_extract(state, '$.triage') IS NOT NULL"
        ).fetchone()
    return int(row[0])


def bench_serve(args: argparse.Namespace, tmp: Path, py: str) -> dict[str, float | str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with FakeTwilio(account_sid=SID, auth_token=TOKEN) as twilio:
        config = yaml.safe_load((ROOT / "config.yaml").read_text())
        config["storage"]["url"] = f"sqlite:///{tmp}/bench.db"
        config["server"].update({"public_url": base, "port": port})
        config["twilio"].update({"api_base_url": twilio.url, "sms_from": "+15550009999"})
        config["channels"]["sms"]["rate_per_s"] = 1000.0  # the dispatcher's speed, not Twilio's
        cfg_path = tmp / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(config))
        env = {
            **os.environ,
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "CAREBRIDGE_CONFIG": str(cfg_path),
        }
        total = write_lanes(base, args.patients, args.concurrency, tmp)
        proc = subprocess.Popen(
            [py, "-m", "bot.cli", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            ready_s, probe = wait_ready(base, proc)
            if args.settle is None:  # without /readyz the NLU still warms up after /healthz
                args.settle = 0.0 if probe == "/readyz" else 15.0
            time.sleep(args.settle)
            cpu0 = cpu_seconds(proc.pid)
            spy = profile(args.profile, proc.pid)
            run = drive(base, args.concurrency, tmp, total)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            time.sleep(max(0.0, run.last + 2.0 - time.time()))
            left_2s = queued(tmp / "bench.db")
            deadline = time.monotonic() + 120
            while queued(tmp / "bench.db") and time.monotonic() < deadline:
                time.sleep(0.05)
            cpu = cpu_seconds(proc.pid) - cpu0
            peak = proc_status(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            proc.wait(15)
        assert run.sent is not None
        visible = patient_latency(tmp / "bench.db", twilio, run.sent)
    finished = completed_screenings(tmp / "bench.db")
    if finished != args.patients:  # a stale script would measure something else
        raise SystemExit(f"only {finished} of {args.patients} patients finished the screening")
    return {
        "msg_per_s": run.rate,
        "webhook_p50": run.webhook_ms[0],
        "webhook_p99": run.webhook_ms[1],
        "errors": run.errors,
        "replies": len(visible),
        "visible_p50": pct(visible, 0.5),
        "visible_p99": pct(visible, 0.99),
        "left_2s": left_2s,
        "cpu_ms_per_msg": cpu * 1000 / run.messages,
        "peak_rss_mb": peak,
        "ready_s": ready_s,
        "probe": probe,
        "messages": run.messages,
    }


def bench_plain(
    args: argparse.Namespace, tmp: Path, py: str, source: str, env: dict[str, str] | None = None
) -> dict[str, float]:
    """A one-file Starlette app (`source`) under the same uvicorn and the same scripted load."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (tmp / "plain_app.py").write_text(source)
    total = write_lanes(base, args.patients, args.concurrency, tmp)
    proc = subprocess.Popen(
        [
            *(py, "-m", "uvicorn", "--app-dir", str(tmp), "plain_app:app"),
            *("--port", str(port), "--log-level", "warning", "--no-access-log"),
        ],
        cwd=ROOT,
        env={**os.environ, **(env or {}), "FLOOR_PUBLIC": base},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + PATH, timeout=0.5)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        cpu0 = cpu_seconds(proc.pid)
        run = drive(base, args.concurrency, tmp, total)
        time.sleep(max(0.0, run.last + 2.0 - time.time()))  # replies still in flight
        cpu = cpu_seconds(proc.pid) - cpu0
        flat = wrk_flat(base, tmp) if env is None else 0.0
        peak = proc_status(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(10)
    return {
        "msg_per_s": run.rate,
        "webhook_p50": run.webhook_ms[0],
        "webhook_p99": run.webhook_ms[1],
        "cpu_ms_per_msg": cpu * 1000 / run.messages,
        "peak_rss_mb": peak,
        "flat_req_per_s": flat,
        "errors": run.errors,
    }


def bench_floor(args: argparse.Namespace, tmp: Path, py: str) -> dict[str, float]:
    """FLOOR_APP against its own fake Twilio; counts the replies that reached it."""
    with FakeTwilio(account_sid=SID, auth_token=TOKEN) as twilio:
        env = {
            "FLOOR_SID": SID,
            "FLOOR_TOKEN": TOKEN,
            "FLOOR_API": twilio.url,
            "FLOOR_DB": str(tmp / "floor.db"),
        }
        result = bench_plain(args, tmp, py, FLOOR_APP, env)
        with twilio.lock:
            result["replies"] = len(twilio.messages)
    return result


def profile(out: str | None, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy (dev extra) sampling the server while the load runs, as a speedscope file."""
    if not out:
        return None
    spy = str(ROOT / ".venv" / "bin" / "py-spy")
    cmd = [spy, "record", "--pid", str(pid), "--threads", "--gil", "--format", "speedscope"]
    cmd += ["-o", out]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# The store's query modules (bot/store/*.py but the owner thread, counted as hand-off below).
STORE_MODULES = tuple(
    f"bot/store/{path.name}"
    for path in (ROOT / "bot" / "store").glob("*.py")
    if path.name != "owner.py"
)

# Where a message's CPU goes, from the py-spy profile: each GIL sample goes to the first part
# whose marker (a source path fragment) is on its stack, in this order; "other" is the
# event loop itself.
PARTS = (
    ("NLU (nlu/)", ("/nlu/",)),
    ("conversation engine and rendering", ("bot/engine.py", "channels/render.py")),
    ("outbound send (twilio library + aiohttp)", ("/twilio/", "/aiohttp/", "channels/twilio.py")),
    ("store queries (SQLite)", ("/sqlite_utils/", *STORE_MODULES)),
    ("inbound HTTP (uvicorn, starlette, signature)", ("/uvicorn/", "/starlette/", "bot/web.py")),
    ("message handling around them (bot/app.py)", ("bot/app.py",)),
    ("dispatcher and store-thread hand-off", ("bot/dispatch.py", "bot/store/owner.py")),
)


def breakdown(path: str) -> list[tuple[str, float]]:
    """Share of GIL samples per part of PARTS (and "other"), from a speedscope file."""
    data = json.loads(Path(path).read_text())
    files = [f.get("file", "") for f in data["shared"]["frames"]]
    counts = dict.fromkeys([name for name, _ in PARTS] + ["other"], 0.0)
    for prof in data["profiles"]:
        for stack, weight in zip(prof["samples"], prof["weights"], strict=True):
            on = [files[i] for i in stack]
            part = next(
                (n for n, marks in PARTS if any(m in f for f in on for m in marks)), "other"
            )
            counts[part] += weight
    total = sum(counts.values()) or 1.0
    return [(name, n / total) for name, n in counts.items()]


def wrk_flat(base: str, tmp: Path) -> float:
    """wrk's own ceiling check: one signed request over and over, 2 threads, 32 connections."""
    first = (tmp / "lane1.txt").read_text().splitlines()[0].split("\t")
    script = tmp / "flat.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{first[1]}"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["X-Twilio-Signature"] = "{first[2]}"\n'
    )
    out = subprocess.run(
        ["wrk", "-t2", "-c32", "-d4s", "-s", str(script), base + PATH],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("Requests/sec:"))
    return float(line.split()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument(
        "--settle",
        type=float,
        help="seconds between ready and load (default: 0 after /readyz, 15 after /healthz)",
    )
    ap.add_argument(
        "--profile",
        help="write a py-spy profile of the server (speedscope JSON) and report where the CPU goes",
    )
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/ alone")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: sh scripts/install-system-deps.sh")
    py = str(ROOT / ".venv" / "bin" / "python")
    subprocess.run(  # warm the NLU cache so start-up measures the server, not a first training
        [py, "-c", "from nlu.interpreter import default_interpreter as d; d().warm('en')"],
        cwd=ROOT,
        check=True,
    )
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        ours = bench_serve(args, Path(a), py)
        bare = bench_plain(args, Path(b), py, BARE_APP)
    with tempfile.TemporaryDirectory() as c:
        floor = bench_floor(args, Path(c), py)
    ratio = float(ours["msg_per_s"]) / bare["msg_per_s"]
    floor_ratio = floor["msg_per_s"] / bare["msg_per_s"]
    load = os.getloadavg()[0]
    lines = [
        f"{args.patients} patients x {len(SCREENING)} signed webhooks (full COVID-19 screenings),"
        f" {args.concurrency} concurrent patients (wrk: one connection per thread, precomputed"
        " signed requests), SQLite, one uvicorn worker (httptools, uvloop), fake Twilio on"
        f" loopback, load {args.settle:g} s after ready, same run. Load average at the end:"
        f" {load:.1f} on {os.cpu_count()} CPUs"
        " (a shared machine: compare within the table).",
        "",
        "| server | messages/s | webhook p50 / p99 ms | reply at provider p50 / p99 ms"
        " | queued 2 s after | CPU ms/msg | peak RSS MB | ready s |",
        "|---|---|---|---|---|---|---|---|",
        f"| carebridge serve | {ours['msg_per_s']:.0f} | {ours['webhook_p50']:.1f} /"
        f" {ours['webhook_p99']:.1f} | {ours['visible_p50']:.0f} / {ours['visible_p99']:.0f}"
        f" | {ours['left_2s']} | {ours['cpu_ms_per_msg']:.2f} | {ours['peak_rss_mb']:.0f}"
        f" | {ours['ready_s']:.2f} ({ours['probe']}) |",
        f"| bare Starlette form handler | {bare['msg_per_s']:.0f} | {bare['webhook_p50']:.1f} /"
        f" {bare['webhook_p99']:.1f} | - | - | {bare['cpu_ms_per_msg']:.2f}"
        f" | {bare['peak_rss_mb']:.0f} | - |",
        f"| floor: signature + 2 SQLite rows + 1 reply sent, nothing else"
        f" | {floor['msg_per_s']:.0f} | {floor['webhook_p50']:.1f} / {floor['webhook_p99']:.1f}"
        f" | - | - | {floor['cpu_ms_per_msg']:.2f} | {floor['peak_rss_mb']:.0f} | - |",
        "",
        f"Ratio to the bare handler: **{ratio:.2f}** (target >= 0.3). Replies delivered:"
        f" {ours['replies']} for {ours['messages']} messages; webhook errors: {ours['errors']}.",
        f"wrk against the bare handler with one request repeated (2 threads, 32 connections):"
        f" {bare['flat_req_per_s']:.0f} req/s, so the load generator is not the limit.",
        f"The floor (no NLU, no flow, no conversation state; {floor['replies']:.0f} replies"
        f" reached the fake provider, {floor['errors']:.0f} webhook errors) reaches"
        f" **{floor_ratio:.2f}** of the bare handler: what any implementation could reach here.",
    ]
    if args.profile:
        cpu = float(ours["cpu_ms_per_msg"])
        lines += [
            "",
            f"Where the {cpu:.2f} ms of CPU per message goes (py-spy, GIL samples during the"
            " load, `--profile`):",
            "",
            "| part | share | ms per message |",
            "|---|---|---|",
        ]
        lines += [f"| {n} | {100 * f:.0f}% | {f * cpu:.2f} |" for n, f in breakdown(args.profile)]
    if ours["probe"] != "/readyz":
        lines.append("This build has no /readyz yet: the ready column is /healthz.")
    text = "\n".join(lines)
    print(text)
    if not args.no_doc:
        write_section("webhook", "Webhooks (`bench/webhook.py`)", text)


if __name__ == "__main__":
    main()
