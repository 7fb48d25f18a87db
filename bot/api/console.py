"""The admins' API token page in the console (docs/api.md): list tokens, make one (shown once,
stored only as its SHA-256) and revoke one. Mounted by bot.console (`pages()`);
bot.api.service.ApiTokens writes the audit log. Imports bot.api.service, bot.store and starlette;
never channels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from starlette.responses import RedirectResponse, Response

from bot.api.service import SCOPES, ApiError, ApiTokens, api_store
from bot.store import Role

if TYPE_CHECKING:
    from bot.console import Ctx

BASE = "/console/tokens"
ADMIN = frozenset({Role.ADMIN})

Page: TypeAlias = "tuple[str, str, frozenset[Role], Callable[[Ctx], Response], bool]"


def pages() -> list[Page]:
    """(method, path, roles, handler, is_api) for bot.console to mount and put in ROUTE_ROLES."""
    return [
        ("GET", BASE, ADMIN, tokens_page, False),
        ("POST", BASE, ADMIN, create, False),
        ("POST", BASE + "/{token:int}/revoke", ADMIN, revoke, False),
    ]


def _service(ctx: Ctx) -> ApiTokens:
    return ApiTokens(ctx.console.store, ctx.console.now)


def tokens_page(
    ctx: Ctx, *, error: str = "", status: int = 200, issued: tuple[str, str] | None = None
) -> Response:
    return ctx.console.render(
        ctx,
        ctx.request,
        "tokens.html",
        status,
        nav="tokens",
        tokens=api_store(ctx.console.store).api_tokens(),
        scopes=SCOPES,
        error=error,
        issued=issued,  # (name, token), shown once
    )


def create(ctx: Ctx) -> Response:
    scopes = tuple(s for s in SCOPES if ctx.form.get(f"scope:{s}") == "1")  # one box per scope
    try:
        row, token = _service(ctx).create(
            ctx.form.get("name", ""), scopes, ctx.user.username, user_id=ctx.user.id
        )
    except ApiError as exc:
        return tokens_page(ctx, error=str(exc), status=400)
    return tokens_page(ctx, issued=(row.name, token))


def revoke(ctx: Ctx) -> Response:
    try:
        _service(ctx).revoke(ctx.param("token"), ctx.user.username, user_id=ctx.user.id)
    except ApiError as exc:
        return tokens_page(ctx, error=str(exc), status=exc.status)
    return RedirectResponse(BASE, status_code=303)
