"""The API for other systems under /api/v1 (docs/api.md): bearer tokens with scopes, kept only as
their SHA-256, revocable, every request audited; contacts, conversations, escalations, readings
and broadcasts in keyset pages; the OpenAPI document and a browsable page of it.
Imports bot (api.spec, broadcasts, console_view, store, app for types), starlette and jinja2.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from bot.api import spec as api_spec
from bot.app import CareBridge, build_broadcasts
from bot.broadcasts.service import BroadcastError, Broadcasts, Draft
from bot.console_view import mask_address
from bot.store import Audience, BroadcastRow, Store
from bot.store.api import ApiStore, ApiTokenRow

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
TOKEN_PREFIX = "cb_"
SCOPES: Mapping[str, str] = {
    "contacts:read": "contacts (phone numbers and chat ids masked)",
    "contacts:phone": "contacts' full phone numbers and chat ids (with contacts:read)",
    "conversations:read": "conversations: flow, status, triage level, red flags, answers",
    "escalations:read": "clinician tickets: level, priority, status, timings",
    "readings:read": "measurements (temperature, SpO2, blood pressure, glucose, ...)",
    "broadcasts:read": "broadcasts: texts, audience, status, counts",
    "broadcasts:write": "create broadcast drafts (a second person approves them)",
    "metrics:read": "GET /metrics when metrics.access is loopback or token",
}
_TOUCH_EVERY = timedelta(minutes=1)
_TEMPLATES = Environment(
    loader=FileSystemLoader(str(Path(__file__).resolve().parent.parent / "templates")),
    autoescape=select_autoescape(["html"]),
)


class ApiError(Exception):
    """A request the API refuses: the status and one line that says what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def token_hash(token: str) -> str:
    """What is stored of a token: the hex SHA-256 (the token has 256 random bits)."""
    return hashlib.sha256(token.encode()).hexdigest()


def api_store(store: Store) -> ApiStore:
    """The store's API methods (bot.store.api)."""
    return cast(ApiStore, store)


class ApiTokens:
    """Create, list, check and revoke API tokens; each change is audited."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.api = api_store(store)
        self.clock = clock

    def create(
        self, name: str, scopes: tuple[str, ...], by: str, *, user_id: int | None = None
    ) -> tuple[ApiTokenRow, str]:
        """A new token: its row and the token itself, which is shown once and never stored."""
        name = name.strip()
        if not name or len(name) > 64:
            raise ApiError(400, "give the token a name of 1 to 64 characters")
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown or not scopes:
            what = f"unknown scope {unknown[0]!r}" if unknown else "give at least one scope"
            raise ApiError(400, f"{what}; choose from {', '.join(SCOPES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        with self.store.transaction():
            token_id = self.api.add_api_token(
                name, token_hash(token), token[:10], tuple(sorted(set(scopes))), by, now
            )
            self.store.add_audit(
                now,
                user_id,
                by,
                "api_token_created",
                detail={"token_id": token_id, "name": name, "scopes": sorted(set(scopes))},
            )
        row = self.api.get_api_token(token_id)
        assert row is not None
        log.info("api token=%s created scopes=%s", token_id, ",".join(row.scopes))
        return row, token

    def revoke(self, token_id: int, by: str, *, user_id: int | None = None) -> ApiTokenRow:
        """Revoke a token; it is refused from the next request on."""
        now = self.clock()
        with self.store.transaction():
            if not self.api.revoke_api_token(token_id, by, now):
                row = self.api.get_api_token(token_id)
                if row is None:
                    raise ApiError(404, f"there is no API token {token_id}")
                raise ApiError(400, f"API token {token_id} was revoked already")
            self.store.add_audit(
                now, user_id, by, "api_token_revoked", detail={"token_id": token_id}
            )
        row = self.api.get_api_token(token_id)
        assert row is not None
        log.info("api token=%s revoked", token_id)
        return row

    def check(self, token: str) -> ApiTokenRow | None:
        """The live token for a bearer value; None if unknown or revoked."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        row = self.api.api_token_by_hash(token_hash(token))
        if row is None or not row.active:
            return None
        now = self.clock()
        if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
            self.api.touch_api_token(row.id, now)
        return row


