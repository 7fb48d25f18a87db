"""What the console's broadcast pages show, as plain data for the templates and the JSON API: a
form read into a `Draft`, the buttons a user may press (and why not), text checks as one line
each, the schedule in words, and the stats chart's geometry. Imports bot.broadcasts.service,
bot.schedules and bot.store row types only; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from bot.broadcasts.service import (
    MAY_BROADCAST,
    ChannelStats,
    Draft,
    Recurrence,
    Stats,
    TextCheck,
)
from bot.schedules import Rule, format_clock, parse_clock, zone
from bot.store import Audience, BroadcastRow, BroadcastStatus, UserRow

ENCODINGS = {"gsm7": "GSM-7", "ucs2": "UCS-2"}
CHANNEL_LABELS = {
    "sms": "SMS",
    "whatsapp": "WhatsApp",
    "telegram": "Telegram",
    "web": "Simulator",
}
# The chart's stacked segments, in this order (stopped_after is a part of sent + delivered).
CHART_KEYS = ("delivered", "sent", "queued", "failed", "opted_out", "cancelled")
STAT_LABELS = {
    "queued": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "failed": "failed",
    "opted_out": "opted out",
    "stopped_after": "STOP since",
    "cancelled": "stopped",
}
WHEN = ("now", "at", "every")


class FormError(ValueError):
    """A form field that cannot be read; the message names the field and what to enter."""


def channel_label(channel: str) -> str:
    """sms -> SMS, whatsapp -> WhatsApp."""
    return CHANNEL_LABELS.get(channel, channel.capitalize())


def split_list(raw: str | None) -> tuple[str, ...]:
    """ "Pune, mumbai ,," -> ("pune", "mumbai"): comma-separated filter values, lower case."""
    return tuple(v.strip().lower() for v in (raw or "").split(",") if v.strip())


def _ticked(form: Mapping[str, str], prefix: str, known: Sequence[str]) -> tuple[str, ...]:
    return tuple(value for value in known if form.get(f"{prefix}_{value}"))


def texts_from_form(
    form: Mapping[str, str], languages: Sequence[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """({lang: text}, {lang: shorter SMS text}) from `text_LANG` and `sms_LANG` fields."""
    texts = {lang: form.get(f"text_{lang}", "").strip() for lang in languages}
    sms = {lang: form.get(f"sms_{lang}", "").strip() for lang in languages}
    return {k: v for k, v in texts.items() if v}, {k: v for k, v in sms.items() if v}


def template_from_form(form: Mapping[str, str], known: Sequence[str]) -> str | None:
    """The WhatsApp template chosen, if it is a configured one."""
    name = form.get("whatsapp_template", "").strip()
    return name if name in known else None


def _send_at(form: Mapping[str, str], default_tz: str) -> datetime:
    raw = form.get("send_at", "").strip()
    if not raw:
        raise FormError("send at: give the date and time it should go")
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise FormError(f"send at: {raw!r} is not a date and time (2024-05-01T09:00)") from None
    if when.tzinfo is None:
        tz_name = form.get("send_tz", "").strip() or default_tz
        try:
            when = when.replace(tzinfo=zone(tz_name))
        except ValueError as exc:
            raise FormError(f"send at time zone: {exc}") from None
    return when


def _recurrence(form: Mapping[str, str], default_tz: str) -> Recurrence:
    try:
        every = int(form.get("every_days", "").strip() or "0")
    except ValueError:
        every = 0
    if every < 1:
        raise FormError("repeat every: a whole number of days, 1 or more")
    try:
        at = parse_clock(form.get("every_time", "").strip())
    except ValueError:
        raise FormError("repeat at: a local time like 09:00") from None
    until_raw = form.get("every_until", "").strip()
    try:
        until = date.fromisoformat(until_raw) if until_raw else None
    except ValueError:
        raise FormError(f"repeat until: {until_raw!r} is not a date (2024-12-31)") from None
    tz_name = form.get("every_tz", "").strip() or default_tz
    return Recurrence(every, at, tz_name, until=until)


def draft_from_form(
    form: Mapping[str, str],
    *,
    languages: Sequence[str],
    channels: Sequence[str],
    conditions: Sequence[str],
    templates: Sequence[str],
    default_tz: str,
) -> Draft:
    """The create form as a Draft (bot.broadcasts.service checks the rest); FormError for a field
    that cannot be read at all (a date that is not a date)."""
    texts, sms = texts_from_form(form, languages)
    when = form.get("when", "now")
    if when not in WHEN:
        raise FormError(f"when: one of {', '.join(WHEN)}")
    audience = Audience(
        languages=_ticked(form, "language", languages),
        regions=split_list(form.get("regions")),
        conditions=_ticked(form, "condition", conditions),
        channels=_ticked(form, "channel", channels),
        tags=split_list(form.get("tags")),
        include_test=form.get("include_test") == "1",
    )
    return Draft(
        name=form.get("name", ""),
        texts=texts,
        sms_texts=sms,
        audience=audience,
        send_at=_send_at(form, default_tz) if when == "at" else None,
        recurrence=_recurrence(form, default_tz) if when == "every" else None,
        urgent=form.get("urgent") == "1",
        whatsapp_template=template_from_form(form, templates),
    )


def correction_from_form(
    form: Mapping[str, str], *, languages: Sequence[str], templates: Sequence[str]
) -> Draft:
    """The correction form as a Draft: name, texts, template and urgency only (its audience is
    the original's recipients)."""
    texts, sms = texts_from_form(form, languages)
    return Draft(
        name=form.get("name", ""),
        texts=texts,
        sms_texts=sms,
        urgent=form.get("urgent") == "1",
        whatsapp_template=template_from_form(form, templates),
    )


# -- text checks -----------------------------------------------------------------------------


def check_line(check: TextCheck, currency: str) -> str:
    """ "SMS: 98 characters · GSM-7 · 1 segment · 0.0079 USD each"."""
    parts = [f"{channel_label(check.channel)}: {check.characters} characters"]
    if check.encoding:
        parts.append(ENCODINGS.get(check.encoding, check.encoding))
        parts.append(f"{check.segments} segment{'s' if check.segments != 1 else ''}")
    parts.append(f"{money(check.cost, 4)} {currency} each")
    return " · ".join(parts)


def checks_json(checks: Sequence[TextCheck], currency: str) -> list[dict[str, Any]]:
    """Each check with its one-line summary, for the live counter (JS) and the template."""
    return [{**asdict(c), "line": check_line(c, currency)} for c in checks]


def money(amount: float, places: int = 2) -> str:
    """0.0079 -> "0.0079" (places=4); 12.5 -> "12.50"."""
    return f"{amount:,.{places}f}"


# -- what a user may do --------------------------------------------------------------------


@dataclass(frozen=True)
class Actions:
    """The buttons on a broadcast's pages; each `*_why` says why one is missing (or "")."""

    may_act: bool  # a coordinator or admin (else the pages are read-only)
    approve: bool = False
    approve_why: str = ""
    send: bool = False
    send_early: bool = False  # approved for later: "send now instead"
    send_why: str = ""
    cancel: str = ""  # the button's label; "" = no button
    kill: bool = False  # the cancel button stops a broadcast that is going out
    correct: bool = False
    correct_why: str = ""


def actions(stats: Stats, user: UserRow, now: datetime, when: Callable[[datetime], str]) -> Actions:
    """What `user` may do with the broadcast now, and why not where a coordinator would expect
    a button."""
    row = stats.broadcast
    if user.role not in MAY_BROADCAST:
        return Actions(may_act=False)
    status = row.status
    approve, approve_why = False, ""
    if status is BroadcastStatus.DRAFT:
        if user.id == row.created_by or user.username == row.created_by_name:
            approve_why = (
                "You created this broadcast, so you cannot approve it: two people must agree "
                "before it goes. Ask another coordinator or admin to approve it."
            )
        else:
            approve = True
    send, early, send_why = False, False, ""
    if status is BroadcastStatus.DRAFT:
        send_why = "It can be sent once another coordinator has approved it."
    elif status is BroadcastStatus.APPROVED:
        if row.recurrence is not None:
            send_why = "Recurring: each occurrence starts by itself at its time."
        elif row.send_at is not None and row.send_at > now:
            send, early = True, True
            send_why = f"Scheduled for {when(row.send_at)}: it starts by itself then."
        else:
            send = True
    queued = stats.total.queued
    cancel = ""
    if status in (BroadcastStatus.DRAFT, BroadcastStatus.APPROVED):
        cancel = "Cancel this broadcast"
    elif status is BroadcastStatus.SENDING or (status is BroadcastStatus.SENT and queued):
        cancel = "Kill switch: stop sending"
    correct, correct_why = False, ""
    if status in (BroadcastStatus.SENT, BroadcastStatus.CANCELLED) and row.recurrence is None:
        reached = stats.total.sent + stats.total.delivered
        if queued:
            correct_why = (
                f"{queued} messages are still queued: stop it first (kill switch) so nobody "
                "gets the wrong text after the correction."
            )
        elif reached:
            correct = True
        else:
            correct_why = "It reached nobody, so there is nobody to correct."
    return Actions(
        may_act=True,
        approve=approve,
        approve_why=approve_why,
        send=send,
        send_early=early,
        send_why=send_why,
        cancel=cancel,
        kill=cancel.startswith("Kill"),
        correct=correct,
        correct_why=correct_why,
    )


def schedule_text(row: BroadcastRow, when: Callable[[datetime], str]) -> str:
    """When it goes, in words."""
    if row.recurrence is not None:
        rule = Rule.from_json(row.recurrence)
        days = "day" if rule.every_days == 1 else f"{rule.every_days} days"
        text = f"every {days} at {format_clock(rule.at)} {row.timezone or ''}".rstrip()
        if rule.end:
            text += f" until {rule.end.isoformat()}"
        if row.next_due_at and row.status is not BroadcastStatus.CANCELLED:
            text += f"; next {when(row.next_due_at)}"
        return text
    if row.parent_id is not None:
        return f"occurrence of #{row.parent_id} at {when(row.send_at) if row.send_at else '-'}"
    if row.send_at is not None:
        return f"at {when(row.send_at)}"
    if row.started_at is not None:
        return f"sent {when(row.started_at)}"
    return "when sent, after approval"


def audience_text(row: BroadcastRow) -> str:
    """Who it is for, in words."""
    if row.correction_of is not None:
        return f"exactly the people broadcast #{row.correction_of} reached"
    parts = []
    labels = {
        "languages": "language",
        "regions": "region",
        "conditions": "condition",
        "channels": "channel",
        "tags": "tag",
    }
    for key, label in labels.items():
        values: tuple[str, ...] = getattr(row.audience, key)
        if values:
            parts.append(f"{label} {' or '.join(v.replace('_', ' ') for v in values)}")
    test = " (test contacts included)" if row.audience.include_test else ""
    return "all subscribers" + (", " + "; ".join(parts) if parts else "") + test


# -- the stats chart ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    key: str
    x: float
    width: float
    count: int
    label: str  # "12 delivered"


@dataclass(frozen=True)
class Bar:
    channel: str
    label: str
    y: float
    total: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class StatsChart:
    """One stacked bar per channel on one scale (the largest channel fills the width)."""

    width: int
    height: int
    left: int
    right: int
    bar_height: int
    bars: tuple[Bar, ...]
    label: str  # for screen readers


def stats_chart(
    channels: Sequence[ChannelStats], *, width: int = 640, bar_height: int = 26, gap: int = 14
) -> StatsChart:
    """Geometry of the stats chart (the template draws it; console.js redraws it from JSON)."""
    left, right, top = 96, width - 64, 8
    scale = max((c.total for c in channels), default=0) or 1
    bars = []
    for i, c in enumerate(channels):
        x, segments = float(left), []
        for key in CHART_KEYS:
            count = int(getattr(c, key))
            if count:
                w = (right - left) * count / scale
                segments.append(
                    Segment(key, round(x, 2), round(w, 2), count, f"{count} {STAT_LABELS[key]}")
                )
                x += w
        bars.append(
            Bar(
                c.channel,
                channel_label(c.channel),
                top + i * (bar_height + gap),
                c.total,
                tuple(segments),
            )
        )
    height = top * 2 + max(1, len(bars)) * (bar_height + gap) - gap
    label = "; ".join(
        f"{b.label}: "
        + (", ".join(f"{s.count} {STAT_LABELS[s.key]}" for s in b.segments) or "none")
        for b in bars
    )
    return StatsChart(width, height, left, right, bar_height, tuple(bars), label or "no messages")


def progress_text(stats: Stats) -> str:
    """Where the sending stands, in words (the status alone says `sent` once all are enqueued)."""
    row, queued = stats.broadcast, stats.total.queued
    if row.status is BroadcastStatus.SENDING:
        return f"Adding recipients: {row.enqueued:,} in the outbox so far"
    if row.status in (BroadcastStatus.DRAFT, BroadcastStatus.APPROVED):
        return "Not started"
    if queued:
        head = "Stopped" if row.status is BroadcastStatus.CANCELLED else "Sending"
        return f"{head}: {queued:,} of {stats.total.total:,} still queued"
    if row.status is BroadcastStatus.CANCELLED:
        return "Stopped: nothing left in the queue"
    return f"Done: all {stats.total.total:,} handed to the providers"


def stats_json(stats: Stats) -> dict[str, Any]:
    """A broadcast's stats for the live status page (counts only, never recipients)."""
    row = stats.broadcast
    return {
        "id": row.id,
        "status": str(row.status),
        "done": stats.done,
        "enqueued": row.enqueued,
        "progress": progress_text(stats),
        "channels": [
            {**asdict(c), "label": channel_label(c.channel), "total": c.total}
            for c in (*stats.channels, stats.total)
        ],
        "chart": asdict(stats_chart(stats.channels)),
    }
