"""A carebridge deployment on loopback for tests and bench/scale.py: N `carebridge serve` and M
`carebridge worker` processes on one store (SQLite file or PostgreSQL URL), SMS through the fake
Twilio; patients who run whole screenings over signed webhooks spread across the serves; and
the tally that proves nothing was lost, handled twice or left undelivered.
Imports the fakes, httpx, PyYAML and bot.store (read-back only).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from fakes.twilio_server import FakeTwilio, inbound_params, signed_request

from bot.store import OutboxStatus, open_store

ROOT = Path(__file__).resolve().parent.parent
_SCRIPT = Path(sys.executable).with_name("carebridge")
CAREBRIDGE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "bot.cli"]
SMS_FROM = "+15550009999"
START_TIMEOUT = 180.0  # 2 cores shared by many test runs; serve warms the NLU before ready


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """One carebridge process and what it printed."""

    kind: str  # serve | worker
    proc: subprocess.Popen[str]
    port: int
    out: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        return any("is ready" in line for line in self.out)

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no flush; what it had claimed stays claimed until its lease."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _pump(stream: Any, sink: list[str]) -> None:
    for line in stream:
        sink.append(line.rstrip("\n"))
    stream.close()


@dataclass
class Cluster:
    """`serves` serve and `workers` worker processes sharing `storage_url`."""

    tmp: Path
    twilio: FakeTwilio
    storage_url: str
    settings: dict[str, Any] = field(default_factory=dict)  # config overrides, merged
    procs: list[Proc] = field(default_factory=list)
    config: Path | None = None
    public_port: int = 0

    def write_config(self) -> Path:
        """The project's config with the store, the fake Twilio and one public URL (the
        signature covers it, so every serve is reached as the load balancer's address)."""
        data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
        self.public_port = self.public_port or free_port()
        data["storage"] = {"url": self.storage_url}
        data["server"] = {**data["server"], "public_url": f"http://127.0.0.1:{self.public_port}"}
        data["twilio"] = {**data["twilio"], "api_base_url": self.twilio.url, "sms_from": SMS_FROM}
        for key, value in self.settings.items():
            data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
        path = self.tmp / "config.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        self.config = path
        return path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "TELEGRAM_"))}
        env.pop("CAREBRIDGE_CONFIG", None)
        env["TWILIO_ACCOUNT_SID"] = self.twilio.account_sid
        env["TWILIO_AUTH_TOKEN"] = self.twilio.auth_token
        return env

    def start(self, kind: str) -> Proc:
        """Start one process (serve on a free port; worker with its health port)."""
        if self.config is None:
            self.write_config()
        port = free_port()
        proc = subprocess.Popen(
            [*CAREBRIDGE, "--config", str(self.config), kind, "--port", str(port)],
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        running = Proc(kind, proc, port)
        threading.Thread(target=_pump, args=(proc.stdout, running.out), daemon=True).start()
        self.procs.append(running)
        return running

    def wait_ready(self, procs: Sequence[Proc] | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for p in procs or self.procs:
            while not p.ready():
                if p.proc.poll() is not None:
                    raise RuntimeError(f"{p.kind} exited {p.proc.returncode}: {p.out[-20:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{p.kind} not ready in {START_TIMEOUT:g} s: {p.out[-5:]}")
                time.sleep(0.05)

    def of(self, kind: str) -> list[Proc]:
        return [p for p in self.procs if p.kind == kind and p.proc.poll() is None]

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


@contextlib.contextmanager
def cluster(
    tmp: Path,
    twilio: FakeTwilio,
    storage_url: str,
    serves: int,
    workers: int,
    settings: dict[str, Any] | None = None,
) -> Iterator[Cluster]:
    """A running cluster (all processes ready), stopped on the way out."""
    running = Cluster(tmp, twilio, storage_url, settings or {})
    try:
        for _ in range(serves):
            running.start("serve")
        for _ in range(workers):
            running.start("worker")
        running.wait_ready()
        yield running
    finally:
        running.stop()


# --- a throw-away PostgreSQL ---------------------------------------------------------------------

PG_BINS = [*sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True), Path("/usr/local/bin")]


def pg_bin() -> Path | None:
    """The folder with initdb and pg_ctl (Debian's postgresql package), or None."""
    for folder in PG_BINS:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


@contextlib.contextmanager
def postgres(settings: Sequence[str] = ("synchronous_commit=off",)) -> Iterator[str]:
    """A PostgreSQL cluster of its own on a free loopback port, run as an unprivileged user
    (as `postgres` when this runs as root), removed afterwards; yields its URL.
    synchronous_commit=off matches SQLite's synchronous=NORMAL in WAL mode (a power cut may
    lose the last commits, never corrupt), so the engines are compared on equal terms."""
    import shutil
    import tempfile

    folder = pg_bin()
    if folder is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="cb-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    root.chmod(0o755)
    data, port = root / "data", free_port()
    run = [*as_user, str(folder / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [
                *as_user,
                str(folder / "initdb"),
                "-D",
                str(data),
                "-U",
                "carebridge",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale",
                "C",
            ],
            check=True,
            capture_output=True,
        )
        options = " ".join(
            [
                f"-p {port}",
                "-c listen_addresses=127.0.0.1",
                f"-k {root}",
                "-c max_connections=200",
                *(f"-c {s}" for s in settings),
            ]
        )
        subprocess.run(
            [*run, "-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://carebridge@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


# --- patients -------------------------------------------------------------------------------


def number(n: int) -> str:
    return f"+1555{n:07d}"


@dataclass
class Load:
    """What the patients sent: per number, the texts in the order they went (pairs sent at
    once are a Counter-equal block), and how many webhooks were answered 200."""

    sent: dict[str, list[str]] = field(default_factory=dict)
    ok: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def total(self) -> int:
        return sum(len(v) for v in self.sent.values())


def post(client: httpx.Client, serve: str, public: str, token: str, sender: str, text: str) -> int:
    """One signed SMS webhook to `serve`, signed for the public URL (as behind a balancer)."""
    req = signed_request(f"{public}/webhooks/twilio/sms", inbound_params(sender, text), token)
    for _ in range(50):  # a 503 (database busy) is retried, as Twilio would
        answer = client.post(f"{serve}/webhooks/twilio/sms", data=req.data, headers=req.headers)
        if answer.status_code != 503:
            return answer.status_code
        time.sleep(0.1)
    return 503


def run_patients(
    running: Cluster,
    patients: int,
    script: Sequence[str],
    *,
    pairs: Sequence[int] = (),
    first: int = 0,
    on_message: Callable[[int], object] | None = None,
) -> Load:
    """Each patient runs `script` in order, its messages alternating between the serves; at
    every index in `pairs` that message and the next go at the same moment to two different
    serves (two messages of one patient handled at once on two processes)."""
    serves = [p.url for p in running.of("serve")]
    public = f"http://127.0.0.1:{running.public_port}"
    token = running.twilio.auth_token
    load = Load()
    counter = [0]

    def one(n: int) -> None:
        sender = number(first + n)
        sent: list[str] = []
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(2) as both:
            i = 0
            while i < len(script):
                if i in pairs and i + 1 < len(script):
                    texts = [script[i], script[i + 1]]
                    futures = [
                        both.submit(
                            post, client, serves[k % len(serves)], public, token, sender, texts[k]
                        )
                        for k in range(2)
                    ]
                    codes = [f.result() for f in futures]
                    sent += texts
                    i += 2
                else:
                    codes = [
                        post(
                            client, serves[(n + i) % len(serves)], public, token, sender, script[i]
                        )
                    ]
                    sent.append(script[i])
                    i += 1
                with load.lock:
                    load.ok += sum(c == 200 for c in codes)
                    load.refused += sum(c != 200 for c in codes)
                    counter[0] += len(codes)
                    seen = counter[0]
                if on_message is not None:
                    on_message(seen)
        with load.lock:
            load.sent[sender] = sent

    with ThreadPoolExecutor(patients) as pool:
        list(pool.map(one, range(patients)))
    return load


# --- the tally --------------------------------------------------------------------------------


@dataclass
class Tally:
    """Counts that must be zero (lost, twice, undelivered, disordered) and the duplicates."""

    messages: int = 0
    lost: int = 0  # answered 200 but never handled
    twice: int = 0  # handled more than once
    disordered: int = 0  # a patient's transcript not in the order they wrote
    unfinished: int = 0  # patients whose screening did not reach a triage level
    replies: int = 0
    undelivered: int = 0  # replies the provider never accepted
    duplicates: int = 0  # replies the provider accepted more than once (at-least-once)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if isinstance(v, int)}


def _blocks(texts: Sequence[str], pairs: Sequence[int]) -> list[Counter[str]]:
    out: list[Counter[str]] = []
    i = 0
    while i < len(texts):
        step = 2 if i in pairs else 1
        out.append(Counter(texts[i : i + step]))
        i += step
    return out


def tally(storage_url: str, twilio: FakeTwilio, load: Load, pairs: Sequence[int] = ()) -> Tally:
    """Read the store back and compare with what was sent and what the provider got."""
    t = Tally(messages=load.total())
    store = open_store(storage_url)
    try:
        t.lost += len(store.unprocessed_inbound())
        replies = []
        for sender, sent in load.sent.items():
            contact = store.find_contact("sms", sender)
            if contact is None:
                t.lost += len(sent)
                continue
            lines = store.transcript(contact.id)
            got = [e.text for e in lines if e.direction == "in"]
            t.lost += max(0, len(sent) - len(got))
            t.twice += max(0, len(got) - len(sent))
            if _blocks(got, pairs) != _blocks(sent, pairs):
                t.disordered += 1
            session = store.current_session(contact)
            if session.triage is None:
                t.unfinished += 1
            t.answers[sender] = dict(session.answers)
            replies += [
                (r["status"], r["provider_id"])
                for r in store._rows(  # type: ignore[attr-defined]  # plain SQL, both engines
                    "SELECT status, provider_id FROM outbox WHERE contact_id = ?", (contact.id,)
                )
            ]
    finally:
        store.close()
    t.replies = len(replies)
    with twilio.lock:
        accepted = [m for m in twilio.messages if m["to"] in load.sent]
    sids = {m["sid"] for m in accepted}
    done = (OutboxStatus.SENT, OutboxStatus.DELIVERED)
    t.undelivered = sum(1 for status, sid in replies if status not in done or sid not in sids)
    t.duplicates = max(0, len(accepted) - len(replies))  # each reply row should go once
    return t


def settled(storage_url: str) -> bool:
    """No reply still queued or being sent, and no message left unhandled."""
    store = open_store(storage_url)
    try:
        return not store.queue_depth() and not store.unprocessed_inbound()  # type: ignore[attr-defined]
    finally:
        store.close()
