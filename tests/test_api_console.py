"""The admins' API token page (docs/api.md): an admin makes a token in the console, sees it
once, another system reads with it, and revoking it in the console refuses it at once; other
roles cannot open the page."""

from __future__ import annotations

import re

import httpx
from console_helpers import make_user, served, session_cookie

from bot.app import CareBridge
from bot.auth import Auth
from bot.config import Config
from bot.flow import Library
from bot.web import create_app


def test_an_admin_makes_and_revokes_a_token_in_the_console(
    tmp_config: Config, lib: Library
) -> None:
    bridge = CareBridge(tmp_config, library=lib)
    app = create_app(tmp_config, bridge=bridge, env={}, senders={}, dispatch=False, schedule=False)
    auth = Auth(bridge.store, tmp_config.console)
    admin = make_user(bridge.store, "ada", "admin", "a long passphrase 1")
    clinician = make_user(bridge.store, "dr_b", "clinician", "a long passphrase 2")
    cookies = session_cookie(auth, admin)
    login = auth.session_for(next(iter(cookies.values())))
    assert login is not None
    with served(app) as url, httpx.Client(base_url=url, cookies=cookies) as browser:
        page = browser.get("/console/tokens")
        assert page.status_code == 200 and "No API tokens yet" in page.text
        made = browser.post(
            "/console/tokens",
            data={"csrf": login.csrf, "name": "warehouse", "scope:contacts:read": "1"},
        )
        assert made.status_code == 200, made.text
        token = re.search(r'<code id="new-token">(cb_[^<]+)</code>', made.text)
        assert token is not None
        bearer = {"Authorization": f"Bearer {token.group(1)}"}
        assert httpx.get(f"{url}/api/v1/contacts", headers=bearer).status_code == 200
        again = browser.get("/console/tokens")
        assert token.group(1) not in again.text and "warehouse" in again.text  # shown once

        none = browser.post("/console/tokens", data={"csrf": login.csrf, "name": "x"})
        assert none.status_code == 400 and "give at least one scope" in none.text

        [row] = re.findall(r'action="/console/tokens/(\d+)/revoke"', again.text)
        revoked = browser.post(f"/console/tokens/{row}/revoke", data={"csrf": login.csrf})
        assert revoked.status_code == 303
        assert httpx.get(f"{url}/api/v1/contacts", headers=bearer).status_code == 401

        other = httpx.get(f"{url}/console/tokens", cookies=session_cookie(auth, clinician))
        assert other.status_code == 403
        made_by = [e for e in bridge.store.audit_log() if e.action.startswith("api_token_")]
    assert {(e.action, e.username) for e in made_by} == {
        ("api_token_created", "ada"),
        ("api_token_revoked", "ada"),
    }
