"""The console dashboards' numbers (docs/console.md, Dashboards): triage outcomes by level, day and
region, red flags by kind, tickets waiting and time to claim against the deadlines, check-in
adherence and missed streaks, broadcast reach. Each chart is a `Table`: the SVG, the visible
table and the CSV download are all drawn from it, so they cannot disagree.

Imports bot.config, bot.console_view (labels), bot.escalation (priorities), bot.store; no I/O
besides the store's aggregate reads. Never a phone number, a name or a message text.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Literal

from bot import console_view as view
from bot.config import Config
from bot.escalation import Priority, priority_for
from bot.store import TRIAGE_LEVELS, Role
from bot.store.dashboards import CheckinMark, DashStore

RANGES = (7, 30, 90)  # days a dashboard may look back
DEFAULT_DAYS = 30
WEEKLY_FROM = 60  # ranges this long are bucketed by week (Monday) instead of by day
MIN_SHOWN = 5
"""Red flag kinds counted fewer times than this in the range are shown as one "other" row to
roles that do not see patient data (with one patient, a kind and a day would name them)."""
LEVELS = tuple(reversed(TRIAGE_LEVELS))  # most urgent first
NO_REGION = "(no region)"
HEALTH = frozenset({Role.CLINICIAN, Role.COORDINATOR})
EVERYONE = frozenset(Role)
Kind = Literal["columns", "bars", "claim"]
Number = int | float | None  # None: nothing to measure (no check-in due that day)


@dataclass(frozen=True)
class Table:
    """One chart's numbers: a row per category (a day, a region, a kind), a column per series."""

    key: str  # the CSV's name: <key>.csv
    title: str
    kind: Kind  # how it is drawn: columns over time, horizontal bars, or claim times
    label: str  # heading of the row labels
    columns: tuple[str, ...]  # series keys (CSS classes of the bars)
    headers: tuple[str, ...]  # series headings
    rows: tuple[tuple[str, tuple[Number, ...]], ...]
    note: str = ""
    stacked: tuple[str, ...] = ()  # the series the chart stacks (default: all)

    @property
    def drawn(self) -> tuple[str, ...]:
        return self.stacked or self.columns

    def value(self, row: str, column: str) -> Number:
        values = dict(self.rows)[row]
        return values[self.columns.index(column)]

    def to_csv(self) -> str:
        """The table as CSV: a header line, then one line per row, numbers as shown."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([self.label, *self.headers])
        for label, values in self.rows:
            writer.writerow([_cell(label), *(number(v) for v in values)])
        return out.getvalue()


def _cell(text: str) -> str:
    """A label as a spreadsheet reads it safely: a leading = + - @ would start a formula (a
    broadcast name is typed by a coordinator), so such a label gets a leading apostrophe."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def num(value: Number) -> float:
    """A value for arithmetic (None counts as 0)."""
    return 0.0 if value is None else float(value)


def number(value: Number) -> str:
    """A count as an integer, a time or share with at most one decimal; "" for None."""
    if value is None:
        return ""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.1f}"


@dataclass(frozen=True)
class Tile:
    value: str
    label: str
    warn: bool = False


@dataclass(frozen=True)
class Board:
    """A dashboard: who may see it and its charts."""

    key: str
    title: str
    roles: frozenset[Role]
    charts: tuple[str, ...]
    about: str


BOARDS = (
    Board(
        "triage",
        "Triage outcomes",
        HEALTH,
        ("levels", "regions", "flags"),
        "Conversations by the triage level they ended at, counted on the day they started.",
    ),
    Board(
        "escalations",
        "Escalations",
        HEALTH,
        ("claim", "waiting"),
        "Tickets opened in the period: how long until a clinician claimed them, against the "
        "claim deadline of their priority; and the tickets waiting now.",
    ),
    Board(
        "checkins",
        "Check-ins",
        HEALTH,
        ("adherence", "streaks"),
        "Scheduled check-ins due in the period: answered, answered late, missed.",
    ),
    Board(
        "reach",
        "Broadcast reach",
        EVERYONE,
        ("reach",),
        "Broadcasts started in the period: what became of each message (counts only).",
    ),
)
BOARD = {b.key: b for b in BOARDS}


