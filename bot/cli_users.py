"""`carebridge users`: console accounts from the command line (add, list, reset a password,
disable, enable). Registered on the main group by bot.cli; imports bot.auth, bot.store, click.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from bot.auth import Auth, AuthError
from bot.config import Config
from bot.errors import CarebridgeError
from bot.store import Role, Store, UserRow, open_store

ROLES = [r.value for r in Role]


@contextmanager
def _auth(ctx: click.Context) -> Iterator[Auth]:
    config: Config = ctx.obj["config"]
    try:
        store: Store = open_store(config.storage_url())
    except CarebridgeError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield Auth(store, config.console)
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


def _user(auth: Auth, username: str) -> UserRow:
    user = auth.store.find_user(username.strip().lower())
    if user is None:
        raise click.ClickException(f"there is no user {username!r} (see: carebridge users list)")
    return user


@click.group()
def users() -> None:
    """Console users: clinicians, coordinators and admins."""


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the user may do.")
@click.pass_context
def add(ctx: click.Context, username: str, role: str) -> None:
    """Create USERNAME and print a one-time password (changed at first log-in)."""
    with _auth(ctx) as auth:
        user, password = auth.add_user(username, role)
    click.echo(f"created {user.username} ({user.role}); one-time password: {password}")


@users.command("list")
@click.pass_context
def list_users(ctx: click.Context) -> None:
    """Every user with role, state and last log-in."""
    with _auth(ctx) as auth:
        rows = auth.store.users()
    for user in rows:
        state = "disabled" if user.disabled else "active"
        if not user.disabled and user.must_change_password:
            state = "one-time password"
        last = user.last_login_at.isoformat(timespec="minutes") if user.last_login_at else "never"
        click.echo(f"{user.username:<24} {user.role:<12} {state:<18} last log-in {last}")


@users.command("reset-password")
@click.argument("username")
@click.pass_context
def reset_password(ctx: click.Context, username: str) -> None:
    """Give USERNAME a new one-time password; their log-ins end."""
    with _auth(ctx) as auth:
        password = auth.reset_password(_user(auth, username).id)
    click.echo(f"one-time password for {username}: {password}")


@users.command("disable")
@click.argument("username")
@click.pass_context
def disable(ctx: click.Context, username: str) -> None:
    """Stop USERNAME from logging in; their log-ins end at once."""
    with _auth(ctx) as auth:
        auth.set_disabled(_user(auth, username).id, True)
    click.echo(f"disabled {username}")


@users.command("enable")
@click.argument("username")
@click.pass_context
def enable(ctx: click.Context, username: str) -> None:
    """Let a disabled USERNAME log in again."""
    with _auth(ctx) as auth:
        auth.set_disabled(_user(auth, username).id, False)
    click.echo(f"enabled {username}")


@users.command("remove-2fa")
@click.argument("username")
@click.pass_context
def remove_2fa(ctx: click.Context, username: str) -> None:
    """Turn off USERNAME's authenticator-app second factor (a lost phone); their log-ins end."""
    with _auth(ctx) as auth:
        auth.totp_remove(_user(auth, username).id)
    click.echo(f"second factor removed for {username}")
