"""Rasa compatibility (nlu/rasa.py): /model/parse JSON, and the HTTP backend with fallback,
against a tiny Rasa look-alike on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from nlu.interpreter import Interpreter
from nlu.rasa import RasaInterpreter, to_rasa
from nlu.types import Expectation, QuestionType


class FakeRasa(BaseHTTPRequestHandler):
    """Serves Rasa's /model/parse response shape; behaviour set per test."""

    mode: ClassVar[str] = "ok"
    confidence: ClassVar[float] = 0.93
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        url = urlparse(self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeRasa.seen.append(
            {
                "path": url.path,
                "query": parse_qs(url.query),
                "auth": self.headers.get("Authorization"),
                "body": body,
            }
        )
        if self.mode == "error":
            self.send_response(500)
            self.end_headers()
            return
        if self.mode == "slow":
            time.sleep(0.5)
        payload: Any = {
            "text": body["text"],
            "intent": {"name": "ask_human", "confidence": self.confidence},
            "intent_ranking": [
                {"name": "ask_human", "confidence": self.confidence},
                {"name": "help", "confidence": 1 - self.confidence},
            ],
            "entities": [
                {
                    "entity": "fever",
                    "value": "fevr",
                    "start": 0,
                    "end": 4,
                    "extractor": "DIETClassifier",
                }
            ],
        }
        raw = b"not json" if self.mode == "garbage" else json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture
def rasa_url() -> Iterator[str]:
    FakeRasa.mode, FakeRasa.confidence, FakeRasa.seen = "ok", 0.93, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRasa)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def local() -> Interpreter:
    return Interpreter(use_classifier=False)


@pytest.fixture
def backend(rasa_url: str, local: Interpreter) -> Iterator[RasaInterpreter]:
    b = RasaInterpreter(rasa_url, token="s3cret", timeout=0.3, fallback=local)
    yield b
    b.close()


def test_to_rasa_shape(local: Interpreter) -> None:
    exp = Expectation("systolic_bp", QuestionType.BP)
    u = local.interpret("my father can't breathe, no chest pain, bp 150/95", exp)
    out = to_rasa(u)
    assert set(out) >= {"text", "intent", "intent_ranking", "entities", "red_flags", "answer"}
    assert out["intent"] == {"name": "out_of_scope", "confidence": 0.0}
    assert out["red_flags"] == ["severe_dyspnea"]
    assert out["answer"] == {"status": "ok", "value": [150.0, 95.0]}
    chest = next(e for e in out["entities"] if e["entity"] == "chest_pain")
    assert chest["negated"] is True and chest["uncertain"] is False
    for e in out["entities"]:
        assert set(e) == {
            "entity",
            "value",
            "start",
            "end",
            "extractor",
            "confidence",
            "negated",
            "uncertain",
        }
        assert out["text"][e["start"] : e["end"]]
    json.dumps(out)  # plain JSON


def test_intent_from_rasa_safety_from_us(backend: RasaInterpreter) -> None:
    u = backend.interpret("fevr and i cant breathe", Expectation("fever", QuestionType.BOOL))
    assert u.intent.name == "ask_human" and u.intent.confidence == 0.93
    assert [i.name for i in u.intent_ranking] == ["ask_human", "help"]
    assert u.red_flags == ("severe_dyspnea",)  # ours, not Rasa's
    assert {e.extractor for e in u.entities} <= {"carebridge_redflags", "carebridge_findings"}
    assert u.extra["backend"] == "rasa"
    assert u.extra["rasa_entities"][0]["extractor"] == "DIETClassifier"
    (call,) = FakeRasa.seen
    assert call["path"] == "/model/parse"
    assert call["body"] == {"text": "fevr and i cant breathe"}
    assert call["query"] == {"token": ["s3cret"]}


def test_jwt_is_sent_as_bearer(rasa_url: str, local: Interpreter) -> None:
    b = RasaInterpreter(rasa_url, jwt="abc.def.ghi", fallback=local)
    try:
        b.interpret("hi")
    finally:
        b.close()
    assert FakeRasa.seen[0]["auth"] == "Bearer abc.def.ghi"
    assert FakeRasa.seen[0]["query"] == {}


def test_low_confidence_becomes_out_of_scope(backend: RasaInterpreter) -> None:
    FakeRasa.confidence = 0.1
    u = backend.interpret("hmm")
    assert u.intent.name == "out_of_scope" and u.extra["low_confidence"] is True


@pytest.mark.parametrize("mode", ["error", "garbage", "slow"])
def test_falls_back_when_rasa_fails(backend: RasaInterpreter, mode: str) -> None:
    FakeRasa.mode = mode
    t0 = time.perf_counter()
    u = backend.interpret("no chest pain but cant breathe")
    assert time.perf_counter() - t0 < 0.45  # the 0.3 s timeout, not the 0.5 s stall
    assert u.extra["backend"] == "embedded" and u.extra["rasa"] == "down"
    assert u.red_flags == ("severe_dyspnea",)
    assert backend.failures == 1


def test_does_not_hammer_a_dead_server(rasa_url: str, local: Interpreter) -> None:
    now = [100.0]
    b = RasaInterpreter(rasa_url, fallback=local, retry_after=30, clock=lambda: now[0], environ={})
    try:
        FakeRasa.mode = "error"
        b.interpret("a")
        b.interpret("b")
        assert len(FakeRasa.seen) == 1 and b.failures == 1
        FakeRasa.mode = "ok"
        now[0] += 31
        assert b.interpret("c").extra["backend"] == "rasa"
    finally:
        b.close()


def test_server_not_running(local: Interpreter) -> None:
    b = RasaInterpreter("http://127.0.0.1:9", timeout=0.5, fallback=local, environ={})
    try:
        u = b.interpret("chest pain")
    finally:
        b.close()
    assert u.extra["backend"] == "embedded" and u.red_flags == ("chest_pain",)


def test_transport_seam(local: Interpreter) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"intent": {"name": "greet", "confidence": 0.99}})

    b = RasaInterpreter("http://rasa.test", fallback=local, transport=httpx.MockTransport(handler))
    try:
        assert b.interpret("hello").intent.name == "greet"
    finally:
        b.close()


def test_secrets_come_from_the_environment(rasa_url: str, local: Interpreter) -> None:
    from nlu.rasa import RasaHttpInterpreter  # the name bot.app uses

    b = RasaHttpInterpreter(rasa_url, fallback=local, environ={"RASA_JWT": "j.w.t"})
    try:
        b.interpret("hi")
    finally:
        b.close()
    assert FakeRasa.seen[0]["auth"] == "Bearer j.w.t"
