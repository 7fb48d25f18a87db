"""`carebridge contacts import FILE` and `carebridge export csv|fhir`: contacts in, results out
(docs/import_export.md). Progress goes to stderr (tqdm); reports to stdout; nothing is logged
but counts.

A composition root like bot.cli: may import anything in bot. Loaded on first use by bot/cli.py
(LAZY_GROUPS).
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
from tqdm import tqdm

from bot.cli_patients import _bridge  # one way to open the bot for a CLI command
from bot.io import contacts_import, results_export
from bot.store import TRIAGE_LEVELS
from bot.store.io import ExportFilter


@click.group()
def contacts() -> None:
    """Bring contacts in from a CSV or XLSX file.

    See docs/import_export.md."""


@contacts.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check every row and report; change nothing.")
@click.option(
    "--channel",
    "default_channel",
    type=click.Choice(contacts_import.IMPORT_CHANNELS),
    default="sms",
    show_default=True,
    help="The channel of rows without one (a known number keeps its own).",
)
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the refused rows, with line and reason, to this CSV file.",
)
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="A progress bar on stderr (default: when stderr is a terminal).",
)
@click.pass_context
def import_cmd(
    ctx: click.Context,
    file: Path,
    dry_run: bool,
    default_channel: str,
    rejects: Path | None,
    as_json: bool,
    progress: bool | None,
) -> None:
    """Import contacts: every row is checked (the refused ones are reported with their line
    and reason), numbers are normalised and matched to the people already known, and the good
    rows are applied in one transaction (all or nothing)."""
    data = file.read_bytes()
    with _bridge(ctx) as bridge:
        with tqdm(
            desc="checking", unit=" rows", file=sys.stderr, disable=_off(progress), leave=False
        ) as bar:
            try:
                plan = contacts_import.plan_import(
                    bridge.store,
                    bridge.config,
                    bridge.library.flows,
                    data,
                    file.name,
                    default_channel=default_channel,
                    progress=bar.update,
                )
            except contacts_import.ImportFileError as exc:
                raise click.ClickException(f"{file}: {exc}") from None
        if dry_run:
            report = plan.report(applied=False)
        else:
            with tqdm(
                total=len(plan.rows),
                desc="importing",
                unit=" rows",
                file=sys.stderr,
                disable=_off(progress),
            ) as bar:
                report = contacts_import.apply_import(
                    bridge.store, bridge.config, plan, bridge.clock(), progress=bar.update
                )
            bridge.store.add_audit(
                bridge.clock(),
                None,
                getpass.getuser(),
                "import_contacts",
                detail={k: v for k, v in report.items() if k != "errors"} | {"via": "cli"},
            )
    if rejects is not None:
        with rejects.open("w", encoding="utf-8", newline="") as out:
            out.writelines(contacts_import.rejects_csv(plan))
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    click.echo(summary(report, file.name))
    for error in report["errors"][:50]:
        click.echo(f"  line {error['line']}: {error['reason']}: {error['detail']}")
    if len(report["errors"]) > 50:
        more = len(report["errors"]) - 50
        click.echo(f"  ... and {more} more (--rejects FILE writes them all)")


def _off(progress: bool | None) -> bool | None:
    """tqdm's `disable`: None shows the bar only on a terminal."""
    return None if progress is None else not progress


def summary(report: dict[str, Any], name: str) -> str:
    """One line of counts, then one per refusal reason."""
    verb = "imported" if report["applied"] else "would import"
    lines = [
        f"{name}: {report['rows']} rows: {verb} {report['imported']} new, "
        f"{'merged' if report['applied'] else 'would merge'} {report['merged']} into known "
        f"contacts, rejected {report['rejected']}"
        + (f"; {report['enrolled']} invited to check-ins" if report["enrolled"] else "")
    ]
    for reason, count in report["rejected_by_reason"].items():
        lines.append(f"  rejected {reason}: {count}")
    if report["ignored_columns"]:
        lines.append(f"  ignored columns: {', '.join(report['ignored_columns'])}")
    return "\n".join(lines)


