"""Fake provider servers for tests: real HTTP on 127.0.0.1 (ephemeral port), run by uvicorn in a
background thread, recording every request, with injectable failures and outages.
Imports starlette, uvicorn and the standard library; used as context managers or fixtures.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request


@dataclass(frozen=True)
class Recorded:
    """One request as the fake saw it; `params` merges query, form or JSON body fields."""

    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, Any]
    content_type: str
    outcome: str  # "ok", or the injected failure ("500", "timeout", "21610", ...)
    at: float = 0.0  # when it arrived (time.time())


@dataclass
class _Failure:
    kind: str
    method: str | None  # only requests to this API method fail; None: any
    options: dict[str, Any] = field(default_factory=dict)


class FakeServer:
    """Base of the fakes: lifecycle, recording, failure queue and outage switch."""

    hang_seconds = 30.0  # a "timeout" failure holds the request this long (or until stop)
    lifespan = "off"  # "on" for apps whose startup and shutdown must run

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self._failures: deque[_Failure] = deque()
        self._outage: str | None = None
        self._outage_options: dict[str, Any] = {}
        self._outage_hits = 0
        self._stopping = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def app(self) -> Starlette:
        """The ASGI app; subclasses build it."""
        raise NotImplementedError

    # lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Serve on 127.0.0.1 on a free port; `url` is then e.g. http://127.0.0.1:41234."""
        self._serve(0)
        return self

    def refuse(self) -> None:
        """Stop listening (connections are refused) until `resume`; the port is kept."""
        self._stopping.set()  # release hanging requests first
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def resume(self) -> None:
        """Listen again on the same port after `refuse`."""
        self._stopping.clear()
        self._serve(int(self.url.rsplit(":", 1)[1]))

    def _serve(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"  # known before app() builds, for apps that need it
        self._app = getattr(self, "_app", None) or self.app()
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan=self.lifespan,  # type: ignore[arg-type]
            ws="none",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 5
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Release hanging requests and stop the server thread."""
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # failures ----------------------------------------------------------------------------

    def fail_next(
        self, kind: str, n: int = 1, *, method: str | None = None, **options: Any
    ) -> None:
        """Make the next `n` matching requests fail with `kind` (see the subclass for kinds)."""
        with self.lock:
            self._failures.extend(_Failure(kind, method, dict(options)) for _ in range(n))

    def outage(self, mode: str | None, **options: Any) -> None:
        """Fail every request with `mode` until called with None.

        Modes: "500", "timeout", "429" (with `retry_after=` seconds), or "mixed" (alternately
        500 and timeout, starting with 500).
        """
        with self.lock:
            self._outage, self._outage_hits = mode, 0
            self._outage_options = dict(options)

    def _take_failure(self, method: str) -> _Failure | None:
        if self._outage is not None:
            with self.lock:
                self._outage_hits += 1
                kind = self._outage
                if kind == "mixed":
                    kind = "500" if self._outage_hits % 2 else "timeout"
            return _Failure(kind, None, dict(self._outage_options))
        with self.lock:
            for failure in self._failures:
                if failure.method in (None, method):
                    self._failures.remove(failure)
                    return failure
        return None

    async def _hang(self) -> None:
        """Hold a request until the client gives up (or the server stops)."""
        deadline = time.monotonic() + self.hang_seconds
        while time.monotonic() < deadline and not self._stopping.is_set():
            await asyncio.sleep(0.02)

    # recording ---------------------------------------------------------------------------

    async def _record(self, request: Request, outcome: str) -> Recorded:
        at = time.time()
        params: dict[str, Any] = dict(request.query_params)
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            try:
                async with request.form() as form:
                    for key, value in form.multi_items():
                        params[key] = value if isinstance(value, str) else await value.read()
            except ClientDisconnect:  # the client gave up (a timeout, or it was killed)
                outcome = "disconnected"
        recorded = Recorded(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            params=params,
            content_type=content_type,
            outcome=outcome,
            at=at,
        )
        with self.lock:
            self.requests.append(recorded)
        return recorded


@dataclass(frozen=True)
class SignedRequest:
    """A webhook request ready to POST: `url`, form `data` and `headers`."""

    url: str
    data: dict[str, str]
    headers: dict[str, str]


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `check` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        time.sleep(0.02)
