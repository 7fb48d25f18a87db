"""Outgoing event webhooks (docs/api.md, Events): a patient's red flag reaches a fake receiver
on loopback through the outbox, HMAC-signed, and is retried after a 500; claiming and
resolving the ticket follow; payloads carry ids and levels, never text or numbers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from console_helpers import make_user, served
from fakes import wait_for
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.app import CareBridge, build_channels, build_dispatcher
from bot.config import Config, EventsConfig, EventSubscription
from bot.dispatch import Dispatcher
from bot.errors import ConfigError
from bot.events_out import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, verify
from bot.flow import Library
from bot.messages import Inbound
from bot.store import OutboxStatus
from bot.web import create_app

SECRET = "a-long-random-secret-for-the-test"
PHONE = "+919812345678"
RED_FLAG = "my lips are blue and I cannot breathe"


@dataclass
class Receiver:
    """A fake receiving system: records every POST; answers 500 to the first `fail` ones."""

    fail: int = 1
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.got.append((dict(request.headers), await request.body()))
            if len(self.got) <= self.fail:
                return JSONResponse({"error": "down"}, status_code=500)
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.got]

    def of(self, kind: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in self.got if h[EVENT_HEADER.lower()] == kind]


def _config(base: Config, url: str, **sub: Any) -> Config:
    subscription = EventSubscription(
        name="emr",
        url=f"{url}/hook",
        secret_env="EMR_HOOK_SECRET",
        events=sub.pop("events", ["*"]),
        **sub,
    )
    return base.model_copy(
        update={
            "events": EventsConfig(subscriptions=[subscription]),
            # retries come fast in the test; the policy itself is the dispatcher's
            "delivery": base.delivery.model_copy(update={"retry_base_s": 0.05, "retry_cap_s": 0.2}),
        }
    )


def deliver(dispatcher: Dispatcher, clock: list[datetime], sweeps: int = 3) -> None:
    """Sweep the outbox `sweeps` times, five minutes of bot time apart (retries come due)."""

    async def run() -> None:
        sender = dispatcher.senders["webhook"]
        await sender.start()  # type: ignore[attr-defined]
        try:
            for _ in range(sweeps):
                clock[0] += timedelta(minutes=5)
                await dispatcher.run_once()
        finally:
            await sender.stop()  # type: ignore[attr-defined]

    asyncio.run(run())


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    fake = Receiver()
    with served(fake.app(), lifespan="off") as url:
        yield fake, url


def test_a_red_flag_reaches_the_receiver_signed_and_is_retried_after_a_500(
    tmp_config: Config, lib: Library, receiver: tuple[Receiver, str]
) -> None:
    fake, url = receiver
    config = _config(tmp_config, url)
    bridge = CareBridge(config, library=lib)
    app = create_app(config, bridge=bridge, env={"EMR_HOOK_SECRET": SECRET}, schedule=False)
    with served(app) as base:
        for text in ("hi", "1", RED_FLAG):  # a patient in the browser simulator
            sent = httpx.post(
                f"{base}/sim/api/send", json={"address": "sim-hook-0001", "text": text}
            )
            assert sent.status_code == 200, sent.text
        # the first delivery got a 500 and was retried; every event arrives
        wait_for(lambda: len(fake.got) >= 3 and bool(fake.of("escalation.opened")), timeout=30)

        ids = [h[DELIVERY_HEADER.lower()] for h, _ in fake.got]
        retried = [i for i in set(ids) if ids.count(i) == 2]
        assert len(retried) == 1 and ids[0] == retried[0]  # the one that met the 500
        first, second = [(h, b) for h, b in fake.got if h[DELIVERY_HEADER.lower()] == retried[0]]
        assert first[1] == second[1]  # the same event, retried as it was
        for headers, body in fake.got:
            assert verify(SECRET, headers[SIGNATURE_HEADER.lower()], body, time.time())
            assert not verify(
                "another secret", headers[SIGNATURE_HEADER.lower()], body, time.time()
            )
            assert "lips" not in body.decode() and "sim-hook" not in body.decode()
        [(_, body)] = fake.of("escalation.opened")
        event = json.loads(body)
        assert event["type"] == "escalation.opened"
        data = event["data"]
        assert data["level"] == "emergency_ambulance" and data["priority"] == "emergency"
        assert data["test"] is True  # a simulator contact: receivers can leave it out
        triage = [json.loads(b)["data"] for _, b in fake.of("triage.decided")]
        assert triage[0]["level"] == "emergency_ambulance"
        ticket = bridge.store.get_escalation(data["escalation_id"])
        assert ticket is not None
        clinician = make_user(bridge.store, "dr_rao", "clinician", "a long passphrase 1")
        bridge.tickets.claim(ticket.id, clinician)
        bridge.tickets.resolve(ticket.id, clinician)
        app.state.web.dispatcher.wake()  # as the console does after a change
        wait_for(lambda: bool(fake.of("escalation.resolved")), timeout=30)
        rows = [r for r in bridge.store.outbox(status="sent") if r.outbound.channel == "webhook"]
    [claimed] = [e for e in fake.events() if e["type"] == "escalation.claimed"]
    assert claimed["data"]["escalation_id"] == ticket.id and claimed["data"]["wait_s"] >= 0
    [resolved] = [e for e in fake.events() if e["type"] == "escalation.resolved"]
    assert resolved["data"]["status"] == "resolved"
    assert {r.attempts for r in rows} >= {2}  # the first delivery took two attempts


def test_readings_triage_and_opt_out_go_only_to_subscribers_of_them_with_the_number_if_asked(
    tmp_config: Config, lib: Library, receiver: tuple[Receiver, str]
) -> None:
    fake, url = receiver
    fake.fail = 0
    config = _config(
        tmp_config, url, events=["reading.recorded", "contact.opted_out"], include_phone=True
    )
    env = {"EMR_HOOK_SECRET": SECRET}
    bridge = CareBridge(config, library=lib)
    clock = [datetime.now(UTC)]
    senders, _ = build_channels(config, env)
    dispatcher = build_dispatcher(config, bridge.store, {"webhook": senders["webhook"]})
    dispatcher.clock = lambda: clock[0]

    def say(text: str) -> None:
        now = datetime.now(UTC)
        bridge.handle(Inbound("sms", PHONE, text, now, f"{text}-{now.isoformat()}"))

    for text in ("hi", "1", "yes"):  # language, consent
        say(text)
    contact = bridge.store.find_contact("sms", PHONE)
    assert contact is not None
    bridge.start_checkin(contact.id, "diabetes_checkin", datetime.now(UTC))  # a check-in is due
    for text in ("none", "180", RED_FLAG, "STOP"):  # the glucose reading, then an emergency
        say(text)
    deliver(dispatcher, clock)
    kinds = [e["type"] for e in fake.events()]
    assert sorted(kinds) == ["contact.opted_out", "reading.recorded"]  # not the escalation
    reading = next(e for e in fake.events() if e["type"] == "reading.recorded")["data"]
    assert (reading["concept"], reading["value"], reading["unit"]) == (
        "glucose_mg_dl",
        180.0,
        "mg/dL",
    )
    assert reading["address"] == PHONE  # include_phone: true
    assert reading["contact_id"] == contact.id and reading["test"] is False


def test_a_subscription_without_its_secret_is_one_clear_error(
    tmp_config: Config, lib: Library
) -> None:
    config = _config(tmp_config, "http://127.0.0.1:9")
    with pytest.raises(
        ConfigError,
        match=r"events.subscriptions\[0\] \(emr\).secret_env: .*"
        "EMR_HOOK_SECRET is not set",
    ):
        build_channels(config, {})


def test_a_receiver_that_refuses_for_good_is_not_retried(tmp_config: Config, lib: Library) -> None:
    refusals: list[bytes] = []

    async def hook(request: Request) -> Response:
        refusals.append(await request.body())
        return Response(status_code=410)

    with served(Starlette(routes=[Route("/hook", hook, methods=["POST"])]), lifespan="off") as url:
        config = _config(tmp_config, url, events=["contact.opted_out"])
        env = {"EMR_HOOK_SECRET": SECRET}
        bridge = CareBridge(config, library=lib)
        senders, _ = build_channels(config, env)
        dispatcher = build_dispatcher(config, bridge.store, {"webhook": senders["webhook"]})
        for n, text in enumerate(("hi", "STOP")):
            bridge.handle(Inbound("sms", PHONE, text, datetime.now(UTC), f"p{n}"))
        clock = [datetime.now(UTC)]
        dispatcher.clock = lambda: clock[0]
        deliver(dispatcher, clock)
    assert len(refusals) == 1
    [row] = [r for r in bridge.store.outbox() if r.outbound.channel == "webhook"]
    assert row.status is OutboxStatus.FAILED and row.error == "http_410"
