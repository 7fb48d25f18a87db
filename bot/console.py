"""The clinician console (docs/console.md): pages under /console and a JSON API under /api; every
route checks log-in, role and (for changes) CSRF, and audits each view or change of patient data.
Imports bot (app, auth, escalation, store, console_view, and the capability folders' console
modules: api, broadcasts, dashboards, io), starlette and jinja2; never channels. The broadcast
pages live in bot.broadcasts.console, the dashboards in bot.dashboards.console, import and export
in bot.io.console, the API token page in bot.api.console.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from bot import console_view as view
from bot.api import console as console_tokens
from bot.app import CareBridge, build_broadcasts
from bot.auth import (
    DEVICE_COOKIE,
    DEVICE_DAYS,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    WRONG,
    Auth,
    AuthError,
    Login,
    LoginAttempt,
    LoginThrottle,
    LowPriorityVerifier,
    ensure_admin,
)
from bot.broadcasts import console as console_broadcasts
from bot.broadcasts.service import Broadcasts
from bot.dashboards import console as console_dashboards
from bot.escalation import PRIORITY_RANK, Priority, TicketError, Tickets, priority_for
from bot.io import console as console_io
from bot.store import EscalationRow, EscalationStatus, Role, Store, UserRow, forgotten_address

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
POLL_HEADER = "x-carebridge-poll"  # sent by console.js with its background requests
STATIC_FILES = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "dashboards.css": "text/css",  # issue 16: the dashboards (bot.dashboards.console)
}
CLINICIAN = frozenset({Role.CLINICIAN})
ADMIN = frozenset({Role.ADMIN})
ANY_ROLE = frozenset(Role)
PUBLIC = None
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# (method, path) -> roles allowed: None = public, ANY_ROLE = anyone logged in.
ROUTE_ROLES: dict[tuple[str, str], frozenset[Role] | None] = {}


@dataclass
class Ctx:
    """One request as a handler sees it (handlers are synchronous and run in a thread)."""

    request: Request
    login: Login
    form: dict[str, str]
    console: Console
    wake: bool = False  # the outbox got messages: wake the dispatcher
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # name -> (filename, data)

    @property
    def user(self) -> UserRow:
        return self.login.user

    def param(self, name: str) -> int:
        value: int = self.request.path_params[name]
        return value


Handler = Callable[[Ctx], Response]


@dataclass
class Console:
    """What the console's handlers share."""

    bridge: CareBridge
    auth: Auth
    tickets: Tickets
    templates: Jinja2Templates
    labels: dict[str, str]
    zone: ZoneInfo
    wake: Callable[[], None]
    secure_cookies: bool
    broadcasts: Broadcasts
    throttle: LoginThrottle
    queue_seen: dict[int, str] = field(default_factory=dict)  # log-in id -> last audited queue
    hash_slots: anyio.CapacityLimiter | None = None  # made in the event loop at first log-in
    answer_s: float = 0.5  # a failed log-in answers after at least this long ...
    typical_s: float = 0.0  # ... or after as long as a checked one takes lately
    throttled_seen: dict[str, float] = field(default_factory=dict)  # address -> last audited

    @property
    def store(self) -> Store:
        return self.bridge.store

    def now(self) -> datetime:
        return self.bridge.clock()

    def audit(self, ctx: Ctx, action: str, **detail: Any) -> None:
        contact_id = detail.pop("contact_id", None)
        escalation_id = detail.pop("escalation_id", None)
        self.store.add_audit(
            self.now(),
            ctx.user.id,
            ctx.user.username,
            action,
            contact_id=contact_id,
            escalation_id=escalation_id,
            detail=detail,
        )

    def render(
        self, ctx: Ctx | None, request: Request, name: str, status: int = 200, **data: Any
    ) -> Response:
        context = {
            "login": ctx.login if ctx else None,
            "service_name": self.bridge.config.service_name,
            "poll_ms": int(self.bridge.config.console.poll_seconds * 1000),
            "Role": Role,
            "view": view,
            "labels": self.labels,
            "t": lambda when: view.local_time(when, self.zone),
            "ago": lambda when: view.duration((self.now() - when).total_seconds()) if when else "",
            "zone": str(self.zone),
            "nav": "",
            **data,
        }
        return self.templates.TemplateResponse(request, name, context, status_code=status)


