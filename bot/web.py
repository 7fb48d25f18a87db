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
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.api.service import ApiTokens, api_routes
from bot.app import CareBridge, build_broadcasts, build_channels, build_dispatcher
from bot.config import Config, is_loopback
from bot.console import console_routes
from bot.dispatch import Dispatcher, Sender
from bot.errors import ChannelError, StoreError
from bot.flow import Library
from bot.headers import EXCEPTION_HANDLERS, SecurityHeaders
from bot.live import Live, Said, spoken_variant
from bot.live_sim import SimCall, SimUssd
from bot.messages import Inbound
from bot.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.metrics import Metrics, TimedInterpreter
from bot.phones import inbound_address
from bot.readiness import Readiness, not_ready
from bot.scheduler import SweepScheduler
from bot.store import OutboxRow, OutboxStatus, Store
from bot.store.live import LiveOutbox
from channels.base import SignatureError
from channels.render import keyed_answer
from channels.simulator import SimulatorChannel, bot_message, patient_message
from channels.telegram import (
    SECRET_HEADER,
    TelegramChannel,
    parse_telegram_payload,
    verify_telegram_secret,
)
from channels.twilio import parse_twilio_status, parse_twilio_webhook
from channels.ussd import SECRET_HEADER as USSD_SECRET_HEADER
from channels.ussd import Pages, UssdRequest, key_lines, paginate, parse_ussd, verify_ussd
from channels.voice import (
    REPEAT,
    CallTurn,
    Question,
    SpeechVoice,
    answer_text,
    dial_twiml,
    gather_twiml,
    hangup_twiml,
    offer_twiml,
    parse_voice_webhook,
    prompt,
    speech_for,
    turn_id,
)

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
    metrics: Metrics | None = None
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
        await self.dispatcher.admit(inbound.channel)  # replies first when delivery is behind
        try:
            # on the store's thread, with the messages queued meanwhile (group commit)
            handled = await self.bridge.owner.run_grouped(self.bridge.handle_group, inbound)
        except StoreError as exc:
            log.error("inbound channel=%s not stored: %s", inbound.channel, exc)
            self._count(inbound.channel, "store_error")
            return PlainTextResponse("database unavailable, retry later", status_code=503)
        self._count(inbound.channel, "duplicate" if handled.duplicate else "handled")
        self.dispatcher.wake()
        return None

    def _count(self, channel: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.inbound.labels(channel, outcome).inc()


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
    # --- operations (issue 16, docs/operations.md): metrics fed by the parts they measure
    metrics = Metrics(bridge.store, bridge.clock)
    bridge.interpreter = TimedInterpreter(bridge.interpreter, metrics.nlu)
    bridge.outgoing.observers.append(metrics.observe_event)
    counted = metrics.senders(senders)  # a live view: channels that fail to start drop out
    state = WebState(
        config,
        bridge,
        senders,
        build_dispatcher(config, bridge.store, counted, owner=bridge.owner),
        env,
        disabled,
        metrics=metrics,
    )

    off = {**disabled}  # what broadcasts cannot use (the simulator too, unless it is here)
    if "web" not in senders:
        off.setdefault("web", "the simulator is not running in this process")
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
            await bridge.owner.run(bridge.recover_inbound)  # what a crash left half-handled
            task = asyncio.create_task(state.dispatcher.run_forever(stop=state.stop))
            dispatcher_task.append(task)
            state.tasks.append(task)
        if schedule:
            loop = asyncio.get_running_loop()
            metronome = SweepScheduler(
                bridge,
                also=(
                    metrics.timed("deadlines", bridge.tickets.sweep_deadlines),
                    metrics.timed(
                        "broadcasts",
                        build_broadcasts(config, bridge.store, bridge.clock, off).sweep,
                    ),
                    metrics.timed("retention", bridge.privacy.sweep),  # docs/security.md
                ),
                on_sweep=lambda report: (
                    report.outbox_ids and loop.call_soon_threadsafe(state.dispatcher.wake)
                ),
            )
            metronome.sweeper.sweep = metrics.timed(  # type: ignore[method-assign,assignment]
                "checkins", metronome.sweeper.sweep
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
        Route("/sim/api/live", sim_live, methods=["POST"]),
        Route("/sim/live.js", sim_live_js, methods=["GET"]),
        Route("/webhooks/twilio/sms", twilio_inbound("sms"), methods=["POST"]),
        Route("/webhooks/twilio/whatsapp", twilio_inbound("whatsapp"), methods=["POST"]),
        Route("/webhooks/twilio/status", twilio_status, methods=["POST"]),
        Route("/webhooks/telegram", telegram_webhook, methods=["POST"]),
        *live_routes(),  # voice calls and USSD (issue 17)
    ]
    console = console_routes(bridge, wake=state.dispatcher.wake, env=env, off=off)  # /console
    # --- issue 16: the API for other systems (/api/v1) and /metrics (docs/api.md, operations.md)
    issue16 = api_routes(bridge)
    if config.metrics.enabled:
        issue16.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    app = Starlette(
        routes=[*routes, *issue16, *console],
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders)],  # CSP, nosniff, DENY on every response
        exception_handlers=EXCEPTION_HANDLERS,  # error pages that name nothing internal
    )
    app.state.web = state
    app.state.sim_live = OrderedDict()
    app.state.sim_pages = Pages()
    app.state.simulator = SimulatorGate(parse_many(config.simulator.rate_limit))
    app.state.ussd_pages = Pages()
    if "web" in senders and not is_loopback(config.server.host):
        log.warning(
            "the browser simulator is on at %s (simulator.enabled: true): anyone who can reach "
            "it can talk to the bot as a test contact",
            config.server.host,
        )
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


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format; who may read it is `metrics.access` (docs/operations.md)."""
    state = _state(request)
    assert state.metrics is not None
    access = state.config.metrics.access
    client = request.client.host if request.client else ""
    if access == "token" or (access == "loopback" and not is_loopback(client)):
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        tokens = ApiTokens(state.bridge.store, state.bridge.clock)
        token = None
        if scheme.lower() == "bearer" and value:
            token = await run_in_threadpool(tokens.check, value.strip())
        if token is None or "metrics:read" not in token.scopes:
            return PlainTextResponse(
                f"send an API token with the metrics:read scope (metrics.access is {access})",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
    body = await run_in_threadpool(state.metrics.render)
    return Response(body, media_type=METRICS_CONTENT_TYPE)


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
            state._count(kind, "rejected")
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
            state._count(kind, "rejected")
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
        state._count("telegram", "rejected")
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
# On only when the server binds to loopback, or `simulator.enabled: true` (Config.simulator_on);
# otherwise its page and API answer 404. Sends are rate-limited per client address.


@dataclass
class SimulatorGate:
    """Per-client rate limits on the simulator's API (`simulator.rate_limit`, `limits`)."""

    items: list[RateLimitItem]
    limiter: MovingWindowRateLimiter = field(
        default_factory=lambda: MovingWindowRateLimiter(MemoryStorage())
    )

    def allow(self, client: str) -> bool:
        """Count one message from `client`; False when any of its limits is used up."""
        if not all(self.limiter.test(item, "sim", client) for item in self.items):
            return False
        return all([self.limiter.hit(item, "sim", client) for item in self.items])


