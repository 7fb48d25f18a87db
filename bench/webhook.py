"""Webhook throughput: simulated patients complete the COVID-19 screening over signed Twilio
webhooks at 32 concurrent connections against a running `carebridge serve` (SQLite), next to a
bare ASGI handler that only parses the same form (the framework's ceiling), in the same run.

    .venv/bin/python bench/webhook.py [--patients 64] [--concurrency 32]

Prints a table and rewrites the "webhook" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
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


def completed_screenings(db: Path) -> int:
    """Patients whose COVID-19 screening reached a triage level."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT contact_id) FROM sessions"
            " WHERE json_extract(state, '$.triage') IS NOT NULL"
        ).fetchone()
    return int(row[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            if httpx.get(url, timeout=0.5).status_code < 500:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


async def load(base: str, patients: int, concurrency: int, pid: int) -> dict[str, float]:
    url = f"{base}/webhooks/twilio/sms"
    validator = RequestValidator(TOKEN)
    latencies: list[float] = []
    peak = [rss_mb(pid)]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)

    def signed(n: int, i: int, line: str) -> tuple[bytes, dict[str, str]]:
        params = inbound_params(f"+1555{n:07d}", line, message_sid=f"SM{n:016d}{i:016d}")
        headers = {
            "X-Twilio-Signature": validator.compute_signature(url, params),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return urlencode(params).encode(), headers

    # bodies and signatures are made before the clock starts: the client should not be the limit
    requests = {
        n: [signed(n, i, line) for i, line in enumerate(SCREENING)] for n in range(patients)
    }

    async def patient(client: httpx.AsyncClient, n: int) -> None:
        for body, headers in requests[n]:
            async with sem:
                t = time.perf_counter()
                r = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"webhook answered {r.status_code}")

    async def sample() -> None:
        while True:
            peak.append(rss_mb(pid))
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    start = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await asyncio.gather(*(patient(client, n) for n in range(patients)))
    elapsed = time.perf_counter() - start
    sampler.cancel()
    latencies.sort()
    return {
        "messages": len(latencies),
        "msg_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "peak_rss_mb": max(peak),
    }


def run_server(
    cmd: list[str], env: dict[str, str], health: str
) -> tuple[subprocess.Popen[bytes], float]:
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    return proc, wait_healthy(health, proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    py = str(ROOT / ".venv" / "bin" / "python")
    results: dict[str, dict[str, float]] = {}
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
        # warm the NLU cache so start-up measures the server, not a first-ever training
        subprocess.run(
            [py, "-c", "from nlu.interpreter import default_interpreter as d; d().warm('en')"],
            cwd=ROOT,
            check=True,
        )
        proc, startup = run_server(
            [py, "-m", "bot.cli", "serve", "--port", str(port)], env, f"{base}/healthz"
        )
        try:
            results["carebridge serve"] = asyncio.run(
                load(base, args.patients, args.concurrency, proc.pid)
            )
            results["carebridge serve"]["startup_s"] = startup
        finally:
            proc.terminate()
            proc.wait(10)
        finished = completed_screenings(Path(tmp) / "bench.db")
        if finished != args.patients:  # a stale script would measure something else
            raise SystemExit(f"only {finished} of {args.patients} patients finished the screening")
        bare = Path(tmp) / "bare_app.py"
        bare.write_text(BARE_APP)
        port = free_port()
        bproc, bstart = run_server(
            [
                py,
                "-m",
                "uvicorn",
                "--app-dir",
                tmp,
                "bare_app:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env,
            f"http://127.0.0.1:{port}/webhooks/twilio/sms",
        )
        try:
            results["bare ASGI form handler"] = asyncio.run(
                load(f"http://127.0.0.1:{port}", args.patients, args.concurrency, bproc.pid)
            )
            results["bare ASGI form handler"]["startup_s"] = bstart
        finally:
            bproc.terminate()
            bproc.wait(10)
    ours, bare_r = results["carebridge serve"], results["bare ASGI form handler"]
    ratio = ours["msg_per_s"] / bare_r["msg_per_s"]
    lines = [
        f"{args.patients} patients x {len(SCREENING)} signed webhooks, "
        f"{args.concurrency} concurrent connections, SQLite, one uvicorn worker, same run.",
        "",
        "| server | messages/s | p50 ms | p99 ms | peak RSS MB | /healthz after start s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['msg_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['peak_rss_mb']:.0f} | {r['startup_s']:.2f} |"
        )
    lines += ["", f"Ratio to the bare-handler ceiling: **{ratio:.2f}**"]
    text = "\n".join(lines)
    print(text)
    write_section("webhook", "Webhooks (`bench/webhook.py`)", text)


if __name__ == "__main__":
    main()
