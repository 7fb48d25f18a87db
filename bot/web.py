"""The ASGI app (`carebridge serve`): provider webhooks, status callbacks, /healthz and /readyz,
the browser simulator at `/`, and the in-process outbox dispatcher.

A composition root: may import bot, channels and nlu. Logs carry ids, never text or numbers.
Every webhook body is size-limited (413) and read only after the cheap checks (docs/channels.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

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
from bot.errors import ChannelError, StoreError
from bot.headers import EXCEPTION_HANDLERS, SecurityHeaders
from bot.messages import Inbound
from bot.readiness import Readiness, not_ready
from bot.scheduler import SweepScheduler
from channels.base import SignatureError
from channels.simulator import SimulatorChannel
from channels.telegram import (
    SECRET_HEADER,
    TelegramChannel,
    parse_telegram_payload,
    verify_telegram_secret,
)
from channels.twilio import parse_twilio_status, parse_twilio_webhook

TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
Handler = Callable[[Request], Awaitable[Response]]

# The largest body each endpoint reads; bigger ones get 413 without being read or parsed.
TWILIO_MAX_BODY = 64 * 1024  # a 1,600-character SMS is at most ~20 KB url-encoded
TELEGRAM_MAX_BODY = 256 * 1024  # a 4,096-character message with entities and a quoted reply
SIM_MAX_BODY = 16 * 1024


class BodyTooLarge(Exception):
    """A request body over the endpoint's limit (answer 413)."""


@dataclass
class WebState:
    """What the request handlers share."""

    config: Config
    bridge: CareBridge
    senders: dict[str, Sender]
    dispatcher: Dispatcher
    env: Mapping[str, str]
    disabled: dict[str, str] = field(default_factory=dict)
    readiness: Readiness | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def public_url(self, request: Request) -> str:
        """The URL the provider called, as configured (not as a proxy rewrote it)."""
        url = self.config.server.public_url.rstrip("/") + request.url.path
        return f"{url}?{request.url.query}" if request.url.query else url

    async def handle(self, inbound: Inbound) -> Response | None:
        """Process one message; a 503 response when the database cannot take it (the
        provider retries), else None."""
        if inbound.truncated:
            log.info("inbound text cut at the length cap channel=%s", inbound.channel)
        try:
            await run_in_threadpool(self.bridge.handle, inbound)
        except StoreError as exc:
            log.error("inbound channel=%s not stored: %s", inbound.channel, exc)
            return PlainTextResponse("database unavailable, retry later", status_code=503)
        self.dispatcher.wake()
        return None


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
    dispatcher_task: list[asyncio.Task[None]] = []
    metronome_ref: list[SweepScheduler] = []

    def dispatcher_running() -> bool:
        if not dispatcher_task or dispatcher_task[0].done():
            return False
        flag = getattr(state.dispatcher, "running", True)  # the dispatcher's own word, if any
        return bool(flag() if callable(flag) else flag)

    state.readiness = Readiness(
        store=bridge.store,
        library=bridge.library,
        interpreter=bridge.interpreter,
        languages=tuple(config.languages),
        dispatch=dispatch,
        schedule=schedule,
        dispatcher_running=dispatcher_running,
        scheduler_running=lambda: bool(metronome_ref) and metronome_ref[0].running,
    )
    readiness = state.readiness

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for name, why in disabled.items():
            log.warning("channel %s is off: %s", name, why)
        # build the NLU without delaying /healthz; /readyz says when it is done
        state.tasks.append(asyncio.create_task(run_in_threadpool(readiness.warm_nlu)))
        for name, sender in list(senders.items()):
            start = getattr(sender, "start", None)
            if start is None:
                continue
            try:
                await start()
            except ChannelError as exc:  # e.g. a bad TELEGRAM_BOT_TOKEN: the others carry on
                log.error("channel %s is off: it cannot start (%s)", name, exc)
                del senders[name]
                disabled[name] = f"cannot start: {exc}"
                with contextlib.suppress(Exception):
                    await sender.stop()  # type: ignore[attr-defined]
        if dispatch:
            task = asyncio.create_task(state.dispatcher.run_forever(stop=state.stop))
            dispatcher_task.append(task)
            state.tasks.append(task)
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
            metronome_ref.append(metronome)
            stoppers.append(metronome.shutdown)
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
        Route("/readyz", readyz, methods=["GET"]),
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
    """The process is alive and answering (nothing else is checked: see /readyz)."""
    state = _state(request)
    return JSONResponse({"status": "ok", "channels": sorted(state.senders)})


async def readyz(request: Request) -> Response:
    """200 when every part is ready, else 503; the body names each part's state."""
    readiness = _state(request).readiness
    assert readiness is not None
    checks = await readiness.check()
    waiting = not_ready(checks)
    body = {"status": "not ready" if waiting else "ready", "checks": checks, "not_ready": waiting}
    return JSONResponse(body, status_code=503 if waiting else 200)


# --- request bodies ---------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or `BodyTooLarge` as soon as it is known to be over `limit` bytes: from
    Content-Length before anything is read, else while it streams in."""
    if declared_too_large(request, limit):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> Response:
    return PlainTextResponse(f"request body over {limit} bytes", status_code=413)


def declared_too_large(request: Request, limit: int) -> bool:
    """Whether the Content-Length header alone says the body is over `limit` bytes."""
    declared = request.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > limit


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """A url-encoded form body (as Starlette decodes one: percent-escapes as UTF-8)."""
    body = await read_body(request, limit)
    return dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))


def load_json(body: bytes) -> Any:
    """Parsed JSON, or ValueError for anything that is not (bad UTF-8, too deeply nested)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