@dataclass(frozen=True)
class Filters:
    days: int = DEFAULT_DAYS
    region: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str], regions: Sequence[str]) -> Filters:
        """From the query string; anything unknown falls back to the default (never an error)."""
        try:
            days = int(params.get("days", DEFAULT_DAYS))
        except ValueError:
            days = DEFAULT_DAYS
        region = params.get("region") or None
        return cls(days if days in RANGES else DEFAULT_DAYS, region if region in regions else None)

    def query(self) -> str:
        return f"days={self.days}" + (f"&region={self.region}" if self.region else "")


@dataclass(frozen=True)
class Dashboard:
    """One dashboard as shown: its tiles and charts for one range and region."""

    board: Board
    filters: Filters
    since: datetime
    until: datetime
    tiles: tuple[Tile, ...]
    tables: tuple[Table, ...]
    notes: tuple[str, ...] = field(default=())

    def table(self, key: str) -> Table:
        return next(t for t in self.tables if t.key == key)


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value with at least p% of values at or below."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def runs(statuses_by_due: Mapping[datetime, set[str]]) -> tuple[int, int]:
    """(longest, current) runs of missed scheduled times, as bot.scheduler.missed_streak counts
    them: flows due at one time count once; an answer (or late answer) ends a run; a time with a
    check-in still open or queued neither counts nor ends it."""
    longest = current = 0
    for due in sorted(statuses_by_due):
        statuses = statuses_by_due[due]
        if statuses & {"answered", "late"}:
            current = 0
        elif statuses & {"open", "queued"}:
            continue
        elif "missed" in statuses:
            current += 1
            longest = max(longest, current)
    return longest, current


