"""The store's one owner: a single thread that runs the hot path's store work in turn.

Webhook handlers and the dispatcher hand it their transactions instead of contending for the
store's lock from many threads. Imports only the standard library.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class StoreOwner:
    """Runs callables on one dedicated thread, first come first served."""

    def __init__(self, name: str = "store") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._ident = self._pool.submit(threading.get_ident).result()

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on the owner thread and wait for it (inline when already there)."""
        if threading.get_ident() == self._ident:
            return fn(*args, **kwargs)
        return self._pool.submit(fn, *args, **kwargs).result()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Await `fn` run on the owner thread, without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Finish the queued work and stop the thread."""
        self._pool.shutdown(wait=True)
