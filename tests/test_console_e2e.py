"""The console end to end in a real headless Chromium (Debian's, never a downloaded one): a red
flag arrives over a signed Twilio webhook, a clinician sees it appear in the queue, claims it,
replies, the patient gets the reply through the fake Twilio API and answers live, and the
clinician resolves the ticket. Every page fits a 375 px phone and a 1280 px desktop (no
sideways scrolling, every action inside the screen). Also runs scripts/screenshots.py once."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from browser import chromium
from console_helpers import free_port_url, make_user, served
from fakes import wait_for
from fakes.twilio_server import FakeTwilio, inbound_params, signed_request
from playwright.sync_api import Page

from bot.app import CareBridge
from bot.config import Config, EscalationConfig, OnCallConfig
from bot.session import SessionStatus
from bot.web import create_app

ROOT = Path(__file__).resolve().parent.parent
PATIENT, SMS_FROM, ON_CALL = "+15557654321", "+15550001111", "+15550009999"
USER, PASSWORD = "dr.rao", "a long enough password"


@dataclass
class Stack:
    url: str
    twilio: FakeTwilio
    bridge: CareBridge

    def sms(self, body: str) -> None:
        """The patient texts `body`: Twilio posts a signed webhook to carebridge."""
        target = f"{self.url}/webhooks/twilio/sms"
        req = signed_request(target, inbound_params(PATIENT, body, to=SMS_FROM), "test-token")
        response = httpx.post(target, data=req.data, headers=req.headers, timeout=10)
        assert response.status_code == 200

    def sent_to(self, number: str) -> list[str]:
        with self.twilio.lock:
            return [m["body"] for m in self.twilio.messages if m["to"] == number]


@pytest.fixture
def stack(tmp_config: Config) -> Iterator[Stack]:
    with FakeTwilio(auth_token="test-token") as twilio:
        sock, url = free_port_url()
        config = tmp_config.model_copy(
            update={
                "server": tmp_config.server.model_copy(update={"public_url": url}),
                "twilio": tmp_config.twilio.model_copy(
                    update={"api_base_url": twilio.url, "sms_from": SMS_FROM}
                ),
                "escalation": EscalationConfig(
                    on_call=OnCallConfig(channel="sms", address=ON_CALL)
                ),
                "console": tmp_config.console.model_copy(update={"poll_seconds": 1}),
            }
        )
        bridge = CareBridge(config)
        env = {"TWILIO_ACCOUNT_SID": twilio.account_sid, "TWILIO_AUTH_TOKEN": twilio.auth_token}
        app = create_app(config, bridge=bridge, env=env)
        make_user(bridge.store, USER, "clinician", PASSWORD)
        with served(app, sock=sock):
            yield Stack(url, twilio, bridge)


def test_a_clinician_works_a_red_flag_case_from_the_queue(stack: Stack) -> None:
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{stack.url}/console/login")
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/console/queue")
        expect(page.locator("#queue-body")).to_contain_text("No open tickets")

        # A red flag arrives while the clinician watches: the queue updates without a reload.
        stack.sms("my father can't breathe and his lips are blue")
        row = page.locator("#queue-body tr[data-href]")
        expect(row).to_have_count(1, timeout=10_000)
        expect(row).to_contain_text("emergency")
        expect(row).to_contain_text("+•••••••4321")
        wait_for(lambda: len(stack.sent_to(PATIENT)) == 1)  # the bot's emergency reply
        assert "112" in stack.sent_to(PATIENT)[0]
        wait_for(lambda: len(stack.sent_to(ON_CALL)) == 1)  # on-call told at once
        [alert] = stack.sent_to(ON_CALL)
        assert alert.endswith("/console/tickets/1") and "lips" not in alert

        row.locator("a").click()
        page.wait_for_url("**/console/tickets/1")
        expect(page.locator("#summary")).to_contain_text("Blue or grey lips")
        page.click("#claim")
        expect(page.locator("#ticket-status")).to_contain_text("claimed")
        assert (
            stack.bridge.store.current_session(
                stack.bridge.store.find_contact("sms", PATIENT)  # type: ignore[arg-type]
            ).status
            is SessionStatus.HANDED_OFF
        )

        reply = "This is Dr Rao. Is the ambulance on its way?"
        page.fill("#reply-text", reply)
        page.click("#send")
        expect(page.locator("#transcript")).to_contain_text(reply)
        wait_for(lambda: reply in stack.sent_to(PATIENT))  # delivered by the fake Twilio

        # The patient answers: it appears in the open ticket without a reload; the bot is quiet.
        stack.sms("yes it is here now, thank you")
        expect(page.locator("#transcript")).to_contain_text(
            "yes it is here now, thank you", timeout=10_000
        )
        assert len(stack.sent_to(PATIENT)) == 2

        page.click("#resolve")
        expect(page.locator("#ticket-status")).to_contain_text("resolved")
        page.goto(f"{stack.url}/console/queue")
        expect(page.locator("#queue-body")).to_contain_text("No open tickets")

    ticket = stack.bridge.store.get_escalation(1)
    assert ticket is not None and ticket.status == "resolved"
    assert ticket.first_response_at is not None and ticket.resolved_at is not None
    actions = {e.action for e in stack.bridge.store.audit_log()}
    assert {"login", "view_queue", "view_ticket", "claim", "reply", "resolved"} <= actions


def test_the_screenshot_script_photographs_the_running_console(
    tmp_path: Path, store_url: str
) -> None:
    spec = importlib.util.spec_from_file_location(
        "screenshots", ROOT / "scripts" / "screenshots.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shots = module.take(tmp_path, store_url)
    assert [p.name for p in shots] == [
        "console-queue.png",
        "console-ticket.png",
        "console-patient.png",
        "console-queue-phone.png",
        "console-ticket-phone.png",
    ]
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


PHONE, DESKTOP = 375, 1280


def fits(page: Page) -> None:
    """No sideways scrolling, and every link, button and field lies inside the viewport."""
    width = page.viewport_size["width"] if page.viewport_size else 0
    assert page.evaluate("document.documentElement.scrollWidth") <= width, page.url
    outside = page.evaluate(
        """(width) => [...document.querySelectorAll('a, button, select, textarea, input')]
            .filter(e => e.type !== 'hidden' && e.offsetParent !== null)
            .filter(e => {
              const r = e.getBoundingClientRect(); return r.left < 0 || r.right > width;
            })
            .map(e => e.outerHTML.slice(0, 80))""",
        width,
    )
    assert not outside, (page.url, outside)


def test_the_console_fits_a_phone_and_a_desktop(stack: Stack, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    stack.sms("my father can't breathe and his lips are blue")
    wait_for(lambda: len(stack.bridge.store.escalations("waiting")) == 1)
    with chromium() as browser:
        for width in (PHONE, DESKTOP):
            page = browser.new_page(viewport={"width": width, "height": 800})
            page.goto(f"{stack.url}/console/login")
            fits(page)
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/console/queue")
            row = page.locator("#queue-body tr[data-href]").first
            expect(row).to_contain_text("emergency")
            shown_as = row.evaluate("e => getComputedStyle(e).display")
            assert shown_as == ("block" if width == PHONE else "table-row")  # cards on a phone
            assert page.locator("#queue thead").is_visible() is (width == DESKTOP)
            fits(page)
            page.screenshot(path=str(tmp_path / f"queue-{width}.png"), full_page=True)

            row.locator("a").click()
            page.wait_for_url("**/console/tickets/1")
            fits(page)
            if width == PHONE:
                page.click("#claim")
                expect(page.locator("#ticket-status")).to_contain_text("claimed")
            for action in ("#resolve", "#return", "#send", "select[name=flow]", "#reply-text"):
                expect(page.locator(action)).to_be_visible()
            note = page.get_by_label("Add a note for colleagues")  # the note box has a label
            note.fill("Called the family; ambulance confirmed.")
            page.click("text=Add note")
            expect(page.locator(".notes")).to_contain_text("ambulance confirmed")
            fits(page)
            page.screenshot(path=str(tmp_path / f"ticket-{width}.png"), full_page=True)

            for path in ("/console/patients/1", "/console/overview", "/console/broadcasts"):
                page.goto(stack.url + path)
                fits(page)
                page.screenshot(
                    path=str(tmp_path / f"{path.rsplit('/', 1)[-1]}-{width}.png"), full_page=True
                )
            page.close()
    assert len(list(tmp_path.glob("*-375.png"))) == len(list(tmp_path.glob("*-1280.png"))) == 5
