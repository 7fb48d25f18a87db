"""The console's import and export pages (docs/import_export.md): coordinators and admins upload
a contacts file, see a preview with every refused row and its reason, and confirm; clinicians
(the only role that sees health data) download results as CSV per flow or a FHIR Bundle,
streamed, with phone numbers masked unless they tick the box (audited either way).

Mounted by bot.console (`pages()`, `UPLOADS`). Imports bot.io (contacts_import, results_export),
bot.store and starlette; never channels. An upload waits for its confirmation in a private
temporary folder (0700, files 0600) for at most an hour; logs carry counts only.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from starlette.responses import RedirectResponse, Response, StreamingResponse

from bot.errors import CarebridgeError
from bot.io import contacts_import, results_export
from bot.store import TRIAGE_LEVELS, Role
from bot.store.io import ExportFilter

if TYPE_CHECKING:
    from bot.console import Ctx

log = logging.getLogger(__name__)

IMPORTERS = frozenset({Role.COORDINATOR, Role.ADMIN})
EXPORTERS = frozenset({Role.CLINICIAN})  # results are health data: clinicians only
IMPORT = "/console/contacts/import"
EXPORT = "/console/exports"
UPLOADS = frozenset({("POST", IMPORT)})  # routes whose form may carry one file
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
KEEP_UPLOAD_S = 3600
PREVIEW_ERRORS = 200  # refused rows listed on the preview page (all are counted)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")

Page: TypeAlias = "tuple[str, str, frozenset[Role], Callable[[Ctx], Response], bool]"


def pages() -> list[Page]:
    """(method, path, roles, handler, is_api) for bot.console to mount and put in ROUTE_ROLES."""
    return [
        ("GET", IMPORT, IMPORTERS, import_page, False),
        ("POST", IMPORT, IMPORTERS, import_preview, False),
        ("POST", IMPORT + "/confirm", IMPORTERS, import_confirm, False),
        ("GET", EXPORT, EXPORTERS, export_page, False),
        ("GET", EXPORT + "/results.csv", EXPORTERS, export_csv, False),
        ("GET", EXPORT + "/results.fhir.json", EXPORTERS, export_fhir, False),
    ]


# -- import ------------------------------------------------------------------------------------


def _folder() -> Path:
    folder = Path(tempfile.gettempdir()) / f"carebridge-imports-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    return folder


def _sweep(folder: Path) -> None:
    """Drop uploads nobody confirmed within KEEP_UPLOAD_S."""
    cutoff = time.time() - KEEP_UPLOAD_S
    for path in folder.iterdir():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            pass


def _keep(user_id: int, data: bytes) -> str:
    folder = _folder()
    _sweep(folder)
    token = secrets.token_urlsafe(24)
    path = folder / f"{user_id}-{token}"
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return token


def _kept(user_id: int, token: str) -> Path | None:
    if not _TOKEN.match(token):
        return None
    path = _folder() / f"{user_id}-{token}"  # another user's upload is not found
    return path if path.is_file() else None


def _render(ctx: Ctx, name: str, status: int = 200, **data: Any) -> Response:
    return ctx.console.render(ctx, ctx.request, name, status, nav="import", **data)


def _channels() -> tuple[str, ...]:
    return contacts_import.IMPORT_CHANNELS


def import_page(ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    return _render(
        ctx,
        "import.html",
        status,
        error=error,
        channels=_channels(),
        columns=contacts_import.COLUMNS,
        max_mb=MAX_UPLOAD_BYTES // (1024 * 1024),
    )


def _plan(ctx: Ctx, data: bytes, filename: str, channel: str) -> contacts_import.ImportPlan:
    bridge = ctx.console.bridge
    return contacts_import.plan_import(
        bridge.store,
        bridge.config,
        bridge.library.flows,
        data,
        filename,
        default_channel=channel,
    )


def _channel(ctx: Ctx) -> str:
    channel = ctx.form.get("channel", "sms")
    return channel if channel in _channels() else "sms"


def import_preview(ctx: Ctx) -> Response:
    """The uploaded file checked row by row; nothing is written until it is confirmed."""
    upload = ctx.files.get("file")
    if upload is None or not upload[1]:
        return import_page(ctx, error="choose a CSV or XLSX file", status=400)
    filename, data = upload
    channel = _channel(ctx)
    try:
        plan = _plan(ctx, data, filename, channel)
    except contacts_import.ImportFileError as exc:
        return import_page(ctx, error=f"{filename}: {exc}", status=400)
    token = _keep(ctx.user.id, data) if plan.rows else ""
    report = plan.report(applied=False)
    ctx.console.audit(ctx, "import_preview", **_counts(report))
    return _render(
        ctx,
        "import_preview.html",
        filename=filename,
        report=report,
        errors=report["errors"][:PREVIEW_ERRORS],
        token=token,
        channel=channel,
    )


def _counts(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "errors"}


def import_confirm(ctx: Ctx) -> Response:
    """Apply the previewed file (checked again: the database may have changed since)."""
    token = ctx.form.get("token", "")
    path = _kept(ctx.user.id, token)
    if path is None:
        return import_page(
            ctx,
            error="that upload has expired or was imported already: upload it again",
            status=400,
        )
    data = path.read_bytes()
    filename = ctx.form.get("filename", "contacts.csv")[:200]
    try:
        plan = _plan(ctx, data, filename, _channel(ctx))
        report = contacts_import.apply_import(
            ctx.console.store, ctx.console.bridge.config, plan, ctx.console.now()
        )
    except (contacts_import.ImportFileError, CarebridgeError) as exc:
        log.error("import failed: %s", type(exc).__name__)
        return import_page(ctx, error=f"nothing was imported: {exc}", status=400)
    finally:
        path.unlink(missing_ok=True)
    ctx.console.audit(ctx, "import_contacts", **_counts(report))
    return _render(
        ctx,
        "import_preview.html",
        filename=filename,
        report=report,
        errors=report["errors"][:PREVIEW_ERRORS],
        token="",
        channel="",
    )


# -- export ------------------------------------------------------------------------------------


def export_page(ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    library = ctx.console.bridge.library
    flows = sorted(f for f in library.flows if not f.startswith("_"))
    return ctx.console.render(
        ctx,
        ctx.request,
        "export.html",
        status,
        nav="export",
        error=error,
        flows=flows,
        levels=TRIAGE_LEVELS[::-1],
    )


def _when(raw: str, name: str) -> datetime | None:
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name}: not a date (YYYY-MM-DD): {raw!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _filter(ctx: Ctx, *, one_flow: bool) -> ExportFilter:
    q = ctx.request.query_params
    library = ctx.console.bridge.library
    flows = tuple(f for f in q.getlist("flow") if f)
    for flow in flows:
        if flow not in library.flows:
            raise ValueError(f"unknown flow {flow!r}")
    if one_flow and len(flows) != 1:
        raise ValueError("a CSV export is per flow: choose one flow")
    levels = tuple(v for v in q.getlist("level") if v)
    for level in levels:
        if level not in TRIAGE_LEVELS:
            raise ValueError(f"unknown triage level {level!r}")
    regions = tuple(r.strip() for r in q.getlist("region") if r.strip())
    return ExportFilter(
        since=_when(q.get("since", ""), "from"),
        until=_when(q.get("until", ""), "until"),
        flows=flows,
        levels=levels,
        regions=regions,
        include_test=q.get("include_test") == "1",
    )


def _download(
    ctx: Ctx,
    kind: str,
    make: Callable[[ExportFilter, bool], Iterator[str]],
    media_type: str,
    filename: str,
) -> Response:
    try:
        flt = _filter(ctx, one_flow=kind == "csv")
    except ValueError as exc:
        return export_page(ctx, error=str(exc), status=400)
    real_ids = ctx.request.query_params.get("real_ids") == "1"
    action = "export_csv" if kind == "csv" else "export_fhir"  # as the CLI's
    ctx.console.audit(ctx, action, real_ids=real_ids, **results_export.describe(flt))
    stamp = ctx.console.now().strftime("%Y%m%d-%H%M")
    return StreamingResponse(
        make(flt, real_ids),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}-{stamp}.{kind}"'},
    )


def export_csv(ctx: Ctx) -> Response:
    """One flow's conversations as CSV, streamed (a bare visit goes to the export form)."""
    if not ctx.request.query_params:
        return RedirectResponse(EXPORT, status_code=303)
    store, library = ctx.console.store, ctx.console.bridge.library
    flow = ctx.request.query_params.get("flow", "results")
    return _download(
        ctx,
        "csv",
        lambda flt, real: results_export.conversations_csv(store, library, flt, real_ids=real),
        "text/csv; charset=utf-8",
        re.sub(r"[^a-z0-9_]", "", flow) or "results",
    )


def export_fhir(ctx: Ctx) -> Response:
    """Everything that passes the filter as a FHIR R4 Bundle, streamed."""
    store, library = ctx.console.store, ctx.console.bridge.library
    return _download(
        ctx,
        "json",
        lambda flt, real: results_export.fhir_bundle(store, library, flt, real_ids=real),
        "application/fhir+json",
        "results-fhir",
    )
