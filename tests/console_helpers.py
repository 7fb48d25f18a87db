"""Helpers for the console tests: serve an ASGI app on loopback, and make console users cheaply
(a low-cost argon2id hash, so the suite stays fast; bot.auth's own tests use the real cost)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import uvicorn
from argon2 import PasswordHasher
from starlette.applications import Starlette

from bot.auth import SESSION_COOKIE, Auth
from bot.store import Store, UserRow

_cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@contextmanager
def served(
    app: Starlette, lifespan: Literal["on", "off"] = "on", sock: socket.socket | None = None
) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 (a free port, or `sock`) in a thread; yields the
    base URL."""
    if sock is None:
        sock, _ = free_port_url()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan=lifespan, ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the console did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def free_port_url() -> tuple[socket.socket, str]:
    """A bound socket on 127.0.0.1 and its URL (for apps that must know their URL first)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def make_user(
    store: Store, username: str, role: str, password: str, *, must_change: bool = False
) -> UserRow:
    """A console user with a cheap hash of `password`."""
    from datetime import UTC, datetime

    user_id = store.add_user(
        username, _cheap.hash(password), role, datetime.now(UTC), must_change_password=must_change
    )
    assert user_id is not None
    user = store.get_user(user_id)
    assert user is not None
    return user


def session_cookie(auth: Auth, user: UserRow) -> dict[str, str]:
    """Cookies of a logged-in browser for `user` (skips the log-in form)."""
    token, _ = auth.start_session(user)
    return {SESSION_COOKIE: token}