class Dashboards:
    """Builds dashboards from a store's aggregate reads, in the console's time zone."""

    def __init__(
        self,
        store: DashStore,
        config: Config,
        clock: Callable[[], datetime],
        zone: tzinfo,
        labels: Mapping[str, str],
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.zone = zone
        self.labels = labels

    def regions(self) -> list[str]:
        return self.store.dash_regions()

    def build(self, key: str, filters: Filters, role: Role) -> Dashboard:
        """Dashboard `key` for `filters` as `role` sees it (the caller checked BOARD[key].roles)."""
        board = BOARD[key]
        until = self.clock()
        first = until.astimezone(self.zone).date() - timedelta(days=filters.days - 1)
        since = datetime.combine(first, time(0), self.zone)
        build = {
            "triage": self._triage,
            "escalations": self._escalations,
            "checkins": self._checkins,
            "reach": self._reach,
        }[key]
        tiles, tables = build(filters, since, until, role)
        return Dashboard(board, filters, since, until, tuple(tiles), tuple(tables))

    # -- buckets --------------------------------------------------------------------------

    def _buckets(self, since: datetime, until: datetime, days: int) -> list[date]:
        first, last = since.astimezone(self.zone).date(), until.astimezone(self.zone).date()
        if days >= WEEKLY_FROM:
            first -= timedelta(days=first.weekday())
            step = timedelta(days=7)
        else:
            step = timedelta(days=1)
        out = []
        while first <= last:
            out.append(first)
            first += step
        return out

    def _bucket(self, when: datetime, days: int) -> date:
        day = when.astimezone(self.zone).date()
        return day - timedelta(days=day.weekday()) if days >= WEEKLY_FROM else day

    @staticmethod
    def _bucket_label(days: int) -> str:
        return "Week from" if days >= WEEKLY_FROM else "Day"

    # -- triage ---------------------------------------------------------------------------

    def _triage(
        self, f: Filters, since: datetime, until: datetime, role: Role
    ) -> tuple[list[Tile], list[Table]]:
        rows = self.store.dash_outcomes(since, until, f.region)
        buckets = self._buckets(since, until, f.days)
        per_day: dict[date, Counter[str]] = {b: Counter() for b in buckets}
        per_region: dict[str, Counter[str]] = defaultdict(Counter)
        flags: Counter[str] = Counter()
        decided = 0
        for r in rows:
            for flag in set(r.red_flags):
                flags[flag] += 1
            if r.level not in LEVELS:
                continue
            decided += 1
            per_day.setdefault(self._bucket(r.started_at, f.days), Counter())[r.level] += 1
            per_region[r.region or NO_REGION][r.level] += 1
        headers = tuple(view.LEVEL_LABELS.get(level, level) for level in LEVELS)
        levels = Table(
            "levels",
            "Triage outcomes over time",
            "columns",
            self._bucket_label(f.days),
            LEVELS,
            headers,
            tuple((b.isoformat(), tuple(per_day[b][lv] for lv in LEVELS)) for b in buckets),
        )
        regions = Table(
            "regions",
            "Triage outcomes by region",
            "bars",
            "Region",
            LEVELS,
            headers,
            tuple(
                (name, tuple(per_region[name][lv] for lv in LEVELS))
                for name in sorted(per_region, key=lambda n: (-sum(per_region[n].values()), n))
            ),
        )
        shown, hidden = flags.most_common(), 0
        note = ""
        if role is not Role.CLINICIAN:
            kept = [(k, n) for k, n in shown if n >= MIN_SHOWN]
            hidden = sum(n for k, n in shown if n < MIN_SHOWN)
            shown = kept
            note = f"Kinds seen fewer than {MIN_SHOWN} times are counted together as Other kinds."
        flag_rows = [(self.labels.get(k, view.humanize(k)), (n,)) for k, n in shown]
        if hidden:
            flag_rows.append(("Other kinds", (hidden,)))
        red = Table(
            "flags",
            "Red flags by kind",
            "bars",
            "Red flag",
            ("flags",),
            ("Conversations",),
            tuple(flag_rows),
            note=note,
        )
        urgent = sum(1 for r in rows if r.level in ("emergency", "emergency_ambulance"))
        tiles = [
            Tile(str(len(rows)), "conversations started"),
            Tile(str(decided), "with a triage outcome"),
            Tile(str(urgent), "emergency outcomes", warn=bool(urgent)),
            Tile(str(sum(1 for r in rows if r.red_flags)), "with a red flag", warn=False),
        ]
        return tiles, [levels, regions, red]

    # -- escalations ----------------------------------------------------------------------

    def deadline(self, priority: str) -> int:
        """Claim deadline of a priority, minutes (escalation.deadlines_minutes)."""
        minutes: int = getattr(self.config.escalation.deadlines_minutes, priority)
        return minutes

    def _escalations(
        self, f: Filters, since: datetime, until: datetime, role: Role
    ) -> tuple[list[Tile], list[Table]]:
        priorities = [p.value for p in Priority]
        waits: dict[str, list[float]] = {p: [] for p in priorities}
        opened: Counter[str] = Counter()
        for t in self.store.dash_tickets(since, until, f.region):
            p = t.priority or priority_for(t.level)
            opened[p] += 1
            if t.claimed_at is not None:
                waits[p].append((t.claimed_at - t.opened_at).total_seconds() / 60)
        claim_rows = []
        for p in priorities:
            w, deadline = waits[p], self.deadline(p)
            p50 = round(percentile(w, 50), 1) if w else None  # none claimed: nothing to time
            p90 = round(percentile(w, 90), 1) if w else None
            within = sum(1 for m in w if m <= deadline)
            claim_rows.append((p, (opened[p], len(w), p50, p90, deadline, within)))
        claim = Table(
            "claim",
            "Time to claim against the deadline (minutes)",
            "claim",
            "Priority",
            ("opened", "claimed", "p50", "p90", "deadline", "within"),
            (
                "Tickets opened",
                "Claimed",
                "p50 minutes",
                "p90 minutes",
                "Deadline minutes",
                "Claimed within deadline",
            ),
            tuple(claim_rows),
            note="p50/p90: half / nine in ten of the claimed tickets were claimed within this "
            "time (nearest rank). Tickets resolved without a claim are not timed.",
            stacked=("p50", "p90"),
        )
        now = self.clock()
        waiting = self.store.dash_waiting(f.region)
        count: Counter[str] = Counter()
        late: Counter[str] = Counter()
        for t in waiting:
            p = t.priority or priority_for(t.level)
            count[p] += 1
            if now - t.opened_at > timedelta(minutes=self.deadline(p)):
                late[p] += 1
        waiting_table = Table(
            "waiting",
            "Waiting for a clinician now",
            "bars",
            "Priority",
            ("in_time", "overdue"),
            ("Within deadline", "Past deadline"),
            tuple((p, (count[p] - late[p], late[p])) for p in priorities),
        )
        oldest = min((t.opened_at for t in waiting), default=None)
        tiles = [
            Tile(str(len(waiting)), "waiting now"),
            Tile(str(sum(late.values())), "past their deadline", warn=bool(sum(late.values()))),
            Tile(view.duration((now - oldest).total_seconds()) if oldest else "-", "longest wait"),
            Tile(str(sum(opened.values())), "tickets opened in the period"),
        ]
        return tiles, [claim, waiting_table]

    # -- check-ins ------------------------------------------------------------------------

    def _checkins(
        self, f: Filters, since: datetime, until: datetime, role: Role
    ) -> tuple[list[Tile], list[Table]]:
        marks = self.store.dash_checkins(since, until, f.region)
        buckets = self._buckets(since, until, f.days)
        per_day: dict[date, Counter[str]] = {b: Counter() for b in buckets}
        for m in marks:
            if m.status in ("answered", "late", "missed"):
                per_day.setdefault(self._bucket(m.due_at, f.days), Counter())[m.status] += 1
        keys = ("answered", "late", "missed")
        rows = []
        for b in buckets:
            c = per_day[b]
            due = sum(c[k] for k in keys)
            share = round(100 * (c["answered"] + c["late"]) / due, 1) if due else None
            rows.append((b.isoformat(), (c["answered"], c["late"], c["missed"], share)))
        adherence = Table(
            "adherence",
            "Check-in adherence",
            "columns",
            self._bucket_label(f.days),
            (*keys, "adherence"),
            ("Answered", "Answered late", "Missed", "Adherence %"),
            tuple(rows),
            stacked=keys,
        )
        longest, current = _streaks(marks)
        alert = self.config.checkins.missed_escalation
        sizes = ("1", "2", "3", "4", "5+")
        patients: Counter[str] = Counter(sizes[min(n, 5) - 1] for n in longest if n)
        streaks = Table(
            "streaks",
            "Longest run of missed check-ins per patient",
            "bars",
            "Missed in a row",
            ("patients",),
            ("Patients",),
            tuple((s, (patients[s],)) for s in sizes),
        )
        total = sum(sum(per_day[b][k] for k in keys) for b in per_day)
        kept = sum(per_day[b]["answered"] + per_day[b]["late"] for b in per_day)
        tiles = [
            Tile(f"{number(round(100 * kept / total, 1))}%" if total else "-", "adherence"),
            Tile(str(total), "check-ins due and settled"),
            Tile(str(len(longest)), "patients with check-ins"),
            Tile(
                str(sum(1 for n in current if n >= alert)),
                f"missing their last {alert} or more now",
                warn=any(n >= alert for n in current),
            ),
        ]
        return tiles, [adherence, streaks]

    # -- broadcasts -----------------------------------------------------------------------

    def _reach(
        self, f: Filters, since: datetime, until: datetime, role: Role
    ) -> tuple[list[Tile], list[Table]]:
        keys = ("delivered", "sent", "failed", "cancelled", "queued")
        group = {"undelivered": "failed", "sending": "queued", "held": "queued"}
        per: dict[int, Counter[str]] = defaultdict(Counter)
        names: dict[int, str] = {}
        for r in self.store.dash_reach(since, until, f.region):
            names[r.broadcast_id] = f"#{r.broadcast_id} {r.name}"
            per[r.broadcast_id][group.get(r.status, r.status)] += r.count
        rows = []
        for bid in names:
            c = per[bid]
            total = sum(c[k] for k in keys)
            share = round(100 * c["delivered"] / total, 1) if total else None
            rows.append((names[bid], (*(c[k] for k in keys), total, share)))
        reach = Table(
            "reach",
            "What became of each broadcast's messages",
            "bars",
            "Broadcast",
            (*keys, "total", "reach"),
            ("Delivered", "Sent, no receipt", "Failed", "Stopped", "Queued", "Total", "Reach %"),
            tuple(rows),
            note="Reach: delivered (confirmed by the provider) out of all recipients.",
            stacked=keys,
        )
        total = int(sum(num(v[-2]) for _, v in rows))
        delivered = int(sum(num(v[0]) for _, v in rows))
        tiles = [
            Tile(str(len(rows)), "broadcasts started"),
            Tile(str(total), "messages"),
            Tile(str(delivered), "delivered"),
            Tile(f"{number(round(100 * delivered / total, 1))}%" if total else "-", "reach"),
        ]
        return tiles, [reach]


def _streaks(marks: Iterable[CheckinMark]) -> tuple[list[int], list[int]]:
    """Per patient with check-ins: the longest run of missed times and the current run."""
    by_contact: dict[int, dict[datetime, set[str]]] = defaultdict(lambda: defaultdict(set))
    for m in marks:
        by_contact[m.contact_id][m.due_at].add(m.status)
    longest, current = [], []
    for times in by_contact.values():
        a, b = runs(times)
        longest.append(a)
        current.append(b)
    return longest, current