def _simulator_on(request: Request) -> bool:
    return isinstance(_state(request).senders.get("web"), SimulatorChannel)


def _not_found() -> Response:
    return PlainTextResponse("not found", status_code=404)


async def simulator_page(request: Request) -> Response:
    if not _simulator_on(request):
        return _not_found()
    html = (STATIC / "simulator.html").read_text(encoding="utf-8")
    return HTMLResponse(html.replace("{{service_name}}", _state(request).config.service_name))


def _sim_address(raw: Any) -> str | None:
    if isinstance(raw, str) and raw.startswith("sim-") and 8 <= len(raw) <= 64 and raw.isascii():
        return raw
    return None


async def _sim_body(request: Request) -> Any:
    """The JSON body of a simulator API call, or the Response that refuses it (simulator off,
    over `simulator.rate_limit`, too large, not JSON)."""
    if not _simulator_on(request):
        return _not_found()
    gate: SimulatorGate = request.app.state.simulator
    if not gate.allow(request.client.host if request.client else "-"):
        log.info("simulator: client over simulator.rate_limit")
        return JSONResponse(
            {"error": "too many messages: wait a minute and try again"},
            status_code=429,
            headers={"Retry-After": "60"},
        )
    try:
        return load_json(await read_body(request, SIM_MAX_BODY))
    except BodyTooLarge:
        return too_large(SIM_MAX_BODY)
    except ValueError:
        return JSONResponse({"error": "body must be JSON"}, status_code=400)


