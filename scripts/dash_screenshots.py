"""Screenshots of the console dashboards for the docs: docs/img/console-dashboard*.png.

Serves the console on 127.0.0.1 (temporary database seeded with the test suite's known numbers,
tests/dash_seed.py; the clock pinned to its day), logs a coordinator in and photographs the
triage dashboard in headless Chromium (Debian's /usr/bin/chromium, never a downloaded browser)
at 1280 px and at 375 px (a phone). tests/test_dashboards_e2e.py runs `take` once.

    .venv/bin/python scripts/dash_screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from console_helpers import served  # noqa: E402
from dash_seed import NOW, seed  # noqa: E402

from bot.app import CareBridge  # noqa: E402
from bot.auth import SESSION_COOKIE, Auth  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.store import Role  # noqa: E402
from bot.web import create_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
SHOTS = (("console-dashboard.png", 1280), ("console-dashboard-phone.png", 375))


@dataclass
class Demo:
    url: str
    bridge: CareBridge
    cookies: dict[str, str]  # role -> session token of a logged-in user


@contextmanager
def demo(store_url: str = "") -> Iterator[Demo]:
    """The console on loopback over the seeded store (an empty one at `store_url`, else a
    temporary SQLite file), with one logged-in user per role."""
    with tempfile.TemporaryDirectory() as tmp:
        base = load_config(ROOT / "config.yaml", env={})
        url = store_url or f"sqlite:///{tmp}/cb.db"
        config = base.model_copy(update={"storage": base.storage.model_copy(update={"url": url})})
        bridge = CareBridge(config, clock=lambda: NOW)
        seed(bridge.store, config)  # type: ignore[arg-type]
        auth = Auth(bridge.store, config.console, clock=lambda: NOW, env={})
        cookies = {}
        for role in Role:
            user_id = bridge.store.add_user(
                f"demo.{role}", "unused", role, NOW, must_change_password=False
            )
            user = bridge.store.get_user(user_id or 0)
            assert user is not None
            cookies[role.value] = auth.start_session(user)[0]
        app = create_app(config, bridge=bridge, env={}, senders={}, dispatch=False, schedule=False)
        try:
            with served(app) as url:
                yield Demo(url, bridge, cookies)
        finally:
            bridge.close()


def page_for(browser: Browser, site: Demo, role: str, width: int):  # type: ignore[no-untyped-def]
    """A browser tab logged in as `role`, `width` px wide."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.add_cookies([{"name": SESSION_COOKIE, "value": site.cookies[role], "url": site.url}])
    return context.new_page()


def take(out: Path, site: Demo | None = None, browser: Browser | None = None) -> list[Path]:
    """Photograph the triage dashboard as a coordinator at each width; returns the files."""
    if site is None or browser is None:
        with demo() as own, sync_playwright() as pw:
            launched = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                return take(out, own, launched)
            finally:
                launched.close()
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    for name, width in SHOTS:
        page = page_for(browser, site, "coordinator", width)
        page.goto(f"{site.url}/console/dashboards/triage?days=7")
        path = out / name
        page.screenshot(path=str(path), full_page=True)
        page.context.close()
        shots.append(path)
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    for path in take(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
