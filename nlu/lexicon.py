"""Load the deterministic lexicons under data/nlu/ (red flags, findings, cue words, answer
words, reading keywords) and compile them once per language.

Imports only the standard library, PyYAML and nlu.matcher, nlu.text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import yaml

from nlu.matcher import Matcher
from nlu.text import compile_pattern, compile_union, fold_spelling

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
"""Default data folder; every loader also takes an explicit data_dir."""

BASE_LANGUAGE = "en"


class LexiconError(ValueError):
    """A lexicon file is missing, malformed, or holds a pattern that does not compile."""


@dataclass(frozen=True)
class ConceptPatterns:
    """The compiled patterns of one concept."""

    concept: str
    sources: tuple[str, ...] = ()
    exclude: re.Pattern[str] | None = None
    implies: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()  # phrases that deny the concept ("forgot my meds")

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """All patterns as one expression (a reference: matching goes through Matcher)."""
        return re.compile(compile_union(self.sources or self.absent))


class ConceptSet:
    """The concepts of one lexicon section, by id."""

    def __init__(self, concepts: tuple[ConceptPatterns, ...]) -> None:
        self.concepts = concepts
        self.index = {cp.concept: cp for cp in concepts}

    def __iter__(self) -> Iterator[ConceptPatterns]:
        return iter(self.concepts)

    def __len__(self) -> int:
        return len(self.concepts)


@dataclass(frozen=True)
class TimeUnit:
    """A duration unit and its length in days."""

    name: str
    words: tuple[str, ...]
    days: float


@dataclass(frozen=True, eq=False)
class Lexicon:
    """Everything the deterministic extractors need for one language (English included).

    Compared and hashed by identity, so derived grammars can be cached per lexicon.
    """

    languages: tuple[str, ...]
    redflags: ConceptSet
    findings: ConceptSet
    matcher: Matcher
    """Every pattern of the lexicon in one Matcher; keys are "<section>:<key>" with section
    rf (red flags), fi (findings), fx (findings denied: `absent:`), subj (who is ill),
    cue (scope cues), kw (reading keywords)."""
    window: int
    answers: dict[str, frozenset[str]]
    unknown_reply: re.Pattern[str]  # longer "I can't tell" replies (answers.unknown_patterns)
    number_words: dict[str, float]
    reading_keywords: dict[str, tuple[str, ...]]
    units: dict[str, frozenset[str]]
    time_units: tuple[TimeUnit, ...]
    since_words: tuple[str, ...]
    ago_words: tuple[str, ...]
    relative_days: dict[str, float]
    weekdays: tuple[str, ...]
    weekday_abbrev: tuple[str, ...]
    trailing_links: frozenset[str] = frozenset()
    """Words that may stand between a finding and a trailing negation ("aur", "bhi")."""
    weekday_articles: tuple[str, ...] = ("last", "this")
    """Words between a since-word and a weekday ("since last monday", "desde el lunes")."""
    since_after: tuple[str, ...] = ()
    """Since-words that follow the weekday ("somvar se")."""
    old_words: tuple[str, ...] = ("old", "of age", "age")
    """Words after a duration that make it an age ("34 years old")."""
    pregnant_words: tuple[str, ...] = ()
    """Words after weeks or months that make them a pregnancy ("32 weeks pregnant")."""
    bp_words: tuple[str, ...] = ("over", "by", "on")
    """Words between systolic and diastolic ("150 over 95")."""


Matches = dict[str, list[tuple[str, int, int]]]
"""Lexicon matches of one message by section: {"rf": [(concept, start, end), ...], ...}."""


def scan(lex: Lexicon, folded: str, starts: list[int] | None = None) -> Matches:
    """Run every lexicon pattern over a folded message once, grouped by section."""
    out: Matches = {"rf": [], "fi": [], "fx": [], "subj": [], "cue": [], "kw": []}
    for key, s, e in lex.matcher.find(folded, starts):
        section, _, name = key.partition(":")
        out[section].append((name, s, e))
    return out


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as fh:
            doc = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise LexiconError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise LexiconError(f"{path}: expected a mapping at the top level")
    return doc


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `extra` into `base`: mappings merge, lists concatenate, scalars replace."""
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = _merge(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            out[key] = old + [v for v in value if v not in old]
        else:
            out[key] = value
    return out


def _load_kind(data_dir: Path, kind: str, language: str) -> dict[str, Any]:
    folder = data_dir / "nlu" / kind
    base_path = folder / f"{BASE_LANGUAGE}.yml"
    if not base_path.exists():
        raise LexiconError(f"{base_path}: missing (the English lexicon is always required)")
    doc = _read(base_path)
    lang_path = folder / f"{language}.yml"
    if language != BASE_LANGUAGE and lang_path.exists():
        doc = _merge(doc, _read(lang_path))
    return doc


def _compile(source: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(source)
    except re.error as exc:
        raise LexiconError(f"{where}: pattern does not compile: {exc}") from exc


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise LexiconError(f"{where}: expected a list of strings")
    for v in value:
        if isinstance(v, bool) or v is None:
            raise LexiconError(
                f"{where}: {v!r} was read as {type(v).__name__}: quote it"
                " (YAML reads yes/no/on/off as booleans)"
            )
        if isinstance(v, dict | list):
            raise LexiconError(
                f"{where}: {v!r} was read as a {type(v).__name__}: quote it"
                " (YAML reads ': ' as a mapping and '[' as a list)"
            )
    return [str(v) for v in value]


def _concepts(section: Any, where: str) -> ConceptSet:
    if not isinstance(section, dict):
        raise LexiconError(f"{where}: expected a mapping of concept id -> patterns")
    out: list[ConceptPatterns] = []
    for concept, spec in section.items():
        here = f"{where}.{concept}"
        if not isinstance(spec, dict):
            raise LexiconError(f"{here}: expected a mapping with `patterns`")
        patterns = _strings(spec.get("patterns"), f"{here}.patterns")
        absent = _strings(spec.get("absent"), f"{here}.absent")
        if not patterns and not absent:
            raise LexiconError(f"{here}.patterns: at least one pattern is required")
        for key, items in (("patterns", patterns), ("absent", absent)):
            for i, p in enumerate(items):  # name the faulty line, not just the concept
                _compile(compile_pattern(p), f"{here}.{key}[{i}]")
        exclude = _strings(spec.get("exclude"), f"{here}.exclude")
        out.append(
            ConceptPatterns(
                concept=str(concept),
                sources=tuple(patterns),
                absent=tuple(absent),
                exclude=_compile(compile_union(exclude), f"{here}.exclude") if exclude else None,
                implies=tuple(_strings(spec.get("implies"), f"{here}.implies")),
            )
        )
    return ConceptSet(tuple(out))


_CUE_KEYS = {
    "pre_negation": "pre",
    "post_negation": "post",
    "trailing_negation": "trail",
    "pseudo_negation": "pseudo",
    "uncertainty": "unsure",
    "terminators": "break",
    "strict_terminators": "sbreak",
}


def _cues(scope: dict[str, Any], where: str) -> list[tuple[str, str]]:
    entries: list[tuple[str, str]] = []
    for section, key in _CUE_KEYS.items():
        for i, p in enumerate(_strings(scope.get(section), f"{where}.{section}")):
            _compile(compile_pattern(p), f"{where}.{section}[{i}]")
            entries.append((f"cue:{key}", p))
    return entries


def _words(value: Any, where: str) -> frozenset[str]:
    return frozenset(fold_spelling(s.lower()) for s in _strings(value, where))


def _folded(value: Any, where: str) -> tuple[str, ...]:
    return tuple(fold_spelling(s.lower()) for s in _strings(value, where))


def available_languages(data_dir: Path | None = None) -> tuple[str, ...]:
    """Languages with NLU data of their own (training data or any lexicon file), sorted,
    English first."""
    root = (data_dir or DATA_DIR) / "nlu"
    found = {p.stem for p in root.glob("*.yml")}
    for kind in ("redflags", "findings", "lexicon"):
        found |= {p.stem for p in (root / kind).glob("*.yml")}
    return tuple(sorted(found, key=lambda lang: (lang != BASE_LANGUAGE, lang)))


def _load_redflags(data_dir: Path, language: str) -> dict[str, Any]:
    """English, then `language`, then every other language: red flags of every language
    are read whatever the patient's language (a Hinglish emergency from an English contact
    still interrupts)."""
    doc = _load_kind(data_dir, "redflags", language)
    folder = data_dir / "nlu" / "redflags"
    for path in sorted(folder.glob("*.yml")):
        if path.stem not in (BASE_LANGUAGE, language):
            doc = _merge(doc, _read(path))
    return doc


_BY_CONTENT: dict[tuple[str, str], Lexicon] = {}
"""Compiled lexicons by language and a digest of their files: two data folders with the
same lexicon files (a test's copy) share one compiled lexicon and its compiled gates."""


@lru_cache(maxsize=16)
def load_lexicon(language: str = "en", data_dir: Path | None = None) -> Lexicon:
    """The compiled lexicon for `language`, English always included (cached)."""
    root = data_dir or DATA_DIR
    digest = hashlib.sha256()
    for kind in ("redflags", "findings", "lexicon"):
        for path in sorted((root / "nlu" / kind).glob("*.yml")):
            if kind == "redflags" or path.stem in (BASE_LANGUAGE, language):
                digest.update(f"{kind}/{path.name}".encode())
                digest.update(path.read_bytes())
    key = (language, digest.hexdigest())
    lex = _BY_CONTENT.get(key)
    if lex is None:
        lex = _BY_CONTENT[key] = _build_lexicon(language, root)
    return lex


def _build_lexicon(language: str, root: Path) -> Lexicon:
    rf_doc = _load_redflags(root, language)
    fi_doc = _load_kind(root, "findings", language)
    lx_doc = _load_kind(root, "lexicon", language)
    rf_where = f"{root / 'nlu' / 'redflags'}/{language}"
    fi_where = f"{root / 'nlu' / 'findings'}/{language}"
    lx_where = f"{root / 'nlu' / 'lexicon'}/{language}"

    subjects: list[tuple[str, str]] = []
    for label, pats in (fi_doc.get("subjects") or {}).items():
        here = f"{fi_where}.subjects.{label}"
        for i, p in enumerate(_strings(pats, here)):
            _compile(compile_pattern(p), f"{here}[{i}]")
            subjects.append((f"subj:{label}", p))

    scope = lx_doc.get("scope") or {}
    answers_doc = dict(lx_doc.get("answers") or {})
    unknown_patterns = _strings(
        answers_doc.pop("unknown_patterns", None), f"{lx_where}.answers.unknown_patterns"
    )
    for i, p in enumerate(unknown_patterns):
        _compile(compile_pattern(p), f"{lx_where}.answers.unknown_patterns[{i}]")
    answers = {k: _words(v, f"{lx_where}.answers.{k}") for k, v in answers_doc.items()}
    units_doc = lx_doc.get("units") or {}
    time_doc = lx_doc.get("time") or {}
    redflags = _concepts(rf_doc.get("redflags"), f"{rf_where}.redflags")
    findings = _concepts(fi_doc.get("findings"), f"{fi_where}.findings")
    reading_keywords = {
        str(k): _folded(v, f"{lx_where}.readings.{k}")
        for k, v in (lx_doc.get("readings") or {}).items()
    }
    entries = [
        *((f"rf:{cp.concept}", src) for cp in redflags for src in cp.sources),
        *((f"fi:{cp.concept}", src) for cp in findings for src in cp.sources),
        *((f"fx:{cp.concept}", src) for cp in findings for src in cp.absent),
        *subjects,
        *_cues(scope, f"{lx_where}.scope"),
        *(
            (f"kw:{kind}", " ".join(re.escape(w) for w in kw.split()))
            for kind, kws in reading_keywords.items()
            for kw in kws
        ),
    ]
    time_units = tuple(
        TimeUnit(
            str(name), _folded(spec["words"], f"{lx_where}.time.units.{name}"), float(spec["days"])
        )
        for name, spec in (time_doc.get("units") or {}).items()
    )
    return Lexicon(
        languages=tuple(dict.fromkeys((BASE_LANGUAGE, language))),
        redflags=redflags,
        findings=findings,
        matcher=Matcher(entries),
        window=int(scope.get("window", 5)),
        answers=answers,
        unknown_reply=_compile(compile_union(unknown_patterns), f"{lx_where}.answers")
        if unknown_patterns
        else re.compile(r"(?!x)x"),
        number_words={
            fold_spelling(str(k).lower()): float(v)
            for k, v in (lx_doc.get("number_words") or {}).items()
        },
        reading_keywords=reading_keywords,
        units={k: _words(v, f"{lx_where}.units.{k}") for k, v in units_doc.items()},
        time_units=time_units,
        since_words=_folded(time_doc.get("since"), f"{lx_where}.time.since"),
        ago_words=_folded(time_doc.get("ago"), f"{lx_where}.time.ago"),
        relative_days={
            fold_spelling(str(k).lower()): float(v)
            for k, v in (time_doc.get("relative") or {}).items()
        },
        weekdays=_folded(time_doc.get("weekdays"), f"{lx_where}.time.weekdays"),
        weekday_abbrev=_folded(time_doc.get("weekday_abbrev"), f"{lx_where}.time.weekday_abbrev"),
        trailing_links=_words(scope.get("trailing_links"), f"{lx_where}.scope.trailing_links"),
        weekday_articles=_folded(
            time_doc.get("weekday_articles", ["last", "this"]), f"{lx_where}.time.weekday_articles"
        ),
        since_after=_folded(time_doc.get("since_after"), f"{lx_where}.time.since_after"),
        old_words=_folded(time_doc.get("old", ["old", "of age", "age"]), f"{lx_where}.time.old"),
        pregnant_words=_folded(time_doc.get("pregnant"), f"{lx_where}.time.pregnant"),
        bp_words=_folded(lx_doc.get("bp_between", ["over", "by", "on"]), f"{lx_where}.bp_between"),
    )
