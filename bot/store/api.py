"""The store side of the API for other systems and of /metrics (docs/api.md, docs/operations.md):
API tokens (kept as SHA-256 hashes), keyset pages of the resources the API serves, and the
queue and ticket counts /metrics reports. A mixin of `SqlStore`, in plain portable SQL.
Imports the standard library and bot.store (codec, sql).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.store.codec import _dt, _ts
from bot.store.sql import Row, SqlMixin


@dataclass(frozen=True)
class ApiTokenRow:
    """One API token; the token itself is never stored, only its SHA-256 (`token_hash`)."""

    id: int
    name: str
    token_hash: str
    prefix: str  # the first characters of the token, to recognise it in lists
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class QueueStat:
    """Outbox rows waiting (queued or sending) in one lane of one channel, and the oldest's age."""

    channel: str
    priority: int  # the Lane value: -1 emergency, 0 conversation, 1 bulk
    depth: int
    oldest_created_at: datetime | None


@dataclass(frozen=True)
class TicketStat:
    """Open tickets of one status and priority, and when the oldest was opened."""

    status: str
    priority: str | None
    count: int
    oldest_opened_at: datetime | None


# The resources the API pages through: table -> the columns a filter may name.
PAGED: Mapping[str, frozenset[str]] = {
    "contacts": frozenset({"test", "channel"}),
    "sessions": frozenset({"contact_id", "status", "flow"}),
    "escalations": frozenset({"contact_id", "status", "level"}),
    "readings": frozenset({"contact_id", "concept"}),
    "broadcasts": frozenset({"status"}),
}


class ApiStore(Protocol):
    """The methods bot.api.service, bot.api.cli and bot.metrics use on top of `Store`."""

    def add_api_token(
        self,
        name: str,
        token_hash: str,
        prefix: str,
        scopes: tuple[str, ...],
        by: str,
        now: datetime,
    ) -> int: ...

    def api_token_by_hash(self, token_hash: str) -> ApiTokenRow | None: ...

    def get_api_token(self, token_id: int) -> ApiTokenRow | None: ...

    def api_tokens(self) -> list[ApiTokenRow]: ...

    def revoke_api_token(self, token_id: int, by: str, now: datetime) -> bool: ...

    def touch_api_token(self, token_id: int, now: datetime) -> None: ...

    def api_page(
        self,
        table: str,
        after: int,
        limit: int,
        filters: Mapping[str, Any] | None = None,
        since: tuple[str, datetime] | None = None,
    ) -> list[dict[str, Any]]: ...

    def outbox_queue_stats(self) -> list[QueueStat]: ...

    def open_ticket_stats(self) -> list[TicketStat]: ...


class ApiSql(SqlMixin):
    """`ApiStore` in SQL written once; a mixin of `SqlStore` (bot.store.core)."""

    # -- tokens ---------------------------------------------------------------------------

    def add_api_token(
        self,
        name: str,
        token_hash: str,
        prefix: str,
        scopes: tuple[str, ...],
        by: str,
        now: datetime,
    ) -> int:
        """Store a new token's hash and scopes; returns its id."""
        with self._atomic("add_api_token") as conn:
            row = conn.execute(
                "INSERT INTO api_tokens (name, token_hash, prefix, scopes, created_at, created_by)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (name, token_hash, prefix, json.dumps(sorted(scopes)), _ts(now), by),
            ).fetchone()
        return int(row[0])

    def api_token_by_hash(self, token_hash: str) -> ApiTokenRow | None:
        """The token with this SHA-256 (revoked or not), or None."""
        rows = self._rows("SELECT * FROM api_tokens WHERE token_hash = ?", (token_hash,))
        return _token_row(rows[0]) if rows else None

    def get_api_token(self, token_id: int) -> ApiTokenRow | None:
        """One token by id, or None."""
        rows = self._rows("SELECT * FROM api_tokens WHERE id = ?", (token_id,))
        return _token_row(rows[0]) if rows else None

    def api_tokens(self) -> list[ApiTokenRow]:
        """Every token, oldest first (revoked ones too: the audit trail names them)."""
        return [_token_row(r) for r in self._rows("SELECT * FROM api_tokens ORDER BY id")]

    def revoke_api_token(self, token_id: int, by: str, now: datetime) -> bool:
        """Revoke a token at once; False if there is no such token or it was revoked already."""
        with self._atomic("revoke_api_token") as conn:
            cursor = conn.execute(
                "UPDATE api_tokens SET revoked_at = ?, revoked_by = ?"
                " WHERE id = ? AND revoked_at IS NULL",
                (_ts(now), by, token_id),
            )
        return cursor.rowcount > 0

    def touch_api_token(self, token_id: int, now: datetime) -> None:
        """Record that a token was used."""
        with self._atomic("touch_api_token") as conn:
            conn.execute(
                "UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (_ts(now), token_id)
            )

    # -- pages ----------------------------------------------------------------------------

    def api_page(
        self,
        table: str,
        after: int,
        limit: int,
        filters: Mapping[str, Any] | None = None,
        since: tuple[str, datetime] | None = None,
    ) -> list[dict[str, Any]]:
        """Up to `limit` rows of `table` with id > `after`, by id (a keyset page: stable while
        rows are added), each filter column equal to its value, and optionally a timestamp
        column (`since` = (column, at)) at or after `at`."""
        allowed = PAGED.get(table)
        if allowed is None:
            raise ValueError(f"{table} is not a paged resource")
        where = ["id > ?"]
        params: list[Any] = [after]
        for column, value in (filters or {}).items():
            if column not in allowed:
                raise ValueError(f"{table} cannot be filtered by {column}")
            where.append(f"{column} = ?")
            params.append(value)
        if since is not None:
            column, at = since
            if column not in {"updated_at", "opened_at", "at", "created_at"}:
                raise ValueError(f"{column} is not a timestamp column")
            where.append(f"{column} >= ?")
            params.append(_ts(at))
        rows = self._rows(
            f"SELECT * FROM {table} WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
            (*params, limit),
        )
        return [dict(r) for r in rows]

    # -- metrics --------------------------------------------------------------------------

    def outbox_queue_stats(self) -> list[QueueStat]:
        """Per channel and lane: rows queued or sending, and the oldest one's creation time."""
        rows = self._rows(
            "SELECT channel, priority, count(*) AS depth, min(created_at) AS oldest FROM outbox"
            " WHERE status IN ('queued', 'sending') GROUP BY channel, priority"
        )
        return [
            QueueStat(r["channel"], int(r["priority"]), int(r["depth"]), _dt(r["oldest"]))
            for r in rows
        ]

    def open_ticket_stats(self) -> list[TicketStat]:
        """Per status and priority: open tickets, and when the oldest was opened."""
        rows = self._rows(
            "SELECT status, priority, count(*) AS n, min(opened_at) AS oldest FROM escalations"
            " WHERE status IN ('waiting', 'claimed') GROUP BY status, priority"
        )
        return [TicketStat(r["status"], r["priority"], int(r["n"]), _dt(r["oldest"])) for r in rows]


def _token_row(r: Row) -> ApiTokenRow:
    return ApiTokenRow(
        id=int(r["id"]),
        name=r["name"],
        token_hash=r["token_hash"],
        prefix=r["prefix"],
        scopes=tuple(json.loads(r["scopes"])),
        created_at=datetime.fromisoformat(r["created_at"]),
        created_by=r["created_by"],
        last_used_at=_dt(r["last_used_at"]),
        revoked_at=_dt(r["revoked_at"]),
        revoked_by=r["revoked_by"],
    )
