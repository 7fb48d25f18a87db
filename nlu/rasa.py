"""Rasa compatibility: Understanding -> Rasa `/model/parse` JSON, and an interpreter that
takes intents from a Rasa server (`nlu.backend: rasa`) while red flags, findings,
readings and answers always come from our deterministic code. When Rasa is down, slow
or answers nonsense, the embedded interpreter stands in.

Imports only the standard library, httpx and the nlu package.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import date
from typing import Any

import httpx

from nlu.interpreter import Interpreter
from nlu.types import Answer, Entity, Expectation, Intent, Understanding

log = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def entity_to_rasa(e: Entity) -> dict[str, Any]:
    """One entity in Rasa's shape, plus `negated` and `uncertain`."""
    return {
        "entity": e.entity,
        "value": _jsonable(e.value),
        "start": e.start,
        "end": e.end,
        "extractor": e.extractor,
        "confidence": e.confidence,
        "negated": e.negated,
        "uncertain": e.uncertain,
    }


def answer_to_json(answer: Answer | None) -> dict[str, Any] | None:
    """An answer as JSON: {"status", "value"} (tuples become lists)."""
    if answer is None:
        return None
    return {"status": str(answer.status), "value": _jsonable(answer.value)}


def to_rasa(u: Understanding) -> dict[str, Any]:
    """An Understanding in Rasa's `/model/parse` shape, plus `red_flags`, `subject`,
    `language` and (when a question was asked) `answer`."""
    out: dict[str, Any] = {
        "text": u.text,
        "intent": {"name": u.intent.name, "confidence": u.intent.confidence},
        "intent_ranking": [{"name": i.name, "confidence": i.confidence} for i in u.intent_ranking],
        "entities": [entity_to_rasa(e) for e in u.entities],
        "red_flags": list(u.red_flags),
        "subject": u.subject,
        "language": u.language,
    }
    if u.answer is not None:
        out["answer"] = answer_to_json(u.answer)
    return out


def _intent(raw: Any) -> Intent:
    if not isinstance(raw, Mapping):
        raise ValueError("intent is not an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("intent has no name")
    return Intent(name, float(raw.get("confidence") or 0.0))


class RasaInterpreter:
    """Intents from a Rasa server's `/model/parse`; everything safety-relevant from ours.

    Auth: `token` is sent as Rasa's `?token=` query parameter, `jwt` as an
    `Authorization: Bearer` header; when neither is given they are read from the
    environment (RASA_TOKEN, RASA_JWT), never from a file. After a failure Rasa is not
    asked again for `retry_after` seconds, so an outage costs one timeout, not one per
    message.
    """

    name = "rasa"

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        jwt: str | None = None,
        timeout: float = 2.0,
        retry_after: float = 30.0,
        fallback: Interpreter | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if token is None and jwt is None:
            env = os.environ if environ is None else environ
            token, jwt = env.get("RASA_TOKEN") or None, env.get("RASA_JWT") or None
        self.url = url.rstrip("/") + "/model/parse"
        self.fallback = fallback or Interpreter()
        self.retry_after = retry_after
        self._clock = clock
        self._down_until = 0.0
        self._lock = threading.Lock()
        headers = {"Authorization": f"Bearer {jwt}"} if jwt else {}
        self._client = httpx.Client(
            timeout=timeout,
            headers=headers,
            params={"token": token} if token else None,
            transport=transport,
        )
        self.failures = 0

    @property
    def threshold(self) -> float:
        """The confidence threshold (shared with the embedded fallback)."""
        return self.fallback.threshold

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def parse(self, text: str) -> dict[str, Any]:
        """Rasa's raw `/model/parse` answer for `text` (raises httpx.HTTPError, ValueError)."""
        resp = self._client.post(self.url, json={"text": text})
        resp.raise_for_status()
        body = resp.json()
        if not isinstance(body, dict):
            raise ValueError("response is not a JSON object")
        return body

    def interpret(
        self,
        text: str,
        expecting: Expectation | None = None,
        language: str = "en",
        *,
        today: date | None = None,
    ) -> Understanding:
        """Like Interpreter.interpret, with the intent taken from Rasa when it answers."""
        local = self.fallback.interpret(text, expecting, language, today=today)
        if self._clock() < self._down_until:
            return replace(local, extra={**local.extra, "backend": "embedded", "rasa": "down"})
        try:
            body = self.parse(text)
            intent = _intent(body.get("intent"))
            ranking = tuple(_intent(r) for r in body.get("intent_ranking") or ())
        except (httpx.HTTPError, ValueError, TypeError) as exc:
            with self._lock:
                self.failures += 1
                self._down_until = self._clock() + self.retry_after
            # Never log the text: only what went wrong.
            log.warning("nlu: rasa unavailable (%s), using embedded", type(exc).__name__)
            return replace(local, extra={**local.extra, "backend": "embedded", "rasa": "down"})
        low = intent.confidence < self.threshold
        if low:
            intent = Intent("out_of_scope", intent.confidence)
        return replace(
            local,
            intent=intent,
            intent_ranking=ranking,
            extra={
                **local.extra,
                "backend": self.name,
                "low_confidence": low,
                "rasa_entities": body.get("entities") or [],
            },
        )


RasaHttpInterpreter = RasaInterpreter
"""The name bot.app uses for the HTTP backend."""
