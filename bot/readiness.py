"""Readiness for `GET /readyz` and `carebridge serve`'s "ready" line: the database takes a real
write, the flows and the NLU of every configured language are loaded and warm, and the
dispatcher and the scheduler run. May import bot and nlu (not channels); the interpreter is
duck-typed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.errors import StoreError
from bot.flow import Library
from bot.store import Store
from nlu import detect_language

log = logging.getLogger(__name__)

OK = "ok"
PROBE_TIMEOUT_S = 2.0
"""A database write that takes longer than this counts as "not writable" for /readyz."""


class WarmInterpreter(Protocol):
    """What readiness may use of an interpreter, all optional (looked up with getattr):

    - `warm_all()`: build everything for every language now (preferred), else
    - `warm(language)`: build everything for one language (called per configured language);
    - `ready`: a bool, or a no-argument callable returning one: whether all is built.

    An interpreter with none of these is warm as soon as it exists.
    """


def warm_interpreter(interpreter: Any, languages: Sequence[str]) -> None:
    """Build the interpreter's lexicons and classifiers for `languages` (blocking)."""
    target = interpreter
    while not _has_warm(target) and getattr(target, "fallback", None) is not None:
        target = target.fallback  # e.g. the Rasa client warms its embedded fallback
    warm_all = getattr(target, "warm_all", None)
    if callable(warm_all):
        warm_all()
        return
    warm = getattr(target, "warm", None)
    if callable(warm):
        for language in languages:
            warm(language)


def interpreter_says_ready(interpreter: Any) -> bool:
    """The interpreter's own `ready` flag when it has one; True otherwise."""
    ready = getattr(interpreter, "ready", None)
    if ready is None:
        return True
    return bool(ready() if callable(ready) else ready)


def _has_warm(obj: Any) -> bool:
    return callable(getattr(obj, "warm_all", None)) or callable(getattr(obj, "warm", None))


@dataclass
class Readiness:
    """The state /readyz reports; the web app's lifespan fills it in as parts start.

    `check()` answers {part: "ok" or what is wrong} for database, flows, nlu, dispatcher and
    scheduler. A part the process does not run (`dispatch=False`: a `carebridge worker` does
    it) reports "ok (run by a worker)".
    """

    store: Store
    library: Library
    interpreter: Any
    languages: tuple[str, ...]
    dispatch: bool = True
    schedule: bool = True
    dispatcher_running: Callable[[], bool] = lambda: False
    scheduler_running: Callable[[], bool] = lambda: False
    nlu_state: str = "not started"
    probe_timeout_s: float = PROBE_TIMEOUT_S
    _probe: asyncio.Future[str] | None = field(default=None, init=False, repr=False)
    _last_database: str = field(default=OK, init=False, repr=False)

    # --- NLU warm-up ----------------------------------------------------------------------

    def warm_nlu(self) -> None:
        """Warm the NLU for every configured language (blocking: run it in a thread)."""
        self.nlu_state = "warming up"
        started = time.monotonic()
        try:
            warm_interpreter(self.interpreter, self.languages)
            detect_language("warm up", self.languages)  # its cues (a first contact's language)
        except Exception as exc:  # readiness says so; messages still get the lazy path
            self.nlu_state = f"warm-up failed: {type(exc).__name__}"
            log.error("nlu warm-up failed: %s", type(exc).__name__)
            return
        self.nlu_state = OK
        log.info("nlu warm for %s in %.1f s", ",".join(self.languages), time.monotonic() - started)

    # --- the checks -----------------------------------------------------------------------

    async def check(self) -> dict[str, str]:
        """Every part and its state ("ok", or what is not ready)."""
        return {
            "database": await self._database(),
            "flows": self._flows(),
            "nlu": self._nlu(),
            "dispatcher": self._running(self.dispatch, self.dispatcher_running),
            "scheduler": self._running(self.schedule, self.scheduler_running),
        }

    async def _database(self) -> str:
        """One probe at a time, however many /readyz requests wait on it."""
        if self._probe is None or self._probe.done():
            loop = asyncio.get_running_loop()
            self._probe = loop.run_in_executor(None, self._write_probe)
        try:
            return await asyncio.wait_for(asyncio.shield(self._probe), self.probe_timeout_s)
        except TimeoutError:
            return f"not writable: a write did not finish within {self.probe_timeout_s:g} s"

    def _write_probe(self) -> str:
        try:
            self.store.check_writable()
            state = OK
        except StoreError as exc:
            state = f"not writable: {exc}"
        except Exception as exc:  # a closed connection, ...: not writable either
            state = f"not writable: {type(exc).__name__}"
        if state != self._last_database:  # log changes, not every poll
            if state == OK:
                log.warning("readiness: the database can be written again")
            else:
                log.error("readiness: database %s", state)
            self._last_database = state
        return state

    def _flows(self) -> str:
        missing = [lang for lang in self.languages if lang not in self.library.languages]
        if not self.library.flows:
            return "no flows loaded"
        if missing:
            return f"no flow texts for language(s) {', '.join(missing)}"
        return OK

    def _nlu(self) -> str:
        if self.nlu_state != OK:
            return f"{self.nlu_state} ({', '.join(self.languages)})"
        if not interpreter_says_ready(self.interpreter):
            return f"warming up ({', '.join(self.languages)})"
        return OK

    @staticmethod
    def _running(here: bool, running: Callable[[], bool]) -> str:
        if not here:
            return "ok (run by a worker)"
        return OK if running() else "not running"


def not_ready(checks: dict[str, str]) -> list[str]:
    """The parts of a `Readiness.check()` answer that are not ready."""
    return [name for name, state in checks.items() if not state.startswith(OK)]
