"""`carebridge broadcast`: coordinator broadcasts from the command line (create, preview,
approve, send with a progress bar, status and CSV, cancel, correct, list, sweep, contact).
Registered on the main group by bot.cli; imports bot.app, bot.broadcasts.service, bot.store,
click.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from bot.app import build_broadcasts, build_channels, build_dispatcher, channels_off
from bot.broadcasts.service import Broadcasts, Draft, Preview, Recurrence, Stats
from bot.config import Config
from bot.errors import CarebridgeError
from bot.schedules import parse_clock
from bot.store import Audience, BroadcastRow, FanOutStep, open_store

BY = click.option(
    "--by",
    required=True,
    envvar="CAREBRIDGE_USER",
    help="Your console username (coordinator or admin); CAREBRIDGE_USER also sets it.",
)


@contextmanager
def _service(ctx: click.Context) -> Iterator[Broadcasts]:
    config: Config = ctx.obj["config"]
    try:
        store = open_store(config.storage_url())
    except CarebridgeError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield build_broadcasts(config, store, off=channels_off(config))
    except CarebridgeError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


def _pairs(values: tuple[str, ...], option: str, *, files: bool = False) -> dict[str, str]:
    """LANG=TEXT (or LANG=PATH with `files`) options as {lang: text}."""
    out = {}
    for value in values:
        lang, sep, rest = value.partition("=")
        if not sep or not lang.strip():
            raise click.BadParameter(
                f"use {option} LANG=..., e.g. {option} en=...", param_hint=option
            )
        if files:
            try:
                rest = Path(rest).read_text(encoding="utf-8")
            except OSError as exc:
                raise click.BadParameter(str(exc), param_hint=option) from None
        out[lang.strip().lower()] = rest
    return out


def _texts(text: tuple[str, ...], text_file: tuple[str, ...]) -> dict[str, str]:
    return {**_pairs(text, "--text"), **_pairs(text_file, "--text-file", files=True)}


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: use ISO 8601, e.g. 2024-05-01T09:00+05:30") from None
    if when.tzinfo is None:
        raise click.BadParameter(f"{value!r}: give the offset, e.g. 2024-05-01T09:00+05:30")
    return when


text_options: list[Decorator] = [
    click.option("--text", multiple=True, metavar="LANG=TEXT", help="The text in one language."),
    click.option("--text-file", multiple=True, metavar="LANG=PATH", help="... read from a file."),
    click.option("--sms", multiple=True, metavar="LANG=TEXT", help="A shorter SMS text."),
    click.option("--whatsapp-template", default=None, help="From broadcast.whatsapp_templates."),
    click.option("--urgent", is_flag=True, help="Send in quiet hours too."),
]


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _with(options: list[Decorator]) -> Decorator:
    """Apply several click options (shared by create and correct)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


@click.group()
def broadcast() -> None:
    """Health-advice broadcasts to subscribers (docs/broadcasts.md)."""


@broadcast.command("create")
@click.option("--name", required=True, help="What coordinators will recognise it by.")
@_with(text_options)
@click.option("--language", "languages", multiple=True, help="Only contacts in this language.")
@click.option("--region", "regions", multiple=True, help="Only people in this region.")
@click.option("--condition", "conditions", multiple=True, help="Only people enrolled for it.")
@click.option("--channel", "channels", multiple=True, help="Only on this channel.")
@click.option("--tag", "tags", multiple=True, help="Only people with this tag.")
@click.option(
    "--include-test/--no-include-test",
    "include_test",
    default=None,
    help="Test contacts (the simulator's) too; default: yes when the simulator is on.",
)
@click.option("--at", "send_at", default=None, help="Send at (ISO 8601 with offset).")
@click.option("--every", type=click.IntRange(1), default=None, help="Repeat every N days ...")
@click.option("--time", "at_time", default=None, help="... at this local time (HH:MM) ...")
@click.option("--tz", default=None, help="... in this time zone (IANA) ...")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), default=None, help="... until.")
@BY
@click.pass_context
def create(ctx: click.Context, /, **kw: Any) -> None:
    """Create a draft broadcast; another coordinator approves it."""
    recurrence = None
    if kw["every"] is not None:
        if not kw["at_time"] or not kw["tz"]:
            raise click.UsageError("--every needs --time HH:MM and --tz ZONE")
        until: date | None = kw["until"].date() if kw["until"] else None
        try:
            at = parse_clock(kw["at_time"])
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--time") from None
        recurrence = Recurrence(kw["every"], at, kw["tz"], until=until)
    draft = Draft(
        name=kw["name"],
        texts=_texts(kw["text"], kw["text_file"]),
        sms_texts=_pairs(kw["sms"], "--sms"),
        audience=Audience(
            languages=kw["languages"],
            regions=kw["regions"],
            conditions=kw["conditions"],
            channels=kw["channels"],
            tags=kw["tags"],
            include_test=bool(kw["include_test"]),
        ),
        send_at=_when(kw["send_at"]),
        recurrence=recurrence,
        urgent=kw["urgent"],
        whatsapp_template=kw["whatsapp_template"],
    )
    with _service(ctx) as svc:
        if kw["include_test"] is None:
            audience = replace(draft.audience, include_test=svc.include_test_default)
            draft = replace(draft, audience=audience)
        row = svc.create(draft, kw["by"])
        _show_checks(svc, row)
    click.echo(
        f"created broadcast {row.id} (draft); another coordinator approves it with: "
        f"carebridge broadcast approve {row.id} --by NAME"
    )


