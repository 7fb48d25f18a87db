"""The log-in as an attacker would probe it, over real HTTP on loopback: no lock-out an anonymous
client can trigger for a real user, throttling per address and username, identical answers and
comparable timing for unknown users / wrong passwords / throttled tries, a bounded hash pool,
and the optional TOTP second factor. Client addresses come from X-Forwarded-For, which uvicorn
trusts from 127.0.0.1 (as behind a local TLS proxy)."""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyotp
import pytest
from argon2 import PasswordHasher
from console_helpers import served
from pg import with_store

from bot import auth as auth_module
from bot.app import CareBridge
from bot.auth import DEVICE_COOKIE, SESSION_COOKIE, WRONG, hash_password
from bot.config import Config, load_config
from bot.store import Role
from bot.web import create_app

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "the real admin's long password"


@pytest.fixture(autouse=True)
def cheap_argon2(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap hashes keep these tests fast; the timing test asks for the real parameters."""
    if "real_argon2" not in request.fixturenames:
        cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        monkeypatch.setattr("bot.auth._hasher", cheap)


@pytest.fixture
def real_argon2() -> None:
    """Ask for this to hash with the production parameters."""


@dataclass
class Site:
    url: str
    bridge: CareBridge


def make_site(store_url: str, **console: object) -> tuple[CareBridge, Config]:
    base = with_store(load_config(ROOT / "config.yaml", env={}), store_url)
    config = base.model_copy(update={"console": base.console.model_copy(update=console)})
    bridge = CareBridge(config)
    now = bridge.clock()
    hashed = hash_password(ADMIN_PASSWORD)
    bridge.store.add_user("admin", hashed, Role.ADMIN, now, must_change_password=False)
    return bridge, config


@pytest.fixture
def site(store_url: str) -> Iterator[Site]:
    bridge, config = make_site(store_url, login_answer_ms=50)
    app = create_app(config, bridge=bridge, env={}, senders={}, dispatch=False, schedule=False)
    with served(app, lifespan="off") as url:
        yield Site(url, bridge)
    bridge.close()


def browser(site: Site, address: str) -> httpx.Client:
    return httpx.Client(
        base_url=site.url, headers={"X-Forwarded-For": address}, follow_redirects=False, timeout=30
    )


def try_login(client: httpx.Client, username: str, password: str, code: str = "") -> httpx.Response:
    form = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    data = {"csrf": token[1], "username": username, "password": password, "next": "/console"}
    if code:
        data["code"] = code
    return client.post("/console/login", data=data)


def logged_in(response: httpx.Response) -> bool:
    return response.status_code == 303 and SESSION_COOKIE in response.headers.get("set-cookie", "")


def test_twenty_wrong_passwords_from_one_address_do_not_stop_the_real_admin(site: Site) -> None:
    with browser(site, "203.0.113.66") as attacker:
        answers = [try_login(attacker, "admin", f"guess {i}") for i in range(20)]
        assert all(r.status_code == 401 and WRONG in r.text for r in answers)
        # The attacker's own address is throttled now: even the right password is refused.
        assert not logged_in(try_login(attacker, "admin", ADMIN_PASSWORD))
    with browser(site, "198.51.100.7") as admin:
        assert logged_in(try_login(admin, "admin", ADMIN_PASSWORD))
    checked = [e for e in site.bridge.store.audit_log(limit=500) if e.action == "login_failed"]
    assert len(checked) == 5  # login_limits_account: 5/minute; the other 15 were never checked


def test_spraying_usernames_from_one_client_is_throttled(site: Site) -> None:
    with browser(site, "203.0.113.9") as sprayer:
        for i in range(30):
            assert try_login(sprayer, f"user{i:02d}", "Winter2024!").status_code == 401
    checked = [e for e in site.bridge.store.audit_log(limit=500) if e.action == "login_failed"]
    assert len(checked) == 10  # login_limits_address: 10/minute
    throttled = [e for e in site.bridge.store.audit_log(limit=500) if e.action == "login_throttled"]
    assert len(throttled) == 1 and throttled[0].detail["address"] == "203.0.113.9"


def test_a_browser_that_logged_in_before_gets_in_during_a_distributed_attack(site: Site) -> None:
    with browser(site, "198.51.100.7") as admin:
        assert logged_in(try_login(admin, "admin", ADMIN_PASSWORD))
        assert DEVICE_COOKIE in admin.cookies
        # 35 wrong passwords for admin from 7 addresses: over the per-username 30/hour.
        for n in range(7):
            with browser(site, f"203.0.113.{n}") as bot_client:
                for i in range(5):
                    try_login(bot_client, "admin", f"guess {n} {i}")
        with browser(site, "192.0.2.50") as stranger:
            assert not logged_in(try_login(stranger, "admin", ADMIN_PASSWORD))
        assert logged_in(try_login(admin, "admin", ADMIN_PASSWORD))  # the known browser


def normalised(response: httpx.Response) -> tuple[int, str, list[str]]:
    """Status, body without the per-form token, and header names: what an attacker compares."""
    body = re.sub(r'name="csrf" value="[^"]+"', 'name="csrf" value=""', response.text)
    return response.status_code, body, sorted(k for k in response.headers if k != "date")


def test_unknown_user_wrong_password_and_throttled_get_the_same_answer(site: Site) -> None:
    with browser(site, "203.0.113.20") as client:
        unknown = try_login(client, "no_such_user", "whatever it is")
        wrong = try_login(client, "admin", "not the password")
    with browser(site, "203.0.113.21") as client:
        for i in range(10):
            try_login(client, f"x{i}", "spray")
        throttled = try_login(client, "admin", "not the password")
    assert normalised(unknown) == normalised(wrong) == normalised(throttled)
    assert unknown.status_code == 401 and WRONG in unknown.text
    assert "locked" not in unknown.text + wrong.text + throttled.text


def test_unknown_wrong_and_throttled_take_comparable_time(
    store_url: str, real_argon2: None
) -> None:
    """Real argon2 parameters; medians over repeated tries; a generous ratio, never a time."""
    bridge, config = make_site(store_url, login_answer_ms=300, login_limits_address="2/minute")
    app = create_app(config, bridge=bridge, env={}, senders={}, dispatch=False, schedule=False)
    times: dict[str, list[float]] = {"unknown": [], "wrong": [], "throttled": []}
    users = {"unknown": "nobody_here", "wrong": "admin", "throttled": "admin"}
    with served(app, lifespan="off") as url:
        site = Site(url, bridge)
        with browser(site, "203.0.113.30") as spent:
            for i in range(2):  # this address goes over its limit
                try_login(spent, f"warm{i}", "spray")
            for i in range(5):
                for kind in times:
                    fresh = browser(
                        site, f"198.51.100.{i}" if kind == "unknown" else f"192.0.2.{i}"
                    )
                    client = spent if kind == "throttled" else fresh
                    form = client.get("/console/login")
                    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
                    assert token is not None
                    data = {"csrf": token[1], "username": users[kind], "password": f"no {i}"}
                    started = time.perf_counter()
                    response = client.post("/console/login", data=data)
                    times[kind].append(time.perf_counter() - started)
                    fresh.close()
                    assert response.status_code == 401
    bridge.close()
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    assert max(medians.values()) / min(medians.values()) < 2.5, medians


def test_hammering_the_log_in_hashes_at_most_two_passwords_at_once(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = 0
    peak = 0
    lock = threading.Lock()
    real = auth_module.verify_password

    def counted(password_hash: str, password: str) -> bool:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            time.sleep(0.05)  # make overlaps likely
            return real(password_hash, password)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(auth_module, "verify_password", counted)

    def one(n: int) -> int:
        with browser(site, f"10.9.{n}.1") as client:
            return try_login(client, f"user{n}", "guess").status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(one, range(12)))
    assert statuses == [401] * 12
    assert 1 <= peak <= 2  # console.login_hash_threads


def test_totp_enrolment_then_every_log_in_needs_the_code(site: Site) -> None:
    with browser(site, "198.51.100.7") as admin:
        assert logged_in(try_login(admin, "admin", ADMIN_PASSWORD))
        page = admin.get("/console/totp")
        secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text)
        offer = re.search(r'name="offer" value="([^"]+)"', page.text)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert secret and offer and csrf
        bad = admin.post(
            "/console/totp", data={"csrf": csrf[1], "offer": offer[1], "code": "000000"}
        )
        assert bad.status_code == 400 and "not right" in bad.text
        code = pyotp.TOTP(secret[1]).now()
        on = admin.post("/console/totp", data={"csrf": csrf[1], "offer": offer[1], "code": code})
        assert on.status_code == 303
        assert 'id="totp-on"' in admin.get("/console/totp").text
    with browser(site, "198.51.100.8") as again:
        without = try_login(again, "admin", ADMIN_PASSWORD)
        assert without.status_code == 401 and WRONG in without.text  # same answer as wrong
        assert logged_in(try_login(again, "admin", ADMIN_PASSWORD, pyotp.TOTP(secret[1]).now()))
    actions = [e.action for e in site.bridge.store.audit_log(limit=50)]
    assert "totp_enrolled" in actions
