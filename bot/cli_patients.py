"""`carebridge patients`: enroll a patient for scheduled check-ins, list and show enrollments,
start a check-in now, and run one scheduler sweep (cron-style deployments, demos).

A composition root like bot.cli: may import anything in bot. Loaded on first use by bot/cli.py
(LAZY_GROUPS). Prints ids and masked addresses; never message texts.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click

from bot import scheduler, trends
from bot.config import Config
from bot.enrollment import CHANNELS, GLUCOSE_UNITS, EnrollmentError, EnrollRequest
from bot.errors import CarebridgeError
from bot.schedules import CONDITION_FLOWS, zone
from bot.store import CheckinKind, CheckinStatus, EnrollmentRow, Store, forgotten_address


def _config(ctx: click.Context) -> Config:
    cfg: Config = ctx.obj["config"]
    return cfg


@contextmanager
def _bridge(ctx: click.Context) -> Iterator[Any]:
    from bot.app import CareBridge, load_flows

    cfg = _config(ctx)
    try:
        bridge = CareBridge(cfg, library=load_flows(cfg))
    except CarebridgeError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield bridge
    finally:
        bridge.close()


def mask(address: str) -> str:
    """An address shown to people: only its last four characters."""
    return "…" + address[-4:] if len(address) > 4 else "…"


def _local(when: datetime | None, tz: str) -> str:
    if when is None:
        return "-"
    return when.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M")


@click.group()
def patients() -> None:
    """Enroll patients for scheduled check-ins; see their schedules, check-ins and trends."""


@patients.command()
@click.option("--channel", type=click.Choice(CHANNELS), required=True)
@click.option("--address", required=True, help="Phone number (E.164) or Telegram chat id.")
@click.option("--conditions", required=True, help=f"Comma-separated: {','.join(CONDITION_FLOWS)}.")
@click.option("--time", "checkin_time", default=None, help="Local check-in time, HH:MM.")
@click.option("--tz", "timezone", default=None, help="IANA time zone, e.g. Asia/Kolkata.")
@click.option("--language", default=None, help="Language code (one of config languages).")
@click.option("--team", default=None, help="The care team the patient belongs to.")
@click.option("--glucose-unit", type=click.Choice(GLUCOSE_UNITS, case_sensitive=False))
@click.option("--peak-flow-best", type=float, default=None, help="Personal best, L/min.")
@click.option("--usual-weight", type=float, default=None, help="Usual weight, kg.")
@click.option("--due-date", type=click.DateTime(formats=["%Y-%m-%d"]), default=None)
@click.pass_context
def enroll(
    ctx: click.Context,
    channel: str,
    address: str,
    conditions: str,
    checkin_time: str | None,
    timezone: str | None,
    language: str | None,
    team: str | None,
    glucose_unit: str | None,
    peak_flow_best: float | None,
    usual_weight: float | None,
    due_date: datetime | None,
) -> None:
    """Enroll a patient: the bot asks for consent first; check-ins start once they agree."""
    cfg = _config(ctx).checkins
    request = EnrollRequest(
        channel=channel,
        address=address,
        conditions=tuple(conditions.split(",")),
        checkin_time=checkin_time or cfg.default_time,
        timezone=timezone or cfg.default_timezone,
        language=language,
        team=team,
        glucose_unit=glucose_unit,
        peak_flow_best=peak_flow_best,
        usual_weight_kg=usual_weight,
        due_date=due_date.date() if due_date else None,
    )
    with _bridge(ctx) as bridge:
        try:
            done = scheduler.enroll(bridge, request, bridge.clock())
        except EnrollmentError as exc:
            raise click.ClickException(str(exc)) from None
        tz = request.timezone
        who = f"patient {done.contact_id} ({channel} {mask(address)})"
        if done.checkin_id is None:
            click.echo(f"{who}: already enrolled and consented; schedule updated")
        elif done.started:
            click.echo(f"{who} enrolled: consent question queued; check-ins start once they agree")
        else:
            row = bridge.store.checkins(done.contact_id, kind=CheckinKind.ENROLLMENT, limit=1)
            if row and row[0].status is CheckinStatus.CANCELLED:
                click.echo(f"{who} enrolled, but not invited: they declined care messages before")
            else:
                at = _local(done.not_before, tz)
                click.echo(f"{who} enrolled: consent question waits for {at} {tz} (quiet hours)")
        click.echo(where_to_see(_config(ctx), channel, address))


@patients.command("list")
@click.option("--status", type=click.Choice(["invited", "active", "paused", "ended"]))
@click.option("--team", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.option("--include-test", is_flag=True, help="Test contacts (the simulator's) too.")
@click.pass_context
def list_cmd(
    ctx: click.Context, status: str | None, team: str | None, as_json: bool, include_test: bool
) -> None:
    """Enrolled patients: status, conditions, check-in time, last check-in, missed in a row
    (test contacts only with --include-test)."""
    with _bridge(ctx) as bridge:
        store: Store = bridge.store
        rows = [
            _summary(store, e)
            for e in store.enrollments(status, team)
            if include_test or not _is_test(store, e.contact_id)
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no patients enrolled")
        return
    header = (
        "ID",
        "CHANNEL",
        "ADDRESS",
        "STATUS",
        "CONDITIONS",
        "TIME",
        "TZ",
        "TEAM",
        "LAST",
        "MISSED",
    )
    table = [header] + [
        (
            str(r["contact_id"]),
            r["channel"],
            r["address"],
            r["status"],
            ",".join(r["conditions"]),
            r["checkin_time"],
            r["timezone"],
            r["team"] or "-",
            r["last_checkin"] or "-",
            str(r["missed_in_a_row"]),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@patients.command()
@click.argument("contact_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, contact_id: int, as_json: bool) -> None:
    """One patient: enrollment, schedules, recent check-ins, trends and open ticket."""
    with _bridge(ctx) as bridge:
        store: Store = bridge.store
        enrollment = store.get_enrollment(contact_id)
        if enrollment is None:
            raise click.ClickException(f"patient {contact_id} is not enrolled")
        data = _summary(store, enrollment)
        tz = enrollment.timezone
        data["baselines"] = enrollment.baselines
        data["schedules"] = [
            {
                "flow": s.flow,
                "label": s.label,
                "at": s.rule.get("at"),
                "next": _local(s.next_due_at, tz),
            }
            for s in store.schedules(contact_id)
        ]
        data["checkins"] = [
            {
                "due": _local(c.due_at, tz),
                "flow": c.flow,
                "kind": str(c.kind),
                "status": str(c.status),
            }
            for c in store.checkins(contact_id, limit=10)
        ]
        data["trends"] = trends.summary_lines(store.readings(contact_id, limit=100))
        tickets = [
            t for t in store.escalations() if t.contact_id == contact_id and t.status != "closed"
        ]
        data["open_ticket"] = (
            {"id": tickets[-1].id, "level": tickets[-1].level, "reason": tickets[-1].reason}
            if tickets
            else None
        )
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"patient {data['contact_id']} ({data['channel']} {data['address']}): {data['status']}, "
        f"consent to care messages: {data['consent_care']}, broadcasts: {data['consent_broadcast']}"
    )
    click.echo(
        f"  conditions: {', '.join(data['conditions'])}; check-ins at {data['checkin_time']} "
        f"{tz}; team: {data['team'] or '-'}"
    )
    if data["baselines"]:
        click.echo("  baselines: " + ", ".join(f"{k}={v}" for k, v in data["baselines"].items()))
    for s in data["schedules"]:
        click.echo(f"  schedule: {s['flow']} {s['label']} at {s['at']}, next {s['next']}")
    for c in data["checkins"]:
        click.echo(f"  check-in {c['due']} {c['flow']} ({c['kind']}): {c['status']}")
    for line in data["trends"]:
        click.echo(f"  {line}")
    if data["open_ticket"]:
        t = data["open_ticket"]
        click.echo(f"  open ticket {t['id']}: {t['level']} ({t['reason']})")


@patients.command()
@click.argument("contact_id", type=int)
@click.option("--flow", default=None, help="Check-in flow (default: the first condition's).")
@click.pass_context
def checkin(ctx: click.Context, contact_id: int, flow: str | None) -> None:
    """Send a check-in now, even in the patient's quiet hours (it waits only while they are in
    another conversation), and say where to see it."""
    with _bridge(ctx) as bridge:
        enrollment = bridge.store.get_enrollment(contact_id)
        if enrollment is not None and enrollment.status == "invited":
            # they may have agreed a moment ago: do now what the next sweep would do
            scheduler.Sweeper(bridge).sync_enrollments(bridge.clock(), scheduler.SweepReport())
            enrollment = bridge.store.get_enrollment(contact_id)
        if enrollment is not None and enrollment.status == "invited":
            raise click.ClickException(
                f"patient {contact_id} has not agreed to check-ins yet (the enrollment "
                "conversation asks first)"
            )
        if enrollment is None or enrollment.status != "active":
            raise click.ClickException(f"patient {contact_id} has no active enrollment")
        flow = flow or CONDITION_FLOWS[enrollment.conditions[0]]
        try:
            report = scheduler.checkin_now(bridge, contact_id, flow, bridge.clock())
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        channel, address = bridge.store.contact_address(contact_id)
    if report.started:
        click.echo(f"{flow} for patient {contact_id}: started")
    else:
        click.echo(
            f"{flow} for patient {contact_id}: queued (they are in another conversation; "
            "it starts when that ends)"
        )
    click.echo(where_to_see(_config(ctx), channel, address))


def where_to_see(config: Config, channel: str, address: str) -> str:
    """Where the patient's messages appear, and what must run for them to go."""
    from bot.app import channels_off

    if channel == "web":
        url = config.server.public_url.rstrip("/") + "/"
        off = channels_off(config).get("web")
        if off:
            return f"see it in: nowhere yet: the browser simulator is off ({off})"
        return (
            f"see it in: the browser simulator at {url}, in the browser that chats as "
            f"{address} (it appears within a second while `carebridge serve` runs)"
        )
    if channel == "ussd":  # pull only: nothing is sent, the next dial shows it
        return (
            f"see it in: the patient's next dial of the USSD code ({mask(address)}); "
            "it waits in the outbox until then"
        )
    off = channels_off(config).get(channel)
    if off:
        return f"see it in: nowhere yet: {channel} is off ({off}); it waits in the outbox"
    return (
        f"see it in: the patient's {channel} ({mask(address)}); `carebridge serve` or a "
        "worker sends it"
    )


