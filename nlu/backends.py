"""Choose the interpreter from configuration: `nlu.backend: embedded` (default) or
`nlu.backend: rasa` with `nlu.rasa_url`; secrets (RASA_TOKEN, RASA_JWT) only from the
environment.

Imports only the standard library and the nlu package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from nlu.interpreter import DEFAULT_THRESHOLD, Interpreter
from nlu.types import Expectation, Understanding


class Reader(Protocol):
    """What the bot needs from an interpreter."""

    threshold: float

    def interpret(
        self,
        text: str,
        expecting: Expectation | None = None,
        language: str = "en",
        *,
        today: date | None = None,
    ) -> Understanding: ...


class ConfigError(ValueError):
    """An `nlu.*` setting is wrong; the message names the key and how to fix it."""


def make_interpreter(
    settings: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    data_dir: Path | None = None,
) -> Interpreter | Any:
    """The interpreter the `nlu:` section of config.yaml asks for.

    Keys: backend (embedded | rasa), confidence_threshold (or threshold), rasa_url,
    rasa_timeout_s (or rasa_timeout), rasa_retry_after. Environment: RASA_TOKEN (Rasa's
    ?token=) or RASA_JWT (Bearer), never in the file.
    """
    cfg = dict(settings or {})
    env = os.environ if environ is None else environ
    threshold = float(cfg.get("confidence_threshold", cfg.get("threshold", DEFAULT_THRESHOLD)))
    embedded = Interpreter(data_dir, threshold=threshold)
    backend = str(cfg.get("backend", "embedded"))
    if backend == "embedded":
        return embedded
    if backend != "rasa":
        raise ConfigError(f"nlu.backend: {backend!r} is not one of: embedded, rasa")
    url = cfg.get("rasa_url")
    if not url:
        raise ConfigError(
            "nlu.rasa_url: required when nlu.backend is rasa (e.g. http://localhost:5005)"
        )
    from nlu.rasa import RasaInterpreter

    return RasaInterpreter(
        str(url),
        token=env.get("RASA_TOKEN") or None,
        jwt=env.get("RASA_JWT") or None,
        timeout=float(cfg.get("rasa_timeout_s", cfg.get("rasa_timeout", 2.0))),
        retry_after=float(cfg.get("rasa_retry_after", 30.0)),
        fallback=embedded,
        environ=env,
    )