async def sim_send(request: Request) -> Response:
    state = _state(request)
    body = await _sim_body(request)
    if isinstance(body, Response):
        return body
    address = _sim_address(body.get("address") if isinstance(body, dict) else None)
    text = body.get("text") if isinstance(body, dict) else None
    if address is None or not isinstance(text, str) or not text.strip() or len(text) > 1000:
        return JSONResponse({"error": "need address (sim-...) and text"}, status_code=400)
    inbound = Inbound("web", address, text.strip(), state.bridge.clock(), f"sim-{uuid.uuid4()}")
    failed = await state.handle(inbound)
    return failed or JSONResponse({"ok": True})


_SHOWN = (OutboxStatus.SENT, OutboxStatus.DELIVERED)
_PENDING = (OutboxStatus.QUEUED, OutboxStatus.SENDING, OutboxStatus.HELD)


def sim_history(
    store: Store, address: str, style: str, after_in: int = 0, after_out: int = 0
) -> dict[str, Any]:
    """The visitor's conversation after a cursor: their own messages (transcript lines) and
    what was sent to them (outbox rows the dispatcher sent), oldest first, each with a stable
    key. The `out` cursor stays below any row still waiting, so a row sent out of order is
    still returned (the page skips keys it has shown)."""
    contact = store.find_contact("web", address)
    if contact is None:
        return {"messages": [], "cursor": {"in": after_in, "out": after_out}}
    mine = [e for e in store.transcript(contact.id, limit=500) if e.direction == "in"]
    rows = [r for r in store.outbox(contact.id) if r.outbound.channel == "web"]
    sent = [r for r in rows if r.status in _SHOWN]
    timeline: list[tuple[datetime, int, dict[str, Any]]] = []
    last_out: str | None = None  # the key of the latest bot message so far
    events = sorted(
        [(e.at, 0, e.id, e) for e in mine] + [(r.created_at, 1, r.id, r) for r in sent],
        key=lambda item: item[:3],
    )
    for at, kind, row_id, item in events:
        if isinstance(item, OutboxRow):
            last_out = f"out-{row_id}"
            if row_id > after_out:
                timeline.append((at, kind, bot_message(last_out, item.outbound, style)))
        elif row_id > after_in:
            timeline.append((at, kind, patient_message(f"in-{row_id}", item.text, last_out)))
    waiting = [r.id for r in rows if r.status in _PENDING]
    out_cursor = max([after_out, *(r.id for r in sent)])
    if waiting:
        out_cursor = min(out_cursor, min(waiting) - 1)
    return {
        "messages": [m for _, _, m in timeline],
        "cursor": {"in": max([after_in, *(e.id for e in mine)]), "out": max(out_cursor, 0)},
    }


def _cursor(raw: str | None) -> int:
    try:
        return max(0, int(raw or "0"))
    except ValueError:
        return 0


async def sim_messages(request: Request) -> Response:
    state = _state(request)
    if not _simulator_on(request):
        return _not_found()
    address = _sim_address(request.query_params.get("address"))
    if address is None:
        return JSONResponse({"error": "need address (sim-...)"}, status_code=400)
    params = request.query_params
    history = await run_in_threadpool(
        sim_history,
        state.bridge.store,
        address,
        params.get("style", "sms"),
        _cursor(params.get("in")),
        _cursor(params.get("out")),
    )
    return JSONResponse(history)


# The simulator's "Voice call" and "USSD" styles: the webhooks' own steps (bot.live_sim, as
# `carebridge chat --channel voice|ussd`) on the visitor's test contact (channel `web`); the
# call or session state is kept here, as a provider would (few, short-lived, oldest dropped).
SIM_LIVE_MAX = 1000


def _sim_live(request: Request) -> OrderedDict[tuple[str, str], SimCall | SimUssd]:
    return cast(OrderedDict[tuple[str, str], SimCall | SimUssd], request.app.state.sim_live)