@broadcast.command("correct")
@click.argument("original", type=int)
@click.option("--name", default=None, help="Default: 'Correction: <original name>'.")
@_with(text_options)
@BY
@click.pass_context
def correct(ctx: click.Context, /, original: int, **kw: Any) -> None:
    """Create a correction of ORIGINAL for exactly the people it reached."""
    with _service(ctx) as svc:
        name = kw["name"] or f"Correction: {svc.get(original).name}"
        draft = Draft(
            name=name,
            texts=_texts(kw["text"], kw["text_file"]),
            sms_texts=_pairs(kw["sms"], "--sms"),
            urgent=kw["urgent"],
            whatsapp_template=kw["whatsapp_template"],
        )
        row = svc.correct(original, draft, kw["by"])
        _show_checks(svc, row)
    click.echo(
        f"created correction {row.id} of broadcast {original} (draft); approve it with: "
        f"carebridge broadcast approve {row.id} --by NAME"
    )


@broadcast.command("preview")
@click.argument("broadcast_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def preview(ctx: click.Context, broadcast_id: int, as_json: bool) -> None:
    """Recipients per channel and language, segments, cost and time to finish."""
    with _service(ctx) as svc:
        result = svc.preview(broadcast_id)
    if as_json:
        click.echo(json.dumps(_preview_json(result), indent=2, default=str))
        return
    row = result.broadcast
    click.echo(f"broadcast {row.id} {row.name!r} ({row.status}); audience: {_audience(row)}")
    click.echo(f"starts {result.start_at:%Y-%m-%d %H:%M} UTC")
    click.echo(
        f"{'channel':<10} {'people':>8} {'segments':>9} {'cost':>10} {'deferred':>9}  done by"
    )
    for c in result.channels:
        langs = ", ".join(f"{k} {v}" for k, v in c.languages.items())
        click.echo(
            f"{c.channel:<10} {c.recipients:>8} {c.segments:>9} {c.cost:>10.2f} {c.deferred:>9}"
            + (
                f"  off: {c.off} (not sent until it is configured)"
                if c.off
                else f"  {c.finish_at:%Y-%m-%d %H:%M} UTC ({c.rate_per_s:g}/s; {langs})"
            )
        )
    done = "nothing to send: its channels are off" if result.recipients else "nobody to send to"
    if result.sendable:
        done = f"done by {result.finish_at:%Y-%m-%d %H:%M} UTC"
    click.echo(
        f"{'total':<10} {result.recipients:>8} {'':>9} {result.cost:>10.2f} {result.currency}"
        f"  {done}"
    )
    click.echo(
        f"left out: {result.opted_out} opted out, {result.no_consent} without broadcast "
        f"consent, {result.duplicates} reached on another channel"
    )
    for note in result.notes:
        click.echo(f"note: {note}")
    _echo_checks(result)


@broadcast.command("approve")
@click.argument("broadcast_id", type=int)
@BY
@click.pass_context
def approve(ctx: click.Context, broadcast_id: int, by: str) -> None:
    """Approve a draft (the second person: not its creator)."""
    with _service(ctx) as svc:
        row = svc.approve(broadcast_id, by)
    when = f"at {row.send_at:%Y-%m-%d %H:%M} UTC" if row.send_at else "when sent"
    if row.recurrence is not None and row.next_due_at is not None:
        when = f"first at {row.next_due_at:%Y-%m-%d %H:%M} UTC, then by itself"
    click.echo(f"approved broadcast {row.id} by {by}; it goes {when}")


@broadcast.command("send")
@click.argument("broadcast_id", type=int)
@click.option("--now", "early", is_flag=True, help="Before its scheduled time.")
@click.option("--dispatch", is_flag=True, help="Also send from this process (else serve does).")
@BY
@click.pass_context
def send(ctx: click.Context, broadcast_id: int, early: bool, dispatch: bool, by: str) -> None:
    """Start an approved broadcast: enqueue its recipients with a progress bar."""
    with _service(ctx) as svc:
        svc.send(broadcast_id, by, early=early)
        first, last = svc.progress_range(broadcast_id)
        done = [first]

        with click.progressbar(length=max(1, last - first), label="enqueuing") as bar:

            def advance(step: FanOutStep) -> None:
                bar.update(max(0, step.cursor - done[0]))
                done[0] = step.cursor

            enqueued = svc.fan_out(broadcast_id, on_batch=advance)
        stats = svc.stats(broadcast_id)
        click.echo(f"broadcast {broadcast_id}: {stats.total.total} messages in the outbox")
        if enqueued == 0 and stats.broadcast.status == "cancelled":
            click.echo("it was cancelled")
        if dispatch:
            _dispatch(ctx, svc, broadcast_id)
        else:
            click.echo(
                "the dispatcher of `carebridge serve` sends them; follow with "
                f"carebridge broadcast status {broadcast_id}"
            )


def _dispatch(ctx: click.Context, svc: Broadcasts, broadcast_id: int) -> None:
    """Send from this process with a progress bar until nothing of it is due any more."""
    config: Config = ctx.obj["config"]
    senders, off = build_channels(config)
    for channel, why in sorted(off.items()):
        click.echo(f"not sending on {channel}: {why}")
    dispatcher = build_dispatcher(config, svc.store, senders)
    total = svc.stats(broadcast_id).total.total

    async def run() -> None:
        with click.progressbar(length=max(1, total), label="sending") as bar:
            shown = 0
            while True:
                attempted = await dispatcher.run_once()
                stats = svc.stats(broadcast_id)
                finished = stats.total.total - stats.total.queued
                bar.update(finished - shown)
                shown = finished
                if stats.done or not attempted:
                    break
        left = svc.stats(broadcast_id).total.queued
        if left:
            click.echo(
                f"{left} messages wait (recipients' quiet hours, or a channel that is off here); "
                "`carebridge serve` sends them when they are due"
            )

    asyncio.run(run())


@broadcast.command("status")
@click.argument("broadcast_id", type=int)
@click.option("--csv", "as_csv", is_flag=True, help="Counts per channel as CSV.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, broadcast_id: int, as_csv: bool, as_json: bool) -> None:
    """Queued, sent, delivered, failed, opted out and cancelled, per channel."""
    with _service(ctx) as svc:
        stats = svc.stats(broadcast_id)
    if as_csv:
        click.echo(stats.to_csv(), nl=False)
        return
    if as_json:
        click.echo(json.dumps(_stats_json(stats), indent=2, default=str))
        return
    row = stats.broadcast
    click.echo(f"broadcast {row.id} {row.name!r}: {row.status}{' (done)' if stats.done else ''}")
    click.echo(
        f"created by {row.created_by_name}, approved by {row.approved_by_name or '-'}"
        + (f", cancelled by {row.cancelled_by_name}" if row.cancelled_by_name else "")
    )
    click.echo(stats.to_csv().replace(",", "\t"), nl=False)


@broadcast.command("cancel")
@click.argument("broadcast_id", type=int)
@BY
@click.pass_context
def cancel(ctx: click.Context, broadcast_id: int, by: str) -> None:
    """The kill switch: stop a broadcast and every message of it not sent yet."""
    with _service(ctx) as svc:
        stopped = svc.cancel(broadcast_id, by)
    click.echo(f"cancelled broadcast {broadcast_id}: {stopped} queued messages stopped")


@broadcast.command("list")
@click.option("--limit", type=int, default=20, show_default=True)
@click.pass_context
def list_broadcasts(ctx: click.Context, limit: int) -> None:
    """The latest broadcasts."""
    with _service(ctx) as svc:
        rows = svc.recent(limit)
    for row in rows:
        extra = f" correction of {row.correction_of}" if row.correction_of else ""
        extra += f" occurrence of {row.parent_id}" if row.parent_id else ""
        extra += " recurring" if row.recurrence else ""
        click.echo(
            f"{row.id:>5}  {row.status:<9}  {row.created_at:%Y-%m-%d %H:%M}  {row.enqueued:>8}"
            f"  {row.name}{extra}"
        )


@broadcast.command("sweep")
@click.pass_context
def sweep(ctx: click.Context) -> None:
    """One pass (for cron): recurrences, scheduled broadcasts, unfinished fan-outs."""
    with _service(ctx) as svc:
        report = svc.sweep()
    click.echo(
        f"occurrences {report.occurrences}, started {report.started}, enqueued {report.enqueued}"
    )


@broadcast.command("contact")
@click.argument("contact_id", type=int)
@click.option("--region", default=None, help="Set the region.")
@click.option("--tz", default=None, help="Set the time zone (IANA).")
@click.option("--tag", "tags", multiple=True, help="Add a tag.")
@click.option("--untag", multiple=True, help="Remove a tag.")
@click.option("--link", type=int, default=None, help="Same person as this contact id.")
@click.option("--prefer", is_flag=True, help="Broadcasts reach the person here.")
@click.option("--consent/--no-consent", default=None, help="Record broadcast consent.")
@click.pass_context
def contact(ctx: click.Context, /, contact_id: int, **kw: Any) -> None:
    """Audience facts of a contact: region, time zone, tags, person, consent."""
    with _service(ctx) as svc:
        try:
            if kw["region"] is not None or kw["tz"] is not None:
                svc.set_facts(contact_id, region=kw["region"], timezone=kw["tz"])
            tags = svc.tag(contact_id, kw["tags"], kw["untag"])
            if kw["link"] is not None:
                svc.link(contact_id, kw["link"])
            if kw["prefer"]:
                svc.prefer(contact_id)
            if kw["consent"] is not None:
                svc.subscribe(contact_id, granted=kw["consent"], source="cli")
        except KeyError:
            raise click.ClickException(f"there is no contact {contact_id}") from None
        row = svc.store.contact_row(contact_id)
    assert row is not None
    click.echo(
        f"contact {row.id} ({row.channel}): person {row.person_id}, region {row.region or '-'}, "
        f"time zone {row.timezone or '-'}, tags {', '.join(tags) or '-'}, "
        f"broadcast consent {row.consent_broadcast}, opted out {row.opted_out}"
        + (", preferred" if row.preferred else "")
    )


# --- output helpers ---------------------------------------------------------------------------


def _audience(row: BroadcastRow) -> str:
    if row.correction_of is not None:
        return f"the people broadcast {row.correction_of} reached"
    return row.audience.describe()


def _show_checks(svc: Broadcasts, row: BroadcastRow) -> None:
    texts = svc.store.broadcast_texts(row.id)
    checks = svc.check(
        {t.language: t.text for t in texts},
        {t.language: t.sms_text for t in texts if t.sms_text},
        row.whatsapp_template,
    )
    for c in checks:
        enc = f", {c.encoding}" if c.encoding else ""
        click.echo(
            f"  {c.channel}/{c.language}: {c.characters} characters{enc}, "
            f"{c.segments} segment(s), {c.cost:.4f} {svc.cfg.currency} each"
        )
        for note in c.notes:
            click.echo(f"    note: {note}")


def _echo_checks(result: Preview) -> None:
    for c in result.checks:
        for note in c.notes:
            click.echo(f"note ({c.channel}/{c.language}): {note}")


def _preview_json(result: Preview) -> dict[str, Any]:
    return {
        "broadcast": result.broadcast.id,
        "start_at": result.start_at.astimezone(UTC).isoformat(),
        "finish_at": result.finish_at.astimezone(UTC).isoformat(),
        "recipients": result.recipients,
        "cost": round(result.cost, 4),
        "currency": result.currency,
        "channels": [asdict(c) for c in result.channels],
        "opted_out": result.opted_out,
        "no_consent": result.no_consent,
        "duplicates": result.duplicates,
        "checks": [asdict(c) for c in result.checks],
        "notes": list(result.notes),
    }


def _stats_json(stats: Stats) -> dict[str, Any]:
    return {
        "broadcast": stats.broadcast.id,
        "status": str(stats.broadcast.status),
        "done": stats.done,
        "channels": [{**asdict(c), "total": c.total} for c in (*stats.channels, stats.total)],
    }
