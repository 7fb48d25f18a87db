"""Broadcasts and consent: campaigns, the fan-out into the outbox in SQL (INSERT ... SELECT:
the audience never passes through Python), audience counts, the kill switch and the consent
record; its rows, `BroadcastStore` and the `BroadcastSql` mixin (docs/broadcasts.md).
Imports the standard library and bot.store (codec, messaging, sql).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from bot.store.codec import _dt, _json, _ts
from bot.store.messaging import OutboxStatus
from bot.store.sql import Connection, Dialect, Row, SqlMixin

log = logging.getLogger(__name__)


class BroadcastStatus(StrEnum):
    """Where a coordinator broadcast stands.

    draft -> approved (by a second person) -> sending (fan-out into the outbox under way) ->
    sent (every recipient has an outbox row; delivery goes on there); cancelled at any point by
    the kill switch. A recurring broadcast stays `approved` and spawns one occurrence (its own
    broadcast) per due time; it is `sent` when its rule has ended.
    """

    DRAFT = "draft"
    APPROVED = "approved"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"


class ConsentPurpose(StrEnum):
    """What a consent record is about; `contact` is "may we message at all" (STOP / START)."""

    CARE = "care"
    BROADCAST = "broadcast"
    CONTACT = "contact"


@dataclass(frozen=True)
class Audience:
    """Who a broadcast is for: all subscribers, narrowed by each non-empty filter (a value in
    any filter's list matches; filters combine with AND). Language and channel are facts of
    a contact; region, tag and condition match when any contact of the person has them."""

    languages: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    include_test: bool = False  # test contacts (the simulator's) too; never unless asked

    def _filters(self) -> dict[str, tuple[str, ...]]:
        return {k: v for k, v in vars(self).items() if k != "include_test" and v}

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {k: list(v) for k, v in self._filters().items()}
        if self.include_test:
            data["include_test"] = True
        return data

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Audience:
        filters = [k for k in cls.__dataclass_fields__ if k != "include_test"]
        return cls(
            **{k: tuple(str(x) for x in raw.get(k, ())) for k in filters},
            include_test=bool(raw.get("include_test", False)),
        )

    def describe(self) -> str:
        """A one-line summary for people ("all subscribers" when nothing narrows it)."""
        parts = [f"{k}={','.join(v)}" for k, v in self._filters().items()]
        text = " ".join(parts) or "all subscribers"
        return f"{text} + test contacts" if self.include_test else text


@dataclass(frozen=True)
class NewBroadcast:
    """A broadcast to store as a draft (bot.broadcasts.service checks it first)."""

    name: str
    texts: dict[str, str] = field(hash=False)  # language -> text
    sms_texts: dict[str, str] = field(hash=False)  # language -> SMS variant (optional)
    default_language: str
    audience: Audience = Audience()
    send_at: datetime | None = None  # None: as soon as it is approved
    recurrence: dict[str, Any] | None = field(default=None, hash=False)  # bot.schedules.Rule
    timezone: str | None = None  # the recurrence's time zone
    next_due_at: datetime | None = None  # the first occurrence of a recurring broadcast
    urgent: bool = False  # ignores quiet hours
    whatsapp_template: str | None = None  # a name under broadcast.whatsapp_templates
    correction_of: int | None = None  # goes to exactly the recipients that one reached


@dataclass(frozen=True)
class BroadcastRow:
    """A stored broadcast: what, to whom, when, who created, approved or cancelled it."""

    id: int
    name: str
    status: BroadcastStatus
    created_by: int
    created_by_name: str
    created_at: datetime
    approved_by: int | None
    approved_by_name: str | None
    approved_at: datetime | None
    send_at: datetime | None
    recurrence: dict[str, Any] | None = field(hash=False)
    timezone: str | None
    next_due_at: datetime | None
    parent_id: int | None  # the recurring broadcast this is an occurrence of
    correction_of: int | None
    urgent: bool
    audience: Audience
    whatsapp_template: str | None
    default_language: str
    fan_out_cursor: int  # person id (or, for a correction, outbox id) fanned out so far
    enqueued: int  # outbox rows created so far
    started_at: datetime | None
    fanned_out_at: datetime | None
    cancelled_by: int | None
    cancelled_by_name: str | None
    cancelled_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class BroadcastText:
    """A broadcast's text in one language, and its SMS variant (None: the text itself)."""

    language: str
    text: str
    sms_text: str | None


@dataclass(frozen=True)
class Variant:
    """What one language on one channel receives: the outbox text and meta."""

    language: str
    channel: str
    text: str
    meta: dict[str, str] = field(hash=False)


@dataclass(frozen=True)
class FanOutPlan:
    """Everything the store needs to turn a broadcast's audience into outbox rows in SQL."""

    broadcast_id: int
    audience: Audience
    channels: tuple[str, ...]  # preference order: a person gets it on the first that reaches
    variants: tuple[Variant, ...]
    default_language: str  # its variant is used for languages without their own
    default_timezone: str
    releases: dict[str, datetime] = field(hash=False)  # time zone -> earliest send (quiet hours)
    default_release: datetime  # for time zones not in `releases`
    quiet: str | None = None  # "21:00-08:00" on each row for the dispatcher; None: urgent
    correction_of: int | None = None


@dataclass(frozen=True)
class FanOutStep:
    """What one fan-out batch did."""

    enqueued: int  # outbox rows created by this batch
    cursor: int
    last: int  # the cursor value at which the fan-out is complete
    status: BroadcastStatus  # after the batch (sent when complete; cancelled stops it)


@dataclass(frozen=True)
class AudienceCount:
    """Recipients (one contact per person) on one channel, in one language and time zone."""

    channel: str
    language: str
    timezone: str
    count: int


@dataclass(frozen=True)
class AudienceCensus:
    """Who a plan reaches, and who matched the filters but is left out, and why."""

    counts: tuple[AudienceCount, ...]
    opted_out: int  # contacts that sent STOP
    no_consent: int  # contacts that never agreed to broadcasts (or withdrew)
    duplicates: int  # further contacts of a person who gets it on another channel


@dataclass(frozen=True)
class DeliveryCount:
    """Outbox rows of a broadcast with one channel, status and error."""

    channel: str
    status: OutboxStatus
    error: str | None
    count: int


@dataclass(frozen=True)
class OutboxGate:
    """What the dispatcher checks just before sending a broadcast row."""

    status: OutboxStatus  # the row's own status (cancelled by the kill switch)
    broadcast_status: BroadcastStatus | None
    opted_out: bool
    consent_broadcast: bool | None


@dataclass(frozen=True)
class ConsentRow:
    """One change of consent, append-only: the timestamped record of a purpose."""

    id: int
    contact_id: int
    purpose: ConsentPurpose
    granted: bool
    source: str | None  # conversation, keyword, console, cli, migration; None: the bot
    at: datetime


CANCEL_CHUNK = 20_000  # outbox rows cancelled per transaction: writers never wait long
_REACHED = ("sent", "delivered")  # a correction goes to the rows of these statuses
_LIVE = ("draft", "approved", "sending", "sent")  # the kill switch may stop these


def _marks(prefix: str, values: tuple[str, ...], params: dict[str, Any]) -> str:
    """Named placeholders for an IN list, added to `params`."""
    names = []
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
        names.append(f":{prefix}{i}")
    return ", ".join(names) or "NULL"


def _match(
    audience: Audience, channels: tuple[str, ...], params: dict[str, Any], dialect: Dialect
) -> str:
    """The audience filters on contact `c` (not consent: see `_ELIGIBLE`)."""
    where = [f"{dialect.unindexed('c.channel')} IN ({_marks('ch', channels, params)})"]
    if not audience.include_test:
        where.append("c.test = 0")
    if audience.languages:
        where.append(f"c.language IN ({_marks('lang', audience.languages, params)})")
    if audience.regions:  # person-level facts: any contact of the person
        where.append(
            "EXISTS (SELECT 1 FROM contacts m WHERE m.person_id = c.person_id"
            f" AND m.region IN ({_marks('reg', audience.regions, params)}))"
        )
    if audience.tags:
        tags = _marks("tag", audience.tags, params)
        where.append(
            "EXISTS (SELECT 1 FROM contacts m JOIN contact_tags t ON t.contact_id = m.id"
            f" WHERE m.person_id = c.person_id AND t.tag IN ({tags}))"
        )
    if audience.conditions:
        where.append(
            "EXISTS (SELECT 1 FROM contacts m JOIN enrollments e ON e.contact_id = m.id,"
            f" {dialect.json_each('e.conditions', 'j')} WHERE m.person_id = c.person_id"
            f" AND j.value IN ({_marks('cond', audience.conditions, params)}))"
        )
    return " AND ".join(where)


# A test contact (the simulator's) that never said yes or no counts as subscribed; it has no
# quiet hours (zone '': released at once, and the dispatcher's re-check lets it go).
_CONSENT = "CASE WHEN c.test = 1 THEN coalesce(c.consent_broadcast, 1) ELSE c.consent_broadcast END"
_ELIGIBLE = f"c.opted_out = 0 AND {_CONSENT} = 1"
_TZ = (
    "CASE WHEN c.test = 1 THEN '' ELSE coalesce(c.timezone,"
    " (SELECT e.timezone FROM enrollments e WHERE e.contact_id = c.id), :default_tz) END"
)


def _rank(channels: tuple[str, ...], params: dict[str, Any]) -> str:
    """A person's contacts, best first: preferred, channel order, last to write to us, oldest."""
    whens = " ".join(f"WHEN :rank{i} THEN {i}" for i in range(len(channels)))
    for i, channel in enumerate(channels):
        params[f"rank{i}"] = channel
    return (
        f"row_number() OVER (PARTITION BY c.person_id ORDER BY c.preferred DESC,"
        f" CASE c.channel {whens} ELSE {len(channels)} END, c.last_inbound_at DESC, c.id)"
    )


def _candidates(plan: FanOutPlan, params: dict[str, Any], *, ranged: bool, dialect: Dialect) -> str:
    """The CTE `cand(id, person_id, channel, address, language, tz, ord, rn)`: rn = 1 is the
    one contact per person that receives the broadcast."""
    params["default_tz"] = plan.default_timezone
    if plan.correction_of is not None:
        params["original"] = plan.correction_of
        span = " AND o.id > :lo AND o.id <= :hi" if ranged else ""
        return (
            f"cand AS (SELECT c.id, c.person_id, c.channel, c.address, c.language, {_TZ} AS tz,"
            " o.id AS ord, 1 AS rn FROM outbox o JOIN contacts c ON c.id = o.contact_id"
            f" WHERE {dialect.unindexed('o.broadcast_id')} = :original"
            f" AND o.status IN {_REACHED}{span} AND {_ELIGIBLE}"
            f" AND {dialect.unindexed('c.channel')} IN ({_marks('ch', plan.channels, params)}))"
        )
    span = "c.person_id > :lo AND c.person_id <= :hi AND " if ranged else ""
    return (
        f"cand AS (SELECT c.id, c.person_id, c.channel, c.address, c.language, {_TZ} AS tz,"
        f" c.person_id AS ord, {_rank(plan.channels, params)} AS rn FROM contacts c"
        f" WHERE {span}{_ELIGIBLE} AND {_match(plan.audience, plan.channels, params, dialect)})"
    )


def _values(name: str, columns: str, rows: list[tuple[Any, ...]], params: dict[str, Any]) -> str:
    """A CTE of literal rows through named parameters (an empty one has no rows)."""
    width = len(columns.split(","))
    if not rows:
        nulls = ", ".join("NULL" for _ in range(width))
        return f"{name}({columns}) AS (SELECT {nulls} WHERE 1 = 0)"
    tuples = []
    for i, row in enumerate(rows):
        names = []
        for j, value in enumerate(row):
            params[f"{name}{i}_{j}"] = value
            names.append(f":{name}{i}_{j}")
        tuples.append(f"({', '.join(names)})")
    return f"{name}({columns}) AS (VALUES {', '.join(tuples)})"


def _fan_out_sql(plan: FanOutPlan, now: datetime, params: dict[str, Any], dialect: Dialect) -> str:
    rel = _values("rel", "tz, at", [(tz, _ts(at)) for tz, at in plan.releases.items()], params)
    var = _values(
        "var",
        "language, channel, text, meta",
        [(v.language, v.channel, v.text, _json(v.meta)) for v in plan.variants],
        params,
    )
    params.update(
        broadcast=plan.broadcast_id,
        default_language=plan.default_language,
        default_release=_ts(plan.default_release),
        now=_ts(now),
    )
    return (
        f"WITH {rel}, {var}, {_candidates(plan, params, ranged=True, dialect=dialect)}"
        " INSERT INTO outbox (contact_id, channel, address, text, choices, kind, meta, status,"
        " attempts, next_attempt_at, created_at, priority, broadcast_id)"
        " SELECT cand.id, cand.channel, cand.address, coalesce(v.text, d.text), '[]',"
        " 'broadcast',"
        f" {dialect.json_set('coalesce(v.meta, d.meta)', 'tz', 'coalesce(rel.tz, :default_tz)')},"
        " 'queued', 0, coalesce(rel.at, :default_release), :now, 1, :broadcast"
        " FROM cand JOIN var d ON d.language = :default_language AND d.channel = cand.channel"
        " LEFT JOIN var v ON v.language = cand.language AND v.channel = cand.channel"
        " LEFT JOIN rel ON rel.tz = cand.tz WHERE cand.rn = 1 ORDER BY cand.ord"
    )


class BroadcastStore(Protocol):
    """Broadcasts, their fan-out and kill switch, and the consent record."""

    def add_broadcast(self, new: NewBroadcast, user_id: int, username: str, now: datetime) -> int:
        """Store a draft broadcast and its texts; returns its id."""
        ...

    def get_broadcast(self, broadcast_id: int) -> BroadcastRow | None:
        """One broadcast, or None."""
        ...

    def broadcasts(
        self, status: str | None = None, parent_id: int | None = None, limit: int = 100
    ) -> list[BroadcastRow]:
        """Broadcasts, newest first, optionally with one status or of one recurring parent."""
        ...

    def broadcast_texts(self, broadcast_id: int) -> list[BroadcastText]:
        """A broadcast's texts, by language."""
        ...

    def approve_broadcast(
        self, broadcast_id: int, user_id: int, username: str, now: datetime
    ) -> bool:
        """draft -> approved by a user who is not its creator; False if not a draft.
        Approval by the creator is refused by the schema itself (StoreError)."""
        ...

    def start_broadcast(self, broadcast_id: int, now: datetime, *, early: bool = False) -> bool:
        """approved one-off -> sending once its send time has come (`early`: now anyway)."""
        ...

    def fan_out(self, plan: FanOutPlan, batch: int, now: datetime) -> FanOutStep:
        """Enqueue the next `batch` people of a sending broadcast in one transaction, in SQL
        (INSERT ... SELECT): the audience never passes through Python."""
        ...

    def fan_out_start(self, plan: FanOutPlan) -> tuple[int, int]:
        """(first, last) cursor values of a plan's fan-out, for progress bars."""
        ...

    def cancel_broadcast(
        self, broadcast_id: int, user_id: int, username: str, now: datetime
    ) -> int:
        """The kill switch: the broadcast (and a recurring one's occurrences) -> cancelled,
        then every queued or sending row of it -> cancelled. Returns how many rows stopped."""
        ...

    def due_broadcasts(self, now: datetime, limit: int) -> list[BroadcastRow]:
        """Approved one-offs whose time has come, and broadcasts still fanning out."""
        ...

    def due_recurrences(self, now: datetime, limit: int) -> list[BroadcastRow]:
        """Approved recurring broadcasts whose next occurrence is due."""
        ...

    def add_occurrence(self, parent_id: int, send_at: datetime, now: datetime) -> int | None:
        """Copy an approved recurring broadcast into an approved one-off at `send_at`; None if
        that occurrence exists already."""
        ...

    def advance_recurrence(
        self, broadcast_id: int, expected: datetime, next_due_at: datetime | None, now: datetime
    ) -> bool:
        """Move a recurring broadcast to its next occurrence (None: it has ended -> sent) if it
        still is at `expected`."""
        ...

    def audience_census(self, plan: FanOutPlan) -> AudienceCensus:
        """Count who the plan reaches (per channel, language, time zone) and who is left out."""
        ...

    def audience_timezones(self) -> list[str]:
        """Every time zone a contact or enrollment names (for quiet-hour releases)."""
        ...

    def delivery_counts(self, broadcast_id: int) -> list[DeliveryCount]:
        """A broadcast's outbox rows counted by channel, status and error."""
        ...

    def stopped_after(self, broadcast_id: int) -> dict[str, int]:
        """Per channel, recipients it reached who have opted out since (STOP in reply)."""
        ...

    def outbox_gate(self, outbox_id: int) -> OutboxGate | None:
        """A row's status with its broadcast's status and its contact's consent, in one read."""
        ...

    def cancel_outbox(self, outbox_id: int, reason: str, now: datetime) -> bool:
        """A queued or sending row -> cancelled (`reason` in `error`); False otherwise."""
        ...

    def defer_outbox(self, outbox_id: int, until: datetime) -> bool:
        """A claimed row back to queued, due at `until`, without counting an attempt."""
        ...

    def consents(self, contact_id: int) -> list[ConsentRow]:
        """A contact's consent record, oldest first."""
        ...


class BroadcastSql(SqlMixin):
    """`BroadcastStore` in SQL written once; a mixin of `SqlStore` (bot.store.core)."""

    # -- campaigns ----------------------------------------------------------------------

    def add_broadcast(self, new: NewBroadcast, user_id: int, username: str, now: datetime) -> int:
        """Store a draft broadcast and its texts; returns its id."""
        at = _ts(now)
        with self._atomic("add_broadcast") as conn:
            row = conn.execute(
                "INSERT INTO broadcasts (name, status, created_by, created_by_name, created_at,"
                " send_at, recurrence, timezone, next_due_at, correction_of, urgent, audience,"
                " whatsapp_template, default_language, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    new.name,
                    BroadcastStatus.DRAFT,
                    user_id,
                    username,
                    at,
                    _ts(new.send_at) if new.send_at else None,
                    _json(new.recurrence) if new.recurrence is not None else None,
                    new.timezone,
                    _ts(new.next_due_at) if new.next_due_at else None,
                    new.correction_of,
                    int(new.urgent),
                    _json(new.audience.to_json()),
                    new.whatsapp_template,
                    new.default_language,
                    at,
                ),
            ).fetchone()
            broadcast_id = int(row[0])
            conn.executemany(
                "INSERT INTO broadcast_texts (broadcast_id, language, text, sms_text)"
                " VALUES (?, ?, ?, ?)",
                [
                    (broadcast_id, lang, text, new.sms_texts.get(lang))
                    for lang, text in new.texts.items()
                ],
            )
        log.info("store: broadcast %d created by user %d", broadcast_id, user_id)
        return broadcast_id

    def get_broadcast(self, broadcast_id: int) -> BroadcastRow | None:
        """One broadcast, or None."""
        rows = self._rows("SELECT * FROM broadcasts WHERE id = ?", (broadcast_id,))
        return _broadcast_row(rows[0]) if rows else None

    def broadcasts(
        self, status: str | None = None, parent_id: int | None = None, limit: int = 100
    ) -> list[BroadcastRow]:
        """Broadcasts, newest first, optionally with one status or of one recurring parent."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(BroadcastStatus(status))
        if parent_id is not None:
            where.append("parent_id = ?")
            params.append(parent_id)
        rows = self._rows(
            f"SELECT * FROM broadcasts WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [_broadcast_row(r) for r in rows]

    def broadcast_texts(self, broadcast_id: int) -> list[BroadcastText]:
        """A broadcast's texts, by language."""
        rows = self._rows(
            "SELECT language, text, sms_text FROM broadcast_texts WHERE broadcast_id = ?"
            " ORDER BY language",
            (broadcast_id,),
        )
        return [BroadcastText(r["language"], r["text"], r["sms_text"]) for r in rows]

    def approve_broadcast(
        self, broadcast_id: int, user_id: int, username: str, now: datetime
    ) -> bool:
        """draft -> approved by a user who is not its creator; False if not a draft.
        Approval by the creator is refused by the schema itself (StoreError)."""
        with self._atomic("approve_broadcast") as conn:
            cursor = conn.execute(
                "UPDATE broadcasts SET status = ?, approved_by = ?, approved_by_name = ?,"
                " approved_at = ?, updated_at = ? WHERE id = ? AND status = ?",
                (
                    BroadcastStatus.APPROVED,
                    user_id,
                    username,
                    _ts(now),
                    _ts(now),
                    broadcast_id,
                    BroadcastStatus.DRAFT,
                ),
            )
        return cursor.rowcount == 1

    def start_broadcast(self, broadcast_id: int, now: datetime, *, early: bool = False) -> bool:
        """approved one-off -> sending once its send time has come (`early`: now anyway)."""
        with self._atomic("start_broadcast") as conn:
            cursor = conn.execute(
                "UPDATE broadcasts SET status = ?, started_at = ?, updated_at = ?"
                " WHERE id = ? AND status = ? AND recurrence IS NULL"
                " AND (? = 1 OR send_at IS NULL OR send_at <= ?)",
                (
                    BroadcastStatus.SENDING,
                    _ts(now),
                    _ts(now),
                    broadcast_id,
                    BroadcastStatus.APPROVED,
                    int(early),
                    _ts(now),
                ),
            )
        if cursor.rowcount:
            log.info("store: broadcast %d started", broadcast_id)
        return cursor.rowcount == 1

    def due_broadcasts(self, now: datetime, limit: int) -> list[BroadcastRow]:
        """Approved one-offs whose time has come, and broadcasts still fanning out."""
        rows = self._rows(
            "SELECT * FROM broadcasts WHERE status = ? OR (status = ? AND recurrence IS NULL"
            " AND (send_at IS NULL OR send_at <= ?)) ORDER BY id LIMIT ?",
            (BroadcastStatus.SENDING, BroadcastStatus.APPROVED, _ts(now), limit),
        )
        return [_broadcast_row(r) for r in rows]

    def due_recurrences(self, now: datetime, limit: int) -> list[BroadcastRow]:
        """Approved recurring broadcasts whose next occurrence is due."""
        rows = self._rows(
            "SELECT * FROM broadcasts WHERE status = ? AND recurrence IS NOT NULL"
            " AND next_due_at <= ? ORDER BY next_due_at, id LIMIT ?",
            (BroadcastStatus.APPROVED, _ts(now), limit),
        )
        return [_broadcast_row(r) for r in rows]

    def add_occurrence(self, parent_id: int, send_at: datetime, now: datetime) -> int | None:
        """Copy an approved recurring broadcast into an approved one-off at `send_at`; None if
        that occurrence exists already."""
        at = _ts(now)
        with self._atomic("add_occurrence") as conn:
            row = conn.execute(
                "INSERT INTO broadcasts (name, status, created_by, created_by_name, created_at,"
                " approved_by, approved_by_name, approved_at, send_at, parent_id, urgent,"
                " audience, whatsapp_template, default_language, updated_at)"
                " SELECT name, ?, created_by, created_by_name, ?, approved_by, approved_by_name,"
                " approved_at, ?, id, urgent, audience, whatsapp_template, default_language, ?"
                " FROM broadcasts WHERE id = ? AND status = ?"
                " ON CONFLICT (parent_id, send_at) WHERE parent_id IS NOT NULL DO NOTHING"
                " RETURNING id",
                (BroadcastStatus.APPROVED, at, _ts(send_at), at, parent_id, "approved"),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "INSERT INTO broadcast_texts (broadcast_id, language, text, sms_text)"
                " SELECT ?, language, text, sms_text FROM broadcast_texts WHERE broadcast_id = ?",
                (int(row[0]), parent_id),
            )
        log.info("store: broadcast %d occurrence %d", parent_id, row[0])
        return int(row[0])

    def advance_recurrence(
        self, broadcast_id: int, expected: datetime, next_due_at: datetime | None, now: datetime
    ) -> bool:
        """Move a recurring broadcast to its next occurrence (None: it has ended -> sent) if it
        still is at `expected`."""
        nxt = _ts(next_due_at) if next_due_at else None
        with self._atomic("advance_recurrence") as conn:
            cursor = conn.execute(
                "UPDATE broadcasts SET next_due_at = ?, updated_at = ?,"
                " status = CASE WHEN ? = 1 THEN ? ELSE status END"
                " WHERE id = ? AND status = ? AND next_due_at = ?",
                (
                    nxt,
                    _ts(now),
                    int(nxt is None),
                    BroadcastStatus.SENT,
                    broadcast_id,
                    BroadcastStatus.APPROVED,
                    _ts(expected),
                ),
            )
        return cursor.rowcount == 1

    # -- fan-out ----------------------------------------------------------------------------

    def fan_out_start(self, plan: FanOutPlan) -> tuple[int, int]:
        """(first, last) cursor values of a plan's fan-out, for progress bars."""
        if plan.correction_of is not None:
            row = self._rows(
                "SELECT min(id), max(id) FROM outbox WHERE broadcast_id = ?", (plan.correction_of,)
            )[0]
        else:
            row = self._rows("SELECT min(person_id), max(person_id) FROM contacts")[0]
        if row[0] is None:
            return 0, 0
        return int(row[0]) - 1, int(row[1])

    def fan_out(self, plan: FanOutPlan, batch: int, now: datetime) -> FanOutStep:
        """Enqueue the next `batch` people of a sending broadcast in one transaction, in SQL
        (INSERT ... SELECT): the audience never passes through Python.

        The cursor is read and advanced inside the write transaction, so two sweeps (or a
        crash and a retry) never enqueue the same people twice.
        """
        with self._atomic("fan_out") as conn:
            current = self._write_rows(
                conn,
                "SELECT status, fan_out_cursor, fan_out_last FROM broadcasts WHERE id = ?"
                + self.dialect.for_update,
                (plan.broadcast_id,),
            )
            if not current:
                raise KeyError(f"no broadcasts row with id {plan.broadcast_id}")
            status = BroadcastStatus(current[0]["status"])
            lo = int(current[0]["fan_out_cursor"])
            if status is not BroadcastStatus.SENDING:
                return FanOutStep(0, lo, lo, status)
            if plan.correction_of is not None:
                # The original is finished: its rows, and so the range to walk, are fixed.
                stored = current[0]["fan_out_last"]
                if stored is None:
                    first, last = self.fan_out_start(plan)
                    lo = max(lo, first)
                    conn.execute(
                        "UPDATE broadcasts SET fan_out_cursor = ?, fan_out_last = ? WHERE id = ?",
                        (lo, last, plan.broadcast_id),
                    )
                else:
                    last = int(stored)
                after = conn.execute(
                    "SELECT id FROM outbox WHERE id > ? AND +broadcast_id = ?"
                    " ORDER BY id LIMIT 1 OFFSET ?",
                    (lo, plan.correction_of, batch - 1),
                ).fetchone()
            else:
                last = int(conn.execute("SELECT max(person_id) FROM contacts").fetchone()[0] or 0)
                after = conn.execute(
                    "SELECT person_id FROM contacts WHERE person_id > ?"
                    " ORDER BY person_id LIMIT 1 OFFSET ?",
                    (lo, batch - 1),
                ).fetchone()
            hi = max(lo, last if after is None else min(int(after[0]), last))
            inserted = 0
            if hi > lo:
                params: dict[str, Any] = {"lo": lo, "hi": hi}
                cursor = conn.execute(_fan_out_sql(plan, now, params, self.dialect), params)
                inserted = self.dialect.changed(conn, cursor)
            done = hi >= last
            if done:
                status = BroadcastStatus.SENT
            conn.execute(
                "UPDATE broadcasts SET fan_out_cursor = ?, enqueued = enqueued + ?, status = ?,"
                " fanned_out_at = CASE WHEN ? = 1 THEN ? ELSE fanned_out_at END, updated_at = ?"
                " WHERE id = ?",
                (hi, inserted, status, int(done), _ts(now), _ts(now), plan.broadcast_id),
            )
        return FanOutStep(inserted, hi, last, status)

    def audience_census(self, plan: FanOutPlan) -> AudienceCensus:
        """Count who the plan reaches (per channel, language, time zone) and who is left out."""
        params: dict[str, Any] = {}
        rows = self._rows(
            f"WITH {_candidates(plan, params, ranged=False, dialect=self.dialect)}"
            " SELECT channel, language, tz, count(*) AS n FROM cand WHERE rn = 1"
            " GROUP BY channel, language, tz ORDER BY channel, language, tz",
            params,
        )
        counts = tuple(
            AudienceCount(r["channel"], r["language"], r["tz"], int(r["n"])) for r in rows
        )
        reached = sum(c.count for c in counts)
        excluded: dict[str, Any] = {}
        if plan.correction_of is not None:
            excluded["original"] = plan.correction_of
            source = (
                "FROM outbox o JOIN contacts c ON c.id = o.contact_id"
                f" WHERE o.broadcast_id = :original AND o.status IN {_REACHED}"
            )
        else:
            match = _match(plan.audience, plan.channels, excluded, self.dialect)
            source = f"FROM contacts c WHERE {match}"
        left = self._rows(
            "SELECT count(*) FILTER (WHERE c.opted_out = 1) AS stopped,"
            f" count(*) FILTER (WHERE c.opted_out = 0 AND coalesce({_CONSENT}, 0) = 0) AS nc,"
            f" count(*) FILTER (WHERE {_ELIGIBLE}) AS eligible {source}",
            excluded,
        )[0]
        return AudienceCensus(
            counts=counts,
            opted_out=int(left["stopped"]),
            no_consent=int(left["nc"]),
            duplicates=int(left["eligible"]) - reached,
        )

    def audience_timezones(self) -> list[str]:
        """Every time zone a contact or enrollment names (for quiet-hour releases)."""
        rows = self._rows(
            "SELECT timezone FROM contacts WHERE timezone IS NOT NULL"
            " UNION SELECT timezone FROM enrollments ORDER BY 1"
        )
        return [str(r[0]) for r in rows]

    # -- the kill switch, stats and the dispatcher's checks ------------------------------------

    def cancel_broadcast(
        self, broadcast_id: int, user_id: int, username: str, now: datetime
    ) -> int:
        """The kill switch: the broadcast (and a recurring one's occurrences) -> cancelled,
        then every queued or sending row of it -> cancelled. Returns how many rows stopped.

        The first transaction stops the fan-out and, through `outbox_gate`, the dispatcher at
        once; the rows are then cancelled in chunks so no writer waits behind a million-row
        update. Running it again finishes the job after a crash.
        """
        at = _ts(now)
        with self._atomic("cancel_broadcast") as conn:
            if not self._write_rows(conn, "SELECT 1 FROM broadcasts WHERE id = ?", (broadcast_id,)):
                raise KeyError(f"no broadcasts row with id {broadcast_id}")
            conn.execute(
                "UPDATE broadcasts SET status = ?, cancelled_by = ?, cancelled_by_name = ?,"
                f" cancelled_at = ?, updated_at = ? WHERE (id = ? OR parent_id = ?)"
                f" AND status IN {_LIVE}",
                (BroadcastStatus.CANCELLED, user_id, username, at, at, broadcast_id, broadcast_id),
            )
        total = 0
        while True:
            with self._atomic("cancel_broadcast") as conn:
                stopped = conn.execute(
                    "UPDATE outbox SET status = ?, error = 'cancelled', finished_at = ?"
                    " WHERE id IN (SELECT id FROM outbox WHERE broadcast_id IN"
                    " (SELECT id FROM broadcasts WHERE id = ? OR parent_id = ?)"
                    " AND status IN (?, ?) LIMIT ?)",
                    (
                        OutboxStatus.CANCELLED,
                        at,
                        broadcast_id,
                        broadcast_id,
                        OutboxStatus.QUEUED,
                        OutboxStatus.SENDING,
                        CANCEL_CHUNK,
                    ),
                ).rowcount
            total += stopped
            if stopped < CANCEL_CHUNK:
                break
        log.warning("store: broadcast %d cancelled by %d: %d rows", broadcast_id, user_id, total)
        return total

    def delivery_counts(self, broadcast_id: int) -> list[DeliveryCount]:
        """A broadcast's outbox rows counted by channel, status and error."""
        rows = self._rows(
            "SELECT channel, status, error, count(*) AS n FROM outbox WHERE broadcast_id = ?"
            " GROUP BY channel, status, error ORDER BY channel, status, error",
            (broadcast_id,),
        )
        return [
            DeliveryCount(r["channel"], OutboxStatus(r["status"]), r["error"], int(r["n"]))
            for r in rows
        ]

    def stopped_after(self, broadcast_id: int) -> dict[str, int]:
        """Per channel, recipients it reached who have opted out since (STOP in reply)."""
        rows = self._rows(
            "SELECT o.channel, count(*) AS n FROM outbox o JOIN contacts c ON c.id = o.contact_id"
            f" WHERE o.broadcast_id = ? AND o.status IN {_REACHED} AND c.opted_out = 1"
            " AND c.opted_out_at >= o.sent_at GROUP BY o.channel",
            (broadcast_id,),
        )
        return {str(r["channel"]): int(r["n"]) for r in rows}

    def outbox_gate(self, outbox_id: int) -> OutboxGate | None:
        """A row's status with its broadcast's status and its contact's consent, in one read."""
        rows = self._rows(
            f"SELECT o.status, b.status AS broadcast_status, c.opted_out, {_CONSENT}"
            " AS consent_broadcast"
            " FROM outbox o LEFT JOIN broadcasts b ON b.id = o.broadcast_id"
            " LEFT JOIN contacts c ON c.id = o.contact_id WHERE o.id = ?",
            (outbox_id,),
        )
        if not rows:
            return None
        r = rows[0]
        consent = r["consent_broadcast"]
        return OutboxGate(
            status=OutboxStatus(r["status"]),
            broadcast_status=BroadcastStatus(r["broadcast_status"])
            if r["broadcast_status"]
            else None,
            opted_out=bool(r["opted_out"]),
            consent_broadcast=None if consent is None else bool(consent),
        )

    def cancel_outbox(self, outbox_id: int, reason: str, now: datetime) -> bool:
        """A queued or sending row -> cancelled (`reason` in `error`); False otherwise."""
        with self._atomic("cancel_outbox") as conn:
            cursor = conn.execute(
                "UPDATE outbox SET status = ?, error = ?, finished_at = ?"
                " WHERE id = ? AND status IN (?, ?)",
                (
                    OutboxStatus.CANCELLED,
                    reason,
                    _ts(now),
                    outbox_id,
                    OutboxStatus.QUEUED,
                    OutboxStatus.SENDING,
                ),
            )
        return cursor.rowcount == 1

    def defer_outbox(self, outbox_id: int, until: datetime) -> bool:
        """A claimed row back to queued, due at `until`, without counting an attempt."""
        with self._atomic("defer_outbox") as conn:
            cursor = conn.execute(
                "UPDATE outbox SET status = ?, next_attempt_at = ?,"
                " attempts = greatest(attempts - 1, 0), claimed_at = NULL"
                " WHERE id = ? AND status = ?",
                (OutboxStatus.QUEUED, _ts(until), outbox_id, OutboxStatus.SENDING),
            )
        return cursor.rowcount == 1

    # -- the consent record --------------------------------------------------------------------

    def consents(self, contact_id: int) -> list[ConsentRow]:
        """A contact's consent record, oldest first."""
        rows = self._rows("SELECT * FROM consents WHERE contact_id = ? ORDER BY id", (contact_id,))
        return [
            ConsentRow(
                id=r["id"],
                contact_id=r["contact_id"],
                purpose=ConsentPurpose(r["purpose"]),
                granted=bool(r["granted"]),
                source=r["source"],
                at=datetime.fromisoformat(r["at"]),
            )
            for r in rows
        ]


