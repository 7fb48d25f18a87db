"""The import and export pages in a real headless Chromium at 375 and 1280 px: a coordinator
chooses a file, reads the preview with the refused row, confirms and sees it done; a clinician's
export form downloads a CSV. Nothing scrolls sideways; every control is on the screen."""

from __future__ import annotations

from pathlib import Path

from browser import chromium
from io_helpers import console_site, seed_results
from test_console_e2e import DESKTOP, PHONE, fits

from bot.auth import SESSION_COOKIE
from bot.config import Config

FILE = "phone,language,consent_care,name\n+919800000501,hi,yes,A\n98000-CALL-ME,en,,B\n"


def test_import_and_export_pages_work_on_a_phone_and_a_desktop(
    config: Config, tmp_path: Path, store_url: str
) -> None:
    from playwright.sync_api import expect

    upload = tmp_path / "people.csv"
    upload.write_text(FILE, encoding="utf-8")
    with console_site(config, store_url, seed_results) as site, chromium() as browser:
        url = str(site.clients["cora"].base_url)
        for width in (PHONE, DESKTOP):
            for who in ("cora", "carol"):
                context = browser.new_context(viewport={"width": width, "height": 800})
                token = site.clients[who].cookies[SESSION_COOKIE]
                context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": url}])
                page = context.new_page()
                if who == "cora":
                    page.goto(url + "/console/contacts/import")
                    fits(page)
                    page.set_input_files("input[name=file]", str(upload))
                    page.click("text=Check the file")
                    expect(page.locator("#count-rejected")).to_have_text("1")
                    expect(page.locator("#row-errors")).to_contain_text("bad_phone")
                    fits(page)
                    page.click("#confirm-form button")
                    expect(page.locator("#done")).to_be_visible()
                    fits(page)
                else:
                    page.goto(url + "/console/exports")
                    fits(page)
                    page.select_option("select[name=flow]", "hypertension_checkin")
                    with page.expect_download() as download:
                        page.click("text=CSV of this flow")
                    saved = tmp_path / f"export-{width}.csv"
                    download.value.save_as(saved)
                    assert saved.read_text(encoding="utf-8").count("\n") == 2  # header + 1
                context.close()
        assert site.store.find_contact("sms", "+919800000501") is not None
