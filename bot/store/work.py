"""Scale-out bookkeeping (docs/deploy.md): one lease row per scheduled sweep, so that of many
`carebridge worker` processes only one runs a given sweep at a time; a heartbeat row per
process; the per-contact turn lock; and the outbox depth per lane for monitoring. A mixin of
the store, written in portable SQL (`?` placeholders, ON CONFLICT upserts, RETURNING).
Imports the standard library and bot.store (codec, messaging, sql).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot.store.codec import _dt, _ts
from bot.store.messaging import Lane, OutboxStatus
from bot.store.sql import SqlMixin

PRUNE_AFTER = timedelta(days=1)  # heartbeat rows of processes gone this long are dropped
CONTACT_LOCK_BASE = 15 << 48  # advisory lock keys of contacts, clear of other keys


@dataclass(frozen=True)
class SweepLease:
    """Who runs (or last ran) a named sweep, and until when nobody else may."""

    name: str
    holder: str
    claimed_at: datetime
    expires_at: datetime  # while running: the lease; after a run: when the next run is due
    finished_at: datetime | None
    runs: int


@dataclass(frozen=True)
class WorkerRow:
    """One `serve` or `worker` process as its heartbeat shows it."""

    name: str
    kind: str  # "serve" or "worker"
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime
    stopped_at: datetime | None


@dataclass(frozen=True)
class QueueDepth:
    """Outbox rows still to send on one channel and lane, and the oldest one's due time."""

    channel: str
    lane: Lane
    waiting: int
    oldest_due_at: datetime | None


class WorkStore(Protocol):
    """What the worker processes need of the store (bot.worker, bot.web)."""

    def claim_sweep(self, name: str, holder: str, now: datetime, lease: timedelta) -> bool: ...

    def release_sweep(self, name: str, holder: str, now: datetime, next_at: datetime) -> None: ...

    def sweep_leases(self) -> list[SweepLease]: ...

    def heartbeat(
        self, name: str, kind: str, host: str, pid: int, now: datetime, *, stopped: bool = False
    ) -> None: ...

    def workers(self, kind: str | None = None) -> list[WorkerRow]: ...

    def lock_contact(self, contact_id: int) -> None: ...

    def queue_depth(self) -> list[QueueDepth]: ...


class WorkSql(SqlMixin):
    """`WorkStore` in SQL written once; a mixin of `SqlStore` (bot.store.core)."""

    # -- sweep leases ------------------------------------------------------------------------

    def claim_sweep(self, name: str, holder: str, now: datetime, lease: timedelta) -> bool:
        """Take the sweep `name` for `lease` when it is free (never run, its last run's
        interval is over, or its holder's lease ran out: the holder crashed); True when
        `holder` now holds it. Atomic: of many workers ticking at once exactly one wins."""
        stamp = _ts(now)
        with self._atomic("claim_sweep") as conn:
            row = conn.execute(
                "INSERT INTO sweep_leases (name, holder, claimed_at, expires_at, runs)"
                " VALUES (?, ?, ?, ?, 1) ON CONFLICT (name) DO UPDATE SET"
                " holder = excluded.holder, claimed_at = excluded.claimed_at,"
                " expires_at = excluded.expires_at, finished_at = NULL,"
                " runs = sweep_leases.runs + 1"
                " WHERE sweep_leases.expires_at <= ? RETURNING holder",
                (name, holder, stamp, _ts(now + lease), stamp),
            ).fetchone()
        return row is not None and row[0] == holder

    def release_sweep(self, name: str, holder: str, now: datetime, next_at: datetime) -> None:
        """A run of `name` by `holder` finished at `now`; nobody runs it again before
        `next_at` (so N workers together sweep about once per interval, not N times)."""
        with self._atomic("release_sweep") as conn:
            conn.execute(
                "UPDATE sweep_leases SET expires_at = ?, finished_at = ?"
                " WHERE name = ? AND holder = ?",
                (_ts(max(now, next_at)), _ts(now), name, holder),
            )

    def sweep_leases(self) -> list[SweepLease]:
        """Every sweep's lease row, by name."""
        return [
            SweepLease(
                name=r["name"],
                holder=r["holder"],
                claimed_at=datetime.fromisoformat(r["claimed_at"]),
                expires_at=datetime.fromisoformat(r["expires_at"]),
                finished_at=_dt(r["finished_at"]),
                runs=int(r["runs"]),
            )
            for r in self._rows("SELECT * FROM sweep_leases ORDER BY name")
        ]

    # -- heartbeats --------------------------------------------------------------------------

    def heartbeat(
        self, name: str, kind: str, host: str, pid: int, now: datetime, *, stopped: bool = False
    ) -> None:
        """Record that process `name` is alive at `now` (or, `stopped`, that it stopped
        cleanly); rows of processes gone for a day are dropped."""
        stamp = _ts(now)
        with self._atomic("heartbeat") as conn:
            conn.execute(
                "INSERT INTO workers (name, kind, host, pid, started_at, seen_at, stopped_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " seen_at = excluded.seen_at, stopped_at = excluded.stopped_at",
                (name, kind, host, pid, stamp, stamp, stamp if stopped else None),
            )
            conn.execute("DELETE FROM workers WHERE seen_at < ?", (_ts(now - PRUNE_AFTER),))

    def workers(self, kind: str | None = None) -> list[WorkerRow]:
        """The processes that sent a heartbeat lately, latest first (of one kind, if given)."""
        where, params = ("WHERE kind = ?", (kind,)) if kind is not None else ("", ())
        rows = self._rows(f"SELECT * FROM workers {where} ORDER BY seen_at DESC, id", params)
        return [
            WorkerRow(
                name=r["name"],
                kind=r["kind"],
                host=r["host"],
                pid=int(r["pid"]),
                started_at=datetime.fromisoformat(r["started_at"]),
                seen_at=datetime.fromisoformat(r["seen_at"]),
                stopped_at=_dt(r["stopped_at"]),
            )
            for r in rows
        ]

    # -- one patient at a time -----------------------------------------------------------------

    def lock_contact(self, contact_id: int) -> None:
        """Inside a transaction: hold the contact's turn until it ends, so no other process
        saves this patient's conversation meanwhile (PostgreSQL: a transaction-scoped advisory
        lock keyed by the contact; SQLite: the transaction's write lock already holds every
        other writer off)."""
        with self._atomic("lock_contact") as conn:
            self.dialect.advisory_lock(conn, CONTACT_LOCK_BASE + contact_id)

    # -- monitoring ----------------------------------------------------------------------------

    def queue_depth(self) -> list[QueueDepth]:
        """Per channel and lane: outbox rows still to send (queued or being sent) and the
        earliest due time among them (its age is how far delivery is behind)."""
        rows = self._rows(
            "SELECT channel, priority, count(*) AS waiting, min(next_attempt_at) AS oldest"
            " FROM outbox WHERE status IN (?, ?) GROUP BY channel, priority"
            " ORDER BY channel, priority",
            (OutboxStatus.QUEUED, OutboxStatus.SENDING),
        )
        return [
            QueueDepth(r["channel"], Lane(int(r["priority"])), int(r["waiting"]), _dt(r["oldest"]))
            for r in rows
        ]
