"""Broadcasts end to end in a real headless Chromium (Debian's, never a downloaded one), with
the fake Twilio API as the provider: coordinator alice creates a broadcast while the SMS
counter follows her typing, previews it, cannot approve it herself; bob approves; alice sends;
the fake Twilio receives every message and the status page counts them live. On a second,
large broadcast alice pulls the kill switch mid-send and sending stops. A correction reaches
exactly the people the first one reached. Also runs scripts/broadcast_screenshot.py once."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from broadcast_helpers import TEMPLATES, TEXT, subscriber
from browser import chromium
from console_helpers import free_port_url, make_user, served
from fakes import wait_for
from fakes.twilio_server import FakeTwilio
from playwright.sync_api import Browser, Locator, Page, expect

from bot.app import CareBridge
from bot.config import ChannelsConfig, ChannelSwitch, Config
from bot.store import SqlStore
from bot.web import create_app

ROOT = Path(__file__).resolve().parent.parent
SMS_FROM, WA_FROM = "+15550001111", "+15550002222"
PASSWORD = "a long enough password"
NORTH_SMS = [f"+1555010000{i}" for i in range(4)]
NORTH_WA = ["+919800000001", "+919800000002"]
SOUTH = [f"+1555020{i:04d}" for i in range(120)]  # the large broadcast: 24 s of SMS at 5/s
CORRECTION = "Correction: the testing centre is open until Saturday, not Friday."


@dataclass
class Stack:
    url: str
    twilio: FakeTwilio
    bridge: CareBridge

    @property
    def store(self) -> SqlStore:
        store = self.bridge.store
        assert isinstance(store, SqlStore)
        return store

    def received(self, containing: str) -> list[dict[str, str]]:
        """The form of each message the fake Twilio accepted whose text contains `containing`."""
        with self.twilio.lock:
            forms = [m["_form"] for m in self.twilio.messages]
        return [f for f in forms if containing in f.get("Body", f.get("ContentVariables", ""))]

    def sids(self, to: str) -> list[str]:
        with self.twilio.lock:
            return [m["sid"] for m in self.twilio.messages if m["to"] == to]


class Unread:
    """The interpreter: nobody writes to the bot here (and no warm-up to wait for)."""

    def interpret(self, text: str, expecting: object, language: str = "en") -> object:
        raise AssertionError("no message is interpreted in this test")


@pytest.fixture
def stack(tmp_config: Config) -> Iterator[Stack]:
    with FakeTwilio(auth_token="test-token") as twilio:
        sock, url = free_port_url()
        config = tmp_config.model_copy(
            update={
                "server": tmp_config.server.model_copy(update={"public_url": url}),
                "twilio": tmp_config.twilio.model_copy(
                    update={
                        "api_base_url": twilio.url,
                        "sms_from": SMS_FROM,
                        "whatsapp_from": WA_FROM,
                    }
                ),
                "channels": ChannelsConfig(
                    sms=ChannelSwitch(rate_per_s=5.0),
                    whatsapp=ChannelSwitch(rate_per_s=5.0),
                    telegram=ChannelSwitch(enabled=False),
                ),
                "console": tmp_config.console.model_copy(update={"poll_seconds": 1}),
                "broadcast": tmp_config.broadcast.model_copy(
                    update={"quiet_hours": None, "whatsapp_templates": TEMPLATES}
                ),
            }
        )
        bridge = CareBridge(config, interpreter=Unread())  # type: ignore[arg-type]
        store = bridge.store
        assert isinstance(store, SqlStore)
        for name in ("alice", "bob"):
            make_user(store, name, "coordinator", PASSWORD)
        for phone in NORTH_SMS:
            store.set_contact_facts(
                subscriber(store, "sms", phone), datetime.now(UTC), region="north"
            )
        for phone in NORTH_WA:
            store.set_contact_facts(
                subscriber(store, "whatsapp", phone), datetime.now(UTC), region="north"
            )
        for phone in SOUTH:
            store.set_contact_facts(
                subscriber(store, "sms", phone), datetime.now(UTC), region="south"
            )
        env = {"TWILIO_ACCOUNT_SID": twilio.account_sid, "TWILIO_AUTH_TOKEN": twilio.auth_token}
        app = create_app(config, bridge=bridge, env=env)
        with served(app, sock=sock):
            yield Stack(url, twilio, bridge)


def log_in(browser: Browser, url: str, username: str) -> Page:
    """A browser of its own for `username`, logged in; coordinators land on the broadcasts."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{url}/console/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/broadcasts")
    return page


def create(page: Page, name: str, text: str, region: str) -> int:
    page.click("#new-broadcast")
    page.wait_for_url("**/console/broadcasts/new")
    page.fill("#name", name)
    page.fill("#text-en", text)
    page.select_option("#whatsapp-template", "advice")
    page.fill("#regions", region)
    page.click("#create")
    page.wait_for_url("**/preview")
    return int(page.url.split("/")[-2])


def approve(page: Page, url: str, broadcast_id: int) -> None:
    page.goto(f"{url}/console/broadcasts/{broadcast_id}/preview")
    page.click("#approve")
    page.wait_for_url(f"**/console/broadcasts/{broadcast_id}")
    expect(page.locator("#broadcast-status")).to_have_text("approved")


def send(page: Page, url: str, broadcast_id: int) -> None:
    page.goto(f"{url}/console/broadcasts/{broadcast_id}")
    page.click("#send")
    page.wait_for_url(f"**/console/broadcasts/{broadcast_id}")


def cell(page: Page, channel: str, key: str) -> Locator:
    return page.locator(f"#stats-body tr[data-channel={channel}] td[data-key={key}]")


