"""`carebridge tokens`: API tokens for other systems (create, list, revoke; docs/api.md).
Registered on the main group by bot.cli; imports bot.api.service, bot.config, bot.store, click.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import click

from bot.api.service import SCOPES, ApiError, ApiTokens, api_store
from bot.config import Config
from bot.errors import CarebridgeError
from bot.store import open_store


@contextmanager
def _tokens(ctx: click.Context) -> Iterator[ApiTokens]:
    config: Config = ctx.obj["config"]
    try:
        store = open_store(config.storage_url())
    except CarebridgeError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield ApiTokens(store, lambda: datetime.now(UTC))
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


@click.group()
def tokens() -> None:
    """API tokens for other systems (docs/api.md)."""


@tokens.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(list(SCOPES)),
    help="What the token may read or do (repeat for several).",
)
@click.option(
    "--user",
    default="cli",
    show_default=True,
    help="The console user the token acts for (broadcasts:write drafts are theirs).",
)
@click.pass_context
def create(ctx: click.Context, name: str, scopes: tuple[str, ...], user: str) -> None:
    """Make a token called NAME and print it once (only its SHA-256 is kept)."""
    with _tokens(ctx) as service:
        row, token = service.create(name, scopes, user.strip().lower())
    click.echo(f"created API token {row.id} ({row.name}) scopes {', '.join(row.scopes)}")
    click.echo(f"token (shown once, keep it secret): {token}")


@tokens.command("list")
@click.pass_context
def list_tokens(ctx: click.Context) -> None:
    """Every token: id, name, scopes, state and last use (never the token itself)."""
    with _tokens(ctx) as service:
        rows = api_store(service.store).api_tokens()
    if not rows:
        click.echo("no API tokens (carebridge tokens create NAME --scope ...)")
    for row in rows:
        state = "active" if row.active else f"revoked {row.revoked_at:%Y-%m-%d %H:%M}"
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        click.echo(
            f"{row.id:<5} {row.name:<24} {row.prefix}…  {state:<24} last used {used}  "
            f"{','.join(row.scopes)}"
        )


@tokens.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
def revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke token TOKEN_ID: it is refused from the next request on."""
    with _tokens(ctx) as service:
        row = service.revoke(token_id, "cli")
    click.echo(f"revoked API token {row.id} ({row.name})")