def console_routes(
    bridge: CareBridge,
    *,
    wake: Callable[[], None] = lambda: None,
    env: Mapping[str, str] | None = None,
    first_start: bool = True,
    off: Mapping[str, str] | None = None,
) -> list[BaseRoute]:
    """The console's routes, to add to the web app. On first start (no users) an `admin` with a
    one-time password is created and the password printed to stderr (never logged). `off`:
    channels that cannot send, and why (broadcast previews say so)."""
    config = bridge.config
    verifier = LowPriorityVerifier(config.console.login_hash_threads)
    auth = Auth(bridge.store, config.console, clock=bridge.clock, env=env, verify=verifier)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    console = Console(
        bridge=bridge,
        auth=auth,
        tickets=bridge.tickets,
        templates=templates,
        labels=view.concept_labels(bridge.library),
        zone=ZoneInfo(config.console.timezone),
        wake=wake,
        secure_cookies=config.server.public_url.startswith("https://"),
        broadcasts=build_broadcasts(config, bridge.store, bridge.clock, off),
        throttle=LoginThrottle(config.console),
        answer_s=config.console.login_answer_ms / 1000,
    )
    if first_start:
        password = ensure_admin(auth)
        if password is not None:
            print(
                "carebridge: first start: created console user 'admin' with the one-time "
                f"password {password} (change it at first log-in)",
                file=sys.stderr,
            )
    routes: list[BaseRoute] = [
        Route("/console/login", _with(console, login_page), methods=["GET"]),
        Route("/console/login", _login_endpoint(console), methods=["POST"]),
        Route("/console/static/{name}", static_file, methods=["GET"]),
    ]
    ROUTE_ROLES.update(
        {
            ("GET", "/console/login"): PUBLIC,
            ("POST", "/console/login"): PUBLIC,
            ("GET", "/console/static/{name}"): PUBLIC,
        }
    )
    pages: list[tuple[str, str, frozenset[Role], Handler, bool]] = [
        ("POST", "/console/logout", ANY_ROLE, logout, False),
        ("GET", "/console", ANY_ROLE, home, False),
        ("GET", "/console/", ANY_ROLE, home, False),
        ("GET", "/console/password", ANY_ROLE, password_page, False),
        ("POST", "/console/password", ANY_ROLE, password_submit, False),
        ("GET", "/console/totp", ANY_ROLE, totp_page, False),
        ("POST", "/console/totp", ANY_ROLE, totp_submit, False),
        ("GET", "/console/overview", ANY_ROLE, overview_page, False),
        ("GET", "/console/queue", CLINICIAN, queue_page, False),
        ("GET", "/console/tickets/{ticket:int}", CLINICIAN, ticket_page, False),
        ("POST", "/console/tickets/{ticket:int}/claim", CLINICIAN, ticket_claim, False),
        ("POST", "/console/tickets/{ticket:int}/release", CLINICIAN, ticket_release, False),
        ("POST", "/console/tickets/{ticket:int}/reply", CLINICIAN, ticket_reply, False),
        ("POST", "/console/tickets/{ticket:int}/resolve", CLINICIAN, ticket_resolve, False),
        ("POST", "/console/tickets/{ticket:int}/return", CLINICIAN, ticket_return, False),
        ("POST", "/console/tickets/{ticket:int}/notes", CLINICIAN, ticket_note, False),
        ("GET", "/console/patients/{contact:int}", CLINICIAN, patient_page, False),
        ("POST", "/console/patients/{contact:int}/reveal", CLINICIAN, patient_reveal, False),
        ("POST", "/console/patients/{contact:int}/forget", CLINICIAN, patient_forget, False),
        ("GET", "/console/users", ADMIN, users_page, False),
        ("POST", "/console/users", ADMIN, users_add, False),
        ("POST", "/console/users/{user:int}/reset", ADMIN, users_reset, False),
        ("POST", "/console/users/{user:int}/active", ADMIN, users_active, False),
        ("GET", "/console/audit", ADMIN, audit_page, False),
        ("GET", "/api/me", ANY_ROLE, api_me, True),
        ("GET", "/api/overview", ANY_ROLE, api_overview, True),
        ("GET", "/api/queue", CLINICIAN, api_queue, True),
        ("GET", "/api/tickets/{ticket:int}", CLINICIAN, api_ticket, True),
        ("GET", "/api/tickets/{ticket:int}/transcript", CLINICIAN, api_transcript, True),
        ("GET", "/api/patients/{contact:int}/readings", CLINICIAN, api_readings, True),
        *console_broadcasts.pages(),  # /console/broadcasts..., /api/broadcasts...
        *console_io.pages(),  # /console/contacts/import..., /console/exports...
        *console_tokens.pages(),  # /console/tokens (admins; issue 16, docs/api.md)
        *console_dashboards.pages(),  # /console/dashboards... (issue 16)
    ]
    for method, path, roles, handler, api in pages:
        upload = (method, path) in console_io.UPLOADS
        guarded = _guarded(console, roles, handler, api=api, upload=upload)
        routes.append(Route(path, guarded, methods=[method]))
        ROUTE_ROLES[(method, path)] = roles
    return routes