def test_coordinators_create_approve_send_stop_and_correct_a_broadcast(stack: Stack) -> None:
    url = stack.url
    with chromium() as browser:
        alice = log_in(browser, url, "alice")
        bob = log_in(browser, url, "bob")

        # Alice writes it; the SMS counter follows her typing (computed by the server).
        alice.click("#new-broadcast")
        alice.fill("#text-en", "Stay home tonight 😷")
        expect(alice.locator("#checks-en")).to_contain_text("UCS-2")
        alice.fill("#text-en", TEXT)
        expect(alice.locator("#checks-en")).to_contain_text(
            "SMS: 60 characters · GSM-7 · 1 segment · 0.0079 USD each"
        )
        expect(alice.locator("#checks-en")).not_to_contain_text("WhatsApp")
        alice.goto(f"{url}/console/broadcasts")
        first = create(alice, "Testing centre", TEXT, "north")
        expect(alice.locator("#preview-recipients")).to_have_text("6")
        expect(alice.locator("#preview-channels tr[data-channel=sms]")).to_contain_text("en 4")
        expect(alice.locator("#preview-channels tr[data-channel=whatsapp]")).to_contain_text("2")
        expect(alice.locator("#approve")).to_be_disabled()
        expect(alice.locator("#approve-why")).to_contain_text("You created this broadcast")

        # Bob, the second person, approves; Alice sends; the fake Twilio gets all six.
        approve(bob, url, first)
        send(alice, url, first)
        expect(cell(alice, "sms", "sent")).to_have_text("4", timeout=15_000)  # live, no reload
        expect(cell(alice, "whatsapp", "sent")).to_have_text("2", timeout=15_000)
        sms = stack.received(TEXT)
        assert sorted(f["To"] for f in sms if "Body" in f) == sorted(NORTH_SMS)
        whatsapp = [f for f in sms if f.get("ContentSid")]
        assert {f["To"] for f in whatsapp} == {f"whatsapp:{p}" for p in NORTH_WA}
        assert {f["ContentSid"] for f in whatsapp} == {"HXadvice_en"}
        expect(alice.locator("#stats-chart rect.seg-sent")).to_have_count(2)
        expect(alice.locator("#changed")).to_be_visible()  # finished: reload for the buttons

        # A delivery receipt arrives: the chart and table follow.
        receipt = stack.twilio.status_callback(stack.sids(NORTH_SMS[0])[0], "delivered")
        httpx.post(receipt.url, data=receipt.data, headers=receipt.headers, timeout=10)
        expect(cell(alice, "sms", "delivered")).to_have_text("1", timeout=10_000)
        expect(alice.locator("#stats-chart rect.seg-delivered")).to_have_count(1)
        csv = alice.request.get(f"{url}/console/broadcasts/{first}/stats.csv").text()
        assert f"{first},sms,0,3,1,0,0,0,0,4" in csv and f"{first},total,0,5,1,0,0,0,0,6" in csv

        # The second, large broadcast: Alice stops it mid-send with the kill switch.
        alice.goto(f"{url}/console/broadcasts")
        large = create(alice, "Curfew", "Curfew from 8 pm tonight until further notice.", "south")
        expect(alice.locator("#preview-recipients")).to_have_text("120")
        approve(bob, url, large)
        send(alice, url, large)
        wait_for(lambda: len(stack.received("Curfew from 8 pm")) >= 3, timeout=15.0)
        alice.click("#kill")
        expect(alice.locator("#confirm-kill-card")).to_contain_text("will not be sent")
        alice.click("#confirm-kill")
        alice.wait_for_url("**?stopped=*")
        expect(alice.locator("#broadcast-status")).to_have_text("cancelled")
        time.sleep(0.5)  # a message already with the provider may still land
        stopped_at = len(stack.received("Curfew from 8 pm"))
        time.sleep(1.5)  # at 5/s, seven more would have gone by now
        assert len(stack.received("Curfew from 8 pm")) == stopped_at < 20
        expect(cell(alice, "sms", "cancelled")).to_have_text(str(120 - stopped_at))

        # A correction of the first goes to exactly the people it reached: not to someone
        # who subscribed since, nor to someone who has sent STOP since.
        late = subscriber(stack.store, "sms", "+15550109999")
        stack.store.set_contact_facts(late, datetime.now(UTC), region="north")
        gone = stack.store.find_contact("sms", NORTH_SMS[3])
        assert gone is not None
        stack.store.update_contact(gone.id, opted_out=True, now=datetime.now(UTC))
        alice.goto(f"{url}/console/broadcasts/{first}")
        alice.click("#correct")
        alice.fill("#text-en", CORRECTION)
        alice.click("#create")
        alice.wait_for_url("**/preview")
        correction = int(alice.url.split("/")[-2])
        expect(alice.locator("#preview-recipients")).to_have_text("5")
        approve(bob, url, correction)
        send(alice, url, correction)
        expect(cell(alice, "total", "sent")).to_have_text("5", timeout=15_000)
        reached = {f["To"] for f in stack.received(CORRECTION)}
        assert reached == {*NORTH_SMS[:3], *(f"whatsapp:{p}" for p in NORTH_WA)}

    actions = [e.action for e in stack.store.audit_log() if e.action.startswith("broadcast_")]
    assert sorted(set(actions)) == [
        "broadcast_approve",
        "broadcast_cancel",
        "broadcast_correct",
        "broadcast_create",
        "broadcast_send",
    ]


def test_the_screenshot_script_photographs_a_live_broadcast(tmp_path: Path, store_url: str) -> None:
    spec = importlib.util.spec_from_file_location(
        "broadcast_screenshot", ROOT / "scripts" / "broadcast_screenshot.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    [shot] = module.take(tmp_path, store_url)
    assert shot.name == "console-broadcast.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
