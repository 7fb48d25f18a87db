"""Screenshots of the running clinician console for the docs: docs/img/console-*.png.

Starts `carebridge serve`'s app on 127.0.0.1 (temporary database, no providers), plays a few
patient conversations through the bot, logs in as a clinician in headless Chromium (Debian's
/usr/bin/chromium, never a downloaded browser) and saves the queue, a ticket and a patient page
at 1280 px, and the queue and the ticket at 375 px (a phone).

    .venv/bin/python scripts/screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from bot.app import CareBridge
from bot.auth import Auth
from bot.config import Config, load_config
from bot.messages import Inbound
from bot.web import create_app

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CLINICIAN, PASSWORD = "dr.rao", "demo-password-123"


class Clock:
    """Real time, unless the seeding pins it to a moment in the past."""

    def __init__(self) -> None:
        self.pinned: datetime | None = None

    def __call__(self) -> datetime:
        return self.pinned or datetime.now(UTC)


@contextmanager
def served(app: Starlette) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the console did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def demo_config(folder: Path, store_url: str = "") -> Config:
    """The demo's config: an empty store at `store_url`, else a SQLite file in `folder`."""
    base = load_config(env={})
    url = store_url or f"sqlite:///{folder / 'demo.db'}"
    return base.model_copy(
        update={
            "storage": base.storage.model_copy(update={"url": url}),
            "console": base.console.model_copy(update={"timezone": "Asia/Kolkata"}),
        }
    )


_ids = count(1)


def say(
    bridge: CareBridge, clock: Clock, when: datetime, channel: str, address: str, *lines: str
) -> None:
    """The patient sends `lines`, one second apart, starting at `when`."""
    for n, text in enumerate(lines):
        clock.pinned = when + timedelta(seconds=n * 20)
        bridge.handle(Inbound(channel, address, text, clock.pinned, f"demo-{next(_ids)}"))


def seed(bridge: CareBridge, clock: Clock) -> int:
    """A few patients in the queue; returns the ticket to show."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    store = bridge.store
    # Each patient's first message gets the language menu; "1" picks English.
    # An older patient with COVID-19 symptoms: consultation within 24 hours (urgent).
    covid = ["hi", "1", "yes", "1", "0", "71", "fever and cough", "101.3F", "94", "no", "no"]
    covid += ["no", "no", "0"]
    say(bridge, clock, now - timedelta(minutes=38), "whatsapp", "+919812345678", *covid)
    contact = store.find_contact("whatsapp", "+919812345678")
    assert contact is not None
    for days, (t, spo2) in enumerate([(37.9, 97), (38.2, 96), (38.4, 96), (38.6, 95)]):
        at = now - timedelta(days=4 - days, hours=2)
        store.add_reading(contact.id, None, "temperature_c", t, "Cel", at)
        store.add_reading(contact.id, None, "spo2_percent", spo2, "%", at)
    # A red flag in free text: emergency, announced to on-call at once.
    say(
        bridge,
        clock,
        now - timedelta(minutes=4),
        "sms",
        "+15557654321",
        "my father can't breathe and his lips are blue",
    )
    # A patient who asked for a human (routine), and one past its deadline.
    agent = ["hi", "1", "yes", "agent"]
    say(bridge, clock, now - timedelta(minutes=95), "telegram", "731255409", *agent)
    say(bridge, clock, now - timedelta(hours=9), "sms", "+15550102030", *agent)
    # Someone trying the browser simulator: a test contact, labelled TEST, never announced.
    say(bridge, clock, now - timedelta(minutes=12), "web", "sim-demo00001", *agent)
    clock.pinned = None
    bridge.tickets.sweep_deadlines(datetime.now(UTC))
    [ticket] = [t for t in store.escalations("waiting") if t.contact_id == contact.id]
    return ticket.id


def take(out: Path, store_url: str = "") -> list[Path]:
    """Serve the demo console (on an empty store at `store_url`, else a temporary SQLite
    file) and save the screenshots into `out`."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        config = demo_config(Path(tmp), store_url)
        bridge = CareBridge(config, clock=clock)
        ticket_id = seed(bridge, clock)
        auth = Auth(bridge.store, config.console)
        user, _ = auth.add_user(CLINICIAN, "clinician", password=PASSWORD)
        app = create_app(config, bridge=bridge, env={}, senders={}, dispatch=False)
        bridge.tickets.claim(ticket_id, user)
        bridge.tickets.reply(
            ticket_id,
            user,
            "Hello, this is Dr Rao from the clinic. Your oxygen is a little low. "
            "Are you short of breath when you walk across the room?",
        )
        say(
            bridge,
            clock,
            datetime.now(UTC),
            "whatsapp",
            "+919812345678",
            "only a little, on the stairs",
        )
        clock.pinned = None
        bridge.tickets.add_note(
            ticket_id, user, "Lives alone; daughter can drive him to the clinic."
        )
        shots = [
            out / "console-queue.png",
            out / "console-ticket.png",
            out / "console-patient.png",
            out / "console-queue-phone.png",
            out / "console-ticket-phone.png",
        ]
        with served(app) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"{url}/console/login")
            page.fill("input[name=username]", CLINICIAN)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/console/queue")
            page.screenshot(path=str(shots[0]), full_page=True)
            page.goto(f"{url}/console/tickets/{ticket_id}")
            page.screenshot(path=str(shots[1]), full_page=True)
            contact = bridge.store.get_escalation(ticket_id)
            assert contact is not None
            page.goto(f"{url}/console/patients/{contact.contact_id}")
            page.screenshot(path=str(shots[2]), full_page=True)
            page.set_viewport_size({"width": 375, "height": 740})  # a clinician's phone
            page.goto(f"{url}/console/queue")
            page.screenshot(path=str(shots[3]), full_page=True)
            page.goto(f"{url}/console/tickets/{ticket_id}")
            page.screenshot(path=str(shots[4]), full_page=True)
            browser.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    for path in take(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