_STATUS_WORD = re.compile(r"[a-z_]{1,32}")


# --- Twilio -----------------------------------------------------------------------------------


def twilio_inbound(kind: str) -> Handler:
    async def endpoint(request: Request) -> Response:
        state = _state(request)
        if kind not in state.senders:
            return PlainTextResponse("not found", status_code=404)  # why: in the start-up log
        if declared_too_large(request, TWILIO_MAX_BODY):
            return too_large(TWILIO_MAX_BODY)
        signature = request.headers.get(TWILIO_SIGNATURE_HEADER)
        if not signature:  # nothing to verify against: do not read the body
            log.warning("twilio %s webhook rejected: signature_missing", kind)
            return PlainTextResponse("forbidden", status_code=403)
        try:
            form = await read_form(request, TWILIO_MAX_BODY)
        except BodyTooLarge:
            return too_large(TWILIO_MAX_BODY)
        try:
            inbound = parse_twilio_webhook(
                form,
                signature,
                state.public_url(request),
                state.env.get("TWILIO_AUTH_TOKEN", ""),
                kind,  # type: ignore[arg-type]
            )
        except SignatureError as exc:
            log.warning("twilio %s webhook rejected: %s", kind, exc.code)
            return PlainTextResponse("forbidden", status_code=403)
        except ChannelError as exc:
            return PlainTextResponse(f"bad request: {exc.code}", status_code=400)
        failed = await state.handle(inbound)
        return failed or Response(EMPTY_TWIML, media_type="application/xml")

    return endpoint


async def twilio_status(request: Request) -> Response:
    """A delivery status callback: every MessageStatus Twilio documents is recorded (or
    deliberately ignored); an unknown one is logged and answered 200 so Twilio stops."""
    state = _state(request)
    if declared_too_large(request, TWILIO_MAX_BODY):
        return too_large(TWILIO_MAX_BODY)
    signature = request.headers.get(TWILIO_SIGNATURE_HEADER)
    if not signature:
        return PlainTextResponse("forbidden", status_code=403)
    try:
        form = await read_form(request, TWILIO_MAX_BODY)
    except BodyTooLarge:
        return too_large(TWILIO_MAX_BODY)
    try:
        status = parse_twilio_status(
            form,
            signature,
            state.public_url(request),
            state.env.get("TWILIO_AUTH_TOKEN", ""),
        )
    except SignatureError:
        return PlainTextResponse("forbidden", status_code=403)
    except ChannelError as exc:
        return PlainTextResponse(f"bad request: {exc.code}", status_code=400)
    if not status.known:
        shown = status.status if _STATUS_WORD.fullmatch(status.status) else "(not a word)"
        log.warning("twilio status callback with unknown MessageStatus %s ignored", shown)
    elif status.outbox_status is not None:
        try:
            await run_in_threadpool(
                state.bridge.store.update_status_by_provider_id,
                status.message_sid,
                status.outbox_status,
                state.bridge.clock(),
                status.error_code,
            )
        except StoreError as exc:
            log.error("twilio status callback not stored: %s", exc)
            return PlainTextResponse("database unavailable, retry later", status_code=503)
    return Response(EMPTY_TWIML, media_type="application/xml")


# --- Telegram ------------------------------------------------------------------------------------


async def telegram_webhook(request: Request) -> Response:
    """An update: the secret header is checked before the body is read; an authenticated
    update that is malformed is logged and dropped with 200 (Telegram would resend it)."""
    state = _state(request)
    sender = state.senders.get("telegram")
    secret = state.env.get("TELEGRAM_WEBHOOK_SECRET", "")
    if not isinstance(sender, TelegramChannel) or not secret:
        log.warning("telegram webhook refused: TELEGRAM_BOT_TOKEN/TELEGRAM_WEBHOOK_SECRET unset")
        return PlainTextResponse("not found", status_code=404)
    try:
        verify_telegram_secret(request.headers.get(SECRET_HEADER), secret)
    except SignatureError as exc:
        log.warning("telegram webhook rejected: %s", exc.code)
        return PlainTextResponse("forbidden", status_code=403)
    try:
        body = await read_body(request, TELEGRAM_MAX_BODY)
    except BodyTooLarge:
        return too_large(TELEGRAM_MAX_BODY)
    try:
        payload = load_json(body)
        inbound = parse_telegram_payload(payload)
    except (ValueError, ChannelError) as exc:
        why = exc.code if isinstance(exc, ChannelError) else "not JSON"
        log.warning("telegram update dropped: %s", why)
        return JSONResponse({"ok": True})
    if await sender.on_callback(payload):  # a tick on a multi-select keyboard, not a message
        return JSONResponse({"ok": True})
    if inbound is not None:
        failed = await state.handle(inbound)
        if failed is not None:
            return failed
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
        body = load_json(await read_body(request, SIM_MAX_BODY))
    except BodyTooLarge:
        return too_large(SIM_MAX_BODY)
    except ValueError:
        return JSONResponse({"error": "body must be JSON"}, status_code=400)
    address = _sim_address(body.get("address") if isinstance(body, dict) else None)
    text = body.get("text") if isinstance(body, dict) else None
    if address is None or not isinstance(text, str) or not text.strip() or len(text) > 1000:
        return JSONResponse({"error": "need address (sim-...) and text"}, status_code=400)
    inbound = Inbound("web", address, text.strip(), state.bridge.clock(), f"sim-{uuid.uuid4()}")
    failed = await state.handle(inbound)
    return failed or JSONResponse({"ok": True})


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
