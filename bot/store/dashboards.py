"""The rows the console dashboards count (docs/console.md, Dashboards): conversations with their
triage level and red flags, tickets with their timings, scheduled check-ins and broadcast
deliveries, over a time range and optionally one region. A mixin of `SqlStore` in plain
portable SQL (`?` placeholders, no SQLite-only functions); bucketing by day happens in Python
(bot.dashboards). Test contacts are always left out. Imports the standard library and
bot.store (codec, sql) only. Nothing here returns a phone number or a message text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.store.codec import _dt, _ts
from bot.store.sql import SqlMixin


@dataclass(frozen=True)
class OutcomeRow:
    """One conversation: when it started, the patient's region, its triage level and red flags."""

    started_at: datetime
    region: str | None
    level: str | None
    red_flags: tuple[str, ...]


@dataclass(frozen=True)
class TicketTiming:
    """One ticket's timings (no patient, no text)."""

    opened_at: datetime
    claimed_at: datetime | None
    level: str
    priority: str | None
    status: str
    region: str | None


@dataclass(frozen=True)
class CheckinMark:
    """One scheduled check-in: whose (an id, never shown), when it was due, how it went."""

    contact_id: int
    due_at: datetime
    status: str


@dataclass(frozen=True)
class ReachCount:
    """Outbox rows of one broadcast in one status."""

    broadcast_id: int
    name: str
    started_at: datetime
    status: str
    count: int


class DashStore(Protocol):
    """What bot.dashboards needs of a store (SqlStore has it through `DashSql`)."""

    def dash_outcomes(
        self, since: datetime, until: datetime, region: str | None
    ) -> list[OutcomeRow]: ...

    def dash_tickets(
        self, since: datetime, until: datetime, region: str | None
    ) -> list[TicketTiming]: ...

    def dash_waiting(self, region: str | None) -> list[TicketTiming]: ...

    def dash_checkins(
        self, since: datetime, until: datetime, region: str | None
    ) -> list[CheckinMark]: ...

    def dash_reach(
        self, since: datetime, until: datetime, region: str | None
    ) -> list[ReachCount]: ...

    def dash_regions(self) -> list[str]: ...


def _region(region: str | None) -> tuple[str, tuple[Any, ...]]:
    """The SQL condition (on contacts `c`) and parameters of the region filter."""
    return ("", ()) if region is None else (" AND c.region = ?", (region,))


def _when(text: str) -> datetime:
    value = _dt(text)
    assert value is not None
    return value


class DashSql(SqlMixin):
    """`DashStore` in SQL written once; a mixin of `SqlStore` (bot.store.core)."""

    def dash_outcomes(
        self, since: datetime, until: datetime, region: str | None
    ) -> list[OutcomeRow]:
        """Conversations started in [since, until), oldest first."""
        where, extra = _region(region)
        rows = self._rows(
            "SELECT s.started_at, s.state, c.region FROM sessions s"
            " JOIN contacts c ON c.id = s.contact_id"
            f" WHERE s.started_at >= ? AND s.started_at < ? AND c.test = 0{where}"
            " ORDER BY s.started_at, s.id",
            (_ts(since), _ts(until), *extra),
        )
        out = []
        for r in rows:
            state = json.loads(r["state"]) if r["state"] else {}
            level = state.get("triage")
            flags = state.get("red_flags") or ()
            out.append(
                OutcomeRow(
                    _when(r["started_at"]),
                    r["region"],
                    level if isinstance(level, str) else None,
                    tuple(str(f) for f in flags),
                )
            )
        return out

    def dash_tickets(
        self, since: datetime, until: datetime, region: str | None
    ) -> list[TicketTiming]:
        """Tickets opened in [since, until), oldest first."""
        where, extra = _region(region)
        return self._timings(
            f"e.opened_at >= ? AND e.opened_at < ?{where}", (_ts(since), _ts(until), *extra)
        )

    def dash_waiting(self, region: str | None) -> list[TicketTiming]:
        """Tickets waiting for a clinician now, oldest first."""
        where, extra = _region(region)
        return self._timings(f"e.status = 'waiting'{where}", extra)

    def _timings(self, condition: str, params: tuple[Any, ...]) -> list[TicketTiming]:
        rows = self._rows(
            "SELECT e.opened_at, e.claimed_at, e.level, e.priority, e.status, c.region"
            " FROM escalations e JOIN contacts c ON c.id = e.contact_id"
            f" WHERE c.test = 0 AND {condition} ORDER BY e.opened_at, e.id",
            params,
        )
        return [
            TicketTiming(
                _when(r["opened_at"]),
                _dt(r["claimed_at"]),
                r["level"],
                r["priority"],
                r["status"],
                r["region"],
            )
            for r in rows
        ]

    def dash_checkins(
        self, since: datetime, until: datetime, region: str | None
    ) -> list[CheckinMark]:
        """Scheduled check-ins due in [since, until), by contact then due time."""
        where, extra = _region(region)
        rows = self._rows(
            "SELECT k.contact_id, k.due_at, k.status FROM checkins k"
            " JOIN contacts c ON c.id = k.contact_id"
            " WHERE k.kind = 'scheduled' AND k.due_at >= ? AND k.due_at < ?"
            f" AND c.test = 0{where} ORDER BY k.contact_id, k.due_at, k.id",
            (_ts(since), _ts(until), *extra),
        )
        return [CheckinMark(int(r[0]), _when(r[1]), str(r[2])) for r in rows]

    def dash_reach(self, since: datetime, until: datetime, region: str | None) -> list[ReachCount]:
        """Outbox rows per broadcast started in [since, until) and status, oldest first."""
        where, extra = _region(region)
        rows = self._rows(
            "SELECT b.id, b.name, b.started_at, o.status, count(*) AS n FROM outbox o"
            " JOIN broadcasts b ON b.id = o.broadcast_id JOIN contacts c ON c.id = o.contact_id"
            f" WHERE b.started_at >= ? AND b.started_at < ? AND c.test = 0{where}"
            " GROUP BY b.id, b.name, b.started_at, o.status ORDER BY b.started_at, b.id, o.status",
            (_ts(since), _ts(until), *extra),
        )
        return [ReachCount(int(r[0]), str(r[1]), _when(r[2]), str(r[3]), int(r[4])) for r in rows]

    def dash_regions(self) -> list[str]:
        """The regions contacts are in (for the filter), sorted."""
        rows = self._rows(
            "SELECT DISTINCT region FROM contacts WHERE region IS NOT NULL AND test = 0"
            " ORDER BY region"
        )
        return [str(r[0]) for r in rows]
