"""The coordinators' broadcast pages in the console (docs/console.md, docs/broadcasts.md): the
list, create with live SMS checks, preview, two-person approval, send, live stats with a chart,
the kill switch, corrections and CSV. Mounted by bot.console (`pages()`); every change goes
through bot.broadcasts.service.Broadcasts, which checks the role again and writes the audit log.

Imports bot.broadcasts (service, view), bot.console_view, bot.schedules, bot.store and
starlette; never channels. Logs carry ids, never message text or phone numbers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from bot import console_view as view
from bot.broadcasts import view as bv
from bot.broadcasts.service import (
    MAY_BROADCAST,
    STAT_COLUMNS,
    BroadcastError,
    Broadcasts,
    Draft,
    Stats,
)
from bot.schedules import CONDITION_FLOWS
from bot.store import BroadcastRow, FanOutStep, Role

if TYPE_CHECKING:
    from bot.console import Console, Ctx

log = logging.getLogger(__name__)

READ = frozenset(Role)  # any logged-in user reads broadcasts: texts and counts, no patient data
WRITE = MAY_BROADCAST  # coordinators and admins act (and bot.broadcasts.service checks it again)
BASE = "/console/broadcasts"

Page: TypeAlias = "tuple[str, str, frozenset[Role], Callable[[Ctx], Response], bool]"


def pages() -> list[Page]:
    """(method, path, roles, handler, is_api) for bot.console to mount and put in ROUTE_ROLES."""
    one = BASE + "/{broadcast:int}"
    return [
        ("GET", BASE, READ, list_page, False),
        ("GET", BASE + "/new", WRITE, new_page, False),
        ("POST", BASE, WRITE, create, False),
        ("GET", one, READ, show_page, False),
        ("GET", one + "/preview", READ, preview_page, False),
        ("POST", one + "/approve", WRITE, approve, False),
        ("POST", one + "/send", WRITE, send, False),
        ("POST", one + "/cancel", WRITE, cancel, False),
        ("GET", one + "/correct", WRITE, correct_page, False),
        ("POST", one + "/correct", WRITE, correct, False),
        ("GET", one + "/stats.csv", READ, stats_csv, False),
        ("POST", "/api/broadcasts/check", WRITE, api_check, True),
        ("GET", "/api/broadcasts/{broadcast:int}/stats", READ, api_stats, True),
    ]


# -- helpers -----------------------------------------------------------------------------------


def _svc(ctx: Ctx) -> Broadcasts:
    return ctx.console.broadcasts


def _redirect(path: str) -> Response:
    return RedirectResponse(path, status_code=303)


def _row(ctx: Ctx) -> BroadcastRow | None:
    row: BroadcastRow | None = _svc(ctx).store.get_broadcast(ctx.param("broadcast"))
    return row


def _missing(api: bool = False) -> Response:
    if api:
        return JSONResponse({"error": "no such broadcast"}, status_code=404)
    return PlainTextResponse("404: no such broadcast", status_code=404)


def _templates(svc: Broadcasts) -> list[str]:
    return sorted(svc.cfg.whatsapp_templates)


def _form_context(ctx: Ctx) -> dict[str, Any]:
    """What both text forms (create, correct) need: languages, templates, currency, the API."""
    svc = _svc(ctx)
    return {
        "languages": list(svc.config.languages),
        "templates": _templates(svc),
        "currency": svc.cfg.currency,
        "channels": list(svc.channels),
        "quiet": svc.cfg.quiet_hours,
    }


def _checks(ctx: Ctx, form: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
    """The live text checks for a form's texts, by language (empty texts are not checked)."""
    svc = _svc(ctx)
    texts, sms = bv.texts_from_form(form, svc.config.languages)
    template = bv.template_from_form(form, _templates(svc))
    by_lang: dict[str, list[dict[str, Any]]] = {lang: [] for lang in svc.config.languages}
    checks = sorted(svc.check(texts, sms, template), key=lambda c: c.channel != "sms")  # SMS first
    for item in bv.checks_json(checks, svc.cfg.currency):
        by_lang.setdefault(item["language"], []).append(item)
    return by_lang


