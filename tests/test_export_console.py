"""Results export from the console over HTTP: a clinician downloads a flow's CSV and a FHIR
Bundle (streamed, validated with fhir.resources), masked unless the box is ticked, each download
audited; coordinators and admins (no health data) are refused; bad filters say why."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import pytest
from fhir.resources.R4B.bundle import Bundle
from io_helpers import ALICE, Site, console_site, seed_results

from bot.config import Config
from bot.console import ROUTE_ROLES
from bot.io.console import EXPORT, EXPORTERS
from bot.store import Role

IDS: dict[str, int] = {}


@pytest.fixture(scope="module")
def site(config: Config, module_store_url: str) -> Iterator[Site]:
    with console_site(config, module_store_url, lambda s: IDS.update(seed_results(s))) as s:
        yield s


def test_a_clinician_downloads_a_flows_csv_and_a_fhir_bundle(site: Site) -> None:
    carol = site.clients["carol"]
    page = carol.get(EXPORT)
    assert page.status_code == 200 and 'action="/console/exports/results.csv"' in page.text
    with carol.stream(
        "GET", EXPORT + "/results.csv", params={"flow": "hypertension_checkin"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        text = response.read().decode()
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert row["systolic_bp"] == "185" and row["wait_to_claim_s"] == "600"
    assert ALICE not in text and row["patient"].endswith("0031")
    bundle = carol.get(EXPORT + "/results.fhir.json", params={"level": "consultation_24"})
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("application/fhir+json")
    Bundle.model_validate_json(bundle.text)
    kinds = [e["resource"]["resourceType"] for e in json.loads(bundle.text)["entry"]]
    assert kinds.count("QuestionnaireResponse") == 2 and kinds.count("ServiceRequest") == 1
    assert ALICE not in bundle.text
    audit = [a for a in site.store.audit_log() if a.action.startswith("export_")]
    assert [(a.action, a.username, a.detail["real_ids"]) for a in audit[:2]] == [
        ("export_fhir", "carol", False),  # newest first
        ("export_csv", "carol", False),
    ]


def test_real_numbers_only_when_the_box_is_ticked_and_audited(site: Site) -> None:
    carol = site.clients["carol"]
    text = carol.get(
        EXPORT + "/results.csv", params={"flow": "hypertension_checkin", "real_ids": "1"}
    ).text
    assert ALICE in text
    last = next(a for a in site.store.audit_log() if a.action == "export_csv")
    assert last.detail["real_ids"] is True and last.detail["flows"] == ["hypertension_checkin"]


def test_only_clinicians_export_results(site: Site) -> None:
    assert frozenset({Role.CLINICIAN}) == EXPORTERS
    for path in ("", "/results.csv", "/results.fhir.json"):
        assert ROUTE_ROLES[("GET", EXPORT + path)] == EXPORTERS
        for who in ("cora", "root"):
            response = site.clients[who].get(EXPORT + path, params={"flow": "covid_screening"})
            assert response.status_code == 403
            assert ALICE not in response.text and "systolic" not in response.text


def test_a_bare_csv_link_goes_to_the_form(site: Site) -> None:
    response = site.clients["carol"].get(EXPORT + "/results.csv")
    assert response.status_code == 303 and response.headers["location"] == EXPORT


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"level": "emergency"}, "choose one flow"),
        ({"flow": "nope"}, "unknown flow"),
        ({"flow": "covid_screening", "since": "yesterday"}, "not a date"),
        ({"flow": "covid_screening", "level": "bad"}, "unknown triage level"),
    ],
)
def test_bad_filters_say_why(site: Site, params: dict[str, str], why: str) -> None:
    response = site.clients["carol"].get(EXPORT + "/results.csv", params=params)
    assert response.status_code == 400 and why in response.text