@dataclass
class ApiCtx:
    """One authorised request, as a (synchronous) handler sees it."""

    request: Request
    token: ApiTokenRow
    bridge: CareBridge
    page_size: int
    max_page_size: int
    body: Any = None

    @property
    def store(self) -> Store:
        return self.bridge.store

    def audit(self, action: str, **detail: Any) -> None:
        contact_id = detail.pop("contact_id", None)
        escalation_id = detail.pop("escalation_id", None)
        self.store.add_audit(
            self.bridge.clock(),
            None,
            f"api:{self.token.name}",
            action,
            contact_id=contact_id,
            escalation_id=escalation_id,
            detail={"token_id": self.token.id, "path": self.request.url.path, **detail},
        )

    # -- query parameters -------------------------------------------------------------------

    def int_param(self, name: str, default: int | None = None) -> int | None:
        raw = self.request.query_params.get(name)
        if raw is None or raw == "":
            return default
        if not raw.isdigit() or len(raw) > 18:
            raise ApiError(400, f"{name} must be a whole number, got {raw[:20]!r}")
        return int(raw)

    def time_param(self, name: str) -> datetime | None:
        raw = self.request.query_params.get(name)
        if not raw:
            return None
        try:
            when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(400, f"{name} must be an ISO 8601 time, got {raw[:40]!r}") from None
        return when if when.tzinfo else when.replace(tzinfo=UTC)

    def page(
        self,
        table: str,
        filters: Mapping[str, Any],
        since: tuple[str, datetime] | None,
        shape: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> dict[str, Any]:
        limit = self.int_param("limit", self.page_size) or self.page_size
        if limit > self.max_page_size:
            raise ApiError(400, f"limit must be at most {self.max_page_size}")
        after = self.int_param("cursor", 0) or 0
        clean = {k: v for k, v in filters.items() if v is not None}
        rows = api_store(self.store).api_page(table, after, limit + 1, clean, since)
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "data": [shape(r) for r in rows],
            "next_cursor": str(rows[-1]["id"]) if more else None,
            "limit": limit,
        }


ApiHandler = Callable[[ApiCtx], dict[str, Any]]


# -- shapes: rows as the API shows them ----------------------------------------------------------


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def contact_json(row: Mapping[str, Any], *, phone: bool) -> dict[str, Any]:
    address = str(row["address"])
    return {
        "id": row["id"],
        "channel": row["channel"],
        "address": address if phone else mask_address(address),
        "address_masked": not phone,
        "language": row["language"],
        "opted_out": bool(row["opted_out"]),
        "consent_care": _bool(row["consent_care"]),
        "consent_broadcast": _bool(row["consent_broadcast"]),
        "region": row.get("region"),
        "timezone": row.get("timezone"),
        "person_id": row.get("person_id"),
        "test": bool(row.get("test", 0)),
        "forgotten": row.get("forgotten_at") is not None,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "last_inbound_at": row.get("last_inbound_at"),
    }


def conversation_json(row: Mapping[str, Any], private: frozenset[str]) -> dict[str, Any]:
    state = json.loads(row["state"] or "{}")
    answers = state.get("answers") or {}
    return {
        "id": row["id"],
        "contact_id": row["contact_id"],
        "flow": row["flow"],
        "status": row["status"],
        "triage": state.get("triage"),
        "red_flags": list(state.get("red_flags") or []),
        # free-text answers are the patient's own words: never through the API
        "answers": {k: v for k, v in answers.items() if k not in private},
        "started_at": row["started_at"],
        "updated_at": row["updated_at"],
    }


def escalation_json(row: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "contact_id",
        "session_id",
        "level",
        "reason",
        "flow",
        "status",
        "priority",
        "opened_at",
        "updated_at",
        "claimed_at",
        "first_response_at",
        "resolved_at",
        "closed_at",
        "deadline_at",
        "raised_at",
        "appended",
    )
    data = {k: row.get(k) for k in keys}
    data["red_flags"] = json.loads(row.get("red_flags") or "[]")
    return data


