"""Scoring an interpreter on the test sets under data/nlu/tests/: intents (per-intent
precision/recall/F1, macro-F1, confusions), entities (F1), red flags (recall, false-alarm
rate) and reading extraction (exact-match rate). Used by `carebridge nlu test` and bench/.

Imports only the standard library, PyYAML and the nlu package.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from nlu.lexicon import DATA_DIR, available_languages
from nlu.training import Example, load_training_data
from nlu.types import Understanding

READING_CONCEPTS = frozenset(
    {
        "temperature_c",
        "systolic_bp",
        "diastolic_bp",
        "glucose_mg_dl",
        "spo2_percent",
        "weight_kg",
        "heart_rate",
        "symptom_onset_days",
        "peak_flow_percent",
        "age_years",
        "rescue_inhaler_uses_day",
        "weight_gain_kg_week",
        "pregnancy_weeks",
    }
)

Parse = Callable[[str], Understanding]
EntitySpan = tuple[str, int, int]


def nlu_tests_dir(data_dir: Path | None = None) -> Path:
    """data/nlu/tests/ of a data folder."""
    return (data_dir or DATA_DIR) / "nlu" / "tests"


def language_of(path: Path, data_dir: Path | None = None) -> str | None:
    """The language a test file is for, from its name (`hi_heldout.yml` -> "hi"), when
    that language has NLU data; None otherwise."""
    head = path.name.split("_", 1)[0].split(".", 1)[0]
    return head if head in available_languages(data_dir) else None


# --- intents and entities -----------------------------------------------------------------


@dataclass
class IntentScore:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class IntentReport:
    """Intent and entity scores on a set of examples."""

    total: int
    accuracy: float
    macro_f1: float
    per_intent: dict[str, IntentScore]
    confusions: list[tuple[str, str, int]]  # (gold, predicted, count), most frequent first
    errors: list[tuple[str, str, str]]  # (text, gold, predicted)
    entity_precision: float
    entity_recall: float
    entity_f1: float


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def intent_scores(gold: Sequence[str], pred: Sequence[str]) -> dict[str, IntentScore]:
    """Per-intent precision, recall, F1 and support (intents of the gold labels)."""
    out: dict[str, IntentScore] = {}
    for intent in sorted(set(gold)):
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == p == intent)
        n_pred = sum(1 for p in pred if p == intent)
        n_gold = sum(1 for g in gold if g == intent)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        out[intent] = IntentScore(precision, recall, _f1(precision, recall), n_gold)
    return out


def entity_counts(gold: Sequence[EntitySpan], pred: Sequence[EntitySpan]) -> tuple[int, int, int]:
    """(true positives, predicted, gold): a prediction counts when an unused gold entity
    has the same name and an overlapping span."""
    used: set[int] = set()
    tp = 0
    for name, s, e in pred:
        for i, (gname, gs, ge) in enumerate(gold):
            if i not in used and gname == name and gs < e and s < ge:
                used.add(i)
                tp += 1
                break
    return tp, len(pred), len(gold)


def score_examples(
    examples: Sequence[Example],
    predict: Callable[[str], tuple[str, Sequence[EntitySpan]]],
    *,
    entity_names: frozenset[str] | None = None,
) -> IntentReport:
    """Score a predictor returning (intent, entity spans) for each example.

    Entities are scored only over names that occur in the gold annotations (or
    `entity_names`), so an extractor that also finds other things is not penalised.
    """
    names = entity_names or frozenset(s.entity for ex in examples for s in ex.entities)
    gold_i: list[str] = []
    pred_i: list[str] = []
    errors: list[tuple[str, str, str]] = []
    tp = n_pred = n_gold = 0
    for ex in examples:
        intent, ents = predict(ex.text)
        gold_i.append(ex.intent)
        pred_i.append(intent)
        if intent != ex.intent:
            errors.append((ex.text, ex.intent, intent))
        a, b, c = entity_counts(
            [(s.entity, s.start, s.end) for s in ex.entities],
            [e for e in ents if e[0] in names],
        )
        tp, n_pred, n_gold = tp + a, n_pred + b, n_gold + c
    per = intent_scores(gold_i, pred_i)
    ep = tp / n_pred if n_pred else 0.0
    er = tp / n_gold if n_gold else 0.0
    conf = Counter((g, p) for g, p in zip(gold_i, pred_i, strict=True) if g != p)
    return IntentReport(
        total=len(examples),
        accuracy=sum(g == p for g, p in zip(gold_i, pred_i, strict=True)) / max(len(gold_i), 1),
        macro_f1=sum(s.f1 for s in per.values()) / max(len(per), 1),
        per_intent=per,
        confusions=[(g, p, n) for (g, p), n in conf.most_common()],
        errors=errors,
        entity_precision=ep,
        entity_recall=er,
        entity_f1=_f1(ep, er),
    )


def evaluate_intents(parse: Parse, path: Path) -> IntentReport:
    """Score an interpreter on a Rasa YAML test file."""

    def predict(text: str) -> tuple[str, list[EntitySpan]]:
        u = parse(text)
        return u.intent.name, [(e.entity, e.start, e.end) for e in u.entities]

    return score_examples(load_training_data(path).examples, predict)


# --- red flags -------------------------------------------------------------------------------


@dataclass
class RedFlagCase:
    text: str
    flags: tuple[str, ...]


@dataclass
class RedFlagReport:
    """Recall over messages that report red flags; false alarms over benign ones."""

    positives: int
    recall: float
    benign: int
    false_alarm_rate: float
    missed: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)
    false_alarms: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    confirmed: int = 0
    """Red-flag messages caught by a confirmation question rather than outright."""
    benign_asked: int = 0
    """Benign messages that got a confirmation question (counted as false alarms)."""


def load_redflag_cases(path: Path) -> tuple[list[RedFlagCase], list[str]]:
    """(cases that must raise their flags, benign messages) from a red-flag test file."""
    doc = _yaml(path)
    cases = [
        RedFlagCase(str(c["text"]), tuple(str(f) for f in c["flags"]))
        for c in doc.get("red_flags") or []
    ]
    return cases, [str(t) for t in doc.get("benign") or []]


def evaluate_redflags(parse: Parse, path: Path) -> RedFlagReport:
    """Red-flag recall and false alarms. A case is caught when all its flags are raised, or
    when none is raised and the confirmation question the bot asks (the first of
    `red_flag_candidates`) names one of them; a benign message is a false alarm when it
    raises a red flag or gets a confirmation question."""
    cases, benign = load_redflag_cases(path)
    missed = []
    confirmed = 0
    for c in cases:
        u = parse(c.text)
        got = u.red_flags
        if set(c.flags) <= set(got):
            continue
        if not got and u.red_flag_candidates and u.red_flag_candidates[0] in c.flags:
            confirmed += 1
            continue
        missed.append((c.text, c.flags, got + tuple(f"ask:{f}" for f in u.red_flag_candidates)))
    alarms = []
    asked = 0
    for t in benign:
        u = parse(t)
        if u.red_flags:
            alarms.append((t, u.red_flags))
        elif u.red_flag_candidates:
            asked += 1
            alarms.append((t, tuple(f"ask:{f}" for f in u.red_flag_candidates)))
    return RedFlagReport(
        positives=len(cases),
        recall=1 - len(missed) / max(len(cases), 1),
        benign=len(benign),
        false_alarm_rate=len(alarms) / max(len(benign), 1),
        missed=missed,
        false_alarms=alarms,
        confirmed=confirmed,
        benign_asked=asked,
    )


# --- readings ----------------------------------------------------------------------------------


@dataclass
class ReadingReport:
    total: int
    exact: float
    failures: list[tuple[str, dict[str, float], dict[str, float]]] = field(default_factory=list)


def evaluate_readings(
    parse: Callable[[str, date | None], Understanding], path: Path
) -> ReadingReport:
    """Share of messages whose readings are exactly the expected ones (values +-0.01)."""
    doc = _yaml(path)
    today = doc.get("today")
    day = today if isinstance(today, date) else None
    failures = []
    cases = doc.get("readings") or []
    for c in cases:
        u = parse(str(c["text"]), day)
        got = {e.entity: float(e.value) for e in u.entities if e.entity in READING_CONCEPTS}
        want = {str(k): float(v) for k, v in (c.get("expect") or {}).items()}
        if set(got) != set(want) or any(abs(got[k] - v) > 0.01 for k, v in want.items()):
            failures.append((str(c["text"]), want, got))
    return ReadingReport(len(cases), 1 - len(failures) / max(len(cases), 1), failures)


def _yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return doc
