"""Results export through the CLI (`carebridge export fhir|csv`): the FHIR Bundle validates with
the fhir.resources models and its Observations carry the right LOINC codes and UCUM units (blood
pressure as a panel), escalations are ServiceRequests with their timings, identifiers are masked
unless asked for, CSV has one row per conversation and one column per concept, the filters
(date, flow, level, region) keep what they say, and the store is read in batches."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from fhir.resources.R4B.bundle import Bundle
from io_helpers import ALICE, BOB, T0, seed_results

from bot.cli import main
from bot.config import Config
from bot.flow import Library
from bot.io import fhir, results_export
from bot.store import open_store
from bot.store.io import ExportFilter

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def seeded(tmp_config: Config, tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """Alice (SMS, north): a hypertension check-in with a crisis escalated, claimed after 10
    minutes, answered, resolved; a diabetes and an asthma check-in. Bob (WhatsApp, south): a
    COVID-19 screening. A simulator contact (test): a screening that no export shows."""
    store = open_store(tmp_config.storage_url())
    ids = seed_results(store)
    store.close()
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["storage"] = {"url": tmp_config.storage.url}
    data.setdefault("flows", {})["dir"] = str(ROOT / "flows")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path, ids


def run(config_path: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--config", str(config_path), "export", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_fhir_bundle_validates_and_observations_carry_loinc_and_ucum(
    seeded: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    path, ids = seeded
    out = tmp_path / "bundle.json"
    run(path, "fhir", "-o", str(out))
    raw = out.read_text(encoding="utf-8")
    Bundle.model_validate_json(raw)  # every resource of the Bundle against FHIR R4(B)
    bundle = json.loads(raw)
    assert bundle["type"] == "collection"
    observations = resources(bundle, "Observation")
    codes = {
        o["code"]["coding"][0]["code"]: (o.get("valueQuantity") or {}).get("code")
        for o in observations
    }
    assert codes["8310-5"] == "Cel"
    assert codes["59408-5"] == "%"
    assert codes["2339-0"] == "mg/dL"
    assert codes["19935-6"] == "L/min"  # 60 % of a 400 L/min best
    assert codes["30525-0"] == "a"
    panel = next(o for o in observations if o["code"]["coding"][0]["code"] == "85354-9")
    parts = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in panel["component"]}
    assert parts["8480-6"] == {
        "value": 185,
        "unit": "mm[Hg]",
        "system": "http://unitsofmeasure.org",
        "code": "mm[Hg]",
    }
    assert parts["8462-4"]["value"] == 95
    assert not any(o["code"]["coding"][0]["code"] in ("8480-6", "8462-4") for o in observations)
    peak = next(o for o in observations if o["code"]["coding"][0]["code"] == "19935-6")
    assert peak["valueQuantity"]["value"] == 240
    assert all(o["subject"]["reference"].startswith("Patient/p") for o in observations)
    # one QuestionnaireResponse per conversation, the simulator's left out
    responses = {r["id"]: r for r in resources(bundle, "QuestionnaireResponse")}
    assert set(responses) == {f"qr{ids[k]}" for k in ("bp", "sugar", "asthma", "covid")}
    bp = responses[f"qr{ids['bp']}"]
    answers = {i["linkId"]: i["answer"] for i in bp["item"]}
    assert answers["systolic_bp"] == [{"valueDecimal": 185}]
    assert answers["chest_pain"] == [{"valueBoolean": False}]
    assert answers["triage_level"][0]["valueCoding"]["code"] == "consultation_24"
    # the escalation with its timings
    (request,) = resources(bundle, "ServiceRequest")
    assert request["priority"] == "urgent" and request["status"] == "completed"
    assert request["occurrencePeriod"]["start"].startswith("2026-03-02T09:10")
    assert "claimed after 600 s" in request["note"][0]["text"]
    assert "first response after 720 s" in request["note"][0]["text"]
    # masked by default: no phone number anywhere
    patients = resources(bundle, "Patient")
    assert {p["id"] for p in patients} == {f"p{ids['alice']}", f"p{ids['bob']}"}
    assert ALICE not in raw and BOB not in raw
    assert all("telecom" not in p for p in patients)


def test_real_identifiers_only_when_asked_and_the_export_is_audited(
    seeded: tuple[Path, dict[str, int]], tmp_path: Path, tmp_config: Config
) -> None:
    path, ids = seeded
    raw = run(path, "fhir", "--real-ids")
    Bundle.model_validate_json(raw)
    patients = {p["id"]: p for p in resources(json.loads(raw), "Patient")}
    assert patients[f"p{ids['alice']}"]["telecom"][0]["value"] == ALICE
    with open_store(tmp_config.storage_url()) as store:
        audit = [a for a in store.audit_log() if a.action == "export_fhir"]
    assert audit and audit[0].detail["real_ids"] is True


def test_csv_has_a_row_per_conversation_and_a_column_per_concept(
    seeded: tuple[Path, dict[str, int]], lib: Library
) -> None:
    path, ids = seeded
    text = run(path, "csv", "--flow", "hypertension_checkin")
    rows = list(csv.DictReader(io.StringIO(text)))
    header = next(csv.reader(io.StringIO(text)))
    concepts = results_export.concept_columns(lib, "hypertension_checkin")
    assert header == [*results_export.BASE_COLUMNS, *concepts]
    assert {"systolic_bp", "diastolic_bp", "chest_pain"} <= set(concepts)
    (row,) = rows
    assert row["conversation_id"] == str(ids["bp"])
    assert row["systolic_bp"] == "185" and row["diastolic_bp"] == "95"
    assert row["chest_pain"] == "no" and row["severe_headache"] == "yes"
    assert row["triage"] == "consultation_24" and row["region"] == "north"
    assert row["wait_to_claim_s"] == "600" and row["to_first_response_s"] == "720"
    assert row["to_resolve_s"] == "1800" and row["priority"] == "urgent"
    assert row["patient"].endswith("0031") and ALICE not in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--level", "consultation_24"), {"bp", "covid"}),
        (("--region", "south"), {"covid"}),
        (("--since", "2026-03-03", "--until", "2026-03-05"), {"sugar", "asthma"}),
        (("--flow", "diabetes_checkin"), {"sugar"}),
        (("--include-test", "--flow", "covid_screening"), {"covid", "simulated"}),
    ],
)
def test_filters_keep_what_they_say(
    seeded: tuple[Path, dict[str, int]], args: tuple[str, ...], expected: set[str]
) -> None:
    path, ids = seeded
    bundle = json.loads(run(path, "fhir", *args))
    got = {r["id"] for r in resources(bundle, "QuestionnaireResponse")}
    assert got == {f"qr{ids[k]}" for k in expected}
    sessions = {int(r["id"][2:]) for r in resources(bundle, "QuestionnaireResponse")}
    for o in resources(bundle, "Observation"):  # readings follow the same filters
        assert int(o["derivedFrom"][0]["reference"].rsplit("qr", 1)[1]) in sessions


def test_the_store_is_read_in_batches_as_the_export_streams(
    tmp_config: Config, lib: Library
) -> None:
    store = open_store(tmp_config.storage_url())
    contact = store.get_or_create_contact("sms", ALICE, T0).id
    with store.transaction():
        for i in range(95):
            store.add_reading(contact, None, "weight_kg", 70 + i / 10, "kg", T0 + timedelta(i))
    reads: list[str] = []
    original = store._rows

    def counting(sql: str, params: tuple[Any, ...] = ()) -> Any:
        reads.append(sql)
        return original(sql, params)

    store._rows = counting  # type: ignore[method-assign]
    readings = store.export_readings(ExportFilter(), batch=10)
    first = next(readings)
    assert first.value == 70 and len(reads) == 1  # one batch read, not the whole table
    assert len(list(readings)) == 94
    assert sum("FROM readings" in sql for sql in reads) == 10
    chunks = results_export.fhir_bundle(store, lib, ExportFilter())
    text = "".join(chunks)
    assert len(json.loads(text)["entry"]) == 96  # 95 observations and their patient
    store.close()


def test_the_loinc_codes_and_units_agree_with_the_concept_vocabulary() -> None:
    concepts = yaml.safe_load((ROOT / "data" / "concepts.yaml").read_text(encoding="utf-8"))
    by_id = concepts["concepts"]
    for concept, code in fhir.READING_CODES.items():
        assert by_id[concept].get("loinc") == code.loinc, concept
        assert by_id[concept].get("unit") == code.unit, concept
    with_loinc = {c for c, d in by_id.items() if d.get("loinc") and d.get("type") == "number"}
    assert with_loinc <= set(fhir.READING_CODES)