def _when(value: str | None, option: str) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.ClickException(f"{option}: not an ISO date or time: {value!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _filter(
    flows: tuple[str, ...],
    since: str | None,
    until: str | None,
    levels: tuple[str, ...],
    regions: tuple[str, ...],
    include_test: bool,
) -> ExportFilter:
    return ExportFilter(
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        flows=flows,
        levels=levels,
        regions=regions,
        include_test=include_test,
    )


def _filters(fn: Any) -> Any:
    for decorator in reversed(
        (
            click.option(
                "--since", default=None, help="From this date/time (ISO, UTC if no zone)."
            ),
            click.option("--until", default=None, help="Before this date/time (ISO)."),
            click.option("--level", "levels", multiple=True, type=click.Choice(TRIAGE_LEVELS)),
            click.option("--region", "regions", multiple=True, help="Contacts of this region."),
            click.option("--include-test", is_flag=True, help="Test contacts (the simulator's)."),
            click.option(
                "--real-ids",
                is_flag=True,
                help="Real phone numbers and chat ids (default: masked). Audited.",
            ),
            click.option(
                "-o",
                "--output",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help="Write here (default: stdout).",
            ),
        )
    ):
        fn = decorator(fn)
    return fn


@contextmanager
def _out(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    with path.open("w", encoding="utf-8", newline="") as f:
        yield f


@click.group("export")
def export() -> None:
    """Results out: CSV per flow or a FHIR R4 Bundle.

    Conversations as CSV (one row each, one column per concept), or everything as one FHIR R4
    Bundle; see docs/import_export.md."""


@export.command("csv")
@click.option("--flow", required=True, help="The flow: one row per conversation of it.")
@_filters
@click.pass_context
def export_csv(
    ctx: click.Context,
    flow: str,
    since: str | None,
    until: str | None,
    levels: tuple[str, ...],
    regions: tuple[str, ...],
    include_test: bool,
    real_ids: bool,
    output: Path | None,
) -> None:
    """One row per conversation of a flow, one column per concept it asks (plus triage,
    red flags and the escalation's timings)."""
    flt = _filter((flow,), since, until, levels, regions, include_test)
    with _bridge(ctx) as bridge:
        if flow not in bridge.library.flows:
            known = ", ".join(sorted(f for f in bridge.library.flows if not f.startswith("_")))
            raise click.ClickException(f"--flow: unknown flow {flow!r} (flows: {known})")
        _audit(bridge, "export_csv", flt, real_ids)
        count = _write(
            results_export.conversations_csv(bridge.store, bridge.library, flt, real_ids=real_ids),
            output,
        )
    click.echo(f"exported {count} conversations of {flow}", err=True)


@export.command("fhir")
@click.option("--flow", "flows", multiple=True, help="Only these flows (repeat).")
@_filters
@click.pass_context
def export_fhir(
    ctx: click.Context,
    flows: tuple[str, ...],
    since: str | None,
    until: str | None,
    levels: tuple[str, ...],
    regions: tuple[str, ...],
    include_test: bool,
    real_ids: bool,
    output: Path | None,
) -> None:
    """A FHIR R4 Bundle (collection): Patient, QuestionnaireResponse per conversation,
    Observation per reading (LOINC, UCUM), ServiceRequest per escalation."""
    flt = _filter(flows, since, until, levels, regions, include_test)
    with _bridge(ctx) as bridge:
        _audit(bridge, "export_fhir", flt, real_ids)
        count = _write(
            results_export.fhir_bundle(bridge.store, bridge.library, flt, real_ids=real_ids), output
        )
    click.echo(f"exported a FHIR Bundle ({count} chunks)", err=True)


def _write(chunks: Iterator[str], output: Path | None) -> int:
    n = 0
    with _out(output) as f:
        for chunk in chunks:
            f.write(chunk)
            n += 1
    return max(n - 1, 0)  # the CSV header / the Bundle's opening is not a record


def _audit(bridge: Any, action: str, flt: ExportFilter, real_ids: bool) -> None:
    bridge.store.add_audit(
        bridge.clock(),
        None,
        getpass.getuser(),
        action,
        detail=results_export.describe(flt) | {"real_ids": real_ids, "via": "cli"},
    )
