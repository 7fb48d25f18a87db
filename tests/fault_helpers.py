"""Drive `carebridge serve` as a real subprocess for the fault suite: a config on a temporary
database pointed at fake providers on loopback, start / kill -9 / restart, patients who post
signed Twilio webhooks and retry until acknowledged (as Twilio does), and the ledger counts
(processed inbound, delivered replies, duplicates) read from the database and the fakes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from fakes.telegram_server import FakeTelegram, message_update
from fakes.twilio_server import FakeTwilio, inbound_params, signed_request
from pg import db_rows

from bot.store import open_store
from channels.render import render

ROOT = Path(__file__).resolve().parent.parent
SMS_FROM = "+15550009999"
TG_SECRET = "fault-secret"
RED_FLAG = "I can't breathe and my lips are blue"
EMERGENCY_NUMBER = "112"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Serve:
    """One `carebridge serve` process (restartable) on a fixed port and database."""

    tmp: Path
    twilio: FakeTwilio
    telegram: FakeTelegram | None = None
    store_url: str = ""  # an empty, migrated store (tests/pg.py); default: SQLite in `tmp`
    delivery: dict[str, Any] = field(default_factory=dict)
    sms_rate: float = 40.0
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.tmp / "serve.log"
        self.store_url = self.store_url or f"sqlite:///{self.tmp / 'carebridge.db'}"
        config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
        config["storage"]["url"] = self.store_url
        config["server"].update({"public_url": self.url, "port": self.port})
        config["twilio"].update({"api_base_url": self.twilio.url, "sms_from": SMS_FROM})
        config["channels"]["sms"]["rate_per_s"] = self.sms_rate
        config["channels"]["whatsapp"]["enabled"] = False
        config["channels"]["telegram"]["enabled"] = self.telegram is not None
        if self.telegram is not None:
            config["telegram"]["api_base_url"] = self.telegram.url
        config["delivery"].update(self.delivery)
        # serve dispatches and sweeps itself on either engine (on PostgreSQL `auto` would leave
        # that to `carebridge worker` processes: tests/test_workers_cluster.py drives those)
        config["processes"]["worker"] = "inline"
        (self.tmp / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "CAREBRIDGE_CONFIG": str(self.tmp / "config.yaml"),
            "TWILIO_ACCOUNT_SID": self.twilio.account_sid,
            "TWILIO_AUTH_TOKEN": self.twilio.auth_token,
        }
        if self.telegram is not None:
            env.update(TELEGRAM_BOT_TOKEN=self.telegram.token, TELEGRAM_WEBHOOK_SECRET=TG_SECRET)
        return env

    def start(self, timeout: float = 120.0) -> float:
        """Start and wait until it answers (/readyz when it exists, else /healthz)."""
        began = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "serve", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        while time.monotonic() - began < timeout:
            assert self.proc.poll() is None, f"serve exited: {self.log.read_text()[-2000:]}"
            for path in ("/readyz", "/healthz"):
                try:
                    # a loaded machine answers slowly: a short timeout would never see the 200
                    code = httpx.get(self.url + path, timeout=10).status_code
                except httpx.HTTPError:
                    break
                if code == 200:
                    return time.monotonic() - began
                if code != 404:
                    break  # /readyz exists and says not yet
            time.sleep(0.05)
        raise AssertionError(f"serve did not become ready in {timeout} s")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    # -- reading the ledger ---------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return db_rows(self.store_url, sql, params)


@contextmanager
def serving(serve: Serve) -> Iterator[Serve]:
    serve.start()
    try:
        yield serve
    finally:
        serve.stop()


class Patients:
    """Simulated patients posting signed SMS webhooks, each retried until acknowledged."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.acked: set[str] = set()
        self.lock = threading.Lock()
        self._seq = 0

    def number(self, n: int) -> str:
        return f"+1555{n:07d}"

    def post(self, n: int, text: str, *, deadline_s: float = 90.0) -> float:
        """POST until a 200 (connection errors and 5xx are retried as Twilio retries); returns
        when the first attempt was made (time.time())."""
        with self.lock:
            self._seq += 1
            sid = f"SM{n:016x}{self._seq:016x}"
        url = f"{self.serve.url}/webhooks/twilio/sms"
        req = signed_request(
            url, inbound_params(self.number(n), text, message_sid=sid), self.serve.twilio.auth_token
        )
        first = time.time()
        give_up = time.monotonic() + deadline_s
        while time.monotonic() < give_up:
            try:
                r = httpx.post(url, data=req.data, headers=req.headers, timeout=10)
                if r.status_code == 200:
                    with self.lock:
                        self.acked.add(sid)
                    return first
                assert r.status_code >= 500, f"webhook answered {r.status_code}"
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"message {sid} was never acknowledged")

    def run_script(self, n: int, script: list[str]) -> None:
        for text in script:
            self.post(n, text)


def telegram_post(serve: Serve, chat_id: int, text: str) -> int:
    update = message_update(chat_id, text)
    r = httpx.post(
        f"{serve.url}/webhooks/telegram",
        json=update,
        headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET},
        timeout=10,
    )
    return r.status_code


@dataclass(frozen=True)
class Ledger:
    """What the database and the fake provider say about every reply."""

    inbound: int  # rows in the inbox
    unprocessed: int  # inbox rows never handled
    transcript_in: int  # inbound lines in transcripts (one per handled message)
    replies: int  # outbox rows
    not_sent: int  # outbox rows not sent or delivered
    delivered: int  # distinct replies that reached the provider
    duplicates: int  # extra copies the provider received
    missing: int  # replies the provider never received


def ledger(serve: Serve) -> Ledger:
    (inbound, unprocessed), *_ = serve.query(
        "SELECT count(*), count(*) - count(processed_at) FROM inbox"
    )
    ((transcript_in,),) = serve.query("SELECT count(*) FROM transcript WHERE direction = 'in'")
    with open_store(serve.store_url) as store:
        rows = [r for r in store.outbox() if r.outbound.channel == "sms"]
    wanted = Counter((r.outbound.address, render(r.outbound).text) for r in rows)
    with serve.twilio.lock:
        got = Counter((m["to"], m["body"]) for m in serve.twilio.messages)
    not_sent = sum(1 for r in rows if r.status not in ("sent", "delivered"))
    return Ledger(
        inbound=inbound,
        unprocessed=unprocessed,
        transcript_in=transcript_in,
        replies=len(rows),
        not_sent=not_sent,
        delivered=sum(min(n, got[key]) for key, n in wanted.items()),
        duplicates=sum(max(0, got[key] - n) for key, n in wanted.items()),
        missing=sum(max(0, n - got[key]) for key, n in wanted.items()),
    )


def arrival(twilio: FakeTwilio, number: str, contains: str, after: float) -> float | None:
    """When the first message to `number` containing `contains` reached the fake, after
    `after` (time.time()), or None."""
    with twilio.lock:
        times = [
            m["_at"]
            for m in twilio.messages
            if m["to"] == number and contains in m["body"] and m["_at"] >= after
        ]
    return min(times) if times else None


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)
