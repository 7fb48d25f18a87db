"""Every console and API route, for every role: who may and who may not, log-in and CSRF, no
patient data without the right log-in, and an audit entry for every view of patient data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from console_helpers import make_user, served, session_cookie
from pg import with_store
from starlette.routing import Route

from bot.app import CareBridge, build_broadcasts
from bot.auth import LOGIN_COOKIE, SESSION_COOKIE, Auth
from bot.broadcasts.service import Draft
from bot.config import load_config
from bot.console import ANY_ROLE, PUBLIC, ROUTE_ROLES
from bot.dashboards.service import HEALTH as HEALTH_AGGREGATES
from bot.messages import Inbound
from bot.store import Role
from bot.web import create_app

PHONE = "+15557654321"
SAID = "my father can't breathe and his lips are blue <script>alert(1)</script>"
# What must never appear in a response to someone who may not see patient data.
PATIENT_DATA = ("7654321", "lips are blue", "Blue or grey lips", "cyanosis", "breathe", "alert(1)")
ROLES = [r.value for r in Role]
PASSWORD = "a long enough password"


@dataclass
class Site:
    url: str
    bridge: CareBridge
    auth: Auth
    cookies: dict[str, dict[str, str]]  # role -> a logged-in browser's cookies
    routes: list[tuple[str, str]]  # (method, path) under /console and /api

    def client(self, role: str | None = None) -> httpx.Client:
        cookies = self.cookies[role] if role else {}
        return httpx.Client(base_url=self.url, cookies=cookies, follow_redirects=False, timeout=10)

    def csrf(self, role: str) -> str:
        login = self.auth.session_for(self.cookies[role][SESSION_COOKIE])
        assert login is not None
        return login.csrf


@pytest.fixture(scope="module")
def site(module_store_url: str) -> Iterator[Site]:
    base = load_config(Path(__file__).resolve().parent.parent / "config.yaml", env={})
    bridge = CareBridge(with_store(base, module_store_url))
    now = datetime.now(UTC)
    bridge.handle(Inbound("sms", PHONE, SAID, now, "SM-route-1"))
    contact = bridge.store.find_contact("sms", PHONE)
    assert contact is not None
    bridge.store.add_reading(contact.id, None, "spo2_percent", 88.0, "%", now)
    app = create_app(bridge.config, bridge=bridge, env={}, senders={}, dispatch=False)
    auth = Auth(bridge.store, bridge.config.console, env={})
    cookies = {
        r: session_cookie(auth, make_user(bridge.store, f"u_{r}", r, PASSWORD)) for r in ROLES
    }
    advice = Draft("Testing", {"en": "Free testing at the town hall until Friday."})
    assert build_broadcasts(bridge.config, bridge.store).create(advice, "u_coordinator").id == 1
    routes = sorted(
        (method, r.path)
        for r in app.routes
        if isinstance(r, Route) and r.path.startswith(("/console", "/api"))
        for method in (r.methods or set()) - {"HEAD"}
    )
    with served(app) as url:
        yield Site(url, bridge, auth, cookies, routes)
    bridge.close()


def concrete(path: str) -> str:
    """A route path with its parameters filled in (the seeded ticket, patient, broadcast and
    user 1)."""
    path = path.replace("{name}", "console.css")
    return re.sub(r"\{\w+:int\}", "1", path)


def request(client: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
    return client.request(method, concrete(path), **kwargs)  # type: ignore[arg-type]


def assert_no_patient_data(response: httpx.Response) -> None:
    body = response.text
    leaked = [marker for marker in PATIENT_DATA if marker in body]
    assert not leaked, f"{response.request.method} {response.request.url.path} shows {leaked}"


# -- the route table ----------------------------------------------------------------------------


def test_every_console_route_declares_who_may_use_it(site: Site) -> None:
    assert set(site.routes) == set(ROUTE_ROLES)
    assert len(site.routes) >= 25


def test_every_route_refuses_a_visitor_who_is_not_logged_in(site: Site) -> None:
    with site.client() as anonymous:
        for method, path in site.routes:
            response = request(anonymous, method, path)
            assert_no_patient_data(response)
            if ROUTE_ROLES[(method, path)] is PUBLIC:  # the log-in form and static files
                assert response.status_code in (200, 403), (method, path)
            elif path.startswith("/api"):
                assert response.status_code == 401, (method, path)
            else:
                assert response.status_code == 303, (method, path)
                assert response.headers["location"].startswith("/console/login")


@pytest.mark.parametrize("role", ROLES)
def test_every_route_checks_the_role(site: Site, role: str) -> None:
    """A refused role gets 403 and no patient data; an allowed one gets past the role check
    (a POST without its CSRF token then stops there, so nothing changes)."""
    with site.client(role) as browser:
        for method, path in site.routes:
            allowed = ROUTE_ROLES[(method, path)]
            if allowed is PUBLIC:
                continue
            response = request(browser, method, path)
            where = (role, method, path)
            if role not in allowed:
                assert response.status_code == 403, where
                assert "your role may not" in response.text, where
                assert_no_patient_data(response)
            elif method == "POST":
                assert response.status_code == 403, where
                assert "form has expired" in response.text, where
            else:
                assert response.status_code in (200, 303), where
                if role != Role.CLINICIAN:
                    assert_no_patient_data(response)


def test_coordinators_and_admins_act_on_broadcasts_and_everyone_reads_them(site: Site) -> None:
    broadcast_routes = {k: v for k, v in ROUTE_ROLES.items() if "broadcasts" in k[1]}
    assert len(broadcast_routes) == 13
    for (method, path), roles in broadcast_routes.items():
        if method == "POST" or path.endswith(("/new", "/correct")):
            assert roles == frozenset({Role.COORDINATOR, Role.ADMIN}), (method, path)
        else:
            assert roles == ANY_ROLE, (method, path)  # texts and counts, no patient data


def test_only_clinicians_see_patient_data(site: Site) -> None:
    clinical = [
        (m, p) for (m, p), roles in ROUTE_ROLES.items() if roles == frozenset({Role.CLINICIAN})
    ]
    assert ("GET", "/console/tickets/{ticket:int}") in clinical
    # The dashboards (counts without identifiers; rare red flag kinds grouped for coordinators,
    # see tests/test_dashboards.py) are the one place clinicians share a route with coordinators.
    assert all(
        roles is PUBLIC
        or roles == ANY_ROLE
        or Role.CLINICIAN not in roles
        or roles == frozenset({Role.CLINICIAN})
        or (path.startswith("/console/dashboards/") and roles == HEALTH_AGGREGATES)
        for (_, path), roles in ROUTE_ROLES.items()
    )
    with site.client(Role.CLINICIAN) as browser:
        page = browser.get("/console/tickets/1")
        assert page.status_code == 200
        assert "lips are blue" in page.text and "Blue or grey lips" in page.text
        assert "<script>alert(1)</script>" not in page.text  # escaped
        assert "&lt;script&gt;" in page.text
        assert PHONE not in page.text and "+•••••••4321" in page.text


# -- log-in, CSRF and cookies -------------------------------------------------------------------


def login(
    site: Site, username: str, password: str, next_: str = "/console/queue"
) -> httpx.Response:
    with httpx.Client(base_url=site.url, follow_redirects=False) as browser:
        form = browser.get("/console/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        return browser.post(
            "/console/login",
            data={"csrf": token[1], "username": username, "password": password, "next": next_},
        )


def test_logging_in_sets_a_httponly_samesite_cookie_with_an_expiry(site: Site) -> None:
    make_user(site.bridge.store, "dr_login", "clinician", PASSWORD)
    response = login(site, "dr_login", PASSWORD)
    assert (response.status_code, response.headers["location"]) == (303, "/console/queue")
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
    )
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "max-age", "path"} <= attributes
    assert "samesite=lax" in cookie.lower() and "max-age=43200" in cookie.lower()
    token = cookie.split(";")[0].split("=", 1)[1]
    with httpx.Client(base_url=site.url, cookies={SESSION_COOKIE: token}) as browser:
        assert browser.get("/console/queue").status_code == 200


def test_a_wrong_password_or_a_missing_form_token_logs_nobody_in(site: Site) -> None:
    wrong = login(site, "u_clinician", "not the password")
    assert wrong.status_code == 401 and "wrong username or password" in wrong.text
    assert SESSION_COOKIE not in wrong.headers.get("set-cookie", "")
    with httpx.Client(base_url=site.url) as browser:
        forged = browser.post(
            "/console/login", data={"username": "u_clinician", "password": PASSWORD}
        )
    assert forged.status_code == 403 and SESSION_COOKIE not in forged.headers.get("set-cookie", "")


def test_the_log_in_form_cookie_is_strict_and_short_lived(site: Site) -> None:
    with httpx.Client(base_url=site.url) as browser:
        cookie = browser.get("/console/login").headers["set-cookie"]
    assert cookie.startswith(LOGIN_COOKIE) and "samesite=strict" in cookie.lower()
    assert "httponly" in cookie.lower() and "max-age=3600" in cookie.lower()


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "/api/queue"])
def test_after_log_in_only_console_pages_are_redirect_targets(site: Site, target: str) -> None:
    make_user(site.bridge.store, f"dr_next{len(target)}", "clinician", PASSWORD)
    response = login(site, f"dr_next{len(target)}", PASSWORD, next_=target)
    assert response.headers["location"] == "/console"


def test_a_wrong_csrf_token_changes_nothing(site: Site) -> None:
    with site.client(Role.CLINICIAN) as browser:
        response = browser.post("/console/tickets/1/claim", data={"csrf": "forged"})
        header = browser.post("/console/tickets/1/claim", headers={"X-CSRF-Token": "forged"})
    assert response.status_code == header.status_code == 403
    ticket = site.bridge.store.get_escalation(1)
    assert ticket is not None and ticket.status == "waiting"


def test_a_one_time_password_must_be_changed_first(site: Site) -> None:
    user = make_user(site.bridge.store, "dr_new", "clinician", PASSWORD, must_change=True)
    cookies = session_cookie(site.auth, user)
    with httpx.Client(base_url=site.url, cookies=cookies, follow_redirects=False) as browser:
        assert browser.get("/console/queue").headers["location"] == "/console/password"
        assert browser.get("/api/queue").status_code == 403
        page = browser.get("/console/password")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        new = "my own new password"
        changed = browser.post(
            "/console/password",
            data={"csrf": token[1], "current": PASSWORD, "new": new, "again": new},
        )
        assert changed.headers["location"] == "/console/login"
        assert browser.get("/console/queue").status_code == 303  # log in again
    assert login(site, "dr_new", "my own new password").headers["location"] == "/console/queue"


def test_logging_out_ends_the_session(site: Site) -> None:
    user = make_user(site.bridge.store, "dr_bye", "clinician", PASSWORD)
    cookies = session_cookie(site.auth, user)
    login_row = site.auth.session_for(cookies[SESSION_COOKIE])
    assert login_row is not None
    with httpx.Client(base_url=site.url, cookies=cookies, follow_redirects=False) as browser:
        out = browser.post("/console/logout", data={"csrf": login_row.csrf})
        assert out.status_code == 303
    with httpx.Client(base_url=site.url, cookies=cookies, follow_redirects=False) as browser:
        assert browser.get("/api/me").status_code == 401


def test_every_page_carries_the_security_headers(site: Site) -> None:
    with site.client(Role.CLINICIAN) as browser:
        for path in ("/console/login", "/console/queue", "/api/queue", "/console/tickets/1"):
            headers = browser.get(path).headers
            assert "script-src 'self'" in headers["content-security-policy"], path
            assert headers["cache-control"] == "no-store", path
            assert headers["x-frame-options"] == "DENY", path


# -- what clinicians see, and the audit trail ----------------------------------------------------


def test_the_queue_api_masks_numbers(site: Site) -> None:
    with site.client(Role.CLINICIAN) as browser:
        data = browser.get("/api/queue").json()
    [ticket] = [t for t in data["tickets"] if t["id"] == 1]
    assert ticket["priority"] == "emergency" and ticket["contact"] == "+•••••••4321"
    assert PHONE not in str(data)


def test_views_of_patient_data_are_audited(site: Site) -> None:
    user = make_user(site.bridge.store, "dr_audit", "clinician", PASSWORD)
    cookies = session_cookie(site.auth, user)
    with httpx.Client(base_url=site.url, cookies=cookies) as browser:
        browser.get("/console/queue")
        browser.get("/api/queue")  # the same queue again: not audited twice
        browser.get("/console/tickets/1")
        browser.get("/api/tickets/1/transcript?after=0")
        browser.get("/api/tickets/1/transcript?after=999999")  # nothing new: nothing shown
        browser.get("/console/patients/1")
        browser.get("/api/patients/1/readings")
        browser.get("/api/tickets/1")
    actions = [e.action for e in reversed(site.bridge.store.audit_log(user_id=user.id))]
    assert actions == [
        "login",
        "view_queue",
        "view_ticket",
        "view_transcript",
        "view_patient",
        "view_readings",
        "view_ticket",
    ]


def test_a_phone_number_is_shown_only_when_revealed_and_that_is_audited(site: Site) -> None:
    user = make_user(site.bridge.store, "dr_reveal", "clinician", PASSWORD)
    cookies = session_cookie(site.auth, user)
    csrf = site.auth.session_for(cookies[SESSION_COOKIE])
    assert csrf is not None
    with httpx.Client(base_url=site.url, cookies=cookies) as browser:
        page = browser.get("/console/patients/1")
        assert PHONE not in page.text and "88 %" in page.text and "<svg" in page.text
        revealed = browser.post("/console/patients/1/reveal", data={"csrf": csrf.csrf})
    assert revealed.status_code == 200 and PHONE in revealed.text
    entry = site.bridge.store.audit_log(user_id=user.id)[0]
    assert (entry.action, entry.contact_id) == ("reveal_address", 1)


def test_an_admin_adds_users_and_reads_the_audit_log(site: Site) -> None:
    with site.client(Role.ADMIN) as browser:
        added = browser.post(
            "/console/users",
            data={"csrf": site.csrf(Role.ADMIN), "username": "dr_added", "role": "coordinator"},
        )
        assert added.status_code == 200 and "One-time password for <b>dr_added</b>" in added.text
        audit = browser.get("/console/audit")
        assert audit.status_code == 200 and "add_user" in audit.text
    assert_no_patient_data(audit)
    user = site.bridge.store.find_user("dr_added")
    assert user is not None and user.role == "coordinator" and user.must_change_password


def test_the_overview_shows_counts_to_every_role(site: Site) -> None:
    for role in ROLES:
        with site.client(role) as browser:
            counts = browser.get("/api/overview").json()
        assert counts["waiting_by_priority"]["emergency"] >= 1, role