async def sim_live(request: Request) -> Response:
    """One step of a simulated call or USSD session: {address, style: voice|ussd, action:
    dial|keys|hangup, text}. Voice answers the script lines; USSD the screen shown."""
    state = _state(request)
    body = await _sim_body(request)
    if isinstance(body, Response):
        return body
    body = body if isinstance(body, dict) else {}
    address = _sim_address(body.get("address"))
    style, action, text = body.get("style"), body.get("action"), body.get("text", "")
    keys = isinstance(text, str) and 0 < len(text.strip()) <= 40
    if (
        address is None
        or style not in ("voice", "ussd")
        or action not in ("dial", "keys", "hangup")
        or (action == "keys" and not keys)
    ):
        return JSONResponse(
            {"error": "need address (sim-...), style voice|ussd, action dial|keys|hangup, keys"},
            status_code=400,
        )
    sessions = _sim_live(request)
    key = (str(style), address)
    sim = sessions.get(key)
    if sim is None:
        live = Live(state.bridge, "web")  # the simulator's contact: a test contact
        if style == "voice":
            sim = SimCall(live, state.config, address)
        else:
            sim = SimUssd(live, state.config, address, request.app.state.sim_pages)
        sessions[key] = sim
    sessions.move_to_end(key)
    while len(sessions) > SIM_LIVE_MAX:
        sessions.popitem(last=False)

    current: SimCall | SimUssd = sim

    def step() -> tuple[list[str], str]:
        if action == "hangup":
            current.open = False
            return (["HANG UP (you)"], "")
        redial = action == "dial" or not current.open
        shown = current.dial() if redial else current.press(str(text).strip())
        return (shown, "") if isinstance(shown, list) else ([], shown)

    try:
        lines, answer = await state.bridge.owner.run(step)
    except StoreError as exc:
        log.error("simulated %s step not stored: %s", style, exc)
        return JSONResponse({"error": "database unavailable, retry later"}, status_code=503)
    state.dispatcher.wake()
    if style == "voice":
        return JSONResponse({"lines": lines, "open": current.open})
    kind, _, screen = answer.partition(" ")
    shown = {"kind": kind, "screen": screen, "chars": len(screen), "open": current.open}
    return JSONResponse(shown)


async def sim_live_js(request: Request) -> Response:
    if not _simulator_on(request):
        return _not_found()
    js = (STATIC / "simulator_live.js").read_text(encoding="utf-8")
    return Response(js, media_type="text/javascript")


# --- voice calls and USSD (issue 17; docs/channels.md "Voice and USSD") --------------------------
# The provider waits for the answer. Each request handles the patient's keys in one transaction
# as any message, then claims the replies from the outbox and marks them sent (bot.live), all on
# the store's owner thread; the TwiML / CON-END screen says exactly those rows.

VOICE_PATH = "/webhooks/twilio/voice"
USSD_PATH = "/webhooks/ussd"
USSD_MAX_BODY = 16 * 1024
LANGUAGE_CONCEPT = "preferred_language"  # the language menu: each option in its own voice
# A placed call's final CallStatus -> the status of the outbox rows it was placed for.
CALL_OUTCOME = {
    "completed": "delivered",  # answered: the webhook said them
    "busy": "undelivered",
    "no-answer": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}
_ENDED_CALL = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


def live_routes() -> list[Route]:
    return [
        Route(VOICE_PATH, twilio_voice, methods=["POST"]),
        Route(USSD_PATH, ussd_webhook, methods=["POST"]),
    ]


def _question(expecting: Any) -> Question | None:
    if expecting is None:
        return None
    languages = (
        tuple(o.value for o in expecting.options) if expecting.concept == LANGUAGE_CONCEPT else ()
    )
    return Question(
        str(expecting.type), len(expecting.options), bool(expecting.allow_unknown), languages
    )


def _small_int(raw: str | None, cap: int = 10_000) -> int:
    return min(max(_cursor(raw), 0), cap)


def _speaker(library: Library) -> Callable[[str, str], str]:
    return lambda text, language: spoken_variant(library, text, language)


def _voices(config: Config) -> dict[str, SpeechVoice]:
    return {k: SpeechVoice(v.language, v.voice) for k, v in config.voice.voices.items()}


def _voice_for(config: Config, language: str) -> SpeechVoice:
    voices = config.voice.voices
    chosen = voices.get(language) or voices.get("en")
    if chosen is None:
        return SpeechVoice("en-US")
    return SpeechVoice(chosen.language, chosen.voice)