@patients.command("sweep")
@click.option("--at", "at", default=None, help="Sweep as of this ISO time (default: now).")
@click.pass_context
def sweep_cmd(ctx: click.Context, at: str | None) -> None:
    """Run one scheduler sweep now (for cron, or when `serve` is not running)."""
    when = _when(at)
    with _bridge(ctx) as bridge:
        report = scheduler.sweep(bridge, when or bridge.clock())
    counts = report.counts()
    click.echo(" ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing due")


@patients.command()
@click.argument("contact_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def forget(ctx: click.Context, contact_id: int, yes: bool) -> None:
    """Erase a patient on request (and their linked contacts): numbers, chat ids and message
    texts; de-identified counts, levels and readings stay. Audited; cannot be undone."""
    with _bridge(ctx) as bridge:
        contact = bridge.store.contact_row(contact_id)
        if contact is None:
            raise click.ClickException(f"there is no patient {contact_id}")
        if contact.address == forgotten_address(contact_id):
            raise click.ClickException(f"patient {contact_id} was forgotten already")
        if not yes:
            click.confirm(
                f"Erase patient {contact_id} ({contact.channel} {mask(contact.address)})?",
                abort=True,
            )
        counts = bridge.privacy.forget(contact_id, source="cli", requested_by=getpass.getuser())
    click.echo(
        f"patient {contact_id} forgotten: contacts={counts.contacts} inbox={counts.inbox} "
        f"transcript={counts.transcript} outbox={counts.outbox}"
    )


@patients.command()
@click.option("--at", "at", default=None, help="Purge as of this ISO time (default: now).")
@click.pass_context
def purge(ctx: click.Context, at: str | None) -> None:
    """Run the retention sweep now: redact message text older than retention.message_days
    (`serve` runs it on every scheduler tick; this is for cron)."""
    when = _when(at)
    with _bridge(ctx) as bridge:
        counts = bridge.privacy.sweep(when or bridge.clock())
    click.echo(
        f"redacted inbox={counts.inbox} transcript={counts.transcript} outbox={counts.outbox}"
    )


def _when(at: str | None) -> datetime | None:
    """`--at` as an aware time (UTC when no zone is given), or None for now."""
    try:
        when = datetime.fromisoformat(at) if at else None
    except ValueError:
        raise click.ClickException(f"--at: not an ISO time: {at!r}") from None
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


def _is_test(store: Store, contact_id: int) -> bool:
    row = store.contact_row(contact_id)
    return row is not None and row.test


def _summary(store: Store, e: EnrollmentRow) -> dict[str, Any]:
    contact = store.contact_row(e.contact_id)
    assert contact is not None
    recent = store.checkins(e.contact_id, kind=CheckinKind.SCHEDULED, limit=50)
    done = [c for c in recent if c.status in (CheckinStatus.ANSWERED, CheckinStatus.LATE)]
    return {
        "contact_id": e.contact_id,
        "channel": contact.channel,
        "address": mask(contact.address),
        "status": str(e.status),
        "conditions": list(e.conditions),
        "checkin_time": e.checkin_time,
        "timezone": e.timezone,
        "team": e.team,
        "consent_care": contact.consent_care,
        "consent_broadcast": contact.consent_broadcast,
        "last_checkin": _local(done[0].due_at, e.timezone) if done else None,
        "missed_in_a_row": scheduler.missed_streak(recent),
    }
