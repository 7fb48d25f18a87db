"""Contacts import from the console, as a coordinator's browser does it over HTTP: upload the
10,000-row file, read the preview (counts, reasons, each refused row with its line), confirm,
and find exactly the report's contacts in the database. Who may, CSRF, an upload nobody else
can confirm, nothing written before the confirmation, and no phone number in the logs."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from io_helpers import ROWS, Site, console_site, contacts_file, known_people, phone

from bot.config import Config
from bot.console import ROUTE_ROLES
from bot.io.console import IMPORT, IMPORTERS
from bot.store import Role

CSV = "text/csv"


@pytest.fixture
def site(config: Config, store_url: str) -> Iterator[Site]:
    with console_site(config, store_url, known_people) as s:
        yield s


def tile(page: str, name: str) -> int:
    found = re.search(rf'id="count-{name}">(\d+)<', page)
    assert found, name
    return int(found.group(1))


def contacts(site: Site) -> int:
    return int(site.store._rows("SELECT count(*) FROM contacts")[0][0])


def test_upload_preview_confirm_imports_the_good_rows_with_a_correct_report(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    data, expected = contacts_file()
    cora = site.clients["cora"]
    assert "Import contacts" in cora.get(IMPORT).text
    page = cora.post(
        IMPORT,
        data={"csrf": site.csrf["cora"], "channel": "sms"},
        files={"file": ("people.csv", data, CSV)},
    )
    assert page.status_code == 200, page.text
    text = page.text
    want = expected.report()
    assert tile(text, "rows") == ROWS
    assert tile(text, "imported") == want["imported"]
    assert tile(text, "merged") == want["merged"]
    assert tile(text, "rejected") == want["rejected"]
    for reason, n in expected.rejected.items():
        assert f'<tr data-reason="{reason}"><td>{reason}</td><td>{n}</td></tr>' in text
    assert "<td>402</td><td>bad_phone</td>" in text  # each refused row: line and reason
    assert contacts(site) == 352  # a preview writes nothing
    token = re.search(r'name="token" value="([^"]+)"', text)
    assert token is not None
    form = {"csrf": site.csrf["cora"], "token": token.group(1), "filename": "people.csv"}
    # another importer cannot confirm someone else's upload; a form without CSRF is refused
    other = site.clients["root"].post(IMPORT + "/confirm", data={**form, "csrf": site.csrf["root"]})
    assert other.status_code == 400 and "expired" in other.text
    assert cora.post(IMPORT + "/confirm", data={**form, "csrf": "x"}).status_code == 403
    done = cora.post(IMPORT + "/confirm", data=form)
    assert done.status_code == 200 and 'id="done"' in done.text
    assert tile(done.text, "imported") == want["imported"]
    assert tile(done.text, "merged") == want["merged"]
    assert contacts(site) == 352 + want["imported"]
    assert site.store.find_contact("sms", phone(7)) is not None
    audit = [a for a in site.store.audit_log() if a.action == "import_contacts"]
    assert audit[0].username == "cora" and audit[0].detail["rejected"] == want["rejected"]
    # the upload is gone: confirming twice imports nothing twice
    again = cora.post(IMPORT + "/confirm", data=form)
    assert again.status_code == 400 and contacts(site) == 352 + want["imported"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert phone(7) not in logged and "98000-CALL-ME" not in logged


def test_only_coordinators_and_admins_import(site: Site) -> None:
    assert frozenset({Role.COORDINATOR, Role.ADMIN}) == IMPORTERS
    assert ROUTE_ROLES[("POST", IMPORT)] == IMPORTERS
    carol = site.clients["carol"]
    assert carol.get(IMPORT).status_code == 403
    refused = carol.post(
        IMPORT, data={"csrf": site.csrf["carol"]}, files={"file": ("a.csv", b"phone\n1", CSV)}
    )
    assert refused.status_code == 403 and contacts(site) == 352
    assert site.clients["root"].get(IMPORT).status_code == 200


def test_a_file_that_cannot_be_read_says_why(site: Site) -> None:
    cora = site.clients["cora"]
    page = cora.post(
        IMPORT,
        data={"csrf": site.csrf["cora"]},
        files={"file": ("names.csv", b"name,language\nasha,hi\n", CSV)},
    )
    assert page.status_code == 400 and "no phone column" in page.text
    page = cora.post(
        IMPORT,
        data={"csrf": site.csrf["cora"]},
        files={
            "file": ("latin1.csv", "phone,name\n+919800000001,Jos\xe9\n".encode("latin-1"), CSV)
        },
    )
    assert page.status_code == 400 and "not UTF-8" in page.text
