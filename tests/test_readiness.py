"""What /readyz reports, part by part (bot/readiness.py), including the seam to the NLU: an
interpreter may offer `warm_all()`, `warm(language)` and a `ready` flag, or none of them.
End to end over HTTP: tests/test_serve.py."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from bot.errors import StoreError
from bot.flow import Library
from bot.readiness import Readiness, not_ready


class Store:
    """A store whose probe write succeeds, fails, or blocks until released."""

    def __init__(self, fail: str | None = None, block: bool = False) -> None:
        self.fail, self.release, self.probes = fail, threading.Event(), 0
        if not block:
            self.release.set()

    def check_writable(self) -> None:
        self.probes += 1
        self.release.wait(10)
        if self.fail:
            raise StoreError(self.fail)


class WarmsAll:
    def __init__(self) -> None:
        self.ready, self.calls = False, 0

    def warm_all(self) -> None:
        self.calls += 1


class WarmsOne:
    def __init__(self) -> None:
        self.languages: list[str] = []

    def warm(self, language: str = "en") -> None:
        self.languages.append(language)


class Broken:
    def warm(self, language: str = "en") -> None:
        raise RuntimeError("no lexicon")


class RasaLike:
    def __init__(self) -> None:
        self.fallback = WarmsOne()


def readiness(lib: Library, interpreter: Any, store: Any = None, **kw: Any) -> Readiness:
    return Readiness(
        store=store or Store(),
        library=lib,
        interpreter=interpreter,
        languages=tuple(lib.languages),
        dispatcher_running=lambda: True,
        scheduler_running=lambda: True,
        **kw,
    )


def check(r: Readiness) -> dict[str, str]:
    return asyncio.run(r.check())


def test_everything_ready_after_the_warm_up(lib: Library) -> None:
    r = readiness(lib, WarmsOne())
    assert not_ready(check(r)) == ["nlu"]
    assert check(r)["nlu"].startswith("not started")
    r.warm_nlu()
    assert check(r) == dict.fromkeys(("database", "flows", "nlu", "dispatcher", "scheduler"), "ok")
    assert r.interpreter.languages == list(lib.languages)  # every configured language


def test_warm_all_and_the_interpreters_own_ready_flag_are_used(lib: Library) -> None:
    nlu = WarmsAll()
    r = readiness(lib, nlu)
    r.warm_nlu()
    assert nlu.calls == 1
    assert check(r)["nlu"].startswith("warming up")  # its own flag still says no
    nlu.ready = True
    assert check(r)["nlu"] == "ok"


def test_a_failed_warm_up_and_a_client_with_a_fallback(lib: Library) -> None:
    r = readiness(lib, Broken())
    r.warm_nlu()
    assert check(r)["nlu"].startswith("warm-up failed: RuntimeError")
    rasa = RasaLike()
    readiness(lib, rasa).warm_nlu()
    assert rasa.fallback.languages == list(lib.languages)


def test_the_database_part_names_the_failure(lib: Library) -> None:
    r = readiness(lib, WarmsOne(), Store(fail="store.check_writable: database or disk is full"))
    r.warm_nlu()
    checks = check(r)
    assert not_ready(checks) == ["database"]
    assert checks["database"] == "not writable: store.check_writable: database or disk is full"


def test_a_probe_that_hangs_is_not_ready_and_runs_only_once(lib: Library) -> None:
    store = Store(block=True)
    r = readiness(lib, WarmsOne(), store, probe_timeout_s=0.2)

    async def two_calls() -> list[dict[str, str]]:
        try:
            return list(await asyncio.gather(r.check(), r.check()))
        finally:
            store.release.set()  # let the probe thread end before the loop closes

    first, second = asyncio.run(two_calls())
    assert (
        first["database"]
        == second["database"]
        == ("not writable: a write did not finish within 0.2 s")
    )
    assert store.probes == 1


def test_dispatcher_and_scheduler(lib: Library) -> None:
    stopped = Readiness(
        store=Store(),
        library=lib,
        interpreter=None,
        languages=tuple(lib.languages),
        dispatcher_running=lambda: False,
        scheduler_running=lambda: False,
    )
    checks = check(stopped)
    assert checks["dispatcher"] == checks["scheduler"] == "not running"
    elsewhere = readiness(lib, None, dispatch=False, schedule=False)
    elsewhere.warm_nlu()
    checks = check(elsewhere)
    assert checks["dispatcher"] == checks["scheduler"] == "ok (run by a worker)"
    assert not_ready(checks) == []


def test_flows_must_cover_every_configured_language(lib: Library) -> None:
    r = readiness(lib, None)
    r.languages = (*lib.languages, "fr")
    assert check(r)["flows"] == "no flow texts for language(s) fr"
