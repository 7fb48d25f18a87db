"""The API for other systems (docs/api.md): tokens made with `carebridge tokens`, scopes,
revocation, masking, pagination, the audit trail, and each resource read after a real
conversation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from console_helpers import make_user, served

from bot.api.cli import tokens
from bot.app import CareBridge
from bot.config import Config
from bot.flow import Library
from bot.messages import Inbound
from bot.web import create_app

PHONE = "+919812345678"


@dataclass
class Api:
    client: httpx.Client
    bridge: CareBridge
    config: Config

    def token(self, *scopes: str, name: str = "emr", user: str = "cli") -> str:
        """A token made the way an operator makes one: `carebridge tokens create`."""
        args = ["create", name, *(a for s in scopes for a in ("--scope", s)), "--user", user]
        result = CliRunner().invoke(tokens, args, obj={"config": self.config})
        assert result.exit_code == 0, result.output
        return result.output.strip().rsplit(" ", 1)[-1]

    def get(self, path: str, token: str | None, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(f"/api/v1{path}", headers=headers, params=params)

    def say(self, address: str, *texts: str) -> None:
        for n, text in enumerate(texts):
            now = datetime.now(UTC)
            self.bridge.handle(Inbound("sms", address, text, now, f"{address}-{n}-{now}"))


@pytest.fixture
def api(tmp_config: Config, lib: Library) -> Iterator[Api]:
    bridge = CareBridge(tmp_config, library=lib)
    app = create_app(tmp_config, bridge=bridge, env={}, senders={}, dispatch=False, schedule=False)
    with served(app) as url, httpx.Client(base_url=url) as client:
        yield Api(client, bridge, tmp_config)


def test_a_token_reads_contacts_and_is_refused_after_revocation(api: Api) -> None:
    api.say(PHONE, "hi")
    token = api.token("contacts:read")

    ok = api.get("/contacts", token)
    assert ok.status_code == 200, ok.text
    [contact] = ok.json()["data"]
    assert contact["channel"] == "sms" and contact["address_masked"] is True
    assert contact["address"].endswith("5678") and PHONE not in ok.text  # masked

    listed = CliRunner().invoke(tokens, ["list"], obj={"config": api.config})
    assert "emr" in listed.output and "active" in listed.output and token not in listed.output
    token_id = listed.output.split()[0]
    revoked = CliRunner().invoke(tokens, ["revoke", token_id], obj={"config": api.config})
    assert revoked.exit_code == 0, revoked.output

    refused = api.get("/contacts", token)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]
    assert refused.headers["www-authenticate"].startswith("Bearer")

    actions = [e.action for e in api.bridge.store.audit_log()]
    assert {"api_token_created", "api_list_contacts", "api_token_revoked"} <= set(actions)
    read = next(e for e in api.bridge.store.audit_log() if e.action == "api_list_contacts")
    assert read.username == "api:emr" and read.detail["rows"] == 1


def test_a_token_without_the_scope_or_no_token_is_refused(api: Api) -> None:
    readings_only = api.token("readings:read")
    wrong = api.get("/contacts", readings_only)
    assert wrong.status_code == 403
    assert wrong.json()["error"] == "this API token lacks the scope contacts:read"
    assert api.get("/contacts", None).status_code == 401
    assert api.get("/contacts", "cb_not-a-real-token").status_code == 401
    assert api.get("/readings", readings_only).status_code == 200


def test_the_phone_scope_shows_whole_numbers_and_is_audited(api: Api) -> None:
    api.say(PHONE, "hi")
    token = api.token("contacts:read", "contacts:phone")
    [contact] = api.get("/contacts", token).json()["data"]
    assert contact["address"] == PHONE and contact["address_masked"] is False
    one = api.get(f"/contacts/{contact['id']}", token).json()
    assert one["address"] == PHONE
    views = [e for e in api.bridge.store.audit_log() if e.action == "api_view_contact"]
    assert views[0].contact_id == contact["id"] and views[0].detail["phone"] is True
    assert api.get("/contacts/9999", token).status_code == 404


def test_pages_follow_the_cursor_to_the_end(api: Api) -> None:
    now = datetime.now(UTC)
    made = [
        api.bridge.store.get_or_create_contact("sms", f"+9198000000{i:02}", now).id
        for i in range(7)
    ]
    token = api.token("contacts:read")
    seen: list[int] = []
    cursor: str | None = ""
    pages = 0
    while cursor is not None:
        page = api.get("/contacts", token, limit=3, cursor=cursor).json()
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        pages += 1
    assert seen == made and pages == 3
    assert api.get("/contacts", token, limit=0).status_code == 200  # 0: the default size
    bad = api.get("/contacts", token, limit="ten")
    assert bad.status_code == 400 and "limit" in bad.json()["error"]
    assert api.get("/contacts", token, limit=5000).status_code == 400


def test_a_red_flag_conversation_is_readable_as_conversation_escalation_and_reading(
    api: Api,
) -> None:
    api.say(PHONE, "hi", "1", "my lips are blue and I cannot breathe")
    contact_id = api.bridge.store.find_contact("sms", PHONE).id  # type: ignore[union-attr]
    api.bridge.store.add_reading(contact_id, None, "spo2_percent", 88.0, "%", datetime.now(UTC))
    token = api.token("conversations:read", "escalations:read", "readings:read")

    conversations = api.get("/conversations", token, contact_id=contact_id).json()["data"]
    assert any(c["triage"] == "emergency_ambulance" for c in conversations)
    assert "lips" not in str(conversations)  # levels and concept ids, not the patient's words

    [ticket] = api.get("/escalations", token, status="waiting").json()["data"]
    assert ticket["contact_id"] == contact_id and ticket["level"] == "emergency_ambulance"
    assert ticket["priority"] == "emergency"
    assert api.get(f"/escalations/{ticket['id']}", token).json()["id"] == ticket["id"]

    [reading] = api.get("/readings", token, concept="spo2_percent").json()["data"]
    assert (reading["value"], reading["unit"]) == (88.0, "%")
    assert api.get("/readings", token, since="2999-01-01T00:00:00Z").json()["data"] == []


def test_broadcast_drafts_come_from_the_token_user_and_wait_for_approval(api: Api) -> None:
    make_user(api.bridge.store, "coord_a", "coordinator", "a long passphrase 1")
    token = api.token("broadcasts:read", "broadcasts:write", user="coord_a")
    texts = {lang: f"Clinic closed on Friday ({lang})." for lang in api.config.languages}
    made = api.client.post(
        "/api/v1/broadcasts",
        headers={"Authorization": f"Bearer {token}"},
        json={"name": "closure", "texts": texts, "audience": {"regions": ["north"]}},
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["status"] == "draft" and body["created_by"] == "coord_a"
    assert body["audience"]["regions"] == ["north"]
    listed = api.get("/broadcasts", token).json()["data"]
    assert [b["id"] for b in listed] == [body["id"]]

    nobody = api.token("broadcasts:write", name="ghost", user="ghost")
    refused = api.client.post(
        "/api/v1/broadcasts",
        headers={"Authorization": f"Bearer {nobody}"},
        json={"name": "x", "texts": texts},
    )
    assert refused.status_code == 400 and "no console user 'ghost'" in refused.json()["error"]
    read_only = api.client.post(
        "/api/v1/broadcasts",
        headers={"Authorization": f"Bearer {api.token('broadcasts:read')}"},
        json={"name": "x", "texts": texts},
    )
    assert read_only.status_code == 403


def test_the_api_can_be_switched_off(tmp_config: Config, lib: Library) -> None:
    config = tmp_config.model_copy(
        update={"api": tmp_config.api.model_copy(update={"enabled": False})}
    )
    app = create_app(
        config,
        bridge=CareBridge(config, library=lib),
        env={},
        senders={},
        dispatch=False,
        schedule=False,
    )
    with served(app) as url:
        assert httpx.get(f"{url}/api/v1/openapi.json").status_code == 404
        assert httpx.get(f"{url}/api/v1/contacts").status_code == 404
