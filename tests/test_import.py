"""`carebridge contacts import FILE`: a 10,000-row CSV with bad and duplicate rows imports with a
correct report; numbers are normalised and matched to the people already known; consent,
language, region, tags and enrollment columns land; `--dry-run` changes nothing; a crash half
way leaves nothing half-imported; XLSX reads like CSV; the patient's STOP and "no" win."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from io_helpers import ROWS, T0, contacts_file, known_people, phone

from bot.app import load_flows
from bot.cli import main
from bot.config import Config
from bot.io import contacts_import
from bot.store import CheckinKind, CheckinStatus, SqlStore
from bot.store import open_store as open_configured

ROOT = Path(__file__).resolve().parent.parent


def config_file(config: Config, folder: Path) -> Path:
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["storage"] = {"url": config.storage.url}
    data.setdefault("flows", {})["dir"] = str(ROOT / "flows")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def open_store(config: Config) -> SqlStore:
    """The configured store (SQLite, or PostgreSQL with CB_TEST_STORE, tests/pg.py)."""
    store = open_configured(config.storage_url())
    assert isinstance(store, SqlStore)
    return store


def count(store: SqlStore, sql: str, *params: Any) -> int:
    return int(store._rows(sql, params)[0][0])


def cli(path: Path, *args: str) -> Any:
    result = CliRunner().invoke(main, ["--config", str(path), "contacts", "import", *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def setup(tmp_config: Config, tmp_path: Path) -> tuple[Path, Path, Any]:
    with open_store(tmp_config) as store:
        known_people(store)
    data, expected = contacts_file()
    file = tmp_path / "contacts.csv"
    file.write_bytes(data)
    return config_file(tmp_config, tmp_path), file, expected


def test_ten_thousand_rows_with_bad_and_duplicate_rows_import_with_a_correct_report(
    setup: tuple[Path, Path, Any], tmp_config: Config, tmp_path: Path
) -> None:
    path, file, expected = setup
    rejects = tmp_path / "rejects.csv"
    report = json.loads(cli(path, str(file), "--json", "--rejects", str(rejects)).stdout)
    assert {k: report[k] for k in expected.report()} == expected.report()
    assert report["applied"] is True and report["ignored_columns"] == ["name"]
    assert len(report["errors"]) == report["rejected"]
    first_bad = next(e for e in report["errors"] if e["reason"] == "bad_phone")
    assert first_bad["line"] == 402  # row 400: the first bad phone after the known people
    dup = next(e for e in report["errors"] if e["reason"] == "duplicate_in_file")
    assert dup["detail"] == f"the same contact as line {dup['line'] - 5}"
    assert rejects.read_text(encoding="utf-8").count("\n") == report["rejected"] + 1
    with open_store(tmp_config) as store:
        contacts = count(store, "SELECT count(*) FROM contacts")
        assert contacts == 352 + expected.imported  # nobody twice, WhatsApp people kept
        assert count(store, "SELECT count(*) FROM contacts WHERE channel = 'whatsapp'") == 50
        new = store.find_contact("sms", phone(7))
        assert new is not None and new.language == "en" and new.consent_care is True
        assert store.find_contact("sms", phone(9)).language == "hi"  # type: ignore[union-attr]
        row = store.contact_row(new.id)
        assert row is not None and row.region == "north" and row.consent_broadcast is False
        assert count(store, "SELECT count(*) FROM contact_tags WHERE tag = 'camp'") == (
            expected.imported + expected.merged
        )
        assert count(
            store, "SELECT count(*) FROM consents WHERE source = 'import' AND purpose = 'care'"
        ) == (expected.imported + expected.merged)
        merged = store.find_contact("whatsapp", phone(300))
        assert merged is not None and merged.consent_care is True
        opted = store.find_contact("sms", phone(350))
        assert opted is not None and opted.opted_out and opted.consent_care is None
        assert store.find_contact("sms", phone(351)).consent_care is False  # type: ignore[union-attr]
        enrolled = store.find_contact("sms", phone(356))
        assert enrolled is not None
        enrollment = store.get_enrollment(enrolled.id)
        assert enrollment is not None and enrollment.status == "invited"
        assert enrollment.conditions == ("diabetes", "hypertension")
        assert enrollment.checkin_time == "08:30" and enrollment.enrolled_by == "import"
        queued = store.checkins(enrolled.id, CheckinStatus.QUEUED, CheckinKind.ENROLLMENT)
        assert len(queued) == 1
        assert count(store, "SELECT count(*) FROM enrollments") == expected.enrolled
        audit = [a for a in store.audit_log() if a.action == "import_contacts"]
        assert audit and audit[0].detail["imported"] == expected.imported
    # the same file again: everything that was imported is now known
    result = cli(path, str(file), "--json", "--progress")
    again = json.loads(result.stdout)  # the bar went to stderr
    assert "importing: 100%" in result.stderr and f"{again['rows'] - again['rejected']}/" in (
        result.stderr
    )
    assert again["imported"] == 0 and again["merged"] == expected.imported + expected.merged
    with open_store(tmp_config) as store:
        assert count(store, "SELECT count(*) FROM contacts") == contacts
        assert count(store, "SELECT count(*) FROM enrollments") == expected.enrolled


def test_a_dry_run_reports_and_changes_nothing(
    setup: tuple[Path, Path, Any], tmp_config: Config
) -> None:
    path, file, expected = setup
    out = cli(path, str(file), "--dry-run").stdout
    assert out.startswith(
        f"contacts.csv: {ROWS} rows: would import {expected.imported} new, would merge "
        f"{expected.merged} into known contacts, rejected {sum(expected.rejected.values())}"
    )
    assert f"rejected bad_phone: {expected.rejected['bad_phone']}" in out
    assert "line 402: bad_phone: phone number '98000-CALL-ME' has letters in it" in out
    with open_store(tmp_config) as store:
        assert count(store, "SELECT count(*) FROM contacts") == 352
        assert count(store, "SELECT count(*) FROM consents WHERE source = 'import'") == 0


@pytest.mark.parametrize(
    ("step", "nth"),
    [("add_contacts", 5), ("set_contact_tags", 200)],  # new contacts in bulk; merged ones
)
def test_a_crash_half_way_leaves_nothing_half_imported(
    setup: tuple[Path, Path, Any],
    tmp_config: Config,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    nth: int,
) -> None:
    _, file, _ = setup
    store = open_store(tmp_config)
    config = tmp_config
    plan = contacts_import.plan_import(store, config, load_flows(config).flows, file.read_bytes())
    calls = 0
    original = getattr(store, step)

    def failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth:
            raise OSError("disk full")
        return original(*args, **kwargs)

    monkeypatch.setattr(store, step, failing)
    with pytest.raises(OSError):
        contacts_import.apply_import(store, config, plan, T0)
    assert calls == nth  # it did fail half way, after writing
    assert count(store, "SELECT count(*) FROM contacts") == 352
    assert count(store, "SELECT count(*) FROM contact_tags") == 0
    assert count(store, "SELECT count(*) FROM consents WHERE source = 'import'") == 0
    assert count(store, "SELECT count(*) FROM enrollments") == 0
    store.close()


def test_xlsx_reads_like_csv(tmp_config: Config, tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Mobile", "Language", "Consent"])
    sheet.append([919800000101, "es", "yes"])  # a number the sheet stored as a number
    sheet.append(["+91 98000 00102", "", "no"])
    sheet.append(["+91 98000 00101", "", ""])  # the first row again
    buffer = io.BytesIO()
    book.save(buffer)
    file = tmp_path / "people.xlsx"
    file.write_bytes(buffer.getvalue())
    path = config_file(tmp_config, tmp_path)
    report = json.loads(cli(path, str(file), "--json", "--channel", "whatsapp").stdout)
    # 919800000101 (stored by the sheet as a number) is +91 98000 00101: the third row again
    assert (report["imported"], report["rejected_by_reason"]) == (2, {"duplicate_in_file": 1})
    assert report["errors"][0]["line"] == 4
    with open_store(tmp_config) as store:
        contact = store.find_contact("whatsapp", "+919800000101")
        assert contact is not None and contact.language == "es" and contact.consent_care
        other = store.find_contact("whatsapp", "+919800000102")
        assert other is not None and other.consent_care is False


def test_numbers_without_a_country_code_use_the_configured_region(
    tmp_config: Config, tmp_path: Path
) -> None:
    file = tmp_path / "c.csv"
    file.write_text("phone;language\n09800000201;es\n+919800000201;en\n98000 00202;\n")
    path = config_file(tmp_config, tmp_path)
    report = json.loads(cli(path, str(file), "--json").stdout)
    assert report["imported"] == 2 and report["rejected_by_reason"] == {"duplicate_in_file": 1}
    with open_store(tmp_config) as store:
        first = store.find_contact("sms", "+919800000201")
        assert first is not None and first.language == "es"
        assert store.find_contact("sms", "+919800000202") is not None


def test_a_file_without_a_phone_column_is_refused_with_one_clear_line(
    tmp_config: Config, tmp_path: Path
) -> None:
    file = tmp_path / "c.csv"
    file.write_text("name,language\nasha,hi\n")
    path = config_file(tmp_config, tmp_path)
    result = CliRunner().invoke(main, ["--config", str(path), "contacts", "import", str(file)])
    assert result.exit_code == 1
    assert "no phone column" in result.output and "Traceback" not in result.output