def reading_json(row: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("id", "contact_id", "session_id", "concept", "value", "unit", "at")
    return {k: row.get(k) for k in keys}


def broadcast_json(row: BroadcastRow, texts: Mapping[str, str]) -> dict[str, Any]:
    def at(when: datetime | None) -> str | None:
        return when.isoformat() if when else None

    audience = row.audience
    return {
        "id": row.id,
        "name": row.name,
        "status": str(row.status),
        "created_by": row.created_by_name,
        "created_at": at(row.created_at),
        "approved_by": row.approved_by_name,
        "approved_at": at(row.approved_at),
        "send_at": at(row.send_at),
        "urgent": row.urgent,
        "recurring": row.recurrence is not None,
        "parent_id": row.parent_id,
        "correction_of": row.correction_of,
        "audience": {
            "languages": list(audience.languages),
            "regions": list(audience.regions),
            "conditions": list(audience.conditions),
            "channels": list(audience.channels),
            "tags": list(audience.tags),
            "include_test": audience.include_test,
        },
        "texts": dict(texts),
        "enqueued": row.enqueued,
        "cancelled_at": at(row.cancelled_at),
    }


# -- handlers ------------------------------------------------------------------------------------


def list_contacts(ctx: ApiCtx) -> dict[str, Any]:
    params = ctx.request.query_params
    include_test = params.get("include_test") in ("1", "true")
    phone = "contacts:phone" in ctx.token.scopes
    page = ctx.page(
        "contacts",
        {"channel": params.get("channel"), "test": None if include_test else 0},
        _since(ctx, "updated_at"),
        lambda r: contact_json(r, phone=phone),
    )
    ctx.audit("api_list_contacts", rows=len(page["data"]), phone=phone)
    return page


def get_contact(ctx: ApiCtx) -> dict[str, Any]:
    contact_id = int(ctx.request.path_params["id"])
    rows = api_store(ctx.store).api_page("contacts", contact_id - 1, 1)
    if not rows or rows[0]["id"] != contact_id:
        raise ApiError(404, f"there is no contact {contact_id}")
    phone = "contacts:phone" in ctx.token.scopes
    ctx.audit("api_view_contact", contact_id=contact_id, phone=phone)
    return contact_json(rows[0], phone=phone)


def list_conversations(ctx: ApiCtx) -> dict[str, Any]:
    params = ctx.request.query_params
    private = _free_text(ctx)
    page = ctx.page(
        "sessions",
        {
            "contact_id": ctx.int_param("contact_id"),
            "status": params.get("status"),
            "flow": params.get("flow"),
        },
        _since(ctx, "updated_at"),
        lambda r: conversation_json(r, private),
    )
    ctx.audit("api_list_conversations", rows=len(page["data"]))
    return page


def get_conversation(ctx: ApiCtx) -> dict[str, Any]:
    row = _one(ctx, "sessions", "conversation")
    ctx.audit("api_view_conversation", contact_id=row["contact_id"], session_id=row["id"])
    return conversation_json(row, _free_text(ctx))


def list_escalations(ctx: ApiCtx) -> dict[str, Any]:
    params = ctx.request.query_params
    page = ctx.page(
        "escalations",
        {
            "contact_id": ctx.int_param("contact_id"),
            "status": params.get("status"),
            "level": params.get("level"),
        },
        _since(ctx, "updated_at"),
        escalation_json,
    )
    ctx.audit("api_list_escalations", rows=len(page["data"]))
    return page


def get_escalation(ctx: ApiCtx) -> dict[str, Any]:
    row = _one(ctx, "escalations", "escalation")
    ctx.audit("api_view_escalation", contact_id=row["contact_id"], escalation_id=row["id"])
    return escalation_json(row)


def list_readings(ctx: ApiCtx) -> dict[str, Any]:
    params = ctx.request.query_params
    page = ctx.page(
        "readings",
        {"contact_id": ctx.int_param("contact_id"), "concept": params.get("concept")},
        _since(ctx, "at"),
        reading_json,
    )
    ctx.audit("api_list_readings", rows=len(page["data"]))
    return page


def list_broadcasts(ctx: ApiCtx) -> dict[str, Any]:
    page = ctx.page(
        "broadcasts",
        {"status": ctx.request.query_params.get("status")},
        None,
        lambda r: _broadcast(ctx, int(r["id"])),
    )
    ctx.audit("api_list_broadcasts", rows=len(page["data"]))
    return page


def get_broadcast(ctx: ApiCtx) -> dict[str, Any]:
    broadcast_id = int(ctx.request.path_params["id"])
    ctx.audit("api_view_broadcast", broadcast_id=broadcast_id)
    return _broadcast(ctx, broadcast_id)


def create_broadcast(ctx: ApiCtx) -> dict[str, Any]:
    """A draft, created on behalf of the user the token was made by (docs/api.md)."""
    body = ctx.body
    if not isinstance(body, dict):
        raise ApiError(400, "send a JSON object: {name, texts: {language: text}, ...}")
    texts = body.get("texts")
    if not isinstance(body.get("name"), str) or not isinstance(texts, dict):
        raise ApiError(400, "name (a string) and texts (language -> text) are required")
    audience = body.get("audience") or {}
    if not isinstance(audience, dict):
        raise ApiError(400, "audience must be an object")
    try:
        draft = Draft(
            name=body["name"],
            texts={str(k): str(v) for k, v in texts.items()},
            audience=Audience(
                languages=_strings(audience, "languages"),
                regions=_strings(audience, "regions"),
                conditions=_strings(audience, "conditions"),
                channels=_strings(audience, "channels"),
                tags=_strings(audience, "tags"),
            ),
            urgent=bool(body.get("urgent", False)),
        )
        row = _broadcasts(ctx).create(draft, ctx.token.created_by)
    except BroadcastError as exc:
        raise ApiError(400, str(exc)) from None
    ctx.audit("api_create_broadcast", broadcast_id=row.id)
    return _broadcast(ctx, row.id)


def _strings(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"audience.{key} must be a list of strings")
    return tuple(value)


def _broadcasts(ctx: ApiCtx) -> Broadcasts:
    return build_broadcasts(ctx.bridge.config, ctx.store, ctx.bridge.clock)


def _broadcast(ctx: ApiCtx, broadcast_id: int) -> dict[str, Any]:
    row = ctx.store.get_broadcast(broadcast_id)
    if row is None:
        raise ApiError(404, f"there is no broadcast {broadcast_id}")
    texts = {t.language: t.text for t in ctx.store.broadcast_texts(broadcast_id)}
    return broadcast_json(row, texts)


def _one(ctx: ApiCtx, table: str, what: str) -> dict[str, Any]:
    row_id = int(ctx.request.path_params["id"])
    rows = api_store(ctx.store).api_page(table, row_id - 1, 1)
    if not rows or rows[0]["id"] != row_id:
        raise ApiError(404, f"there is no {what} {row_id}")
    return rows[0]


def _since(ctx: ApiCtx, column: str) -> tuple[str, datetime] | None:
    when = ctx.time_param("since")
    return (column, when) if when is not None else None


def _free_text(ctx: ApiCtx) -> frozenset[str]:
    concepts = ctx.bridge.library.concepts
    return frozenset(c for c, d in concepts.items() if d.type == "text")


# -- routing and the guard -----------------------------------------------------------------------

ENDPOINTS: tuple[tuple[str, str, str, ApiHandler], ...] = (
    ("GET", "/contacts", "contacts:read", list_contacts),
    ("GET", "/contacts/{id:int}", "contacts:read", get_contact),
    ("GET", "/conversations", "conversations:read", list_conversations),
    ("GET", "/conversations/{id:int}", "conversations:read", get_conversation),
    ("GET", "/escalations", "escalations:read", list_escalations),
    ("GET", "/escalations/{id:int}", "escalations:read", get_escalation),
    ("GET", "/readings", "readings:read", list_readings),
    ("GET", "/broadcasts", "broadcasts:read", list_broadcasts),
    ("GET", "/broadcasts/{id:int}", "broadcasts:read", get_broadcast),
    ("POST", "/broadcasts", "broadcasts:write", create_broadcast),
)
MAX_BODY = 64 * 1024


def _error(status: int, message: str, **headers: str) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _guarded(
    bridge: CareBridge, tokens: ApiTokens, scope: str, handler: ApiHandler
) -> Callable[[Request], Awaitable[Response]]:
    config = bridge.config.api

    async def endpoint(request: Request) -> Response:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return _error(
                401,
                "send an API token: Authorization: Bearer cb_... (carebridge tokens create)",
                **{"WWW-Authenticate": "Bearer"},
            )
        token = await run_in_threadpool(tokens.check, value.strip())
        if token is None:
            log.info("api request refused: unknown or revoked token")
            return _error(
                401,
                "this API token is unknown or has been revoked",
                **{"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if scope not in token.scopes:
            log.info("api token=%s refused: lacks scope %s", token.id, scope)
            return _error(
                403,
                f"this API token lacks the scope {scope}",
                **{"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
            )
        ctx = ApiCtx(request, token, bridge, config.page_size, config.max_page_size)
        if request.method == "POST":
            raw = await request.body()
            if len(raw) > MAX_BODY:
                return _error(413, f"request body over {MAX_BODY} bytes")
            try:
                ctx.body = json.loads(raw or b"null")
            except ValueError:
                return _error(400, "the body is not JSON")
        try:
            data = await run_in_threadpool(handler, ctx)
        except ApiError as exc:
            return _error(exc.status, str(exc))
        status = 201 if request.method == "POST" else 200
        return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})

    return endpoint


def api_routes(bridge: CareBridge) -> list[BaseRoute]:
    """The /api/v1 routes (none when api.enabled is false)."""
    if not bridge.config.api.enabled:
        return []
    tokens = ApiTokens(bridge.store, bridge.clock)
    spec = api_spec.openapi(bridge.config.server.public_url, SCOPES)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(spec)

    page = _TEMPLATES.get_template("api_docs.html").render(
        spec=spec, scopes=SCOPES, service_name=bridge.config.service_name
    )

    async def docs(request: Request) -> Response:
        return HTMLResponse(page)

    routes: list[BaseRoute] = [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    for method, path, scope, handler in ENDPOINTS:
        routes.append(Route(path, _guarded(bridge, tokens, scope, handler), methods=[method]))
    # one Mount: token-guarded, apart from the console's cookie routes (bot.console.ROUTE_ROLES)
    return [Mount(PREFIX, routes=routes)]
