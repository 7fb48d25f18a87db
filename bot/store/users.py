"""Console users: accounts and roles, log-ins, auth sessions (cookie tokens kept as hashes)
and the optional TOTP second factor. Imports the standard library and bot.store (codec, sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from bot.store.codec import _checked, _dt, _dt_req, _ts
from bot.store.sql import Row, SqlMixin


class Role(StrEnum):
    """What a console user may do (docs/console.md has the table of routes per role)."""

    CLINICIAN = "clinician"  # the queue, tickets, patients: the only role that sees health data
    COORDINATOR = "coordinator"  # queue counts (and broadcasts); no patient data
    ADMIN = "admin"  # users and the audit log; no patient data


@dataclass(frozen=True)
class UserRow:
    """A console user; `password_hash` is an argon2id hash (bot.auth)."""

    id: int
    username: str
    password_hash: str
    role: Role
    disabled: bool
    must_change_password: bool  # a one-time password: change it at the next log-in
    failed_logins: int
    locked_until: datetime | None
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime
    totp_secret: str | None = None  # base32; set when the user enrolled a second factor


@dataclass(frozen=True)
class AuthSessionRow:
    """A console log-in; the cookie holds a token whose SHA-256 is `token_hash`."""

    id: int
    user_id: int
    token_hash: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None


class UserStore(Protocol):
    """Console users, log-ins and auth sessions."""

    # -- users ---------------------------------------------------------------------------------

    def add_user(
        self,
        username: str,
        password_hash: str,
        role: str,
        now: datetime,
        *,
        must_change_password: bool = True,
    ) -> int | None:
        """Create a console user; None if the username is taken."""
        ...

    def get_user(self, user_id: int) -> UserRow | None:
        """One user, or None."""
        ...

    def find_user(self, username: str) -> UserRow | None:
        """The user with this username, or None."""
        ...

    def users(self) -> list[UserRow]:
        """Every console user, by username."""
        ...

    def set_user_password(
        self, user_id: int, password_hash: str, now: datetime, *, must_change_password: bool
    ) -> None:
        """Replace a user's password hash (and unlock the account)."""
        ...

    def set_user_disabled(self, user_id: int, disabled: bool, now: datetime) -> None:
        """Disable (no log-in) or enable a user."""
        ...

    # -- log-ins and auth sessions -------------------------------------------------------------

    def record_login(
        self, user_id: int, now: datetime, *, ok: bool, lock_until: datetime | None = None
    ) -> None:
        """A log-in attempt: success resets the failure count; a failure counts (and may lock)."""
        ...

    def create_auth_session(
        self, user_id: int, token_hash: str, csrf_token: str, now: datetime, expires_at: datetime
    ) -> int:
        """Record a new log-in."""
        ...

    def get_auth_session(self, token_hash: str) -> AuthSessionRow | None:
        """The log-in with this token hash (expired or revoked ones too), or None."""
        ...

    def touch_auth_session(self, session_id: int, now: datetime) -> None:
        """Record activity on a log-in (for the idle timeout)."""
        ...

    def revoke_auth_sessions(
        self, now: datetime, *, session_id: int | None = None, user_id: int | None = None
    ) -> int:
        """End one log-in, or every log-in of a user; returns how many were ended."""
        ...

    # -- the second factor ---------------------------------------------------------------------

    def set_user_totp(self, user_id: int, secret: str | None, now: datetime) -> None:
        """Set or clear a console user's TOTP secret."""
        ...