def _render(ctx: Ctx, name: str, status: int = 200, **data: Any) -> Response:
    return ctx.console.render(
        ctx, ctx.request, name, status, nav="broadcasts", bv=bv, stats_columns=STAT_COLUMNS, **data
    )


def _errors(exc: Exception) -> list[str]:
    return [line for line in str(exc).splitlines() if line.strip()]


# -- list and create ---------------------------------------------------------------------------


def list_page(ctx: Ctx) -> Response:
    rows = _svc(ctx).recent(100)
    return _render(ctx, "broadcasts.html", rows=rows, may_act=ctx.user.role in WRITE)


def new_page(
    ctx: Ctx,
    *,
    form: Mapping[str, str] | None = None,
    errors: list[str] | None = None,
    status: int = 200,
) -> Response:
    fresh = {"when": "now", "include_test": "1" if _svc(ctx).include_test_default else ""}
    values = dict(form or fresh)
    return _render(
        ctx,
        "broadcast_new.html",
        status,
        form=values,
        errors=errors or [],
        checks=_checks(ctx, values),
        conditions=list(CONDITION_FLOWS),
        zone_name=str(ctx.console.zone),
        **_form_context(ctx),
    )


def create(ctx: Ctx) -> Response:
    svc = _svc(ctx)
    try:
        draft = bv.draft_from_form(
            ctx.form,
            languages=svc.config.languages,
            channels=svc.channels,
            conditions=list(CONDITION_FLOWS),
            templates=_templates(svc),
            default_tz=str(ctx.console.zone),
        )
        row = svc.create(draft, by=ctx.user.username)
    except (BroadcastError, bv.FormError) as exc:
        return new_page(ctx, form=ctx.form, errors=_errors(exc), status=400)
    return _redirect(f"{BASE}/{row.id}/preview")


def api_check(ctx: Ctx) -> Response:
    """Per language and channel: characters, encoding, segments and cost, as the CLI shows."""
    return JSONResponse({"checks": _checks(ctx, ctx.form), "currency": _svc(ctx).cfg.currency})


# -- one broadcast --------------------------------------------------------------------------------


def _page_data(ctx: Ctx, row: BroadcastRow, stats: Stats) -> dict[str, Any]:
    console = ctx.console

    def when(at: Any) -> str:
        return view.local_time(at, console.zone)

    return {
        "row": row,
        "stats": stats,
        "chart": bv.stats_chart(stats.channels),
        "acts": bv.actions(stats, ctx.user, console.now(), when),
        "schedule": bv.schedule_text(row, when),
        "audience": bv.audience_text(row),
        "texts": _svc(ctx).store.broadcast_texts(row.id),
    }


