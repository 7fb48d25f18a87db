"""The store's one owner: a single thread that runs the hot path's store work in turn.

Webhook handlers and the dispatcher hand it their work instead of contending for the store's
lock from many threads; the dispatcher's short claims and result writes go ahead of queued
messages (`urgent`), so replies keep flowing while webhooks pour in; but never more than
URGENT_RUN of them in a row while other work waits, so the webhooks are never starved.
Grouped work (`run_grouped`: the inbound messages) that queued up meanwhile runs as one call,
so its transactions commit once per group (group commit). Imports only the standard library.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")
_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]
GROUP_MAX = 8  # grouped items run together at most (urgent work waits for one group)
URGENT_RUN = 16  # urgent items run back to back at most while other work waits (no starving)


class _Grouped:
    """Marks a queued item as one argument of `many`, to run with its queued neighbours."""

    def __init__(self, many: Callable[[list[Any]], Sequence[Any]]) -> None:
        self.many = many

    def __call__(self, arg: Any) -> Any:  # alone (never reached: `_work` groups it)
        return _unwrap(self.many([arg])[0])


def _unwrap(result: Any) -> Any:
    if isinstance(result, BaseException):
        raise result
    return result


class StoreOwner:
    """Runs callables on one dedicated thread: urgent ones first, each kind in arrival order."""

    def __init__(self, name: str = "store") -> None:
        self._ready = threading.Condition()
        self._urgent: deque[_Item] = deque()
        self._normal: deque[_Item] = deque()
        self._closed = False
        self._streak = 0  # urgent items run in a row while normal work waited
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def here(self) -> bool:
        """True on the owner thread itself."""
        return threading.current_thread() is self._thread

    def submit(
        self, fn: Callable[..., T], *args: Any, urgent: bool = False, **kwargs: Any
    ) -> Future[T]:
        """Queue `fn(*args, **kwargs)`; its future."""
        future: Future[T] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the store's owner thread has stopped")
            (self._urgent if urgent else self._normal).append((future, fn, args, kwargs))
            self._ready.notify()
        return future

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on the owner thread and wait for it (inline when already there)."""
        if self.here:
            return fn(*args, **kwargs)
        return self.submit(functools.partial(fn, *args, **kwargs)).result()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Await `fn(*args)` run on the owner thread, without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    async def run_urgent(self, fn: Callable[..., T], *args: Any) -> T:
        """As `run`, ahead of everything not urgent (the dispatcher's claims and results)."""
        return await asyncio.wrap_future(self.submit(fn, *args, urgent=True))

    async def run_grouped(self, many: Callable[[list[T]], Sequence[R | Exception]], arg: T) -> R:
        """Await `many([arg, ...])[i]` for this `arg`: the owner thread runs every grouped
        `arg` of the same `many` queued back to back (up to GROUP_MAX) in one call. `many`
        returns one result per argument, in order; an exception in that list is raised to
        that argument's caller only (an exception from `many` itself, to all of them)."""
        result: R = await asyncio.wrap_future(self.submit(_Grouped(many), arg))
        return result

    def close(self) -> None:
        """Finish the queued work and stop the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        if not self.here:
            self._thread.join()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not (self._urgent or self._normal or self._closed):
                    self._ready.wait()
                queue = self._next_queue()
                if not queue:
                    return  # closed and drained
                future, fn, args, kwargs = queue.popleft()
                many = fn.many if isinstance(fn, _Grouped) else None
                group = [(future, args[0])] if many is not None else []
                while many is not None and queue and len(group) < GROUP_MAX:
                    f, g, a, _ = queue[0]
                    if not (isinstance(g, _Grouped) and g.many == many):  # bound methods: ==
                        break
                    queue.popleft()
                    group.append((f, a[0]))
            if many is not None:
                self._run_group(many, group)
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to the waiting caller
                future.set_exception(exc)

    def _next_queue(self) -> deque[_Item]:
        """Urgent work first, but never forever: after URGENT_RUN urgent items while other
        work waited, one of those goes (a dispatcher that keeps claiming must not starve the
        webhooks)."""
        if self._urgent and not (self._normal and self._streak >= URGENT_RUN):
            self._streak = self._streak + 1 if self._normal else 0
            return self._urgent
        self._streak = 0
        return self._normal

    @staticmethod
    def _run_group(many: Callable[[list[Any]], Sequence[Any]], group: list[Any]) -> None:
        live = [(f, arg) for f, arg in group if f.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = many([arg for _, arg in live])
        except BaseException as exc:  # handed to every waiting caller
            for f, _ in live:
                f.set_exception(exc)
            return
        for (f, _), result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                f.set_exception(result)
            else:
                f.set_result(result)