class UserSql(SqlMixin):
    """`UserStore` in SQL written once; a mixin of `SqlStore`."""

    # -- users ---------------------------------------------------------------------------------

    def add_user(
        self,
        username: str,
        password_hash: str,
        role: str,
        now: datetime,
        *,
        must_change_password: bool = True,
    ) -> int | None:
        """Create a console user; None if the username is taken."""
        _checked(role, Role, "role")
        with self._atomic("add_user") as conn:
            row = conn.execute(
                "INSERT INTO users (username, password_hash, role, must_change_password,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (username) DO NOTHING RETURNING id",
                (username, password_hash, role, int(must_change_password), _ts(now), _ts(now)),
            ).fetchone()
        return None if row is None else int(row[0])

    def get_user(self, user_id: int) -> UserRow | None:
        """One user, or None."""
        rows = self._rows("SELECT * FROM users WHERE id = ?", (user_id,))
        return _user_row(rows[0]) if rows else None

    def find_user(self, username: str) -> UserRow | None:
        """The user with this username, or None."""
        rows = self._rows("SELECT * FROM users WHERE username = ?", (username,))
        return _user_row(rows[0]) if rows else None

    def users(self) -> list[UserRow]:
        """Every console user, by username."""
        return [_user_row(r) for r in self._rows("SELECT * FROM users ORDER BY username")]

    def set_user_password(
        self, user_id: int, password_hash: str, now: datetime, *, must_change_password: bool
    ) -> None:
        """Replace a user's password hash (and unlock the account)."""
        with self._atomic("set_user_password") as conn:
            self._require(conn, "users", user_id)
            conn.execute(
                "UPDATE users SET password_hash = ?, must_change_password = ?, failed_logins = 0,"
                " locked_until = NULL, updated_at = ? WHERE id = ?",
                (password_hash, int(must_change_password), _ts(now), user_id),
            )

    def set_user_disabled(self, user_id: int, disabled: bool, now: datetime) -> None:
        """Disable (no log-in) or enable a user."""
        with self._atomic("set_user_disabled") as conn:
            self._require(conn, "users", user_id)
            conn.execute(
                "UPDATE users SET disabled = ?, updated_at = ? WHERE id = ?",
                (int(disabled), _ts(now), user_id),
            )

    # -- log-ins and auth sessions -------------------------------------------------------------

    def record_login(
        self, user_id: int, now: datetime, *, ok: bool, lock_until: datetime | None = None
    ) -> None:
        """A log-in attempt: success resets the failure count; a failure counts (and may lock)."""
        with self._atomic("record_login") as conn:
            self._require(conn, "users", user_id)
            if ok:
                conn.execute(
                    "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = ?"
                    " WHERE id = ?",
                    (_ts(now), user_id),
                )
            elif lock_until is not None:
                conn.execute(
                    "UPDATE users SET failed_logins = 0, locked_until = ? WHERE id = ?",
                    (_ts(lock_until), user_id),
                )
            else:
                conn.execute(
                    "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?", (user_id,)
                )

    def create_auth_session(
        self, user_id: int, token_hash: str, csrf_token: str, now: datetime, expires_at: datetime
    ) -> int:
        """Record a new log-in."""
        with self._atomic("create_auth_session") as conn:
            row = conn.execute(
                "INSERT INTO auth_sessions (user_id, token_hash, csrf_token, created_at,"
                " expires_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (user_id, token_hash, csrf_token, _ts(now), _ts(expires_at), _ts(now)),
            ).fetchone()
        return int(row[0])

    def get_auth_session(self, token_hash: str) -> AuthSessionRow | None:
        """The log-in with this token hash (expired or revoked ones too), or None."""
        rows = self._rows("SELECT * FROM auth_sessions WHERE token_hash = ?", (token_hash,))
        if not rows:
            return None
        r = rows[0]
        return AuthSessionRow(
            id=r["id"],
            user_id=r["user_id"],
            token_hash=r["token_hash"],
            csrf_token=r["csrf_token"],
            created_at=_dt_req(r["created_at"]),
            expires_at=_dt_req(r["expires_at"]),
            last_seen_at=_dt_req(r["last_seen_at"]),
            revoked_at=_dt(r["revoked_at"]),
        )

    def touch_auth_session(self, session_id: int, now: datetime) -> None:
        """Record activity on a log-in (for the idle timeout)."""
        with self._atomic("touch_auth_session") as conn:
            conn.execute(
                "UPDATE auth_sessions SET last_seen_at = greatest(last_seen_at, ?) WHERE id = ?",
                (_ts(now), session_id),
            )

    def revoke_auth_sessions(
        self, now: datetime, *, session_id: int | None = None, user_id: int | None = None
    ) -> int:
        """End one log-in, or every log-in of a user; returns how many were ended."""
        if (session_id is None) == (user_id is None):
            raise ValueError("give exactly one of session_id and user_id")
        column, value = ("id", session_id) if session_id is not None else ("user_id", user_id)
        with self._atomic("revoke_auth_sessions") as conn:
            cursor = conn.execute(
                f"UPDATE auth_sessions SET revoked_at = ? WHERE {column} = ?"
                " AND revoked_at IS NULL",
                (_ts(now), value),
            )
        return cursor.rowcount

    # -- the second factor ---------------------------------------------------------------------

    def set_user_totp(self, user_id: int, secret: str | None, now: datetime) -> None:
        """Set (or clear, with None) a console user's TOTP secret."""
        with self._atomic("set_user_totp") as conn:
            conn.execute(
                "UPDATE users SET totp_secret = ?, updated_at = ? WHERE id = ?",
                (secret, _ts(now), user_id),
            )


def _user_row(r: Row) -> UserRow:
    return UserRow(
        id=r["id"],
        username=r["username"],
        password_hash=r["password_hash"],
        role=Role(r["role"]),
        disabled=bool(r["disabled"]),
        must_change_password=bool(r["must_change_password"]),
        failed_logins=r["failed_logins"],
        locked_until=_dt(r["locked_until"]),
        last_login_at=_dt(r["last_login_at"]),
        created_at=_dt_req(r["created_at"]),
        updated_at=_dt_req(r["updated_at"]),
        totp_secret=r["totp_secret"],
    )