def voice_turn(live: Live, config: Config, turn: CallTurn, step: str, n: int, quiet: int) -> str:
    """One request of a call, start to end (on the store's owner thread under `serve`; the
    terminal simulator calls it directly): handle what was keyed or said, claim what to say,
    and the TwiML that says it. `step`: "" (answered, or keys), "quiet" (the `<Gather>` heard
    nothing; `quiet` times in a row), "connect" (the answer to the offer to connect)."""
    number = config.voice.connect_number or config.emergency.number
    address = inbound_address("voice", turn.address, config.phones.default_region)
    pid = turn_id(turn.call_sid, n)
    speak = _speaker(live.bridge.library)

    def line(key: str) -> Callable[[str], str]:
        return lambda language: prompt(key, language, number=number)

    if step == "connect" and turn.digits == "1":
        said = live.say(address, pid, line("connecting"))
        lines = speech_for(said.rows, None, said.language, speak)
        return dial_twiml(lines, _voice_for(config, said.language), number)
    if step == "connect":  # the offer declined (another key, or silence): end the call
        said = live.say(address, pid, line("declined"))
        lines = speech_for(said.rows, None, said.language, speak)
        return hangup_twiml(lines, _voice_for(config, said.language))
    if step == "quiet" and quiet > config.voice.silent_repeats:
        said = live.say(address, pid, line("goodbye"))
        lines = speech_for(said.rows, None, said.language, speak)
        return hangup_twiml(lines, _voice_for(config, said.language))
    if step == "quiet" or (turn.digits or "").rstrip("#") == REPEAT:
        said = live.repeat(address, pid)
    elif n == 0 and turn.digits is None and turn.speech is None:
        placed_by = turn.call_sid if turn.outbound else None
        said = live.begin(address, pid, line("resume"), placed_by)
    else:
        text = answer_text(turn, _question(live.expecting(address)))
        if text is None:
            said = live.repeat(address, pid)
        else:
            said = live.answer(address, text, pid, line("connect_offer"))
    if not said.rows:  # a human has the conversation, or the number opted out: never silence
        said = live.say(address, pid, line("nothing_new"))
    return _call_twiml(config, speak, said, n + 1, quiet + 1 if step == "quiet" else 1)


async def twilio_voice(request: Request) -> Response:
    """A call's webhook: answered (turn 0), keys or speech gathered, silence, or the answer to
    the emergency offer to connect. Signed like SMS webhooks; answers TwiML."""
    state = _state(request)
    token = state.env.get("TWILIO_AUTH_TOKEN", "")
    if not state.config.channels.voice.enabled or not token:
        return PlainTextResponse("not found", status_code=404)
    if declared_too_large(request, TWILIO_MAX_BODY):
        return too_large(TWILIO_MAX_BODY)
    signature = request.headers.get(TWILIO_SIGNATURE_HEADER)
    if not signature:
        log.warning("twilio voice webhook rejected: signature_missing")
        return PlainTextResponse("forbidden", status_code=403)
    try:
        form = await read_form(request, TWILIO_MAX_BODY)
    except BodyTooLarge:
        return too_large(TWILIO_MAX_BODY)
    try:
        turn = parse_voice_webhook(form, signature, state.public_url(request), token)
    except SignatureError as exc:
        log.warning("twilio voice webhook rejected: %s", exc.code)
        return PlainTextResponse("forbidden", status_code=403)
    except ChannelError as exc:
        return PlainTextResponse(f"bad request: {exc.code}", status_code=400)
    if turn.status in _ENDED_CALL:  # a status report, not a caller waiting
        outcome = CALL_OUTCOME.get(turn.status)
        if outcome is not None:  # the rows a call we placed was for: heard, or not
            try:
                store = cast(LiveOutbox, state.bridge.store)
                now = state.bridge.clock()
                await state.bridge.owner.run(
                    store.finish_call, turn.call_sid, outcome, now, turn.status
                )
            except StoreError as exc:
                log.error("voice call status not stored: %s", exc)
                return PlainTextResponse("database unavailable, retry later", status_code=503)
        return Response(EMPTY_TWIML, media_type="application/xml")
    params = request.query_params
    step, n = params.get("step", ""), _small_int(params.get("turn"))
    quiet = _small_int(params.get("quiet"), 100)
    live = Live(state.bridge, "voice")
    try:
        xml = await state.bridge.owner.run(voice_turn, live, state.config, turn, step, n, quiet)
    except StoreError as exc:
        log.error("voice turn not stored: %s", exc)
        return PlainTextResponse("database unavailable, retry later", status_code=503)
    return Response(xml, media_type="application/xml")


