"""`carebridge nlu ...`: parse one message, score the test sets, retrain the classifier.

Imports only click and the nlu package (bot.cli loads this group on first use: LAZY_GROUPS).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from nlu.classifier import cache_path, load_or_train
from nlu.evaluate import (
    IntentReport,
    evaluate_intents,
    evaluate_readings,
    evaluate_redflags,
    language_of,
    nlu_tests_dir,
)
from nlu.interpreter import Interpreter
from nlu.lexicon import DATA_DIR
from nlu.rasa import to_rasa

MAX_FALSE_ALARM_RATE = 0.02


def _interpreter(data_dir: Path | None) -> Interpreter:
    return Interpreter(data_dir)


@click.group(name="nlu")
def nlu() -> None:
    """Understanding layer: parse, test and train."""


@nlu.command()
@click.argument("text")
@click.option("--lang", "language", default="en", show_default=True, help="Language code.")
@click.option("--json", "as_json", is_flag=True, help="Rasa /model/parse JSON (+ red_flags).")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
def parse(text: str, language: str, as_json: bool, data_dir: Path | None) -> None:
    """Parse TEXT as a patient message."""
    u = _interpreter(data_dir).interpret(text, None, language)
    if as_json:
        click.echo(json.dumps(to_rasa(u), ensure_ascii=False, indent=2))
        return
    click.echo(f"intent: {u.intent.name} ({u.intent.confidence:.2f})")
    click.echo(f"red flags: {', '.join(u.red_flags) or '-'}")
    click.echo(f"subject: {u.subject or '-'}")
    for e in u.entities:
        marks = "".join(
            f" [{m}]" for m, on in (("negated", e.negated), ("uncertain", e.uncertain)) if on
        )
        click.echo(f"  {e.entity} = {e.value!r}  {text[e.start : e.end]!r}{marks}")


def _print_intents(report: IntentReport, title: str) -> None:
    click.echo(f"== intents: {title} ({report.total} examples)")
    click.echo(f"{'intent':<18}{'prec':>7}{'rec':>7}{'f1':>7}{'n':>5}")
    for name, s in report.per_intent.items():
        click.echo(f"{name:<18}{s.precision:>7.3f}{s.recall:>7.3f}{s.f1:>7.3f}{s.support:>5}")
    click.echo(f"accuracy {report.accuracy:.3f}  macro-F1 {report.macro_f1:.3f}")
    click.echo(
        f"entities: precision {report.entity_precision:.3f} recall {report.entity_recall:.3f}"
        f" F1 {report.entity_f1:.3f}"
    )
    if report.confusions:
        click.echo("confusions (gold -> predicted: count):")
        for gold, pred, n in report.confusions:
            click.echo(f"  {gold} -> {pred}: {n}")


@nlu.command()
@click.option(
    "--data",
    "data_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="A Rasa YAML test file (default: data/nlu/tests/<lang>_heldout.yml).",
)
@click.option(
    "--lang",
    "language",
    default=None,
    help="Language code (default: from the --data file name, hi_heldout.yml -> hi; else en).",
)
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option(
    "--generated/--no-generated",
    default=True,
    show_default=True,
    help="Also score the generated red-flag sets (tuning half with its errors, held-out "
    "half as counts only).",
)
def test(
    data_file: Path | None, language: str | None, data_dir: Path | None, generated: bool
) -> None:
    """Score intents, entities, red flags and readings; fail on any missed red flag."""
    it = _interpreter(data_dir)
    folder = nlu_tests_dir(data_dir)
    if language is None:
        language = (language_of(data_file, data_dir) if data_file else None) or "en"
    click.echo(f"language: {language}")
    heldout = data_file or folder / f"{language}_heldout.yml"

    _print_intents(
        evaluate_intents(lambda t: it.interpret(t, None, language), heldout), heldout.name
    )
    failed = False
    rf_path = folder / f"{language}_redflags.yml"
    if rf_path.exists():
        rf = evaluate_redflags(lambda t: it.interpret(t, None, language), rf_path)
        click.echo(f"== red flags: {rf_path.name}")
        click.echo(f"recall {rf.recall:.3f} ({rf.positives} messages)")
        click.echo(f"false alarms {rf.false_alarm_rate:.3f} ({rf.benign} benign messages)")
        for text, want, got in rf.missed:
            click.echo(f"  MISSED {text!r}: want {list(want)} got {list(got)}")
        for text, got in rf.false_alarms:
            click.echo(f"  FALSE ALARM {text!r}: {list(got)}")
        failed = rf.recall < 1.0 or rf.false_alarm_rate > MAX_FALSE_ALARM_RATE
    if generated:
        _print_generated(it, folder, language)
    rd_path = folder / f"{language}_readings.yml"
    if rd_path.exists():
        rd = evaluate_readings(lambda t, day: it.interpret(t, None, language, today=day), rd_path)
        click.echo(f"== readings: {rd_path.name}")
        click.echo(f"exact {rd.exact:.3f} ({rd.total} messages)")
        for text, expected, found in rd.failures:
            click.echo(f"  WRONG {text!r}: want {expected} got {found}")
    if failed:
        click.echo("FAIL: red-flag recall below 100% or false alarms above 2%", err=True)
        sys.exit(1)


def _print_generated(it: Interpreter, folder: Path, language: str) -> None:
    """The generated sets (tests/nlu_gen): both halves side by side; errors of the tuning
    half only. Held-out errors are never printed: no lexicon or model change may be made
    by looking at them (docs/nlu.md)."""
    for half in ("tuning", "heldout"):
        path = folder / "generated" / f"{language}_{half}.yml"
        if not path.exists():
            continue
        rf = evaluate_redflags(lambda t: it.interpret(t, None, language), path)
        click.echo(
            f"== generated red flags, {half} half: {path.name}\n"
            f"recall {rf.recall:.3f} ({rf.positives} messages, {rf.confirmed} by a "
            f"confirmation question)\nfalse alarms {rf.false_alarm_rate:.3f} ({rf.benign} "
            f"benign messages, {rf.benign_asked} asked to confirm)"
        )
        if half == "tuning":
            for text, want, got in rf.missed:
                click.echo(f"  MISSED {text!r}: want {list(want)} got {list(got)}")
            for text, got in rf.false_alarms:
                click.echo(f"  FALSE ALARM {text!r}: {list(got)}")
        else:
            click.echo("  (held-out errors are not shown)")


@nlu.command()
@click.option("--lang", "language", default="en", show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
def train(language: str, data_dir: Path | None) -> None:
    """Retrain the intent classifier now and cache it."""
    root = data_dir or DATA_DIR
    clf = load_or_train(language, root, force=True)
    click.echo(f"trained {len(clf.classes)} intents, {len(clf.vocab)} features")
    click.echo(f"cache: {cache_path(language, root)}")
