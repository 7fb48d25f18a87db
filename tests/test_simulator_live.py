"""The browser simulator's "Voice call" and "USSD" styles: a call as a script of prompts and
keys (a red flag keyed gives the emergency number and the offer to connect, then DIAL), a USSD
session as a phone screen of at most 182 characters reaching an END; both through the
webhooks' own steps on the visitor's test contact, what was said in the outbox; off -> 404."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser import chromium
from console_helpers import served
from playwright.sync_api import Page
from test_simulator_browser import Served
from test_test_contacts import SIM, with_

from bot.app import CareBridge
from bot.config import Config
from bot.store import OutboxStatus
from bot.web import create_app

OTHER2 = "sim-ussdpages1"
OTHER = "sim-gateoff01"  # the same database: a contact the gated-off server never saw


@pytest.fixture
def server(tmp_config: Config, tmp_path: Path) -> Iterator[Served]:
    with Served(tmp_config, tmp_path) as s:
        yield s


def _key(page: Page, key: str) -> None:
    page.locator(f'#keypad button[data-key="{key}"]').click()


def test_voice_and_ussd_styles_in_chromium(server: Served) -> None:
    with chromium() as browser:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.select_option("#style", "voice")
        assert page.locator("#log").is_hidden() and page.locator("#keypad").is_visible()
        page.click("#dial")
        lines = page.locator("#script .line")
        lines.filter(has_text="Which language would you like?").wait_for(timeout=10_000)
        # English, consent, COVID-19 check (one key each), then a red flag keyed ending with #
        for n in range(3):
            _key(page, "1")
            lines.filter(has_text="KEYS: 1").nth(n).wait_for(timeout=10_000)
        lines.filter(has_text="WAIT: keys ending with #").wait_for(timeout=10_000)
        _key(page, "1")
        _key(page, "#")
        lines.filter(has_text="KEYS: 1#").wait_for(timeout=10_000)
        lines.filter(has_text="To be connected to 112 now, press 1.").wait_for(timeout=10_000)
        _key(page, "1")
        lines.filter(has_text="DIAL: 112").wait_for(timeout=10_000)
        script = lines.all_inner_texts()
        assert script[0] == "--- call ---"
        offer = script.index("BOT: To be connected to 112 now, press 1.")
        assert "Call 112 now" in script[offer - 1]
        assert script[-2] == "DIAL: 112" and "call is over" in script[-1]

        page.click("#reset")  # a new test contact, over USSD
        page.select_option("#style", "ussd")
        assert page.locator("#script").is_hidden()
        page.click("#dial")
        screen = page.locator("#screen")
        screen.filter(has_text="1. English").wait_for(timeout=10_000)
        shown = [screen.inner_text()]
        for key in ["1", "1", "1", "1"]:
            before = screen.inner_text()
            page.fill("#keyed", key)
            page.click("#keysend")
            page.wait_for_function(
                "b => document.getElementById('screen').textContent !== b", arg=before
            )
            shown.append(screen.inner_text())
            if "(END" in page.locator("#chars").inner_text():
                break
        chars = page.locator("#chars").inner_text()
        assert all(len(s) <= 182 for s in shown), shown
        assert "(END" in chars and "112" in shown[-1], (chars, shown)
        page.click("#dial")  # dialling again after the END: the phone shows a screen again
        page.wait_for_function(
            "b => document.getElementById('screen').textContent !== b", arg=shown[-1]
        )


def test_the_live_endpoint_keeps_the_gate_the_outbox_and_the_test_contact(
    tmp_config: Config,
) -> None:
    bridge = CareBridge(tmp_config)
    with served(create_app(tmp_config, bridge=bridge, env={})) as url:
        api = f"{url}/sim/api/live"
        dial = httpx.post(api, json={"address": SIM, "style": "voice", "action": "dial"})
        assert dial.status_code == 200 and dial.json()["open"] is True
        assert "BOT: Which language would you like?" in dial.json()["lines"]
        keys = httpx.post(
            api, json={"address": SIM, "style": "voice", "action": "keys", "text": "1"}
        ).json()
        assert keys["lines"][0] == "KEYS: 1"
        contact = bridge.store.find_contact("web", SIM)
        assert contact is not None and bridge.store.contact_row(contact.id).test  # type: ignore[union-attr]
        said = [r for r in bridge.store.outbox(contact.id) if r.status is OutboxStatus.SENT]
        assert said and all(r.provider_id and r.provider_id.startswith("sim-") for r in said)
        ussd = httpx.post(api, json={"address": OTHER2, "style": "ussd", "action": "dial"}).json()
        assert ussd["kind"] == "CON" and ussd["chars"] == len(ussd["screen"]) <= 182
        screens = [ussd["screen"]]
        for key in ["1", "1", "1", "98", "00"]:  # English, consent, COVID-19; next page, back
            body = {"address": OTHER2, "style": "ussd", "action": "keys", "text": key}
            step = httpx.post(api, json=body).json()
            assert step["kind"] == "CON" and len(step["screen"]) <= 182
            screens.append(step["screen"])
        assert "98. More" in screens[3] and "Back" in screens[4] and screens[5] == screens[3]
        bad = httpx.post(api, json={"address": SIM, "style": "fax", "action": "dial"})
        assert bad.status_code == 400
        assert httpx.get(f"{url}/sim/live.js").status_code == 200
    public = with_(tmp_config, server={"host": "0.0.0.0"})
    off = CareBridge(public)
    with served(create_app(public, bridge=off, env={})) as url:
        body = {"address": OTHER, "style": "ussd", "action": "dial"}
        post = httpx.post(f"{url}/sim/api/live", json=body)
        assert post.status_code == 404 and post.text == "not found"
        assert httpx.get(f"{url}/sim/live.js").status_code == 404
        assert off.store.find_contact("web", OTHER) is None
