"""The store side of contacts import and results export (docs/import_export.md): finding the
contacts a phone number already has, and reading conversations, escalations and readings in
batches (keyset pagination on `id`, one short read per batch: an export never holds the
database while its consumer writes). A mixin of `SqlStore`, in portable SQL.

Imports the standard library and bot.store (codec, sql).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from bot.store.codec import _dt, _flag, _ts
from bot.store.sql import Row, SqlMixin

EXPORT_BATCH = 2000  # rows per read while exporting


@dataclass(frozen=True)
class ExportFilter:
    """What an export keeps: start time in [since, until), flows, triage levels, regions.
    Empty tuples keep everything; test contacts (the simulator's) only with `include_test`."""

    since: datetime | None = None
    until: datetime | None = None
    flows: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    include_test: bool = False


@dataclass(frozen=True)
class NewContact:
    """A contact an import adds (bot.io.contacts_import): address and the facts the file gave."""

    channel: str
    address: str
    language: str | None = None
    consent_care: bool | None = None
    consent_broadcast: bool | None = None
    region: str | None = None
    timezone: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class PhoneContact:
    """A contact that already has a phone number (for de-duplication on import)."""

    id: int
    channel: str
    person_id: int | None
    preferred: bool
    opted_out: bool
    consent_care: bool | None
    consent_broadcast: bool | None


@dataclass(frozen=True)
class ExportEscalation:
    """A ticket with its timings, as exported."""

    id: int
    level: str
    reason: str
    status: str
    priority: str | None
    red_flags: tuple[str, ...]
    opened_at: datetime
    claimed_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    deadline_at: datetime | None
    raised_at: datetime | None


@dataclass(frozen=True)
class ExportContact:
    """Who a record is about; `address` is shown or masked by the exporter, never here."""

    id: int
    channel: str
    address: str
    language: str
    region: str | None
    forgotten: bool


@dataclass(frozen=True)
class ExportConversation:
    """One conversation (a session row) with its answers, triage and escalations."""

    id: int
    contact: ExportContact
    flow: str | None
    status: str
    started_at: datetime
    updated_at: datetime
    answers: dict[str, Any] = field(hash=False)
    triage: str | None
    red_flags: tuple[str, ...]
    escalations: tuple[ExportEscalation, ...]


@dataclass(frozen=True)
class ExportReading:
    """One measurement with its conversation's flow and triage level."""

    id: int
    contact: ExportContact
    session_id: int | None
    flow: str | None
    triage: str | None
    concept: str
    value: float
    unit: str | None
    at: datetime
    peak_flow_best: float | None = None  # the conversation's personal best, L/min


@runtime_checkable
class IoStore(Protocol):
    """What import and export need from a store beyond `Store`."""

    def phone_contacts(self, address: str) -> list[PhoneContact]:
        """The SMS/WhatsApp contacts with this E.164 number (at most one per channel)."""
        ...

    def contact_by_address(self, channel: str, address: str) -> PhoneContact | None:
        """The contact with this address on this channel, or None."""
        ...

    def add_contacts(self, rows: Sequence[NewContact], now: datetime, source: str) -> None:
        """Add contacts in bulk, as `get_or_create_contact` + `update_contact` +
        `set_contact_facts` + `set_contact_tags` would one by one (consents recorded with
        `source`; no language given: the person's language on another channel)."""
        ...

    def export_conversations(
        self, flt: ExportFilter, *, batch: int = EXPORT_BATCH, after: int = 0
    ) -> Iterator[ExportConversation]:
        """Conversations that pass `flt`, oldest id first, read `batch` at a time; `after`:
        only ids above it (a cursor for paging)."""
        ...

    def export_readings(
        self, flt: ExportFilter, *, batch: int = EXPORT_BATCH, after: int = 0
    ) -> Iterator[ExportReading]:
        """Readings that pass `flt` (their time, their conversation's flow and level), oldest
        id first; `after`: only ids above it."""
        ...


def _marks(values: tuple[Any, ...]) -> str:
    return ", ".join("?" for _ in values)


def _phone_contact(r: Row) -> PhoneContact:
    return PhoneContact(
        id=r["id"],
        channel=r["channel"],
        person_id=r["person_id"],
        preferred=bool(r["preferred"]),
        opted_out=bool(r["opted_out"]),
        consent_care=_flag(r["consent_care"]),
        consent_broadcast=_flag(r["consent_broadcast"]),
    )


def _contact(r: Row) -> ExportContact:
    return ExportContact(
        id=r["contact_id"],
        channel=r["c_channel"],
        address=r["c_address"],
        language=r["c_language"],
        region=r["c_region"],
        forgotten=r["c_forgotten_at"] is not None,
    )


def _state(raw: str | None) -> dict[str, Any]:
    try:
        data = json.loads(raw or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _escalation(r: Row) -> ExportEscalation:
    return ExportEscalation(
        id=r["id"],
        level=r["level"],
        reason=r["reason"],
        status=r["status"],
        priority=r["priority"],
        red_flags=tuple(json.loads(r["red_flags"] or "[]")),
        opened_at=datetime.fromisoformat(r["opened_at"]),
        claimed_at=_dt(r["claimed_at"]),
        first_response_at=_dt(r["first_response_at"]),
        resolved_at=_dt(r["resolved_at"]),
        closed_at=_dt(r["closed_at"]),
        deadline_at=_dt(r["deadline_at"]),
        raised_at=_dt(r["raised_at"]),
    )


_CONTACT_COLUMNS = (
    "c.channel AS c_channel, c.address AS c_address, c.language AS c_language,"
    " c.region AS c_region, c.forgotten_at AS c_forgotten_at"
)


def _where(flt: ExportFilter, time_column: str, flow_column: str) -> tuple[list[str], list[Any]]:
    """The SQL conditions of a filter (levels are read from the JSON state, in Python)."""
    where: list[str] = []
    params: list[Any] = []
    if flt.since is not None:
        where.append(f"{time_column} >= ?")
        params.append(_ts(flt.since))
    if flt.until is not None:
        where.append(f"{time_column} < ?")
        params.append(_ts(flt.until))
    if flt.flows:
        where.append(f"{flow_column} IN ({_marks(flt.flows)})")
        params.extend(flt.flows)
    if flt.regions:
        where.append(f"c.region IN ({_marks(flt.regions)})")
        params.extend(flt.regions)
    if not flt.include_test:
        where.append("c.test = 0")
    return where, params


_BY_ADDRESS = "FROM contacts WHERE channel = ? AND address = ?"


class IoSql(SqlMixin):
    """`IoStore` in SQL written once; a mixin of `SqlStore` (bot.store.core)."""

    def add_contacts(self, rows: Sequence[NewContact], now: datetime, source: str) -> None:
        """Add contacts in bulk, as `get_or_create_contact` + `update_contact` +
        `set_contact_facts` + `set_contact_tags` would one by one (consents recorded with
        `source`; no language given: the person's language on another channel)."""
        at = _ts(now)

        def flag(value: bool | None) -> int | None:
            return None if value is None else int(value)

        with self._atomic("add_contacts") as conn:
            conn.executemany(
                "INSERT INTO contacts (channel, address, language, language_set, consent_care,"
                " consent_care_at, consent_broadcast, consent_broadcast_at, region, timezone,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (channel, address) DO NOTHING",
                [
                    (
                        r.channel,
                        r.address,
                        r.language or "en",
                        int(r.language is not None),
                        flag(r.consent_care),
                        at if r.consent_care is not None else None,
                        flag(r.consent_broadcast),
                        at if r.consent_broadcast is not None else None,
                        r.region,
                        r.timezone,
                        at,
                        at,
                    )
                    for r in rows
                ],
            )
            conn.executemany(  # as get_or_create_contact: the person's language elsewhere
                "UPDATE contacts SET (language, language_set) = (SELECT o.language,"
                " o.language_set FROM contacts o WHERE o.person_id = contacts.person_id"
                " AND o.id <> contacts.id AND o.language_set = 1"
                " ORDER BY o.updated_at DESC LIMIT 1)"
                " WHERE channel = ? AND address = ? AND EXISTS (SELECT 1 FROM contacts o"
                " WHERE o.person_id = contacts.person_id AND o.id <> contacts.id"
                " AND o.language_set = 1)",
                [(r.channel, r.address) for r in rows if r.language is None],
            )
            conn.executemany(
                f"INSERT INTO consents (contact_id, purpose, granted, source, at)"
                f" SELECT id, ?, ?, ?, ? {_BY_ADDRESS} AND created_at = ?",  # added just now
                [
                    (purpose, int(value), source, at, r.channel, r.address, at)
                    for r in rows
                    for purpose, value in (
                        ("care", r.consent_care),
                        ("broadcast", r.consent_broadcast),
                    )
                    if value is not None
                ],
            )
            conn.executemany(
                f"INSERT INTO contact_tags (contact_id, tag) SELECT id, ? {_BY_ADDRESS}"
                " ON CONFLICT (contact_id, tag) DO NOTHING",
                [(tag, r.channel, r.address) for r in rows for tag in r.tags],
            )

    def phone_contacts(self, address: str) -> list[PhoneContact]:
        """The SMS/WhatsApp contacts with this E.164 number (at most one per channel)."""
        rows = self._rows(
            "SELECT id, channel, person_id, preferred, opted_out, consent_care,"
            " consent_broadcast FROM contacts WHERE channel IN ('sms', 'whatsapp')"
            " AND address = ? ORDER BY preferred DESC, id",
            (address,),
        )
        return [_phone_contact(r) for r in rows]

    def contact_by_address(self, channel: str, address: str) -> PhoneContact | None:
        """The contact with this address on this channel, or None."""
        rows = self._rows(
            "SELECT id, channel, person_id, preferred, opted_out, consent_care,"
            " consent_broadcast FROM contacts WHERE channel = ? AND address = ?",
            (channel, address),
        )
        return _phone_contact(rows[0]) if rows else None

    def export_conversations(
        self, flt: ExportFilter, *, batch: int = EXPORT_BATCH, after: int = 0
    ) -> Iterator[ExportConversation]:
        """Conversations that pass `flt`, oldest id first, read `batch` at a time; `after`:
        only ids above it (a cursor for paging)."""
        where, params = _where(flt, "s.started_at", "s.flow")
        while True:
            rows = self._rows(
                f"SELECT s.id, s.contact_id, s.flow, s.status, s.state, s.started_at,"
                f" s.updated_at, {_CONTACT_COLUMNS} FROM sessions s"
                " JOIN contacts c ON c.id = s.contact_id"
                f" WHERE {' AND '.join(['s.id > ?', *where])} ORDER BY s.id LIMIT ?",
                (after, *params, batch),
            )
            if not rows:
                return
            after = rows[-1]["id"]
            tickets: dict[int, list[ExportEscalation]] = {}
            ids = tuple(r["id"] for r in rows)
            for t in self._rows(
                f"SELECT * FROM escalations WHERE session_id IN ({_marks(ids)}) ORDER BY id",
                ids,
            ):
                tickets.setdefault(t["session_id"], []).append(_escalation(t))
            for r in rows:
                state = _state(r["state"])
                triage = state.get("triage")
                if flt.levels and triage not in flt.levels:
                    continue
                yield ExportConversation(
                    id=r["id"],
                    contact=_contact(r),
                    flow=r["flow"],
                    status=r["status"],
                    started_at=datetime.fromisoformat(r["started_at"]),
                    updated_at=datetime.fromisoformat(r["updated_at"]),
                    answers=dict(state.get("answers") or {}),
                    triage=triage,
                    red_flags=tuple(state.get("red_flags") or ()),
                    escalations=tuple(tickets.get(r["id"], ())),
                )
            if len(rows) < batch:
                return

    def export_readings(
        self, flt: ExportFilter, *, batch: int = EXPORT_BATCH, after: int = 0
    ) -> Iterator[ExportReading]:
        """Readings that pass `flt` (their time, their conversation's flow and level), oldest
        id first; `after`: only ids above it."""
        where, params = _where(flt, "r.at", "s.flow")
        # session id -> (triage, personal-best peak flow), for the current batch
        facts: dict[int, tuple[str | None, float | None]] = {}
        while True:
            rows = self._rows(
                "SELECT r.id, r.contact_id, r.session_id, r.concept, r.value, r.unit, r.at,"
                f" s.flow AS s_flow, {_CONTACT_COLUMNS} FROM readings r"
                " JOIN contacts c ON c.id = r.contact_id"
                " LEFT JOIN sessions s ON s.id = r.session_id"
                f" WHERE {' AND '.join(['r.id > ?', *where])} ORDER BY r.id LIMIT ?",
                (after, *params, batch),
            )
            if not rows:
                return
            after = rows[-1]["id"]
            sessions = tuple({r["session_id"] for r in rows if r["session_id"] is not None})
            facts = {}
            if sessions:
                for s in self._rows(
                    f"SELECT id, state FROM sessions WHERE id IN ({_marks(sessions)})",
                    sessions,
                ):
                    state = _state(s["state"])
                    best = (state.get("answers") or {}).get("peak_flow_best_lpm")
                    best = float(best) if isinstance(best, int | float) and best > 0 else None
                    facts[s["id"]] = (state.get("triage"), best)
            for r in rows:
                triage, best = facts.get(r["session_id"], (None, None))
                if flt.levels and triage not in flt.levels:
                    continue
                yield ExportReading(
                    id=r["id"],
                    contact=_contact(r),
                    session_id=r["session_id"],
                    flow=r["s_flow"],
                    triage=triage,
                    concept=r["concept"],
                    value=float(r["value"]),
                    unit=r["unit"],
                    at=datetime.fromisoformat(r["at"]),
                    peak_flow_best=best,
                )
            if len(rows) < batch:
                return
