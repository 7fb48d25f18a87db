"""The dashboards in a real headless Chromium (Debian's) at 375 and 1280 px: every dashboard fits
the screen without sideways scrolling, its charts are drawn and visible, nothing breaks the
console's Content-Security-Policy or logs an error, the filter form and a CSV download work as a
user would use them; and scripts/dash_screenshots.py runs once (docs/img)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from browser import chromium

from bot.dashboards.service import BOARDS

ROOT = Path(__file__).resolve().parent.parent
PHONE, DESKTOP = 375, 1280


def _script() -> Any:
    spec = importlib.util.spec_from_file_location(
        "dash_screenshots", ROOT / "scripts" / "dash_screenshots.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _problem(problems: list[str], message: Any) -> None:
    """A console error, except the browser's own favicon request (the console has none)."""
    if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
        problems.append(f"{message.text} at {message.location.get('url')}")


CHARTS_SHOWN = """() => [...document.querySelectorAll('svg.dash-svg')].map(svg => {
  const r = svg.getBoundingClientRect();
  const bars = [...svg.querySelectorAll('rect')].filter(b => b.getBoundingClientRect().width > 0);
  return {chart: svg.dataset.chart, left: r.left, right: r.right, width: r.width,
          height: r.height, bars: bars.length,
          visible: getComputedStyle(svg).visibility === 'visible' && r.height > 0,
          empty: svg.textContent.includes('No data')};
})"""


def test_the_dashboards_render_and_fit_a_phone_and_a_desktop(
    tmp_path: Path, store_url: str
) -> None:
    shots = _script()
    problems: list[str] = []
    with shots.demo(store_url) as site, chromium() as browser:
        for width in (PHONE, DESKTOP):
            page = shots.page_for(browser, site, "coordinator", width)
            page.on("console", lambda m: _problem(problems, m))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on(
                "response",
                lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            for board in BOARDS:
                response = page.goto(f"{site.url}/console/dashboards/{board.key}?days=30")
                assert response is not None and response.status == 200
                assert "script-src 'self'" in response.headers["content-security-policy"]
                where = (board.key, width)
                scroll = page.evaluate("document.scrollingElement.scrollWidth")
                assert scroll <= page.evaluate("innerWidth"), where
                charts = page.evaluate(CHARTS_SHOWN)
                assert [c["chart"] for c in charts] == list(board.charts), where
                for c in charts:
                    assert c["visible"] and c["height"] > 15, (where, c)
                    assert c["left"] >= 0 and c["right"] <= width, (where, c)
                    assert c["width"] >= min(width - 60, 500), (where, c)  # fills a phone
                    assert c["bars"] > 0 or c["empty"], (where, c)
                for table in page.locator("table.dash-table").all():  # the numbers, visible
                    assert table.is_visible()
                page.screenshot(path=str(tmp_path / f"{board.key}-{width}.png"), full_page=True)

            # The filter form, as a user uses it; then a chart's CSV through its link.
            page.goto(f"{site.url}/console/dashboards/triage")
            page.select_option("select[name=days]", "7")
            page.select_option("select[name=region]", "north")
            page.click("#dash-filters button[type=submit]")
            page.wait_for_url("**/console/dashboards/triage?days=7&region=north")
            assert page.locator("#table-regions tbody tr").count() == 1
            if width == DESKTOP:
                with page.expect_download() as download:
                    page.click("#chart-levels a.csv")
                text = Path(download.value.path()).read_text()
                assert text.splitlines()[0].startswith("Day,Emergency: ambulance")
                assert download.value.suggested_filename == "triage-levels-7d-north.csv"
                assert (
                    sum(int(n) for line in text.splitlines()[1:] for n in line.split(",")[1:]) == 3
                )
            page.context.close()
        photos = shots.take(tmp_path / "docs", site, browser)
    assert not problems, problems  # no CSP violation, no script error
    assert [p.name for p in photos] == ["console-dashboard.png", "console-dashboard-phone.png"]
    for photo in photos:
        assert photo.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and photo.stat().st_size > 20_000
    assert len(list(tmp_path.glob("*-375.png"))) == len(list(tmp_path.glob("*-1280.png"))) == 4