def _call_twiml(
    config: Config, speak: Callable[[str, str], str], said: Said, next_turn: int, next_quiet: int
) -> str:
    cfg = config.voice
    base = config.server.public_url.rstrip("/") + VOICE_PATH
    voice = _voice_for(config, said.language)
    question = None if said.emergency else _question(said.expecting)
    lines = speech_for(said.rows, question, said.language, speak)
    if said.emergency:
        return offer_twiml(
            lines, voice, f"{base}?turn={next_turn}&step=connect", cfg.gather_timeout_s
        )
    if said.expecting is None:
        return hangup_twiml(lines, voice)
    return gather_twiml(
        lines,
        voice,
        f"{base}?turn={next_turn}",
        f"{base}?turn={next_turn}&step=quiet&quiet={next_quiet}",
        question=question,
        speech=cfg.speech,
        timeout_s=cfg.gather_timeout_s,
        voices=_voices(config),
    )


def ussd_step(live: Live, config: Config, req: UssdRequest, pages: Pages) -> str:
    """One step of a USSD session, start to end (on the store's owner thread under `serve`;
    the terminal simulator calls it directly): page within the screen shown, or handle the
    keys and claim the next screen; the `CON ...`/`END ...` answer."""
    moved = pages.navigate(req.session_id, req.latest)
    if moved is not None:
        return moved
    address = inbound_address("ussd", req.address, config.phones.default_region)
    pid = f"{req.session_id}:{len(req.steps)}"
    if req.latest is None:
        said = live.begin(address, pid, lambda language: prompt("resume", language))
    else:
        question = _question(live.expecting(address))
        kind, count = (question.type, question.options) if question else (None, 0)
        text = keyed_answer(req.latest, kind, count, separator="#")
        said = live.answer(address, text, pid) if text else live.repeat(address, pid)
    if not said.rows:  # a human has the conversation, or the number opted out: never blank
        said = live.say(address, pid, lambda language: prompt("nothing_new", language))
    expecting = _question(said.expecting)
    extra = (
        key_lines(expecting.type, expecting.allow_unknown, said.language)
        if expecting is not None and said.rows
        else []
    )
    screens = paginate(said.rows, said.language, config.ussd.max_chars, extra)
    return pages.show(req.session_id, screens, end=said.expecting is None)


async def ussd_webhook(request: Request) -> Response:
    """One step of a USSD session (Africa's Talking style form); answers `CON ...`/`END ...`.
    The aggregator signs nothing: a shared secret (USSD_SHARED_SECRET, sent in the
    X-Carebridge-Ussd-Secret header or as `?key=` in the callback URL) and/or
    `ussd.allowed_networks` authenticate it."""
    state = _state(request)
    if not state.config.channels.ussd.enabled:
        return PlainTextResponse("not found", status_code=404)
    given = request.headers.get(USSD_SECRET_HEADER) or request.query_params.get("key")
    try:
        verify_ussd(
            given,
            state.env.get("USSD_SHARED_SECRET", ""),
            request.client.host if request.client else None,
            state.config.ussd.allowed_networks,
        )
    except SignatureError as exc:
        log.warning("ussd request rejected: %s", exc.code)
        return PlainTextResponse("forbidden", status_code=403)
    try:
        req = parse_ussd(await read_form(request, USSD_MAX_BODY))
    except BodyTooLarge:
        return too_large(USSD_MAX_BODY)
    except ChannelError as exc:
        return PlainTextResponse(f"bad request: {exc.code}", status_code=400)
    pages: Pages = request.app.state.ussd_pages
    live = Live(state.bridge, "ussd")
    try:
        answer = await state.bridge.owner.run(ussd_step, live, state.config, req, pages)
    except StoreError as exc:
        log.error("ussd step not stored: %s", exc)
        return PlainTextResponse("database unavailable, retry later", status_code=503)
    return PlainTextResponse(answer)
