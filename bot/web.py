"""The ASGI app (`carebridge serve`): provider webhooks, status callbacks, /healthz, the browser
simulator at `/`, and the in-process outbox dispatcher.

A composition root: may import bot, channels and nlu. Logs carry ids, never text or numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.app import CareBridge, build_broadcasts, build_channels, build_dispatcher
from bot.config import Config
from bot.console import console_routes
from bot.dispatch import Dispatcher, Sender
from bot.errors import ChannelError
from bot.headers import EXCEPTION_HANDLERS, SecurityHeaders
from bot.messages import Inbound
from bot.scheduler import SweepScheduler
from channels.base import SignatureError
from channels.simulator import SimulatorChannel
from channels.telegram import TelegramChannel, parse_telegram_update
from channels.twilio import parse_twilio_status, parse_twilio_webhook

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class WebState:
    """What the request handlers share."""

    config: Config
    bridge: CareBridge
    senders: dict[str, Sender]
    dispatcher: Dispatcher
    env: Mapping[str, str]
    disabled: dict[str, str] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def public_url(self, request: Request) -> str:
        """The URL the provider called, as configured (not as a proxy rewrote it)."""
        url = self.config.server.public_url.rstrip("/") + request.url.path
        return f"{url}?{request.url.query}" if request.url.query else url

    async def handle(self, inbound: Inbound) -> None:
        await run_in_threadpool(self.bridge.handle, inbound)
        self.dispatcher.wake()


def create_app(
    config: Config,
    *,
    bridge: CareBridge | None = None,
    env: Mapping[str, str] | None = None,
    senders: dict[str, Sender] | None = None,
    dispatch: bool = True,
    schedule: bool = True,
) -> Starlette:
    """Build the ASGI app; `dispatch=False` / `schedule=False` leave the outbox and the
    check-in and deadline sweeps to a separate worker."""
    env = os.environ if env is None else env
    bridge = bridge or CareBridge(config)
    disabled: dict[str, str] = {}
    if senders is None:
        senders, disabled = build_channels(config, env)
    state = WebState(
        config, bridge, senders, build_dispatcher(config, bridge.store, senders), env, disabled
    )

    stoppers: list[Callable[[], object]] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for name, why in disabled.items():
            log.warning("channel %s is off: %s", name, why)
        for sender in senders.values():
            start = getattr(sender, "start", None)
            if start is not None:
                await start()
        if dispatch:
            state.tasks.append(asyncio.create_task(state.dispatcher.run_forever(stop=state.stop)))
        if schedule:
            loop = asyncio.get_running_loop()
            metronome = SweepScheduler(
                bridge,
                also=(
                    bridge.tickets.sweep_deadlines,
                    build_broadcasts(config, bridge.store, bridge.clock).sweep,
                    bridge.privacy.sweep,  # retention (docs/security.md)
                ),
                on_sweep=lambda report: (
                    report.outbox_ids and loop.call_soon_threadsafe(state.dispatcher.wake)
                ),
            )
            metronome.start()
            stoppers.append(metronome.shutdown)
        warm = getattr(bridge.interpreter, "warm", None)
        if warm is not None:  # load or train the classifier without delaying /healthz
            state.tasks.append(asyncio.create_task(run_in_threadpool(warm, "en")))
        try:
            yield
        finally:
            for stopper in stoppers:
                stopper()
            state.stop.set()
            for task in state.tasks:
                with contextlib.suppress(Exception):
                    await task
            for sender in senders.values():
                stop = getattr(sender, "stop", None)
                if stop is not None:
                    await stop()
            bridge.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/", simulator_page, methods=["GET"]),
        Route("/sim/api/send", sim_send, methods=["POST"]),
        Route("/sim/api/messages", sim_messages, methods=["GET"]),
        Route("/webhooks/twilio/sms", twilio_inbound("sms"), methods=["POST"]),
        Route("/webhooks/twilio/whatsapp", twilio_inbound("whatsapp"), methods=["POST"]),
        Route("/webhooks/twilio/status", twilio_status, methods=["POST"]),
        Route("/webhooks/telegram", telegram_webhook, methods=["POST"]),
    ]
    console = console_routes(bridge, wake=state.dispatcher.wake, env=env)  # /console, /api
    app = Starlette(
        routes=[*routes, *console],
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders)],  # CSP, nosniff, DENY on every response
        exception_handlers=EXCEPTION_HANDLERS,  # error pages that name nothing internal
    )
    app.state.web = state
    return app


def _state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


async def healthz(request: Request) -> Response:
    state = _state(request)
    return JSONResponse({"status": "ok", "channels": sorted(state.senders)})


# --- Twilio -----------------------------------------------------------------------------------


def twilio_inbound(kind: str) -> Handler:
    async def endpoint(request: Request) -> Response:
        state = _state(request)
        if kind not in state.senders:
            return PlainTextResponse("not found", status_code=404)  # why: in the start-up log
        form = {k: str(v) for k, v in (await request.form()).items()}
        try:
            inbound = parse_twilio_webhook(
                form,
                request.headers.get("X-Twilio-Signature"),
                state.public_url(request),
                state.env.get("TWILIO_AUTH_TOKEN", ""),
                kind,  # type: ignore[arg-type]
            )
        except SignatureError as exc:
            log.warning("twilio %s webhook rejected: %s", kind, exc.code)
            return PlainTextResponse("forbidden", status_code=403)
        except ChannelError as exc:
            return PlainTextResponse(f"bad request: {exc.code}", status_code=400)
        await state.handle(inbound)
        return Response(EMPTY_TWIML, media_type="application/xml")

    return endpoint


async def twilio_status(request: Request) -> Response:
    state = _state(request)
    form = {k: str(v) for k, v in (await request.form()).items()}
    try:
        status = parse_twilio_status(
            form,
            request.headers.get("X-Twilio-Signature"),
            state.public_url(request),
            state.env.get("TWILIO_AUTH_TOKEN", ""),
        )
    except SignatureError:
        return PlainTextResponse("forbidden", status_code=403)
    except ChannelError as exc:
        return PlainTextResponse(f"bad request: {exc.code}", status_code=400)
    await run_in_threadpool(
        state.bridge.store.update_status_by_provider_id,
        status.message_sid,
        status.status,
        state.bridge.clock(),
        status.error_code,
    )
    return Response(EMPTY_TWIML, media_type="application/xml")


# --- Telegram ------------------------------------------------------------------------------------


async def telegram_webhook(request: Request) -> Response:
    state = _state(request)
    sender = state.senders.get("telegram")
    if not isinstance(sender, TelegramChannel) or not state.env.get("TELEGRAM_WEBHOOK_SECRET"):
        log.warning("telegram webhook refused: TELEGRAM_BOT_TOKEN/TELEGRAM_WEBHOOK_SECRET unset")
        return PlainTextResponse("not found", status_code=404)
    try:
        payload = await request.json()
    except ValueError:
        return PlainTextResponse("bad request: not JSON", status_code=400)
    try:
        inbound = parse_telegram_update(
            payload,
            request.headers.get("X-Telegram-Bot-Api-Secret-Token"),
            state.env.get("TELEGRAM_WEBHOOK_SECRET", ""),
        )
    except SignatureError:
        return PlainTextResponse("forbidden", status_code=403)
    except ChannelError as exc:
        return PlainTextResponse(f"bad request: {exc.code}", status_code=400)
    if await sender.on_callback(payload):  # a tick on a multi-select keyboard, not a message
        return JSONResponse({"ok": True})
    if inbound is not None:
        await state.handle(inbound)
    return JSONResponse({"ok": True})


# --- browser simulator ---------------------------------------------------------------------------


async def simulator_page(request: Request) -> Response:
    html = (STATIC / "simulator.html").read_text(encoding="utf-8")
    return HTMLResponse(html.replace("{{service_name}}", _state(request).config.service_name))


def _sim_address(raw: Any) -> str | None:
    if isinstance(raw, str) and raw.startswith("sim-") and 8 <= len(raw) <= 64 and raw.isascii():
        return raw
    return None


async def sim_send(request: Request) -> Response:
    state = _state(request)
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "body must be JSON"}, status_code=400)
    address = _sim_address(body.get("address") if isinstance(body, dict) else None)
    text = body.get("text") if isinstance(body, dict) else None
    if address is None or not isinstance(text, str) or not text.strip() or len(text) > 1000:
        return JSONResponse({"error": "need address (sim-...) and text"}, status_code=400)
    inbound = Inbound("web", address, text.strip(), state.bridge.clock(), f"sim-{uuid.uuid4()}")
    await state.handle(inbound)
    return JSONResponse({"ok": True})


async def sim_messages(request: Request) -> Response:
    state = _state(request)
    sim = state.senders.get("web")
    address = _sim_address(request.query_params.get("address"))
    if not isinstance(sim, SimulatorChannel) or address is None:
        return JSONResponse({"error": "need address (sim-...)"}, status_code=400)
    try:
        after = int(request.query_params.get("after", "0"))
    except ValueError:
        after = 0
    style = request.query_params.get("style", "sms")
    return JSONResponse({"messages": [m.as_json(style) for m in sim.messages(address, after)]})