def record_consents(
    conn: Connection,
    contact_id: int,
    changes: dict[str, Any],
    source: str | None,
    at: str,
) -> None:
    """Append the consent record for the facts `update_contact` is about to change."""
    purposes = (
        ("consent_care", ConsentPurpose.CARE, False),
        ("consent_broadcast", ConsentPurpose.BROADCAST, False),
        ("opted_out", ConsentPurpose.CONTACT, True),  # opted out = contact not granted
    )
    rows = [
        (contact_id, purpose, int(bool(changes[column]) != negated), source, at)
        for column, purpose, negated in purposes
        if column in changes
    ]
    conn.executemany(
        "INSERT INTO consents (contact_id, purpose, granted, source, at) VALUES (?, ?, ?, ?, ?)",
        rows,
    )


def _broadcast_row(r: Row) -> BroadcastRow:
    return BroadcastRow(
        id=r["id"],
        name=r["name"],
        status=BroadcastStatus(r["status"]),
        created_by=r["created_by"],
        created_by_name=r["created_by_name"],
        created_at=datetime.fromisoformat(r["created_at"]),
        approved_by=r["approved_by"],
        approved_by_name=r["approved_by_name"],
        approved_at=_dt(r["approved_at"]),
        send_at=_dt(r["send_at"]),
        recurrence=json.loads(r["recurrence"]) if r["recurrence"] else None,
        timezone=r["timezone"],
        next_due_at=_dt(r["next_due_at"]),
        parent_id=r["parent_id"],
        correction_of=r["correction_of"],
        urgent=bool(r["urgent"]),
        audience=Audience.from_json(json.loads(r["audience"])),
        whatsapp_template=r["whatsapp_template"],
        default_language=r["default_language"],
        fan_out_cursor=r["fan_out_cursor"],
        enqueued=r["enqueued"],
        started_at=_dt(r["started_at"]),
        fanned_out_at=_dt(r["fanned_out_at"]),
        cancelled_by=r["cancelled_by"],
        cancelled_by_name=r["cancelled_by_name"],
        cancelled_at=_dt(r["cancelled_at"]),
        updated_at=datetime.fromisoformat(r["updated_at"]),
    )
