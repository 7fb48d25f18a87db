"""`carebridge broadcast ...` on a real SQLite file: the coordinator's whole path from the
command line (create, approve, preview, send with progress, status and CSV, cancel, correct)."""

from __future__ import annotations

import csv
import io
import json
import re
from contextlib import closing
from pathlib import Path
from typing import Any

import click
import pytest
from broadcast_helpers import configured, coordinators, subscriber
from click.testing import CliRunner, Result

import bot.broadcasts.cli as cli_broadcast
from bot.broadcasts.cli import broadcast
from bot.config import Config
from bot.store import open_store
from channels.base import CollectingChannel

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cfg(tmp_config: Config) -> Config:
    return configured(tmp_config, quiet_hours=None)  # the real clock: any hour of the day


@pytest.fixture
def people(cfg: Config) -> dict[str, int]:
    with closing(open_store(cfg.storage_url())) as store:
        coordinators(store)
        return {
            "sms": subscriber(store, "sms", "+15550000001"),
            "whatsapp": subscriber(store, "whatsapp", "+15550000002"),
            "telegram": subscriber(store, "telegram", "4242"),
        }


def run(cfg: Config, *args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(broadcast, list(args), obj={"config": cfg})
    if ok:
        assert result.exit_code == 0, result.output
    return result


def created_id(result: Result) -> int:
    match = re.search(r"created (?:broadcast|correction) (\d+)", result.output)
    assert match, result.output
    return int(match.group(1))


def test_a_coordinator_creates_a_second_approves_and_it_is_sent(
    cfg: Config, people: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    created = run(
        cfg,
        "create",
        "--name",
        "testing",
        "--text",
        "en=Free testing at the town hall until Friday.",
        "--whatsapp-template",
        "advice",
        "--by",
        "alice",
    )
    bid = created_id(created)
    assert "sms/en: 43 characters, gsm7, 1 segment(s), 0.0079 USD each" in created.output

    refused = run(cfg, "approve", str(bid), "--by", "alice", ok=False)
    assert refused.exit_code == 1 and "needs a second person" in refused.output
    assert "approved broadcast" in run(cfg, "approve", str(bid), "--by", "bob").output

    preview = json.loads(run(cfg, "preview", str(bid), "--json").output)
    assert preview["recipients"] == 3
    assert {c["channel"]: c["recipients"] for c in preview["channels"]} == {
        "whatsapp": 1,
        "telegram": 1,
        "sms": 1,
    }
    assert "total" in run(cfg, "preview", str(bid)).output

    senders = {name: CollectingChannel(name) for name in ("sms", "whatsapp", "telegram")}

    def channels(config: Config, env: Any = None) -> tuple[dict[str, Any], dict[str, str]]:
        return dict(senders), {}

    monkeypatch.setattr(cli_broadcast, "build_channels", channels)
    sent = run(cfg, "send", str(bid), "--dispatch", "--by", "alice")
    assert "enqueuing" in sent.output and "sending" in sent.output
    assert "3 messages in the outbox" in sent.output
    assert sorted(m.contact_id or 0 for s in senders.values() for m in s.sent) == sorted(
        people.values()
    )
    whatsapp = senders["whatsapp"].sent[0]
    assert (whatsapp.meta["template"], whatsapp.meta["template_sid"]) == ("1", "HXadvice_en")

    table = list(csv.DictReader(io.StringIO(run(cfg, "status", str(bid), "--csv").output)))
    assert [(r["channel"], r["sent"]) for r in table] == [
        ("whatsapp", "1"),
        ("telegram", "1"),
        ("sms", "1"),
        ("total", "3"),
    ]
    stats = json.loads(run(cfg, "status", str(bid), "--json").output)
    assert stats["done"] is True
    finished = run(cfg, "cancel", str(bid), "--by", "bob", ok=False)
    assert "nothing left to stop" in finished.output

    fix = created_id(
        run(cfg, "correct", str(bid), "--text", "en=Correction: until Saturday.", "--by", "bob")
    )
    run(cfg, "approve", str(fix), "--by", "alice")
    assert "correction of" in run(cfg, "list").output
    assert "3 messages in the outbox" in run(cfg, "send", str(fix), "--by", "bob").output
    assert "cancelled broadcast" in run(cfg, "cancel", str(fix), "--by", "alice").output


def test_send_refuses_a_draft_and_a_scheduled_broadcast_before_its_time(
    cfg: Config, people: dict[str, int]
) -> None:
    bid = created_id(
        run(cfg, "create", "--name", "later", "--text", "en=Later.", "--at", "2999-01-01T09:00Z",
            "--by", "alice")
    )  # fmt: skip
    assert "not approved yet" in run(cfg, "send", str(bid), "--by", "alice", ok=False).output
    run(cfg, "approve", str(bid), "--by", "bob")
    early = run(cfg, "send", str(bid), "--by", "alice", ok=False)
    assert "scheduled for 2999-01-01 09:00 UTC" in early.output
    sent = run(cfg, "send", str(bid), "--now", "--by", "alice").output
    assert "2 messages in the outbox" in sent  # no WhatsApp template: not on WhatsApp
    naive = run(cfg, "create", "--name", "x", "--text", "en=x", "--at", "2999-01-01T09:00",
                "--by", "alice", ok=False)  # fmt: skip
    assert "give the offset" in naive.output


def test_recurring_broadcasts_and_audience_options(cfg: Config, people: dict[str, int]) -> None:
    missing = run(cfg, "create", "--name", "x", "--text", "en=x", "--every", "7", "--by", "alice",
                  ok=False)  # fmt: skip
    assert "--every needs --time HH:MM and --tz ZONE" in missing.output
    bid = created_id(
        run(cfg, "create", "--name", "weekly", "--text", "en=Wash your hands.", "--every", "7",
            "--time", "09:00", "--tz", "Asia/Kolkata", "--channel", "sms", "--by", "alice")
    )  # fmt: skip
    approved = run(cfg, "approve", str(bid), "--by", "bob").output
    assert "then by itself" in approved
    assert "recurring" in run(cfg, "send", str(bid), "--by", "alice", ok=False).output
    assert "occurrences 0" in run(cfg, "sweep").output

    shown = run(cfg, "contact", str(people["sms"]), "--region", "Pune", "--tz", "Asia/Kolkata",
                "--tag", "nurses", "--link", str(people["telegram"]), "--prefer")  # fmt: skip
    assert "region pune, time zone Asia/Kolkata, tags nurses" in shown.output
    assert shown.output.rstrip().endswith("preferred")
    assert "no contact 999" in run(cfg, "contact", "999", "--tag", "x", ok=False).output
    bad = run(cfg, "contact", str(people["sms"]), "--tz", "Mars/Olympus", ok=False)
    assert "unknown time zone 'Mars/Olympus'" in bad.output


def test_every_broadcast_command_is_documented() -> None:
    doc = re.sub(r"\s+", " ", (ROOT / "docs" / "cli.md").read_text(encoding="utf-8"))
    guide = (ROOT / "docs" / "broadcasts.md").read_text(encoding="utf-8")
    assert isinstance(broadcast, click.Group)
    for name in broadcast.commands:
        assert f"carebridge broadcast {name}" in doc, name
        assert f"broadcast {name}" in guide, name
