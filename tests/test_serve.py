"""`carebridge serve` as an operator runs it (a real process, real HTTP): it says it is ready
only when /readyz is, /readyz tells the truth about the database, and start-up mistakes (a
port in use, a bad or unwritable storage.url) are one clear line and exit 1, never a traceback
or a hang. The database is made unwritable with RLIMIT_FSIZE, which binds root too and needs
no mount or capability: every write to a file then fails as on a full disk.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fakes import wait_for
from fakes.twilio_server import FakeTwilio, inbound_params, signed_request
from pg import SQLITE_ONLY, db_rows, write_locked

from bot.store import open_store

ROOT = Path(__file__).resolve().parent.parent
_SCRIPT = Path(sys.executable).with_name("carebridge")  # the installed console script
CAREBRIDGE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "bot.cli"]
SMS_FROM = "+15550009999"
START_TIMEOUT = 120.0  # seconds; 2 cores shared by many test runs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    tmp_path: Path, port: int, twilio_url: str = "", store_url: str = "", **changes: Any
) -> Path:
    """The project's config.yaml with the database at `store_url` (default: a SQLite file in
    `tmp_path`), serve dispatching itself on either engine, and SMS through the fake."""
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["storage"] = {"url": store_url or f"sqlite:///{tmp_path / 'carebridge.db'}"}
    data["processes"] = {**data.get("processes", {}), "worker": "inline"}
    data["server"] = {**data.get("server", {}), "public_url": f"http://127.0.0.1:{port}"}
    if twilio_url:
        data["twilio"] = {
            **data.get("twilio", {}),
            "api_base_url": twilio_url,
            "sms_from": SMS_FROM,
        }
    data.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def environment(twilio: FakeTwilio | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "TELEGRAM_"))}
    env.pop("CAREBRIDGE_CONFIG", None)
    if twilio is not None:
        env["TWILIO_ACCOUNT_SID"] = twilio.account_sid
        env["TWILIO_AUTH_TOKEN"] = twilio.auth_token
    return env


@dataclass
class Running:
    """A `carebridge serve` process and what it printed so far."""

    proc: subprocess.Popen[str]
    url: str
    store_url: str
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    def read(self) -> None:
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=_pump, args=(stream, sink), daemon=True).start()

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30)

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


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def served(tmp_path: Path, twilio: FakeTwilio, store_url: str) -> Iterator[Running]:
    port = free_port()
    config = write_config(tmp_path, port, twilio.url, store_url)
    proc = subprocess.Popen(
        [*CAREBRIDGE, "--config", str(config), "serve", "--port", str(port)],
        cwd=ROOT,
        env=environment(twilio),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Running(proc, f"http://127.0.0.1:{port}", store_url)
    running.read()
    try:
        yield running
    finally:
        running.stop()


def ready_line(running: Running) -> str:
    wait_for(
        lambda: any("is ready" in line for line in running.out) or running.proc.poll() is not None,
        timeout=START_TIMEOUT,
    )
    lines = [line for line in running.out if "is ready" in line]
    assert lines, f"serve exited {running.proc.returncode}: {running.err}"
    return lines[0]


def outbox_statuses(running: Running) -> list[str]:
    """The outbox as the database has it (beside the running server)."""
    return [row[0] for row in db_rows(running.store_url, "SELECT status FROM outbox ORDER BY id")]


def sms(running: Running, twilio: FakeTwilio, sender: str, body: str) -> httpx.Response:
    url = f"{running.url}/webhooks/twilio/sms"
    req = signed_request(url, inbound_params(sender, body), twilio.auth_token)
    return httpx.post(url, data=req.data, headers=req.headers, timeout=30)


# --- readiness ---------------------------------------------------------------------------------


def test_serve_prints_ready_only_when_readyz_is_ready(served: Running) -> None:
    line = ready_line(served)
    assert served.out[0].startswith("carebridge is starting on ")
    assert f"open {served.url}/ to chat" in line
    ready = served.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and body["not_ready"] == []
    assert body["checks"] == dict.fromkeys(
        ("database", "flows", "nlu", "dispatcher", "scheduler"), "ok"
    )
    assert served.get("/healthz").json()["status"] == "ok"


@SQLITE_ONLY  # the write limit is the serve process's own: SQLite writes in it, PostgreSQL not
def test_readyz_fails_while_the_database_cannot_be_written_and_healthz_stays_up(
    served: Running, twilio: FakeTwilio
) -> None:
    ready_line(served)
    number = "+15551239001"
    assert sms(served, twilio, number, "hi").status_code == 200
    wait_for(lambda: outbox_statuses(served) == ["sent"], timeout=30)  # recorded, not in flight

    pid = served.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))  # as if the disk were full
    try:
        down = served.get("/readyz")
        assert down.status_code == 503, down.text
        body = down.json()
        assert body["status"] == "not ready" and body["not_ready"] == ["database"]
        assert body["checks"]["database"].startswith("not writable")
        assert body["checks"]["nlu"] == "ok"
        assert served.get("/healthz").status_code == 200
        # a message that cannot be stored is refused with 503 (the provider may retry), not 500
        assert sms(served, twilio, number, "1").status_code == 503
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
    wait_for(lambda: served.get("/readyz").status_code == 200, timeout=30)
    assert sms(served, twilio, number, "1").status_code == 200  # the patient tries again
    wait_for(lambda: len(twilio.messages) == 2, timeout=30)
    assert not [line for line in served.err if "Exception in ASGI application" in line]
    assert [line for line in served.err if "not stored" in line] == [
        "ERROR:bot.web:inbound channel=sms not stored: store.transaction: disk I/O error"
    ]
    assert not [line for line in served.err if number in line or "+1555" in line]


def test_readyz_fails_while_another_client_holds_the_write_lock_and_recovers(
    served: Running,
) -> None:
    """A database that cannot take a write within the probe's 2 s (a stuck lock, a stalled
    disk) is not ready, on either engine; liveness is unaffected; it recovers on release."""
    ready_line(served)
    with write_locked(served.store_url):
        down = served.get("/readyz")
        assert down.status_code == 503, down.text
        body = down.json()
        assert body["not_ready"] == ["database"]
        assert body["checks"]["database"].startswith("not writable: a write did not finish")
        assert served.get("/healthz").status_code == 200
    wait_for(lambda: served.get("/readyz").status_code == 200, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs to fill up; skipped where mounting is not allowed (no CAP_SYS_ADMIN)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_readyz_fails_on_a_full_disk_and_recovers_when_space_is_freed(
    tmp_path: Path, small_disk: Path, twilio: FakeTwilio
) -> None:
    port = free_port()
    config = write_config(
        tmp_path, port, twilio.url, storage={"url": f"sqlite:///{small_disk / 'care.db'}"}
    )
    proc = subprocess.Popen(
        [*CAREBRIDGE, "--config", str(config), "serve", "--port", str(port)],
        cwd=ROOT,
        env=environment(twilio),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Running(proc, f"http://127.0.0.1:{port}", f"sqlite:///{small_disk / 'care.db'}")
    running.read()
    filler = small_disk / "filler"
    try:
        ready_line(running)
        with contextlib.suppress(OSError), filler.open("wb", buffering=0) as f:
            while True:  # until ENOSPC
                f.write(b"\0" * 65536)
        down = running.get("/readyz")
        assert down.status_code == 503 and down.json()["not_ready"] == ["database"], down.text
        assert down.json()["checks"]["database"].startswith("not writable")
        assert running.get("/healthz").status_code == 200
        filler.unlink()
        wait_for(lambda: running.get("/readyz").status_code == 200, timeout=30)
    finally:
        running.stop()


def test_a_channel_that_cannot_start_is_one_line_and_the_others_serve(
    tmp_path: Path, twilio: FakeTwilio, store_url: str
) -> None:
    port, dead = free_port(), free_port()  # nothing listens on `dead`
    config = write_config(
        tmp_path,
        port,
        twilio.url,
        store_url,
        telegram={"api_base_url": f"http://127.0.0.1:{dead}"},
    )
    env = {**environment(twilio), "TELEGRAM_BOT_TOKEN": "123:abc", "TELEGRAM_WEBHOOK_SECRET": "s"}
    proc = subprocess.Popen(
        [*CAREBRIDGE, "--config", str(config), "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Running(proc, f"http://127.0.0.1:{port}", store_url)
    running.read()
    try:
        ready_line(running)
        assert running.get("/healthz").json()["channels"] == ["sms", "web"]
        assert sms(running, twilio, "+15551239002", "hi").status_code == 200
        wait_for(lambda: len(twilio.messages) == 1, timeout=30)
    finally:
        running.stop()
    said = [line for line in running.err if "telegram" in line]
    assert len(said) == 1 and "channel telegram is off: it cannot start" in said[0], said
    assert "123:abc" not in "\n".join(running.err)
    assert not [line for line in running.err if "Traceback" in line], running.err


# --- start-up mistakes ----------------------------------------------------------------------


def run_cli(
    args: list[str], *, stdin: bytes | None = None, limit_files: bool = False
) -> subprocess.CompletedProcess[bytes]:
    def no_file_growth() -> None:  # in the child only: every file write fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    return subprocess.run(
        [*CAREBRIDGE, *args],
        cwd=ROOT,
        env=environment(),
        input=stdin,
        capture_output=True,
        timeout=START_TIMEOUT,  # a hang fails the test
        preexec_fn=no_file_growth if limit_files else None,
    )


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 1, (result.returncode, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path, store_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, port, store_url=store_url)
        result = run_cli(["--config", str(config), "serve", "--port", str(port)])
    line = one_error_line(result)
    assert f"127.0.0.1:{port}" in line and "address already in use" in line
    assert "--port" in line and "server.port" in line
    assert b"is ready" not in result.stdout and b"is starting" not in result.stdout


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://carebridge:s3cret@127.0.0.1:1/care",
            "cannot connect to PostgreSQL at 127.0.0.1:1/care",
        ),
        ("mysql://carebridge@db.example/care", "expected sqlite:///"),
        ("sqlite:///", "is a folder; give the path of a database file"),
        ("sqlite:////proc/carebridge/care.db", "cannot open the database /proc/carebridge"),
    ],
)
def test_a_bad_storage_url_is_one_line_naming_the_setting(
    tmp_path: Path, url: str, expected: str
) -> None:
    config = write_config(tmp_path, free_port(), storage={"url": url})
    line = one_error_line(run_cli(["--config", str(config), "serve", "--port", "0"]))
    assert line.startswith("Error: storage.url: ") and expected in line, line
    assert "s3cret" not in line


def test_a_database_that_cannot_be_written_stops_serve_with_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port())
    open_store(f"sqlite:///{tmp_path / 'carebridge.db'}").close()  # exists and is migrated
    result = run_cli(["--config", str(config), "serve", "--port", "0"], limit_files=True)
    line = one_error_line(result)
    assert line.startswith("Error: storage.url: ")
    assert str(tmp_path / "carebridge.db") in line


def test_chat_jsonl_stops_at_invalid_utf8_with_one_line(tmp_path: Path, store_url: str) -> None:
    config = write_config(tmp_path, free_port(), store_url=store_url)
    result = run_cli(["--config", str(config), "chat", "--jsonl"], stdin=b"hi\n\xff\xfeoops\nyes\n")
    line = one_error_line(result)
    assert "stdin: line 2 is not valid UTF-8" in line and "0xff" in line
    replies = result.stdout.decode().splitlines()
    assert len(replies) == 1 and "Which language" in replies[0]  # line 1 was handled


def test_sigterm_stops_serve_without_a_traceback(served: Running) -> None:
    ready_line(served)
    served.proc.terminate()
    assert served.proc.wait(timeout=30) in (0, -15)
    time.sleep(0.2)
    assert not [line for line in served.err if "Traceback" in line], served.err
