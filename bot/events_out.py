"""Outgoing event webhooks (docs/api.md, Events): `Events.emit` queues one outbox row per
subscription that wants the event, inside the caller's transaction; `WebhookSender` is the
outbox channel `webhook` that POSTs them, HMAC-SHA256 signed, with the dispatcher's retries
and leases. Payloads carry ids, levels and numbers, never message text; a phone number only
when the subscription sets `include_phone`. Imports bot.config, bot.errors, bot.messages,
bot.store and httpx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import httpx

from bot.config import EventsConfig, EventSubscription
from bot.errors import ConfigError, PermanentChannelError, TransientChannelError
from bot.messages import Outbound
from bot.store import Store

log = logging.getLogger(__name__)

CHANNEL = "webhook"  # the outbox channel of event deliveries
KIND = "event"  # their outbox kind
SIGNATURE_HEADER = "X-Carebridge-Signature"  # t=<unix seconds>,v1=<hex HMAC-SHA256>
EVENT_HEADER = "X-Carebridge-Event"
DELIVERY_HEADER = "X-Carebridge-Delivery"  # the event id: the same on every retry

Emit = Callable[..., list[int]]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The v1 signature: hex HMAC-SHA256 of `<timestamp>.<body>` under the secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def verify(secret: str, header: str, body: bytes, now: float, tolerance_s: float = 300) -> bool:
    """What a receiver does (docs/api.md has the same in a few lines): parse
    `t=...,v1=...`, refuse an old timestamp, compare the signature in constant time."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), parts.get("v1", ""))


class Events:
    """Queues event deliveries for the configured subscriptions (nothing when there are none)."""

    def __init__(self, store: Store, config: EventsConfig) -> None:
        self.store = store
        self.subscriptions = tuple(config.subscriptions)
        # in-process listeners (bot.metrics times escalation claims): (event, data) -> None
        self.observers: list[Callable[[str, Mapping[str, Any]], object]] = []

    def emit(
        self, event: str, data: Mapping[str, Any], now: datetime, *, contact_id: int | None = None
    ) -> list[int]:
        """Queue `event` for every subscription that wants it; joins the caller's transaction
        (so an event is sent exactly when what it reports was committed). Returns outbox ids."""
        for observe in self.observers:
            try:
                observe(event, data)
            except Exception:  # a listener never costs the patient's transaction
                log.exception("event observer failed on %s", event)
        wanted = [s for s in self.subscriptions if s.wants(event)]
        if not wanted:
            return []
        event_id = uuid.uuid4().hex
        about: dict[str, Any] = {}
        phone: str | None = None
        if contact_id is not None:
            contact = self.store.contact_row(contact_id)
            about = {"contact_id": contact_id, "test": bool(contact and contact.test)}
            if contact is not None and any(s.include_phone for s in wanted):
                phone = contact.address
        ids: list[int] = []
        for sub in wanted:
            body = {**data, **about}
            if sub.include_phone and phone is not None:
                body["address"] = phone
            payload = {
                "id": event_id,
                "type": event,
                "created_at": now.isoformat(),
                "data": body,
            }
            out = Outbound(
                CHANNEL,
                sub.name,
                json.dumps(payload, separators=(",", ":"), sort_keys=True),
                kind=KIND,
                meta={"event": event, "event_id": event_id},
            )
            ids.append(self.store.enqueue(out, now))
        log.info("event %s id=%s queued for %d subscriptions", event, event_id, len(ids))
        return ids


class WebhookSender:
    """The outbox channel `webhook`: POST the payload to the subscription's URL, signed.

    2xx: delivered. 408, 425, 429, 5xx and network errors: retried with the dispatcher's
    backoff (a Retry-After is honoured). Any other status: failed for good."""

    name = CHANNEL

    def __init__(
        self,
        subscriptions: list[EventSubscription],
        env: Mapping[str, str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.subscriptions = {s.name: s for s in subscriptions}
        self.secrets: dict[str, str] = {}
        for i, sub in enumerate(subscriptions):
            secret = env.get(sub.secret_env, "")
            if not secret:
                raise ConfigError(
                    f"events.subscriptions[{i}] ({sub.name}).secret_env: environment variable "
                    f"{sub.secret_env} is not set (the HMAC key; secrets never go in config.yaml)"
                )
            self.secrets[sub.name] = secret
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self.clock = clock

    async def start(self) -> None:
        self._client = httpx.AsyncClient(transport=self._transport, follow_redirects=False)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, msg: Outbound) -> str:
        sub = self.subscriptions.get(msg.address)
        if sub is None:  # the subscription was removed from config.yaml since it was queued
            raise PermanentChannelError(
                f"no subscription {msg.address!r}", code="unknown_subscription"
            )
        if self._client is None:
            await self.start()
        assert self._client is not None
        body = msg.text.encode()
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "carebridge-events/1",
            SIGNATURE_HEADER: f"t={timestamp},v1={sign(self.secrets[sub.name], timestamp, body)}",
            EVENT_HEADER: msg.meta.get("event", ""),
            DELIVERY_HEADER: msg.meta.get("event_id", ""),
        }
        try:
            response = await self._client.post(sub.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientChannelError(
                f"{sub.name}: {type(exc).__name__}", code="network"
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return msg.meta.get("event_id", "") or f"{sub.name}-{status}"
        if status in (408, 425, 429) or status >= 500:
            raise TransientChannelError(
                f"{sub.name} answered {status}",
                code=f"http_{status}",
                retry_after=_retry_after(response),
            )
        raise PermanentChannelError(f"{sub.name} answered {status}", code=f"http_{status}")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None
