"""Security headers on every response (the simulator page, /healthz, 404s, the console) and error
pages that name nothing internal, probed over real HTTP on loopback as a visitor would."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator

import httpx
import pytest
from console_helpers import served
from pg import with_store
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from bot.app import CareBridge
from bot.config import load_config
from bot.headers import EXCEPTION_HANDLERS, SecurityHeaders, error_page, page_csp
from bot.web import create_app

REQUIRED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}
# Words that would tell an attacker how the server is built or configured.
INTERNAL = (
    *("TWILIO", "TELEGRAM_", "Traceback", "starlette", "uvicorn", "bot/", ".py"),
    *("sqlite", "psycopg", "postgres"),
)


@pytest.fixture(scope="module")
def url(module_store_url: str) -> Iterator[str]:
    config = with_store(load_config(env={}), module_store_url)
    bridge = CareBridge(config)
    app = create_app(config, bridge=bridge, env={}, dispatch=False, schedule=False)
    with served(app) as base_url:
        yield base_url
    bridge.close()


def assert_secured(response: httpx.Response) -> None:
    for name, value in REQUIRED.items():
        assert response.headers.get(name) == value, f"{response.url.path}: {name}"
    csp = response.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, response.url.path
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),  # the simulator page
        ("GET", "/healthz", 200),
        ("GET", "/console/login", 200),
        ("GET", "/no/such/page", 404),
        ("GET", "/console/static/nothing.js", 404),
        ("GET", "/webhooks/telegram", 405),
        ("POST", "/webhooks/twilio/sms", 404),  # the SMS channel is off (no secrets)
        ("POST", "/webhooks/telegram", 404),
    ],
)
def test_every_response_carries_the_security_headers(
    url: str, method: str, path: str, status: int
) -> None:
    response = httpx.request(method, url + path, timeout=10)
    assert response.status_code == status
    assert_secured(response)


@pytest.mark.parametrize(
    "path", ["/webhooks/twilio/sms", "/webhooks/twilio/whatsapp", "/webhooks/telegram"]
)
def test_a_disabled_channel_does_not_say_why(url: str, path: str) -> None:
    response = httpx.post(url + path, data={"Body": "hi"}, timeout=10)
    assert response.status_code == 404
    leaked = [word for word in INTERNAL if word.lower() in response.text.lower()]
    assert not leaked and "not set" not in response.text and "enabled" not in response.text


def test_a_404_page_names_nothing_internal(url: str) -> None:
    response = httpx.get(url + "/../../etc/passwd?x=<script>", timeout=10)
    assert response.status_code == 404 and "Not found" in response.text
    assert not [word for word in INTERNAL if word.lower() in response.text.lower()]
    assert "<script>" not in response.text


def test_the_simulator_page_may_run_its_own_inline_code_and_nothing_else(url: str) -> None:
    page = httpx.get(url + "/", timeout=10)
    csp = page.headers["content-security-policy"]
    scripts = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    assert scripts, "the simulator page has an inline script"
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "script-src 'self' 'sha256-" in csp  # an injected <script> has another hash


def test_a_crash_answers_a_plain_500_page_with_the_headers() -> None:
    async def boom(request: object) -> None:
        raise RuntimeError("secret internals at /srv/bot/store.py")

    app = Starlette(
        routes=[Route("/boom", boom)],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    with served(app, lifespan="off") as base:
        response = httpx.get(base + "/boom", timeout=10)
    assert response.status_code == 500 and "Something went wrong" in response.text
    assert "secret" not in response.text and "store.py" not in response.text
    assert_secured(response)


def test_page_csp_hashes_inline_blocks_only() -> None:
    html = b"<style>p{}</style><script src='/x.js'></script><script>go()</script>"
    csp = page_csp(html)
    assert csp.count("'sha256-") == 2
    assert error_page(404).headers["x-frame-options"] == "DENY"