def show_page(ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    row = _row(ctx)
    if row is None:
        return _missing()
    svc = _svc(ctx)
    occurrences = svc.store.broadcasts(parent_id=row.id, limit=20) if row.recurrence else []
    stopped = ctx.request.query_params.get("stopped")
    return _render(
        ctx,
        "broadcast.html",
        status,
        error=error,
        occurrences=occurrences,
        stopped=int(stopped) if stopped and stopped.isdigit() else None,
        **_page_data(ctx, row, svc.stats(row.id)),
    )


def preview_page(ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    row = _row(ctx)
    if row is None:
        return _missing()
    svc = _svc(ctx)
    result = svc.preview(row.id)
    return _render(
        ctx,
        "broadcast_preview.html",
        status,
        error=error,
        preview=result,
        checks=bv.checks_json(result.checks, result.currency),
        took=view.duration((result.finish_at - result.start_at).total_seconds()),
        **_page_data(ctx, row, svc.stats(row.id)),
    )


def approve(ctx: Ctx) -> Response:
    if _row(ctx) is None:
        return _missing()
    broadcast_id = ctx.param("broadcast")
    try:
        _svc(ctx).approve(broadcast_id, by=ctx.user.username)
    except BroadcastError as exc:
        return preview_page(ctx, error=str(exc), status=409)
    return _redirect(f"{BASE}/{broadcast_id}")


def send(ctx: Ctx) -> Response:
    """Start it; the fan-out runs after the response (one batch per transaction, waking the
    dispatcher after each), and the scheduler's sweep carries on should this process stop."""
    if _row(ctx) is None:
        return _missing()
    broadcast_id = ctx.param("broadcast")
    try:
        _svc(ctx).send(broadcast_id, by=ctx.user.username, early=ctx.form.get("early") == "1")
    except BroadcastError as exc:
        return show_page(ctx, error=str(exc), status=409)
    response = _redirect(f"{BASE}/{broadcast_id}")
    response.background = BackgroundTask(_fan_out, ctx.console, broadcast_id)
    return response


async def _fan_out(console: Console, broadcast_id: int) -> None:
    loop = asyncio.get_running_loop()

    def batch(step: FanOutStep) -> None:
        loop.call_soon_threadsafe(console.wake)

    try:
        await run_in_threadpool(console.broadcasts.fan_out, broadcast_id, on_batch=batch)
    except Exception:  # the sweep picks it up again (the cursor makes that safe)
        log.exception("broadcast=%s fan-out from the console failed", broadcast_id)


def cancel(ctx: Ctx) -> Response:
    """The kill switch, in two steps: the first POST asks to confirm (and changes nothing),
    the second (confirm=1) stops the fan-out and every queued message at once."""
    row = _row(ctx)
    if row is None:
        return _missing()
    svc = _svc(ctx)
    if ctx.form.get("confirm") != "1":
        stats = svc.stats(row.id)
        return _render(ctx, "broadcast_cancel.html", row=row, stats=stats)
    try:
        stopped = svc.cancel(row.id, by=ctx.user.username)
    except BroadcastError as exc:
        return show_page(ctx, error=str(exc), status=409)
    return _redirect(f"{BASE}/{row.id}?stopped={stopped}")


def correct_page(
    ctx: Ctx,
    *,
    form: Mapping[str, str] | None = None,
    errors: list[str] | None = None,
    status: int = 200,
) -> Response:
    row = _row(ctx)
    if row is None:
        return _missing()
    svc = _svc(ctx)
    stats = svc.stats(row.id)
    texts = svc.store.broadcast_texts(row.id)
    values = (
        dict(form)
        if form is not None
        else {
            "name": f"Correction: {row.name}",
            "whatsapp_template": row.whatsapp_template or "",
        }
    )
    data = _page_data(ctx, row, stats)
    return _render(
        ctx,
        "broadcast_correct.html",
        status,
        form=values,
        errors=errors or [],
        checks=_checks(ctx, values),
        original_texts=texts,
        reached=stats.total.sent + stats.total.delivered,
        blocked="" if data["acts"].correct else data["acts"].correct_why,
        **{k: v for k, v in data.items() if k != "texts"},
        **_form_context(ctx),
    )


def correct(ctx: Ctx) -> Response:
    row = _row(ctx)
    if row is None:
        return _missing()
    svc = _svc(ctx)
    draft: Draft = bv.correction_from_form(
        ctx.form, languages=svc.config.languages, templates=_templates(svc)
    )
    try:
        new = svc.correct(row.id, draft, by=ctx.user.username)
    except BroadcastError as exc:
        return correct_page(ctx, form=ctx.form, errors=_errors(exc), status=400)
    return _redirect(f"{BASE}/{new.id}/preview")


# -- stats -------------------------------------------------------------------------------------


def stats_csv(ctx: Ctx) -> Response:
    """Counts per channel and a total line; never recipients."""
    row = _row(ctx)
    if row is None:
        return _missing()
    body = _svc(ctx).stats(row.id).to_csv()
    filename = f"broadcast-{row.id}-stats.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def api_stats(ctx: Ctx) -> Response:
    row = _row(ctx)
    if row is None:
        return _missing(api=True)
    return JSONResponse(bv.stats_json(_svc(ctx).stats(row.id)))
