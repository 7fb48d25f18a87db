"""The API's OpenAPI document is valid OpenAPI 3.1, the browsable page shows every endpoint
without loading anything from elsewhere, and real answers match the documented schemas."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx
from console_helpers import served
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from bot.api.service import ENDPOINTS, ApiTokens
from bot.app import CareBridge
from bot.config import Config
from bot.flow import Library
from bot.messages import Inbound
from bot.web import create_app


def _matches(spec: dict[str, Any], name: str, body: Any) -> None:
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    OAS31Validator(schema).validate(body)


def test_the_document_is_valid_the_page_is_self_contained_and_answers_match(
    tmp_config: Config, lib: Library
) -> None:
    bridge = CareBridge(tmp_config, library=lib)
    app = create_app(tmp_config, bridge=bridge, env={}, senders={}, dispatch=False, schedule=False)
    for n, text in enumerate(("hi", "1", "my lips are blue and I cannot breathe")):
        bridge.handle(Inbound("sms", "+919812345678", text, datetime.now(UTC), f"m{n}"))
    _, token = ApiTokens(bridge.store, bridge.clock).create(
        "check",
        (
            "contacts:read",
            "conversations:read",
            "escalations:read",
            "readings:read",
            "broadcasts:read",
        ),
        "cli",
    )
    auth = {"Authorization": f"Bearer {token}"}
    with served(app) as url:
        spec = httpx.get(f"{url}/api/v1/openapi.json").json()
        validate(spec)  # raises on any violation of the OpenAPI 3.1 schema
        documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
        served_paths = {(m, re.sub(r":int}", "}", p)) for m, p, _, _ in ENDPOINTS}
        assert documented == served_paths

        page = httpx.get(f"{url}/api/v1/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for method, path in served_paths:
            assert f"{method} /api/v1{path}" in page.text
        assert not re.search(r"""(src|href)=["']https?://""", page.text)  # no CDN

        for path, name in (
            ("/contacts", "ContactPage"),
            ("/conversations", "ConversationPage"),
            ("/escalations", "EscalationPage"),
            ("/readings", "ReadingPage"),
            ("/broadcasts", "BroadcastPage"),
        ):
            answer = httpx.get(f"{url}/api/v1{path}", headers=auth)
            assert answer.status_code == 200, answer.text
            _matches(spec, name, answer.json())
        first = httpx.get(f"{url}/api/v1/contacts", headers=auth).json()["data"][0]
        _matches(
            spec, "Contact", httpx.get(f"{url}/api/v1/contacts/{first['id']}", headers=auth).json()
        )
        _matches(spec, "Error", httpx.get(f"{url}/api/v1/contacts").json())
