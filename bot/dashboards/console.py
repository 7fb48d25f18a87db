"""The dashboard pages of the console (docs/console.md, Dashboards): one page per dashboard with a
range and region filter, charts drawn as inline SVG with their numbers in a table, and a CSV per
chart with exactly those numbers. Mounted by bot.console (`pages()`); who may see which
dashboard is `bot.dashboards.service.BOARDS`.

Imports bot.dashboards.service, bot.dashboards.view, bot.store and starlette; never channels.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias, cast

from starlette.responses import RedirectResponse, Response

from bot.dashboards import view as dv
from bot.dashboards.service import BOARD, BOARDS, RANGES, Board, Dashboards, Filters, number
from bot.store import Role
from bot.store.dashboards import DashStore

if TYPE_CHECKING:
    from bot.console import Ctx

BASE = "/console/dashboards"

Page: TypeAlias = "tuple[str, str, frozenset[Role], Callable[[Ctx], Response], bool]"


def pages() -> list[Page]:
    """(method, path, roles, handler, is_api) for bot.console to mount and put in ROUTE_ROLES."""
    out: list[Page] = [("GET", BASE, frozenset(Role), first_page, False)]
    for board in BOARDS:
        out.append(("GET", f"{BASE}/{board.key}", board.roles, _page(board), False))
        for chart in board.charts:
            out.append(
                ("GET", f"{BASE}/{board.key}/{chart}.csv", board.roles, _csv(board, chart), False)
            )
    return out


def visible(role: Role) -> list[Board]:
    """The dashboards a role may open, in menu order."""
    return [b for b in BOARDS if role in b.roles]


def _service(ctx: Ctx) -> Dashboards:
    console = ctx.console
    return Dashboards(
        cast(DashStore, console.store),
        console.bridge.config,
        console.now,
        console.zone,
        console.labels,
    )


def first_page(ctx: Ctx) -> Response:
    """/console/dashboards: the first dashboard this role may open."""
    board = visible(ctx.user.role)[0]  # reach is open to every role
    return RedirectResponse(f"{BASE}/{board.key}", status_code=303)


def _page(board: Board) -> Callable[[Ctx], Response]:
    def page(ctx: Ctx) -> Response:
        svc = _service(ctx)
        regions = svc.regions()
        filters = Filters.parse(ctx.request.query_params, regions)
        dash = svc.build(board.key, filters, ctx.user.role)
        return ctx.console.render(
            ctx,
            ctx.request,
            "dash.html",
            nav="dashboards",
            dash=dash,
            boards=visible(ctx.user.role),
            regions=regions,
            ranges=RANGES,
            charts=[(t, dv.draw(t)) for t in dash.tables],
            base=BASE,
            number=number,
        )

    page.__name__ = f"dashboard_{board.key}"
    return page


def _csv(board: Board, chart: str) -> Callable[[Ctx], Response]:
    def download(ctx: Ctx) -> Response:
        svc = _service(ctx)
        filters = Filters.parse(ctx.request.query_params, svc.regions())
        table = svc.build(board.key, filters, ctx.user.role).table(chart)
        region = f"-{re.sub(r'[^a-z0-9_-]+', '_', filters.region)}" if filters.region else ""
        name = f"{board.key}-{chart}-{filters.days}d{region}.csv"
        return Response(
            table.to_csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    download.__name__ = f"dashboard_{board.key}_{chart}_csv"
    return download


__all__ = ["BOARD", "pages", "visible"]
