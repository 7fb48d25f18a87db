"""Coordinator broadcasts (docs/broadcasts.md): create with a text per language, two-person
approval, preview, the fan-out through the outbox, quiet hours, the kill switch, corrections,
stats; audience facts and consent. The one service both the CLI and the console call.

Imports bot.store, bot.config, bot.schedules and bot.errors. SMS arithmetic comes in as an
`SmsMeter` (the channels.render module, wired by bot.app.build_broadcasts), never channels.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol

from bot.config import Config
from bot.errors import CarebridgeError
from bot.schedules import (
    CONDITION_FLOWS,
    QuietHours,
    Rule,
    defer_quiet,
    format_clock,
    latest_due,
    next_due,
    parse_clock,
    zone,
)
from bot.store import (
    Audience,
    BroadcastRow,
    BroadcastStatus,
    FanOutPlan,
    FanOutStep,
    NewBroadcast,
    OutboxStatus,
    Role,
    Store,
    UserRow,
    Variant,
)

log = logging.getLogger(__name__)

WHATSAPP_VARIABLE_MAX = 1024  # characters a WhatsApp template variable may hold
TELEGRAM_MAX = 4096  # Bot API limit of one message
SMS_SINGLE = {"gsm7": 160, "ucs2": 70}  # characters in one segment
MAY_BROADCAST = frozenset({Role.COORDINATOR, Role.ADMIN})
_OTHER_RATE = 100.0  # messages per second for channels without a rate setting (web)


class BroadcastError(CarebridgeError):
    """A broadcast request that cannot be carried out; the message says what to change."""


class SmsMeter(Protocol):
    """SMS arithmetic (channels.render provides exactly these functions)."""

    def to_gsm7_friendly(self, text: str) -> str: ...

    def encoding(self, text: str) -> str: ...

    def segments(self, text: str) -> int: ...

    def lint_sms_text(self, text: str) -> list[str]: ...


@dataclass(frozen=True)
class Recurrence:
    """Every `every_days` days at local time `at` in `timezone`, from `start` until `until`."""

    every_days: int
    at: time
    timezone: str
    start: date | None = None
    until: date | None = None


@dataclass(frozen=True)
class Draft:
    """What a coordinator asks for; `create` checks it and stores it for approval."""

    name: str
    texts: Mapping[str, str]  # language -> text
    sms_texts: Mapping[str, str] = field(default_factory=dict)  # language -> shorter SMS text
    audience: Audience = field(default_factory=Audience)
    send_at: datetime | None = None  # None: as soon as it is approved
    recurrence: Recurrence | None = None
    urgent: bool = False  # goes out in quiet hours too
    whatsapp_template: str | None = None  # a name under broadcast.whatsapp_templates


@dataclass(frozen=True)
class TextCheck:
    """One language on one channel as the recipient gets it, what it costs, what to fix."""

    language: str
    channel: str
    text: str  # SMS: with GSM-7 stand-ins, as sent
    characters: int
    encoding: str | None  # SMS only: gsm7 | ucs2
    segments: int  # SMS segments (1 message elsewhere)
    cost: float  # per recipient
    notes: tuple[str, ...] = ()  # advice (more than one segment, characters forcing UCS-2)
    problem: str | None = None  # refused (too long)


@dataclass(frozen=True)
class ChannelPreview:
    """Recipients on one channel, what they cost and when the last one is sent."""

    channel: str
    recipients: int
    languages: dict[str, int]  # by the language of the text they get
    segments: int  # SMS segments, or messages
    cost: float
    rate_per_s: float
    deferred: int  # in quiet hours at the start: they get it when their quiet hours end
    finish_at: datetime
    off: str | None = None  # why this channel cannot send now (no credentials, ...); None: on


@dataclass(frozen=True)
class Preview:
    """Everything to know before approving or sending."""

    broadcast: BroadcastRow
    start_at: datetime
    channels: tuple[ChannelPreview, ...]
    checks: tuple[TextCheck, ...]
    opted_out: int
    no_consent: int
    duplicates: int
    currency: str
    notes: tuple[str, ...] = ()

    @property
    def recipients(self) -> int:
        return sum(c.recipients for c in self.channels)

    @property
    def cost(self) -> float:
        return sum(c.cost for c in self.channels)

    @property
    def finish_at(self) -> datetime:
        """When the last message goes on the channels that are on."""
        return max((c.finish_at for c in self.channels if not c.off), default=self.start_at)

    @property
    def sendable(self) -> int:
        """Recipients on channels that can send now."""
        return sum(c.recipients for c in self.channels if not c.off)


@dataclass(frozen=True)
class ChannelStats:
    """A broadcast's outbox rows on one channel (`total`: every row; stopped_after is a subset
    of sent + delivered: recipients who opted out since it reached them)."""

    channel: str
    queued: int = 0  # queued or being sent
    sent: int = 0  # accepted by the provider, no delivery receipt (yet)
    delivered: int = 0
    failed: int = 0  # failed or undelivered
    opted_out: int = 0  # not sent: opted out or withdrew consent before it went
    stopped_after: int = 0
    cancelled: int = 0  # not sent: the kill switch

    @property
    def total(self) -> int:
        return (
            self.queued + self.sent + self.delivered + self.failed + self.opted_out + self.cancelled
        )


STAT_COLUMNS = ("queued", "sent", "delivered", "failed", "opted_out", "stopped_after", "cancelled")


@dataclass(frozen=True)
class Stats:
    """Where a broadcast's messages stand, per channel."""

    broadcast: BroadcastRow
    channels: tuple[ChannelStats, ...]

    @property
    def total(self) -> ChannelStats:
        sums = {k: sum(getattr(c, k) for c in self.channels) for k in STAT_COLUMNS}
        return ChannelStats("total", **sums)

    @property
    def done(self) -> bool:
        """Fanned out (or stopped) and nothing left in the queue."""
        final = (BroadcastStatus.SENT, BroadcastStatus.CANCELLED)
        return self.broadcast.status in final and self.total.queued == 0

    def to_csv(self) -> str:
        """One line per channel and a total line; counts only, no recipients."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["broadcast", "channel", *STAT_COLUMNS, "total"])
        for row in (*self.channels, self.total):
            counts = [getattr(row, k) for k in STAT_COLUMNS]
            writer.writerow([self.broadcast.id, row.channel, *counts, row.total])
        return out.getvalue()


@dataclass
class SweepReport:
    """What one `Broadcasts.sweep` did (ids and counts only)."""

    occurrences: int = 0
    started: int = 0
    enqueued: int = 0
    broadcast_ids: list[int] = field(default_factory=list)


@dataclass
class _Tally:
    languages: dict[str, int] = field(default_factory=dict)
    releases: dict[datetime, int] = field(default_factory=dict)  # first send time -> people
    segments: int = 0
    cost: float = 0.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _tags(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.strip().lower() for v in values if v.strip())


class Broadcasts:
    """The broadcast service. `by` is always a console username (coordinator or admin)."""

    def __init__(
        self,
        store: Store,
        config: Config,
        meter: SmsMeter,
        *,
        clock: Callable[[], datetime] = _utcnow,
        off: Mapping[str, str] | None = None,
        simulator: bool = False,
    ) -> None:
        self.store = store
        self.config = config
        self.cfg = config.broadcast
        self.meter = meter
        self.clock = clock
        q = self.cfg.quiet_hours
        self.quiet = QuietHours(parse_clock(q.start), parse_clock(q.end)) if q else None
        self.default_timezone = config.checkins.default_timezone
        # Channels that cannot send (no credentials, the simulator off): channel -> why. A
        # broadcast does not use them, and its preview says so.
        self.off = dict(off or {})
        channels = [ch for ch in self.cfg.channels if self._enabled(ch)]
        self.simulator = simulator  # the browser simulator runs: `web` is a channel too
        if self.simulator and "web" not in channels:
            channels.append("web")  # the simulator is a channel of its own, last in preference
        self.channels = tuple(channels)

    @property
    def include_test_default(self) -> bool:
        """Whether a new broadcast includes test contacts unless told: yes when the simulator
        is on (a newcomer tries a broadcast on it), else no."""
        return self.simulator

    # -- creating and approving -----------------------------------------------------------

    def check(
        self,
        texts: Mapping[str, str],
        sms_texts: Mapping[str, str] | None = None,
        whatsapp_template: str | None = None,
        *,
        simulator: bool = False,
    ) -> list[TextCheck]:
        """Each language on each broadcast channel as recipients get it, with its cost and
        what to fix; `problem` is set when a text cannot be sent at all. The simulator's
        channel has nothing to check and is left out unless `simulator`."""
        checks = []
        channels = [ch for ch in self.channels if simulator or ch != "web"]
        for lang, text in texts.items():
            for channel in channels:
                if channel == "sms":
                    checks.append(self._check_sms(lang, (sms_texts or {}).get(lang) or text))
                elif channel == "whatsapp":
                    if self._template_sid(whatsapp_template, lang) is not None:
                        checks.append(self._check_plain(lang, channel, " ".join(text.split())))
                else:
                    checks.append(self._check_plain(lang, channel, text.strip()))
        return checks

    def create(self, draft: Draft, by: str) -> BroadcastRow:
        """Check and store a draft; a second coordinator must approve it."""
        user = self._user(by)
        new = self._validate(draft)
        return self._add(new, user, "broadcast_create")

    def correct(self, original_id: int, draft: Draft, by: str) -> BroadcastRow:
        """A draft correction that goes to exactly the recipients the original reached (sent or
        delivered; anyone who opted out since is left out), on the same channels, with the
        original's WhatsApp template unless the draft names one. Approved like any broadcast."""
        user = self._user(by)
        original = self._get(original_id)
        if original.recurrence is not None:
            raise BroadcastError(
                f"broadcast {original_id} is recurring: correct one of its occurrences "
                f"(carebridge broadcast list shows them)"
            )
        if original.status not in (BroadcastStatus.SENT, BroadcastStatus.CANCELLED):
            raise BroadcastError(
                f"broadcast {original_id} is {original.status}: a correction can follow only "
                "a broadcast that went out (sent) or was stopped (cancelled)"
            )
        stats = self.stats(original_id)
        if stats.total.queued:
            raise BroadcastError(
                f"broadcast {original_id} still has {stats.total.queued} messages queued: stop it "
                f"first (carebridge broadcast cancel {original_id}) so nobody gets the wrong "
                "text after the correction"
            )
        if draft.audience != Audience() or draft.recurrence is not None:
            raise BroadcastError(
                "a correction goes to the original's recipients: leave out audience filters "
                "and recurrence"
            )
        if draft.whatsapp_template is None:  # the original's template, unless told otherwise
            draft = replace(draft, whatsapp_template=original.whatsapp_template)
        new = self._validate(draft, correction_of=original_id)
        for row in stats.channels:
            reached = row.sent + row.delivered
            if reached and row.channel == "whatsapp" and new.whatsapp_template is None:
                raise BroadcastError(
                    f"the original reached {reached} people on WhatsApp: give a WhatsApp "
                    "template (--whatsapp-template NAME, from broadcast.whatsapp_templates)"
                )
        return self._add(new, user, "broadcast_correct")

    def approve(self, broadcast_id: int, by: str) -> BroadcastRow:
        """The second person: a coordinator who did not create it approves a draft."""
        user = self._user(by)
        row = self._get(broadcast_id)
        if row.status is not BroadcastStatus.DRAFT:
            raise BroadcastError(
                f"broadcast {broadcast_id} is {row.status}: only a draft can be approved"
            )
        if user.id == row.created_by or user.username == row.created_by_name:
            raise BroadcastError(
                f"{user.username} created broadcast {broadcast_id}: it needs a second person; "
                "another coordinator must approve it"
            )
        now = self.clock()
        with self.store.transaction():
            if not self.store.approve_broadcast(broadcast_id, user.id, user.username, now):
                raise BroadcastError(f"broadcast {broadcast_id} was changed meanwhile: try again")
            self._audit(user, "broadcast_approve", broadcast_id, now)
        log.info("broadcast=%s approved by user=%s", broadcast_id, user.id)
        return self._get(broadcast_id)

    # -- preview -------------------------------------------------------------------------------

    def preview(self, broadcast_id: int) -> Preview:
        """Recipients per channel and language, segments and cost, people left out and why,
        and when the last message goes at each channel's rate (after quiet hours)."""
        row = self._get(broadcast_id)
        now = self.clock()
        start = max(now, row.next_due_at or row.send_at or now)
        plan = self._plan(row, start)
        census = self.store.audience_census(plan)
        texts = self.store.broadcast_texts(row.id)
        checks = self.check(
            {t.language: t.text for t in texts},
            {t.language: t.sms_text for t in texts if t.sms_text},
            row.whatsapp_template,
            simulator=True,
        )
        by_key = {(c.language, c.channel): c for c in checks}
        tallies: dict[str, _Tally] = {}
        for count in census.counts:
            lang = count.language
            if (lang, count.channel) not in by_key:  # no text in that language: the default
                lang = row.default_language
            check = by_key[(lang, count.channel)]
            release = plan.releases.get(count.timezone, plan.default_release)
            tally = tallies.setdefault(count.channel, _Tally())
            tally.languages[lang] = tally.languages.get(lang, 0) + count.count
            tally.releases[release] = tally.releases.get(release, 0) + count.count
            tally.segments += count.count * check.segments
            tally.cost += count.count * check.cost
        channels = []
        for channel in plan.channels:
            if channel not in tallies:
                continue
            tally = tallies[channel]
            rate = self._rate(channel)
            finish = start
            for release in sorted(tally.releases):  # each group waits for its quiet hours
                finish = max(finish, release) + timedelta(seconds=tally.releases[release] / rate)
            channels.append(
                ChannelPreview(
                    channel=channel,
                    recipients=sum(tally.languages.values()),
                    languages=dict(sorted(tally.languages.items())),
                    segments=tally.segments,
                    cost=round(tally.cost, 4),
                    rate_per_s=rate,
                    deferred=sum(n for at, n in tally.releases.items() if at > start),
                    finish_at=finish,
                    off=self.off.get(channel),
                )
            )
        return Preview(
            broadcast=row,
            start_at=start,
            channels=tuple(channels),
            checks=tuple(checks),
            opted_out=census.opted_out,
            no_consent=census.no_consent,
            duplicates=census.duplicates,
            currency=self.cfg.currency,
            notes=tuple(self._plan_notes(row, plan)),
        )

    # -- sending ---------------------------------------------------------------------------

    def send(self, broadcast_id: int, by: str, *, early: bool = False) -> BroadcastRow:
        """Start an approved broadcast (`early`: before its scheduled time); a broadcast
        already fanning out is returned as it is, so `fan_out` can carry on."""
        user = self._user(by)
        row = self._get(broadcast_id)
        if row.recurrence is not None:
            raise BroadcastError(
                f"broadcast {broadcast_id} is recurring: its occurrences start by themselves "
                "(the scheduler's sweep, or carebridge broadcast sweep)"
            )
        if row.status is BroadcastStatus.DRAFT:
            raise BroadcastError(
                f"broadcast {broadcast_id} is not approved yet: another coordinator must run "
                f"carebridge broadcast approve {broadcast_id}"
            )
        if row.status is BroadcastStatus.CANCELLED:
            raise BroadcastError(f"broadcast {broadcast_id} was cancelled; create a new one")
        if row.status is BroadcastStatus.APPROVED:
            now = self.clock()
            if row.send_at and row.send_at > now and not early:
                raise BroadcastError(
                    f"broadcast {broadcast_id} is scheduled for {row.send_at:%Y-%m-%d %H:%M} UTC: "
                    "it starts by itself then, or send it now with --now"
                )
            with self.store.transaction():
                if self.store.start_broadcast(broadcast_id, now, early=True):
                    self._audit(user, "broadcast_send", broadcast_id, now)
        return self._get(broadcast_id)

    def fan_out(
        self,
        broadcast_id: int,
        *,
        on_batch: Callable[[FanOutStep], None] | None = None,
        max_batches: int | None = None,
    ) -> int:
        """Enqueue a sending broadcast's recipients batch by batch (one transaction each, in
        SQL); returns how many rows this call enqueued. Stops at once when it is cancelled."""
        row = self._get(broadcast_id)
        if row.status is not BroadcastStatus.SENDING:
            return 0
        plan = self._plan(row, self.clock())
        total, batches = 0, 0
        while max_batches is None or batches < max_batches:
            step = self.store.fan_out(plan, self.cfg.batch_size, self.clock())
            total += step.enqueued
            batches += 1
            if on_batch is not None:
                on_batch(step)
            if step.status is not BroadcastStatus.SENDING:
                break
        log.info("broadcast=%s fan-out enqueued=%s batches=%s", broadcast_id, total, batches)
        return total

    def progress_range(self, broadcast_id: int) -> tuple[int, int]:
        """(first, last) fan-out cursor values, for a progress bar over `FanOutStep.cursor`."""
        row = self._get(broadcast_id)
        return self.store.fan_out_start(self._plan(row, self.clock()))

    def cancel(self, broadcast_id: int, by: str) -> int:
        """The kill switch: stop the fan-out and every message not sent yet, at once (any one
        coordinator may). Returns how many queued messages were stopped."""
        user = self._user(by)
        row = self._get(broadcast_id)
        if row.status is BroadcastStatus.SENT and self.stats(broadcast_id).total.queued == 0:
            raise BroadcastError(f"broadcast {broadcast_id} has finished: nothing left to stop")
        now = self.clock()
        stopped = self.store.cancel_broadcast(broadcast_id, user.id, user.username, now)
        self._audit(user, "broadcast_cancel", broadcast_id, now, rows=stopped)
        log.warning("broadcast=%s cancelled by user=%s rows=%s", broadcast_id, user.id, stopped)
        return stopped

    def sweep(self, now: datetime | None = None) -> SweepReport:
        """One idempotent pass for the scheduler: turn due recurrences into occurrences, start
        approved broadcasts whose time has come, and fan out those that are sending. Safe on
        several nodes at once (every step is a compare-and-set or a cursor in a transaction)."""
        now = now or self.clock()
        report = SweepReport()
        for parent in self.store.due_recurrences(now, 50):
            if parent.recurrence is None or parent.next_due_at is None or not parent.timezone:
                continue
            rule, tz = Rule.from_json(parent.recurrence), zone(parent.timezone)
            due, nxt = latest_due(rule, tz, parent.next_due_at, now)  # after downtime: the latest
            if self.store.add_occurrence(parent.id, due, now) is not None:
                report.occurrences += 1
            self.store.advance_recurrence(parent.id, parent.next_due_at, nxt, now)
        for row in self.store.due_broadcasts(now, 50):
            try:
                if row.status is BroadcastStatus.APPROVED:
                    if not self.store.start_broadcast(row.id, now):
                        continue
                    report.started += 1
                report.enqueued += self.fan_out(row.id)
                report.broadcast_ids.append(row.id)
            except CarebridgeError as exc:  # the others still go; the next sweep retries it
                log.error("broadcast=%s sweep failed: %s", row.id, type(exc).__name__)
        return report

    # -- stats -------------------------------------------------------------------------------

    def stats(self, broadcast_id: int) -> Stats:
        """Queued, sent, delivered, failed, opted out and cancelled per channel."""
        row = self._get(broadcast_id)
        counts: dict[str, dict[str, int]] = {}
        for c in self.store.delivery_counts(broadcast_id):
            key = {
                OutboxStatus.QUEUED: "queued",
                OutboxStatus.SENDING: "queued",
                OutboxStatus.SENT: "sent",
                OutboxStatus.DELIVERED: "delivered",
                OutboxStatus.FAILED: "failed",
                OutboxStatus.UNDELIVERED: "failed",
            }.get(c.status)
            if key is None:  # cancelled: why?
                key = "opted_out" if c.error in ("opted_out", "no_consent") else "cancelled"
            per = counts.setdefault(c.channel, {})
            per[key] = per.get(key, 0) + c.count
        for channel, n in self.store.stopped_after(broadcast_id).items():
            counts.setdefault(channel, {})["stopped_after"] = n
        order = [*self.cfg.channels, *sorted(set(counts) - set(self.cfg.channels))]
        return Stats(row, tuple(ChannelStats(ch, **counts[ch]) for ch in order if ch in counts))

    def get(self, broadcast_id: int) -> BroadcastRow:
        """One broadcast (BroadcastError naming the id when there is none)."""
        return self._get(broadcast_id)

    def recent(self, limit: int = 50) -> list[BroadcastRow]:
        """The latest broadcasts, newest first."""
        return self.store.broadcasts(limit=limit)

    # -- subscribers: consent and audience facts ------------------------------------------

    def subscribe(self, contact_id: int, *, granted: bool = True, source: str = "console") -> None:
        """Record (or withdraw) a contact's consent to broadcasts, e.g. given on paper."""
        self.store.update_contact(
            contact_id, consent_broadcast=granted, now=self.clock(), source=source
        )

    def set_facts(
        self, contact_id: int, *, region: str | None = None, timezone: str | None = None
    ) -> None:
        """Set a contact's region (audience filter) and time zone (quiet hours)."""
        if timezone is not None:
            try:
                zone(timezone)
            except ValueError as exc:
                raise BroadcastError(str(exc)) from None
        region = region.strip().lower() if region else None
        self.store.set_contact_facts(contact_id, self.clock(), region=region, timezone=timezone)

    def tag(
        self, contact_id: int, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        """Add and remove a contact's tags (lower case); returns its tags."""
        return self.store.set_contact_tags(contact_id, _tags(add), _tags(remove))

    def link(self, contact_id: int, other_id: int) -> int:
        """Two contacts are one person (gets each broadcast once); returns the person id."""
        return self.store.link_contacts(contact_id, other_id, self.clock())

    def prefer(self, contact_id: int) -> None:
        """Broadcasts reach this contact's person on this contact when it is eligible."""
        self.store.prefer_contact(contact_id, self.clock())

    # -- internals -----------------------------------------------------------------------------

    def _enabled(self, channel: str) -> bool:
        switch = getattr(self.config.channels, channel, None)
        return switch is None or bool(switch.enabled)

    def _rate(self, channel: str) -> float:
        switch = getattr(self.config.channels, channel, None)
        return float(switch.rate_per_s) if switch is not None else _OTHER_RATE

    def _template_sid(self, name: str | None, language: str) -> str | None:
        return self.cfg.whatsapp_templates.get(name, {}).get(language) if name else None

    def _check_sms(self, lang: str, raw: str) -> TextCheck:
        body = self.meter.to_gsm7_friendly(raw).strip()
        enc, seg = self.meter.encoding(body), self.meter.segments(body)
        notes: list[str] = []
        if seg > 1:
            notes.append(
                f"{seg} SMS segments ({len(body)} characters, {enc}); one segment holds "
                f"{SMS_SINGLE.get(enc, 70)}: shorten it, or give a shorter SMS text"
            )
        notes.extend(self.meter.lint_sms_text(body))
        problem = None
        if seg > self.cfg.max_sms_segments:
            problem = (
                f"{seg} SMS segments, over broadcast.max_sms_segments "
                f"({self.cfg.max_sms_segments}): give a shorter SMS text"
            )
        cost = seg * self.cfg.cost_per_segment.get("sms", 0.0)
        return TextCheck(lang, "sms", body, len(body), enc, seg, cost, tuple(notes), problem)

    def _check_plain(self, lang: str, channel: str, text: str) -> TextCheck:
        limit = WHATSAPP_VARIABLE_MAX if channel == "whatsapp" else TELEGRAM_MAX
        problem = None
        if len(text) > limit:
            problem = f"{len(text)} characters, over {channel}'s {limit}: shorten it"
        cost = self.cfg.cost_per_segment.get(channel, 0.0)
        return TextCheck(lang, channel, text, len(text), None, 1, cost, (), problem)

    def _validate(self, draft: Draft, *, correction_of: int | None = None) -> NewBroadcast:
        problems: list[str] = []
        name = " ".join(draft.name.split())
        if not name:
            problems.append("name: give the broadcast a name coordinators will recognise")
        languages = self.config.languages
        texts = {k.strip().lower(): v.strip() for k, v in draft.texts.items()}
        sms_texts = {k.strip().lower(): v.strip() for k, v in draft.sms_texts.items() if v}
        default = languages[0]
        if not texts.get(default):
            problems.append(f"text: a text in {default} (languages[0] in the config) is required")
        for lang, text in texts.items():
            if lang not in languages:
                problems.append(f"text.{lang}: {lang} is not in languages ({', '.join(languages)})")
            elif not text:
                problems.append(f"text.{lang}: empty")
        for lang in sms_texts.keys() - texts.keys():
            problems.append(f"sms.{lang}: an SMS text needs a text in {lang} too")
        template = draft.whatsapp_template
        if template is not None and self._template_sid(template, default) is None:
            known = ", ".join(sorted(self.cfg.whatsapp_templates)) or "none configured"
            problems.append(
                f"whatsapp template {template!r}: not in broadcast.whatsapp_templates with a "
                f"{default} SID ({known})"
            )
        for check in self.check(texts, sms_texts, template):
            if check.problem:
                problems.append(f"{check.channel}.{check.language}: {check.problem}")
        problems.extend(self._audience_problems(draft.audience))
        recurrence, tz_name, next_due_at = self._recurrence(draft, problems)
        send_at = draft.send_at
        if send_at is not None and (send_at.tzinfo is None or send_at.utcoffset() is None):
            problems.append("send_at: give a time with a time zone (e.g. 2024-05-01T09:00+05:30)")
        if problems:
            raise BroadcastError("\n".join(problems))
        audience = Audience(
            languages=tuple(sorted(set(draft.audience.languages))),
            regions=tuple(sorted({r.strip().lower() for r in draft.audience.regions})),
            conditions=tuple(sorted(set(draft.audience.conditions))),
            channels=tuple(ch for ch in self.channels if ch in draft.audience.channels),
            tags=tuple(sorted({t.strip().lower() for t in draft.audience.tags})),
            include_test=draft.audience.include_test,
        )
        return NewBroadcast(
            name=name,
            texts=texts,
            sms_texts=sms_texts,
            default_language=default,
            audience=audience,
            send_at=send_at.astimezone(UTC) if send_at else None,
            recurrence=recurrence,
            timezone=tz_name,
            next_due_at=next_due_at,
            urgent=draft.urgent,
            whatsapp_template=template,
            correction_of=correction_of,
        )

    def _audience_problems(self, audience: Audience) -> list[str]:
        problems = []
        allowed: dict[str, list[str]] = {
            "languages": list(self.config.languages),
            "channels": list(dict.fromkeys([*map(str, self.cfg.channels), *self.channels])),
            "conditions": list(CONDITION_FLOWS),
        }
        for key, known in allowed.items():
            unknown = sorted(set(getattr(audience, key)) - set(known))
            if unknown:
                problems.append(f"audience.{key}: unknown {unknown} (use {', '.join(known)})")
        return problems

    def _recurrence(
        self, draft: Draft, problems: list[str]
    ) -> tuple[dict[str, object] | None, str | None, datetime | None]:
        rec = draft.recurrence
        if rec is None:
            return None, None, None
        if draft.send_at is not None:
            problems.append("give either a send time or a recurrence, not both")
        try:
            tz = zone(rec.timezone)
            local_today = self.clock().astimezone(tz).date()
            start = rec.start or local_today
            rule = Rule(rec.at, rec.every_days, anchor=start, start=start, end=rec.until)
        except ValueError as exc:
            problems.append(f"recurrence: {exc}")
            return None, None, None
        first = next_due(rule, tz, self.clock())
        if first is None:
            problems.append("recurrence: it has no occurrence after now (check --until)")
        return rule.to_json(), rec.timezone, first

    def _plan(self, row: BroadcastRow, start: datetime) -> FanOutPlan:
        """The store's recipe for this broadcast's outbox rows at `start`."""
        quiet = None if row.urgent else self.quiet
        base = {"broadcast": str(row.id)}
        if quiet is not None:
            base["quiet"] = f"{format_clock(quiet.start)}-{format_clock(quiet.end)}"
        variants = []
        for t in self.store.broadcast_texts(row.id):
            for channel in self.channels:
                if channel == "whatsapp":
                    sid = self._template_sid(row.whatsapp_template, t.language)
                    if sid is not None:
                        meta = {**base, "template": "1", "template_sid": sid}
                        variants.append(Variant(t.language, channel, t.text, meta))
                elif channel == "sms":
                    variants.append(Variant(t.language, channel, t.sms_text or t.text, base))
                else:
                    variants.append(Variant(t.language, channel, t.text, base))
        wanted = row.audience.channels
        channels = tuple(
            ch
            for ch in self.channels
            if (not wanted or ch in wanted)
            and any(v.channel == ch and v.language == row.default_language for v in variants)
        )
        releases = {}
        for name in {*self.store.audience_timezones(), self.default_timezone}:
            try:
                releases[name] = defer_quiet(start, zone(name), quiet)
            except ValueError:  # a contact with an unknown zone: the default one applies
                continue
        releases[""] = start  # test contacts (zone ''): no quiet hours, nobody is asleep
        return FanOutPlan(
            broadcast_id=row.id,
            audience=row.audience,
            channels=channels,
            variants=tuple(variants),
            default_language=row.default_language,
            default_timezone=self.default_timezone,
            releases=releases,
            default_release=releases[self.default_timezone],
            quiet=base.get("quiet"),
            correction_of=row.correction_of,
        )

    def _plan_notes(self, row: BroadcastRow, plan: FanOutPlan) -> list[str]:
        notes = []

        def wanted(channel: str) -> bool:
            return not row.audience.channels or channel in row.audience.channels

        for channel in self.cfg.channels:
            if not self._enabled(channel):
                notes.append(f"{channel} is off (channels.{channel}.enabled is false)")
            elif channel in self.off and wanted(channel):
                notes.append(
                    f"{channel} is off ({self.off[channel]}): its recipients' messages are not "
                    "sent until it is configured"
                )
            elif channel == "whatsapp" and channel not in plan.channels and wanted(channel):
                notes.append(
                    "WhatsApp is not used: a broadcast needs an approved template there "
                    "(--whatsapp-template NAME, from broadcast.whatsapp_templates)"
                )
        if "web" in plan.channels:
            notes.append(
                "the browser simulator is on: test contacts are "
                + ("included" if row.audience.include_test else "left out")
            )
        elif row.audience.include_test:
            notes.append(f"test contacts cannot get it: the simulator is off ({self._why_web()})")
        if row.urgent:
            notes.append("urgent: quiet hours do not apply")
        return notes

    def _why_web(self) -> str:
        return self.off.get("web") or "simulator.enabled is false, or serve is not on loopback"

    def _add(self, new: NewBroadcast, user: UserRow, action: str) -> BroadcastRow:
        now = self.clock()
        with self.store.transaction():
            broadcast_id = self.store.add_broadcast(new, user.id, user.username, now)
            self._audit(user, action, broadcast_id, now)
        log.info("broadcast=%s %s by user=%s", broadcast_id, action, user.id)
        return self._get(broadcast_id)

    def _audit(
        self, user: UserRow, action: str, broadcast_id: int, now: datetime, **extra: int
    ) -> None:
        detail = {"broadcast": broadcast_id, **extra}
        self.store.add_audit(now, user.id, user.username, action, detail=detail)

    def _user(self, username: str) -> UserRow:
        user = self.store.find_user(username.strip().lower())
        if user is None:
            raise BroadcastError(
                f"there is no console user {username!r} "
                f"(add one: carebridge users add {username} --role coordinator)"
            )
        if user.disabled:
            raise BroadcastError(f"user {user.username} is disabled")
        if user.role not in MAY_BROADCAST:
            raise BroadcastError(
                f"user {user.username} is a {user.role}: only coordinators and admins broadcast"
            )
        return user

    def _get(self, broadcast_id: int) -> BroadcastRow:
        row = self.store.get_broadcast(broadcast_id)
        if row is None:
            raise BroadcastError(
                f"there is no broadcast {broadcast_id} (carebridge broadcast list shows them)"
            )
        return row
