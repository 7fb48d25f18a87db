"""A screenshot of a broadcast's live status page for the docs: docs/img/console-broadcast.png.

Starts `carebridge serve`'s app on 127.0.0.1 (temporary database, no providers), adds a few
hundred demo subscribers, has one coordinator create an urgent broadcast and another approve
and send it, lets an in-memory dispatcher send part of it (a few fail, a few opted out in the
meantime, some delivery receipts), logs in as the approver in headless Chromium (Debian's
/usr/bin/chromium, never a downloaded browser) and saves the status page mid-send.

    .venv/bin/python scripts/broadcast_screenshot.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from bot.app import CareBridge, build_broadcasts
from bot.auth import Auth
from bot.broadcasts.service import Draft
from bot.config import Config
from bot.dispatch import Dispatcher
from bot.errors import PermanentChannelError
from bot.store import SqlStore
from bot.web import create_app
from channels.base import CollectingChannel

ROOT = Path(__file__).resolve().parent.parent
CREATOR, APPROVER, PASSWORD = "asha", "vikram", "demo-password-123"
TEXT = {  # English only: Debian's headless Chromium here has no Devanagari font
    "en": "Night curfew from 8 pm tonight until further notice. Free COVID-19 testing at the "
    "town hall, 9 to 5 daily. Reply STOP to opt out.",
}


def _screenshots() -> ModuleType:
    """scripts/screenshots.py (its server, demo config and Chromium settings)."""
    spec = importlib.util.spec_from_file_location(
        "screenshots", Path(__file__).with_name("screenshots.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Unread:
    """The interpreter: nobody writes to the bot in this demo (and no warm-up to wait for)."""

    def interpret(self, text: str, expecting: object, language: str = "en") -> object:
        raise RuntimeError("the broadcast demo interprets no message")


def demo_config(base: Config) -> Config:
    broadcast = base.broadcast.model_copy(
        update={"whatsapp_templates": {"advice": {"en": "HXadvice_en", "hi": "HXadvice_hi"}}}
    )
    return base.model_copy(update={"broadcast": broadcast})


def seed(bridge: CareBridge) -> int:
    """Subscribers, an urgent broadcast created by asha, approved and sent by vikram, part of
    it dispatched; returns its id."""
    store = bridge.store
    assert isinstance(store, SqlStore)
    now = datetime.now(UTC)
    contacts = []
    for i in range(800):
        channel = ("sms", "whatsapp", "sms", "telegram")[i % 4]
        address = f"{700000 + i}" if channel == "telegram" else f"+9198{i:08d}"
        contact = store.get_or_create_contact(channel, address, now, "en")
        store.update_contact(contact.id, consent_broadcast=i % 29 != 0, now=now)
        store.set_contact_facts(contact.id, now, region="pune" if i % 5 else "nashik")
        contacts.append(contact.id)
    svc = build_broadcasts(bridge.config, store, bridge.clock)
    draft = Draft(
        name="Night curfew and free testing",
        texts=TEXT,
        sms_texts={"en": "Night curfew from 8 pm tonight. Free COVID-19 test: town hall, 9-5."},
        urgent=True,
        whatsapp_template="advice",
    )
    row = svc.create(draft, by=CREATOR)
    svc.approve(row.id, by=APPROVER)
    svc.send(row.id, by=APPROVER)
    svc.fan_out(row.id)
    for contact_id in contacts[5:300:29]:  # sent STOP after the fan-out, before their turn
        store.update_contact(contact_id, opted_out=True, now=now)
    senders = {name: CollectingChannel(name) for name in ("sms", "whatsapp", "telegram")}
    senders["sms"].fail_next(
        *(PermanentChannelError("unreachable", code="21211") for _ in range(9))
    )
    dispatcher = Dispatcher(store, dict(senders), rates=dict.fromkeys(senders, 1000.0), batch=50)

    async def part() -> None:
        for _ in range(3):
            await dispatcher.run_once()

    asyncio.run(part())
    for channel in ("sms", "whatsapp"):  # delivery receipts for most of what went
        for n in range(1, len(senders[channel].sent) * 3 // 4):
            store.update_status_by_provider_id(f"{channel}-{n}", "delivered", now)
    return row.id


def take(out: Path, store_url: str = "") -> list[Path]:
    """Serve the demo console (on an empty store at `store_url`, else a temporary SQLite
    file) and save the screenshot into `out`."""
    from playwright.sync_api import sync_playwright

    shots = _screenshots()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        config = demo_config(shots.demo_config(Path(tmp), store_url))
        bridge = CareBridge(config, interpreter=Unread())  # type: ignore[arg-type]
        auth = Auth(bridge.store, config.console)
        for name in (CREATOR, APPROVER):
            auth.add_user(name, "coordinator", password=PASSWORD)
        broadcast_id = seed(bridge)
        app = create_app(config, bridge=bridge, env={}, senders={}, dispatch=False)
        shot = out / "console-broadcast.png"
        with shots.served(app) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shots.CHROMIUM, args=shots.CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"{url}/console/login")
            page.fill("input[name=username]", APPROVER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/console/broadcasts")
            page.goto(f"{url}/console/broadcasts/{broadcast_id}")
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
    return [shot]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    for path in take(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
