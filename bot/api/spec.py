"""The OpenAPI 3.1 document of /api/v1 (served at /api/v1/openapi.json, shown at /api/v1/docs):
paths, parameters, schemas, the bearer scheme and its scopes, and the event webhooks.
Imports only the standard library and bot.config (the event names).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.config import EVENT_TYPES

VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "what to fix, in one line"}},
    },
    "Contact": {
        "type": "object",
        "required": ["id", "channel", "address", "address_masked", "language", "opted_out"],
        "properties": {
            "id": {"type": "integer"},
            "channel": {"type": "string", "examples": ["sms", "whatsapp", "telegram"]},
            "address": {
                "type": "string",
                "description": "E.164 number or chat id; masked (+•••••••4321) unless the token "
                "has contacts:phone",
            },
            "address_masked": {"type": "boolean"},
            "language": {"type": "string"},
            "opted_out": {"type": "boolean"},
            "consent_care": _nullable("boolean"),
            "consent_broadcast": _nullable("boolean"),
            "region": _nullable("string"),
            "timezone": _nullable("string"),
            "person_id": _nullable("integer"),
            "test": {"type": "boolean", "description": "a simulator test contact"},
            "forgotten": {"type": "boolean", "description": "erased on request (FORGET)"},
            "created_at": _TIME,
            "updated_at": _TIME,
            "last_inbound_at": _TIME_OR_NULL,
        },
    },
    "Conversation": {
        "type": "object",
        "required": ["id", "contact_id", "status", "answers"],
        "properties": {
            "id": {"type": "integer"},
            "contact_id": {"type": "integer"},
            "flow": _nullable("string"),
            "status": {"type": "string"},
            "triage": {
                "type": ["string", "null"],
                "description": "self_care, consultation, consultation_24, emergency, "
                "emergency_ambulance",
            },
            "red_flags": {"type": "array", "items": {"type": "string"}},
            "answers": {
                "type": "object",
                "description": "concept id -> value; free-text answers are left out",
            },
            "started_at": _TIME,
            "updated_at": _TIME,
        },
    },
    "Escalation": {
        "type": "object",
        "required": ["id", "contact_id", "level", "status"],
        "properties": {
            "id": {"type": "integer"},
            "contact_id": {"type": "integer"},
            "session_id": _nullable("integer"),
            "level": {"type": "string"},
            "reason": {"type": "string"},
            "flow": _nullable("string"),
            "status": {
                "type": "string",
                "enum": ["waiting", "claimed", "resolved", "returned_to_bot", "closed"],
            },
            "priority": _nullable("string"),
            "red_flags": {"type": "array", "items": {"type": "string"}},
            "opened_at": _TIME,
            "updated_at": _TIME,
            "claimed_at": _TIME_OR_NULL,
            "first_response_at": _TIME_OR_NULL,
            "resolved_at": _TIME_OR_NULL,
            "closed_at": _TIME_OR_NULL,
            "deadline_at": _TIME_OR_NULL,
            "raised_at": _TIME_OR_NULL,
            "appended": {"type": "integer"},
        },
    },
    "Reading": {
        "type": "object",
        "required": ["id", "contact_id", "concept", "value", "at"],
        "properties": {
            "id": {"type": "integer"},
            "contact_id": {"type": "integer"},
            "session_id": _nullable("integer"),
            "concept": {"type": "string", "examples": ["temperature_c", "spo2_percent"]},
            "value": {"type": "number"},
            "unit": {"type": ["string", "null"], "description": "UCUM code"},
            "at": _TIME,
        },
    },
    "Broadcast": {
        "type": "object",
        "required": ["id", "name", "status", "texts"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["draft", "approved", "sending", "sent", "cancelled"],
            },
            "created_by": {"type": "string"},
            "created_at": _TIME,
            "approved_by": _nullable("string"),
            "approved_at": _TIME_OR_NULL,
            "send_at": _TIME_OR_NULL,
            "urgent": {"type": "boolean"},
            "recurring": {"type": "boolean"},
            "parent_id": _nullable("integer"),
            "correction_of": _nullable("integer"),
            "audience": _ref("Audience"),
            "texts": {"type": "object", "additionalProperties": {"type": "string"}},
            "enqueued": {"type": "integer"},
            "cancelled_at": _TIME_OR_NULL,
        },
    },
    "Audience": {
        "type": "object",
        "properties": {
            key: {"type": "array", "items": {"type": "string"}}
            for key in ("languages", "regions", "conditions", "channels", "tags")
        }
        | {"include_test": {"type": "boolean"}},
    },
    "NewBroadcast": {
        "type": "object",
        "required": ["name", "texts"],
        "properties": {
            "name": {"type": "string"},
            "texts": {
                "type": "object",
                "description": "language -> text; every configured language",
                "additionalProperties": {"type": "string"},
            },
            "audience": _ref("Audience"),
            "urgent": {"type": "boolean", "default": False},
        },
    },
    "Event": {
        "type": "object",
        "description": "The body of an event webhook (see the webhooks section and docs/api.md)",
        "required": ["id", "type", "created_at", "data"],
        "properties": {
            "id": {"type": "string", "description": "the same on every retry of one event"},
            "type": {"type": "string", "enum": list(EVENT_TYPES)},
            "created_at": _TIME,
            "data": {
                "type": "object",
                "description": "ids, levels, numbers and times; never message text",
            },
        },
    },
}


def _page_of(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data", "next_cursor", "limit"],
        "properties": {
            "data": {"type": "array", "items": _ref(name)},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as ?cursor= for the next page; null on the last page",
            },
            "limit": {"type": "integer"},
        },
    }


def _param(name: str, kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": kind, **extra},
    }


_PAGING = [
    _param("cursor", "string", "next_cursor of the previous page"),
    _param("limit", "integer", "rows per page (api.page_size by default)", minimum=1),
]
_SINCE = _param("since", "string", "only rows changed at or after this time", format="date-time")


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(ok: dict[str, Any], code: str = "200") -> dict[str, Any]:
    error = _json(_ref("Error"))
    return {
        code: {"description": "OK", "content": _json(ok)},
        "400": {"description": "a bad parameter or body", "content": error},
        "401": {"description": "no token, or unknown or revoked", "content": error},
        "403": {"description": "the token lacks the scope", "content": error},
    }


def _list(tag: str, name: str, scope: str, summary: str, params: list[Any]) -> dict[str, Any]:
    return {
        "get": {
            "tags": [tag],
            "summary": summary,
            "operationId": f"list_{tag}",
            "security": [{"bearer": [scope]}],
            "parameters": [*_PAGING, *params],
            "responses": _responses(_ref(f"{name}Page")),
        }
    }


def _one(tag: str, name: str, scope: str, summary: str) -> dict[str, Any]:
    responses = _responses(_ref(name))
    responses["404"] = {"description": "no such row", "content": _json(_ref("Error"))}
    return {
        "get": {
            "tags": [tag],
            "summary": summary,
            "operationId": f"get_{tag}",
            "security": [{"bearer": [scope]}],
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "responses": responses,
        }
    }


def openapi(server_url: str, scopes: Mapping[str, str]) -> dict[str, Any]:
    """The whole document."""
    contact_id = _param("contact_id", "integer", "only this contact's rows")
    paths: dict[str, Any] = {
        "/contacts": _list(
            "contacts",
            "Contact",
            "contacts:read",
            "Contacts, by id",
            [
                _param("channel", "string", "only this channel"),
                _param("include_test", "boolean", "simulator test contacts too"),
                _SINCE,
            ],
        ),
        "/contacts/{id}": _one("contacts", "Contact", "contacts:read", "One contact"),
        "/conversations": _list(
            "conversations",
            "Conversation",
            "conversations:read",
            "Conversations (flow runs) with their triage level",
            [
                contact_id,
                _param("status", "string", "active, completed, handed_off, expired, ..."),
                _param("flow", "string", "only this flow"),
                _SINCE,
            ],
        ),
        "/conversations/{id}": _one(
            "conversations", "Conversation", "conversations:read", "One conversation"
        ),
        "/escalations": _list(
            "escalations",
            "Escalation",
            "escalations:read",
            "Clinician tickets",
            [
                contact_id,
                _param("status", "string", "waiting, claimed, resolved, returned_to_bot"),
                _param("level", "string", "only this triage level"),
                _SINCE,
            ],
        ),
        "/escalations/{id}": _one("escalations", "Escalation", "escalations:read", "One ticket"),
        "/readings": _list(
            "readings",
            "Reading",
            "readings:read",
            "Measurements",
            [contact_id, _param("concept", "string", "only this concept"), _SINCE],
        ),
        "/broadcasts": {
            **_list(
                "broadcasts",
                "Broadcast",
                "broadcasts:read",
                "Broadcasts",
                [_param("status", "string", "draft, approved, sending, sent, cancelled")],
            ),
            "post": {
                "tags": ["broadcasts"],
                "summary": "Create a broadcast draft (a second person approves it in the console)",
                "operationId": "create_broadcast",
                "security": [{"bearer": ["broadcasts:write"]}],
                "requestBody": {"required": True, "content": _json(_ref("NewBroadcast"))},
                "responses": _responses(_ref("Broadcast"), "201"),
            },
        },
        "/broadcasts/{id}": _one("broadcasts", "Broadcast", "broadcasts:read", "One broadcast"),
    }
    schemas = dict(_SCHEMAS)
    for name in ("Contact", "Conversation", "Escalation", "Reading", "Broadcast"):
        schemas[f"{name}Page"] = _page_of(name)
    webhooks = {
        event: {
            "post": {
                "summary": f"The {event} event",
                "description": "Signed: X-Carebridge-Signature: t=<unix time>,v1=<hex "
                "HMAC-SHA256 of '<t>.<body>' under the subscription's secret>",
                "requestBody": {"content": _json(_ref("Event"))},
                "responses": {"200": {"description": "any 2xx acknowledges the event"}},
            }
        }
        for event in EVENT_TYPES
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "carebridge API",
            "version": VERSION,
            "description": "Read contacts, conversations, tickets, readings and broadcasts; "
            "create broadcast drafts. Bearer tokens with scopes (carebridge tokens create). "
            "See docs/api.md.",
        },
        "servers": [{"url": server_url.rstrip("/") + "/api/v1"}],
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (cb_...). Scopes: "
                    + "; ".join(f"{k}: {v}" for k, v in scopes.items()),
                }
            },
        },
        "security": [{"bearer": []}],
    }