# -- the guard -------------------------------------------------------------------------------


def _secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _forbidden(api: bool, why: str = "your role may not open this page") -> Response:
    if api:
        return JSONResponse({"error": why}, status_code=403)
    return PlainTextResponse(f"403 forbidden: {why}", status_code=403)


def _guarded(
    console: Console, roles: frozenset[Role], handler: Handler, *, api: bool, upload: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """Log-in, password-change, role and CSRF checks around a synchronous handler; an `upload`
    route's form may carry one file (at most console_io.MAX_UPLOAD_BYTES)."""

    async def endpoint(request: Request) -> Response:
        # The live views poll in the background: that is not activity for the idle timeout.
        touch = POLL_HEADER not in request.headers
        login = await run_in_threadpool(
            lambda: console.auth.session_for(request.cookies.get(SESSION_COOKIE), touch=touch)
        )
        if login is None:
            if api:
                return _secured(JSONResponse({"error": "log in first"}, status_code=401))
            target = quote(request.url.path) if request.method == "GET" else ""
            return _secured(RedirectResponse(f"/console/login?next={target}", status_code=303))
        path = request.url.path
        if login.user.must_change_password and path not in ("/console/password", "/console/logout"):
            if api:
                return _secured(_forbidden(True, "change your one-time password first"))
            return _secured(RedirectResponse("/console/password", status_code=303))
        if login.user.role not in roles:
            log.info(
                "user=%s role=%s refused %s %s",
                login.user.id,
                login.user.role,
                request.method,
                path,
            )
            return _secured(_forbidden(api))
        form: dict[str, str] = {}
        files: dict[str, tuple[str, bytes]] = {}
        if request.method == "POST":
            # 100: the broadcast form has two texts per language and the audience ticks
            async with request.form(max_files=int(upload), max_fields=100) as data:
                form = {k: v for k, v in data.items() if isinstance(v, str)}
                for name, value in data.items():
                    if isinstance(value, UploadFile):
                        if (value.size or 0) > console_io.MAX_UPLOAD_BYTES:
                            mb = console_io.MAX_UPLOAD_BYTES // 2**20
                            return _secured(
                                PlainTextResponse(f"413: files up to {mb} MB", status_code=413)
                            )
                        files[name] = (value.filename or "upload", await value.read())
            token = request.headers.get("x-csrf-token") or form.get("csrf")
            if not Auth.check_csrf(login, token):
                return _secured(_forbidden(api, "the form has expired; reload the page"))
        ctx = Ctx(request, login, form, console, files=files)
        response = await run_in_threadpool(handler, ctx)
        if ctx.wake:
            console.wake()
        return _secured(response)

    return endpoint


def _with(
    console: Console, handler: Callable[[Console, Request, dict[str, str]], Response]
) -> Callable[[Request], Awaitable[Response]]:
    """A public route (the log-in form): no log-in needed."""

    async def endpoint(request: Request) -> Response:
        form: dict[str, str] = {}
        if request.method == "POST":
            async with request.form(max_files=0, max_fields=10) as data:
                form = {k: v for k, v in data.items() if isinstance(v, str)}
        return _secured(await run_in_threadpool(handler, console, request, form))

    return endpoint


async def static_file(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC_FILES:
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(HERE / "static" / name, media_type=STATIC_FILES[name])


def _redirect(path: str) -> Response:
    return RedirectResponse(path, status_code=303)


def _safe_next(raw: str | None) -> str:
    if raw and raw.startswith("/console") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/console"


# -- log-in ----------------------------------------------------------------------------------


def login_page(
    console: Console, request: Request, form: dict[str, str], *, error: str = "", status: int = 200
) -> Response:
    nonce, token = console.auth.login_form_token()
    response = console.render(
        None,
        request,
        "login.html",
        status,
        csrf=token,
        error=error,
        next=_safe_next(request.query_params.get("next") or form.get("next")),
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path="/console/login",
        httponly=True,
        samesite="strict",
        secure=console.secure_cookies,
    )
    return response


MAX_HASH_QUEUE = 32  # log-ins waiting for a hash slot beyond this are answered as throttled


def client_address(request: Request) -> str:
    """The client's address (uvicorn takes it from X-Forwarded-For only from trusted proxies)."""
    return request.client.host if request.client else "unknown"


def _login_endpoint(console: Console) -> Callable[[Request], Awaitable[Response]]:
    """POST /console/login: throttled per address and username, argon2 in a few threads of its
    own (webhooks keep theirs), and every failure answered alike after at least as long."""

    async def endpoint(request: Request) -> Response:
        started = time.monotonic()
        async with request.form(max_files=0, max_fields=10) as data:
            form = {k: v for k, v in data.items() if isinstance(v, str)}
        auth = console.auth
        if not auth.check_login_form(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
            expired = "The form expired. Try again."
            return _secured(login_page(console, request, form, error=expired, status=403))
        username = form.get("username", "")[:64]
        attempt = LoginAttempt(
            client_address(request),
            username,
            auth.trusted_device(request.cookies.get(DEVICE_COOKIE), username),
        )
        if console.hash_slots is None:
            console.hash_slots = anyio.CapacityLimiter(
                console.bridge.config.console.login_hash_threads
            )
        slots = console.hash_slots
        user = None
        error = WRONG
        room = attempt.known_browser or slots.statistics().tasks_waiting < MAX_HASH_QUEUE
        if room and console.throttle.allows(attempt):
            try:
                user = await anyio.to_thread.run_sync(
                    lambda: auth.authenticate(
                        username, form.get("password", ""), form.get("code", "")
                    ),
                    limiter=slots,
                )
            except AuthError as exc:
                console.throttle.failed(attempt)
                error = str(exc)
            took = time.monotonic() - started
            console.typical_s = (
                took if not console.typical_s else 0.8 * console.typical_s + 0.2 * took
            )
        else:
            await run_in_threadpool(_audit_throttled, console, attempt)
        if user is None:
            floor = max(console.answer_s, console.typical_s)
            await asyncio.sleep(max(0.0, floor - (time.monotonic() - started)))
            return _secured(login_page(console, request, form, error=error, status=401))
        return _secured(await run_in_threadpool(_logged_in, console, user, form))

    return endpoint


def _audit_throttled(console: Console, attempt: LoginAttempt) -> None:
    """Record a refused try in the audit log, at most once a minute per client address."""
    now = time.monotonic()
    if now - console.throttled_seen.get(attempt.address, -120.0) < 60:
        return
    if len(console.throttled_seen) > 10_000:
        console.throttled_seen.clear()
    console.throttled_seen[attempt.address] = now
    console.store.add_audit(
        console.now(), None, None, "login_throttled", detail={"address": attempt.address}
    )
    log.warning("log-in throttled for a client address")


def _logged_in(console: Console, user: UserRow, form: dict[str, str]) -> Response:
    token, _ = console.auth.start_session(user)
    target = "/console/password" if user.must_change_password else _safe_next(form.get("next"))
    response = _redirect(target)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(console.bridge.config.console.session_hours * 3600),
        path="/",
        httponly=True,
        samesite="lax",
        secure=console.secure_cookies,
    )
    response.set_cookie(
        DEVICE_COOKIE,
        console.auth.device_token(user),
        max_age=DEVICE_DAYS * 86400,
        path="/console/login",
        httponly=True,
        samesite="strict",
        secure=console.secure_cookies,
    )
    response.delete_cookie(LOGIN_COOKIE, path="/console/login")
    log.info("user=%s logged in", user.id)
    return response


def logout(ctx: Ctx) -> Response:
    ctx.console.auth.end_session(ctx.login)
    response = _redirect("/console/login")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


def home(ctx: Ctx) -> Response:
    if ctx.login.has(Role.CLINICIAN):
        return _redirect("/console/queue")
    if ctx.login.has(Role.ADMIN):
        return _redirect("/console/users")
    return _redirect("/console/broadcasts")


def password_page(ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    return ctx.console.render(ctx, ctx.request, "password.html", status, error=error)


def password_submit(ctx: Ctx) -> Response:
    new, again = ctx.form.get("new", ""), ctx.form.get("again", "")
    if new != again:
        return password_page(ctx, error="The two new passwords differ.", status=400)
    try:
        ctx.console.auth.change_password(ctx.login, ctx.form.get("current", ""), new)
    except AuthError as exc:
        return password_page(ctx, error=str(exc), status=400)
    # Every log-in of this user ended, this one too: log in again with the new password.
    response = _redirect("/console/login")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


def totp_page(ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    """The optional second factor: on (with nothing to show) or an offer to set it up."""
    user = ctx.console.store.get_user(ctx.user.id) or ctx.user
    offer = None if user.totp_secret else ctx.console.auth.totp_offer(user)
    return ctx.console.render(
        ctx,
        ctx.request,
        "totp.html",
        status,
        enabled=bool(user.totp_secret),
        offer=offer,
        error=error,
    )


def totp_submit(ctx: Ctx) -> Response:
    try:
        ctx.console.auth.totp_enrol(ctx.login, ctx.form.get("offer", ""), ctx.form.get("code", ""))
    except AuthError as exc:
        return totp_page(ctx, error=str(exc), status=400)
    return _redirect("/console/totp")


# -- overview (any role: counts only, no patient data) ------------------------------------------


def _counts(console: Console) -> dict[str, Any]:
    """Open tickets by state and priority; test contacts' tickets are left out (`test`)."""
    everything = console.tickets.queue()
    test = console.tickets.test_contacts()
    tickets = [t for t in everything if t.contact_id not in test]
    waiting = [t for t in tickets if t.status is EscalationStatus.WAITING]
    by_priority = {p.value: 0 for p in Priority}
    for ticket in waiting:
        by_priority[ticket.priority or priority_for(ticket.level)] += 1
    return {
        "waiting": len(waiting),
        "claimed": len(tickets) - len(waiting),
        "overdue": sum(1 for t in waiting if t.raised_at is not None),
        "waiting_by_priority": by_priority,
        "test": len(everything) - len(tickets),
    }


def overview_page(ctx: Ctx) -> Response:
    return ctx.console.render(
        ctx, ctx.request, "overview.html", nav="overview", counts=_counts(ctx.console)
    )


def api_overview(ctx: Ctx) -> Response:
    return JSONResponse(_counts(ctx.console))


def api_me(ctx: Ctx) -> Response:
    return JSONResponse({"username": ctx.user.username, "role": str(ctx.user.role)})


# -- queue ------------------------------------------------------------------------------------


def _queue_item(
    console: Console, ticket: EscalationRow, now: datetime, test: frozenset[int] = frozenset()
) -> dict[str, Any]:
    channel, address = console.store.contact_address(ticket.contact_id)
    priority = ticket.priority or priority_for(ticket.level)
    return {
        "id": ticket.id,
        "url": f"/console/tickets/{ticket.id}",
        "priority": priority,
        "rank": PRIORITY_RANK[Priority(priority)],
        "level": ticket.level,
        "level_label": view.LEVEL_LABELS.get(ticket.level, ticket.level),
        "reason": view.REASON_LABELS.get(ticket.reason, ticket.reason),
        "red_flags": [console.labels.get(f, view.humanize(f)) for f in ticket.red_flags],
        "status": str(ticket.status),
        "assignee": ticket.claimed_by,
        "opened_at": ticket.opened_at.isoformat(),
        "waiting": view.duration((now - ticket.opened_at).total_seconds()),
        "overdue": ticket.raised_at is not None,
        "channel": channel,
        "contact": view.mask_address(address),
        "contact_id": ticket.contact_id,
        "test": ticket.contact_id in test,  # a simulator contact: labelled TEST
    }


def _queue(ctx: Ctx) -> list[dict[str, Any]]:
    console, now = ctx.console, ctx.console.now()
    test = console.tickets.test_contacts()
    items = [_queue_item(console, t, now, test) for t in console.tickets.queue()]
    digest = hashlib.sha256(
        repr([(i["id"], i["status"], i["priority"]) for i in items]).encode()
    ).hexdigest()
    if len(console.queue_seen) > 10_000:  # one entry per log-in; forget old ones
        console.queue_seen.clear()
    if console.queue_seen.get(ctx.login.session.id) != digest:  # audit what was shown, once
        console.queue_seen[ctx.login.session.id] = digest
        console.audit(ctx, "view_queue", tickets=[i["id"] for i in items])
    return items


def queue_page(ctx: Ctx) -> Response:
    return ctx.console.render(ctx, ctx.request, "queue.html", nav="queue", items=_queue(ctx))


def api_queue(ctx: Ctx) -> Response:
    return JSONResponse({"tickets": _queue(ctx), "counts": _counts(ctx.console)})


# -- tickets ----------------------------------------------------------------------------------


def _ticket_or_404(ctx: Ctx, api: bool = False) -> EscalationRow | Response:
    ticket = ctx.console.store.get_escalation(ctx.param("ticket"))
    if ticket is None:
        if api:
            return JSONResponse({"error": "no such ticket"}, status_code=404)
        return PlainTextResponse("404: no such ticket", status_code=404)
    assert isinstance(ticket, EscalationRow)
    return ticket


def _measures(console: Console, ticket: EscalationRow) -> list[dict[str, Any]]:
    """Each measurement: its value in this conversation and the patient's latest reading."""
    rows: dict[str, dict[str, Any]] = {}
    for item in view.summarize(ticket.summary, console.labels).measurements:
        rows[item.label] = {"label": item.label, "now": item, "latest": None, "latest_at": None}
    for reading in console.store.readings(ticket.contact_id, limit=200):  # newest first
        if reading.concept in view.NOT_CHARTED:
            continue
        label = console.labels.get(reading.concept, view.humanize(reading.concept))
        row = rows.setdefault(label, {"label": label, "now": None, "latest": None})
        if row["latest"] is None:
            row["latest"] = view.SummaryItem(
                label, view.format_value(reading.value), view.unit_label(reading.unit)
            )
            row["latest_at"] = reading.at
    return list(rows.values())


def ticket_page(
    ctx: Ctx, *, error: str = "", status: int = 200, draft: str = "", audit: bool = True
) -> Response:
    found = _ticket_or_404(ctx)
    if isinstance(found, Response):
        return found
    ticket, console = found, ctx.console
    contact = console.store.contact_row(ticket.contact_id)
    if audit:
        console.audit(ctx, "view_ticket", contact_id=ticket.contact_id, escalation_id=ticket.id)
    transcript = console.store.transcript(ticket.contact_id, limit=200)
    return console.render(
        ctx,
        ctx.request,
        "ticket.html",
        status,
        ticket=ticket,
        priority=ticket.priority or priority_for(ticket.level),
        contact=contact,
        masked=view.mask_address(contact.address) if contact else "",
        summary=view.summarize(ticket.summary, console.labels),
        measures=_measures(console, ticket),
        transcript=transcript,
        last_id=transcript[-1].id if transcript else 0,
        notes=console.store.ticket_notes(ticket.id),
        mine=ticket.status is EscalationStatus.CLAIMED and ticket.assignee_id == ctx.user.id,
        flows=sorted(console.tickets.flows - {"consent", "language"}),
        error=error,
        draft=draft,
    )


def _act(ctx: Ctx, action: Callable[[EscalationRow], object], *, draft: str = "") -> Response:
    """Run a ticket action; on success back to the ticket page, else the page with the error."""
    found = _ticket_or_404(ctx)
    if isinstance(found, Response):
        return found
    try:
        action(found)
    except TicketError as exc:
        return ticket_page(ctx, error=str(exc), status=409, draft=draft, audit=False)
    return _redirect(f"/console/tickets/{found.id}")


def ticket_claim(ctx: Ctx) -> Response:
    take_over = ctx.form.get("take_over") == "1"
    return _act(ctx, lambda t: ctx.console.tickets.claim(t.id, ctx.user, take_over=take_over))


def ticket_release(ctx: Ctx) -> Response:
    return _act(ctx, lambda t: ctx.console.tickets.release(t.id, ctx.user))


def ticket_reply(ctx: Ctx) -> Response:
    text = ctx.form.get("text", "")
    ctx.wake = True
    return _act(ctx, lambda t: ctx.console.tickets.reply(t.id, ctx.user, text), draft=text)


def ticket_resolve(ctx: Ctx) -> Response:
    return _act(ctx, lambda t: ctx.console.tickets.resolve(t.id, ctx.user))


def ticket_return(ctx: Ctx) -> Response:
    flow = ctx.form.get("flow") or None
    ctx.wake = flow is not None
    return _act(ctx, lambda t: ctx.console.tickets.return_to_bot(t.id, ctx.user, flow))


def ticket_note(ctx: Ctx) -> Response:
    text = ctx.form.get("text", "")
    return _act(ctx, lambda t: ctx.console.tickets.add_note(t.id, ctx.user, text))


def _ticket_json(console: Console, ticket: EscalationRow) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "contact_id": ticket.contact_id,
        "status": str(ticket.status),
        "priority": ticket.priority or priority_for(ticket.level),
        "level": ticket.level,
        "reason": ticket.reason,
        "flow": ticket.flow,
        "red_flags": list(ticket.red_flags),
        "summary": ticket.summary,
        "assignee": ticket.claimed_by,
        "opened_at": ticket.opened_at.isoformat(),
        "deadline_at": ticket.deadline_at.isoformat() if ticket.deadline_at else None,
        "claimed_at": ticket.claimed_at.isoformat() if ticket.claimed_at else None,
        "first_response_at": (
            ticket.first_response_at.isoformat() if ticket.first_response_at else None
        ),
        "resolved_at": ticket.resolved_at.isoformat() if ticket.resolved_at else None,
        "closed_at": ticket.closed_at.isoformat() if ticket.closed_at else None,
    }


def api_ticket(ctx: Ctx) -> Response:
    found = _ticket_or_404(ctx, api=True)
    if isinstance(found, Response):
        return found
    ctx.console.audit(
        ctx, "view_ticket", contact_id=found.contact_id, escalation_id=found.id, api=True
    )
    return JSONResponse(_ticket_json(ctx.console, found))


def api_transcript(ctx: Ctx) -> Response:
    """Transcript lines after `?after=ID` (live polling); a view is audited when it shows any."""
    found = _ticket_or_404(ctx, api=True)
    if isinstance(found, Response):
        return found
    try:
        after = int(ctx.request.query_params.get("after", "0"))
    except ValueError:
        after = 0
    lines = [e for e in ctx.console.store.transcript(found.contact_id, limit=200) if e.id > after]
    if lines:
        ctx.console.audit(
            ctx,
            "view_transcript",
            contact_id=found.contact_id,
            escalation_id=found.id,
            lines=[lines[0].id, lines[-1].id],
        )
    return JSONResponse(
        {
            "status": str(found.status),
            "assignee": found.claimed_by,
            "entries": [
                {
                    "id": e.id,
                    "direction": e.direction,
                    "text": e.text,
                    "author": e.author,
                    "at": view.local_time(e.at, ctx.console.zone),
                }
                for e in lines
            ],
        }
    )


# -- patients ---------------------------------------------------------------------------------


def patient_page(ctx: Ctx, *, reveal: bool = False, error: str = "", status: int = 200) -> Response:
    console = ctx.console
    contact = console.store.contact_row(ctx.param("contact"))
    if contact is None:
        return PlainTextResponse("404: no such patient", status_code=404)
    console.audit(ctx, "reveal_address" if reveal else "view_patient", contact_id=contact.id)
    readings = console.store.readings(contact.id, limit=1000)
    return console.render(
        ctx,
        ctx.request,
        "patient.html",
        status,
        contact=contact,
        forgotten=contact.address == forgotten_address(contact.id),
        error=error,
        address=contact.address if reveal else view.mask_address(contact.address),
        revealed=reveal,
        charts=view.charts(readings, console.labels, console.zone),
        tickets=list(reversed(console.store.escalations(contact_id=contact.id))),
    )


def patient_reveal(ctx: Ctx) -> Response:
    return patient_page(ctx, reveal=True)


def patient_forget(ctx: Ctx) -> Response:
    """Erase a patient on request (audited as forget_patient, source console)."""
    contact_id = ctx.param("contact")
    if ctx.console.store.contact_row(contact_id) is None:
        return PlainTextResponse("404: no such patient", status_code=404)
    if ctx.form.get("confirm", "").strip().upper() != "ERASE":
        return patient_page(ctx, error="Type ERASE to confirm; nothing was erased.", status=400)
    ctx.console.bridge.privacy.forget(contact_id, source="console", by=ctx.user)
    return _redirect(f"/console/patients/{contact_id}")


def api_readings(ctx: Ctx) -> Response:
    console = ctx.console
    contact = console.store.contact_row(ctx.param("contact"))
    if contact is None:
        return JSONResponse({"error": "no such patient"}, status_code=404)
    concept = ctx.request.query_params.get("concept") or None
    console.audit(ctx, "view_readings", contact_id=contact.id, concept=concept)
    rows = console.store.readings(contact.id, concept, limit=1000)
    return JSONResponse(
        {
            "contact_id": contact.id,
            "readings": [
                {"concept": r.concept, "value": r.value, "unit": r.unit, "at": r.at.isoformat()}
                for r in rows
            ],
        }
    )


# -- admin: users and the audit log ------------------------------------------------------------


def users_page(
    ctx: Ctx, *, error: str = "", status: int = 200, issued: tuple[str, str] | None = None
) -> Response:
    return ctx.console.render(
        ctx,
        ctx.request,
        "users.html",
        status,
        nav="users",
        users=ctx.console.store.users(),
        roles=[r.value for r in Role],
        error=error,
        issued=issued,  # (username, one-time password), shown once
    )


def users_add(ctx: Ctx) -> Response:
    try:
        user, password = ctx.console.auth.add_user(
            ctx.form.get("username", ""), ctx.form.get("role", ""), by=ctx.user
        )
    except AuthError as exc:
        return users_page(ctx, error=str(exc), status=400)
    assert password is not None
    return users_page(ctx, issued=(user.username, password))


def _target_user(ctx: Ctx) -> UserRow | None:
    user: UserRow | None = ctx.console.store.get_user(ctx.param("user"))
    return user


def users_reset(ctx: Ctx) -> Response:
    user = _target_user(ctx)
    if user is None:
        return PlainTextResponse("404: no such user", status_code=404)
    password = ctx.console.auth.reset_password(user.id, by=ctx.user)
    return users_page(ctx, issued=(user.username, password))


def users_active(ctx: Ctx) -> Response:
    user = _target_user(ctx)
    if user is None:
        return PlainTextResponse("404: no such user", status_code=404)
    try:
        ctx.console.auth.set_disabled(user.id, ctx.form.get("active") != "1", by=ctx.user)
    except AuthError as exc:
        return users_page(ctx, error=str(exc), status=400)
    return _redirect("/console/users")


def audit_page(ctx: Ctx) -> Response:
    params = ctx.request.query_params
    try:
        contact_id = int(params["contact"]) if params.get("contact") else None
        user_id = int(params["user"]) if params.get("user") else None
    except ValueError:
        contact_id = user_id = None
    entries = ctx.console.store.audit_log(contact_id=contact_id, user_id=user_id, limit=500)
    return ctx.console.render(
        ctx,
        ctx.request,
        "audit.html",
        nav="audit",
        entries=entries,
        contact=contact_id,
        user=user_id,
    )
