"""Readings in free text ("bp 150/95 sugar 13.9", "temp 101.3F", "fevr 3 dys") as entities
named by concept id, with values converted to the concept's unit. Numbers keep their sign
("-40" is minus forty); hex ("0x41") and exponents ("1e3") are not numbers a patient writes.

Imports only the standard library and nlu.lexicon, nlu.text, nlu.types,
nlu.units.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache

from nlu import units
from nlu.lexicon import Lexicon, scan
from nlu.text import (
    NOT_AFTER_WORD,
    NOT_BEFORE_WORD,
    SENTENCE_PUNCT,
    WORD_CHARS,
    parse_number,
)
from nlu.types import Entity

EXTRACTOR = "carebridge_readings"

_WORD = re.compile(f"[{WORD_CHARS}']+")
_DIGIT = re.compile(r"\d")
_BREAK = re.compile(f"[{SENTENCE_PUNCT}]")
_NEVER = r"(?!x)x"

_MINUS = "-\u2212\u2013"  # hyphen-minus, the minus sign, and the en dash phones put for it
SIGNED_NUMBER_RE = re.compile(
    rf"(?<![\w.])((?:(?<![\w.,])[{_MINUS}+])?(?:\d+(?:[.,]\d+)?|\.\d+))"
    r"(?![\d]|[.,]\d|[eE][-+]?\d)"
)
"""A decimal number with its sign, comma or point as the separator ("-40", "38,5"); never
the start of an exponent ("1e3") or of a longer number."""
_HEX_TAIL = re.compile(r"[xX][0-9a-fA-F]")


def parse_signed(token: str) -> float:
    """Read a token matched by SIGNED_NUMBER_RE ("\u221240" -> -40.0, "38,5" -> 38.5)."""
    sign = -1.0 if token[0] in _MINUS else 1.0
    return sign * parse_number(token.lstrip(_MINUS + "+"))


def numbers(text: str) -> list[tuple[float, int, int]]:
    """Every number a patient wrote in `text` as (value, start, end): signed, finite, and
    not part of a hex literal ("0x41") or an exponent ("1e3")."""
    out = []
    for m in SIGNED_NUMBER_RE.finditer(text):
        token = m.group(1)
        if token.lstrip(_MINUS + "+") == "0" and _HEX_TAIL.match(text, m.end()):
            continue
        value = parse_signed(token)
        if math.isfinite(value):
            out.append((value, m.start(), m.end()))
    return out


@dataclass(frozen=True)
class Quantity:
    """A number in the text and the unit written after it (a unit kind, or None)."""

    value: float
    unit: str | None  # "fahrenheit", "mmol", ..., or "time:<unit name>"
    start: int
    end: int  # end of the unit when there is one, else of the number
    number_end: int
    decimal: bool
    upper: float | None = None  # "2-3 days": the upper bound


def _alternation(words: list[str]) -> str:
    ordered = sorted(set(words), key=len, reverse=True)
    parts = [re.escape(w).replace(r"\ ", r"\s*") for w in ordered]
    return "|".join(parts)


def _phrases(items: list[str]) -> str:
    """An alternation of literal phrases, any whitespace between their words."""
    return "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in items)


def _squash(word: str) -> str:
    return re.sub(r"\s+", "", word.lower())


class Grammar:
    """Regular expressions for readings, built once per lexicon."""

    def __init__(self, lex: Lexicon) -> None:
        self.lex = lex
        self.unit_kind: dict[str, str] = {}
        for kind, unit_words in lex.units.items():
            for w in unit_words:
                self.unit_kind.setdefault(_squash(w), kind)
        self.time_days: dict[str, float] = {}
        for tu in lex.time_units:
            self.time_days[tu.name] = tu.days
            for w in tu.words:
                self.unit_kind.setdefault(_squash(w), f"time:{tu.name}")
        self.unit_re = re.compile(
            rf"\s*(?P<unit>{_alternation(list(self.unit_kind))}){NOT_BEFORE_WORD}"
        )
        numbers = sorted(lex.number_words, key=len, reverse=True)
        self.number_word_re = re.compile(
            rf"{NOT_AFTER_WORD}(?:{_phrases(numbers)})(?:\s+of)?{NOT_BEFORE_WORD}"
        )
        self.range_re = re.compile(r"\s*(?:-|to|or|a|se|\u2013)\s*(\d+(?:[.,]\d+)?)")
        between = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in lex.bp_words)
        self.bp_between = rf"/|\\|-|x|\s|{between}" if between else r"/|\\|-|x|\s"
        self.bp_re = re.compile(
            rf"(?<![\d.,/])(?P<sys>\d{{2,3}})\s*(?P<sep>{self.bp_between})\s*(?P<dia>\d{{2,3}})"
            r"(?![\d/]|[.,]\d)"
        )
        rel = sorted(lex.relative_days, key=len, reverse=True)
        self.relative_re = re.compile(
            rf"{NOT_AFTER_WORD}(?P<rel>{_phrases(rel)}){NOT_BEFORE_WORD}" if rel else _NEVER
        )
        day_words = [*lex.weekdays, *lex.weekday_abbrev]
        since = sorted((*lex.since_words, "on", "last"), key=len, reverse=True)
        articles = _phrases(sorted(lex.weekday_articles, key=len, reverse=True))
        self.weekday_index = {w: i % 7 for i, w in enumerate(day_words)}
        days = _phrases(day_words)
        after = sorted(lex.since_after, key=len, reverse=True)
        self.weekday_re = re.compile(
            rf"{NOT_AFTER_WORD}(?:(?:{_phrases(since)})\s+(?:(?:{articles})\s+)*(?P<day>{days})"
            + (
                rf"|(?:(?:{articles})\s+)*(?P<day_before>{days})\s+(?:{_phrases(after)})"
                if after
                else ""
            )
            + f"){NOT_BEFORE_WORD}"
            if day_words
            else _NEVER
        )
        old = _phrases(sorted(lex.old_words, key=len, reverse=True))
        self.old_re = re.compile(rf"\s*(?:{old}){NOT_BEFORE_WORD}" if old else _NEVER)
        pregnant = _phrases(sorted(lex.pregnant_words, key=len, reverse=True))
        self.pregnant_re = re.compile(
            rf"\s*(?:{pregnant}){NOT_BEFORE_WORD}" if pregnant else _NEVER
        )

    def unit_at(self, text: str, pos: int) -> tuple[str, int] | None:
        """The unit kind written at `pos` (after a number) and where it ends."""
        m = self.unit_re.match(text, pos)
        if m is None:
            return None
        kind = self.unit_kind.get(_squash(m.group("unit")))
        return (kind, m.end()) if kind else None

    def quantities(self, text: str, *, words_alone: bool = False) -> list[Quantity]:
        """Every number in `text` with its unit; number words only before a time unit
        (or anywhere when `words_alone`)."""
        out: list[Quantity] = []
        for value, start, number_end in numbers(text):
            end = number_end
            upper = None
            rng = self.range_re.match(text, end)
            if rng is not None:
                after = self.unit_at(text, rng.end())
                if after is not None and after[0].startswith("time:"):
                    upper = parse_number(rng.group(1))
                    end = rng.end()
            unit = self.unit_at(text, end)
            kind, stop = unit if unit else (None, number_end)
            out.append(
                Quantity(
                    value,
                    kind,
                    start,
                    stop if unit else number_end,
                    number_end,
                    decimal=bool(re.search(r"[.,]", text[start:number_end])),
                    upper=upper,
                )
            )
        for m in self.number_word_re.finditer(text):
            word = re.sub(r"\s+of$", "", m.group(0)).strip()
            word = re.sub(r"\s+", " ", word)
            unit = self.unit_at(text, m.end())
            if unit is None and not words_alone:
                continue
            if unit is None and word in ("a", "an"):
                continue
            if unit is not None and not unit[0].startswith("time:") and not words_alone:
                continue
            kind, stop = unit if unit else (None, m.end())
            out.append(Quantity(self.lex.number_words[word], kind, m.start(), stop, m.end(), False))
        out.sort(key=lambda q: q.start)
        return out

    @staticmethod
    def keyword_before(
        text: str, kws: list[tuple[str, int, int]], start: int, limit: int = 4
    ) -> str | None:
        """The reading keyword nearest before `start` in the same clause, if close enough."""
        best: str | None = None
        for kind, _ks, ke in kws:
            if ke > start:
                break
            between = text[ke:start]
            if _BREAK.search(between) or _DIGIT.search(between):
                continue
            if len(_WORD.findall(between)) <= limit:
                best = kind
        return best

    @staticmethod
    def keyword_after(
        text: str, kws: list[tuple[str, int, int]], end: int, only: str | None = None
    ) -> str | None:
        """A reading keyword right after a number ("38.5 temp"); with `only`, a keyword of
        that kind ("2 kilo badh gaya")."""
        for kind, ks, _ke in kws:
            if ks < end or (only is not None and kind != only):
                continue
            between = text[end:ks]
            if _BREAK.search(between) or _DIGIT.search(between):
                return None
            return kind if len(_WORD.findall(between)) <= 1 else None
        return None

    def days_ago(self, text: str, today: date | None) -> list[tuple[float, int, int]]:
        """Relative onsets ("since yesterday", "since monday") as (days, start, end)."""
        out = [
            (self.lex.relative_days[re.sub(r"\s+", " ", m.group("rel"))], m.start(), m.end())
            for m in self.relative_re.finditer(text)
        ]
        if today is not None:
            for m in self.weekday_re.finditer(text):
                day = m.group("day") or m.group("day_before")
                ago = (today.weekday() - self.weekday_index[day]) % 7 or 7
                out.append((float(ago), m.start(), m.end()))
        return out


@lru_cache(maxsize=16)
def grammar(lex: Lexicon) -> Grammar:
    """The readings grammar of a lexicon (cached)."""
    return Grammar(lex)


def _entity(concept: str, value: float, start: int, end: int) -> Entity:
    return Entity(concept, value, start, end, EXTRACTOR)


def _overlaps(s: int, e: int, used: list[tuple[int, int]]) -> bool:
    return any(us < e and s < ue for us, ue in used)


def extract_readings(
    folded: str,
    lex: Lexicon,
    *,
    today: date | None = None,
    personal_best: float | None = None,
    keywords: list[tuple[str, int, int]] | None = None,
) -> list[Entity]:
    """Readings in a folded message, each as an Entity in its concept's unit.

    `keywords` are the message's reading-keyword matches (lexicon.scan(...)["kw"]).
    """
    g = grammar(lex)
    out: list[Entity] = []
    used: list[tuple[int, int]] = []
    has_digit = _DIGIT.search(folded) is not None
    kws = keywords if keywords is not None else scan(lex, folded)["kw"]

    for m in g.bp_re.finditer(folded) if has_digit else ():
        sys_v, dia_v = float(m.group("sys")), float(m.group("dia"))
        sep = m.group("sep").strip()
        keyword = g.keyword_before(folded, kws, m.start())
        if sep not in ("/", "\\", "over") and keyword != "blood_pressure":
            continue
        if not units.plausible_bp(sys_v, dia_v):
            continue
        out.append(_entity("systolic_bp", sys_v, m.start("sys"), m.end("sys")))
        out.append(_entity("diastolic_bp", dia_v, m.start("dia"), m.end("dia")))
        used.append((m.start(), m.end()))

    for q in g.quantities(folded):
        if q.value < 0 or _overlaps(q.start, q.end, used):
            continue  # no reading in free text is negative ("-40" is not 40 either)
        found = _classify(folded, q, g, kws, personal_best)
        if found is not None:
            out.append(_entity(found[0], found[1], q.start, q.end))
            used.append((q.start, q.end))

    for days, s, e in g.days_ago(folded, today):
        if not _overlaps(s, e, used):
            out.append(_entity("symptom_onset_days", days, s, e))
            used.append((s, e))
    out.sort(key=lambda ent: ent.start)
    return out


def _classify(
    text: str,
    q: Quantity,
    g: Grammar,
    kws: list[tuple[str, int, int]],
    personal_best: float | None,
) -> tuple[str, float] | None:
    """Which reading a quantity is, and its value in the concept unit (None: not a reading)."""
    unit = q.unit
    v = q.upper if q.upper is not None else q.value
    keyword = g.keyword_before(text, kws, q.start)
    if unit is None:
        keyword = keyword or g.keyword_after(text, kws, q.end)
    if unit is not None and unit.startswith("time:"):
        name = unit[5:]
        old = g.old_re.match(text, q.end) is not None
        if old or keyword == "age_years":
            years = units.years(v, name, g.time_days.get(name, 1.0))
            return ("age_years", years) if years is not None else None
        if name in ("week", "month") and (
            g.pregnant_re.match(text, q.end) or keyword == "pregnancy"
        ):
            weeks = units.days(v, g.time_days.get(name, 7.0)) / 7  # "32 weeks pregnant"
            return "pregnancy_weeks", round(weeks, 1)
        if name == "year":
            if text[q.number_end : q.end].strip() == "y":  # "fiebre 39.5 y tos": "and"
                return _classify(text, replace(q, unit=None, end=q.number_end), g, kws, None)
            return None
        return "symptom_onset_days", units.days(v, g.time_days.get(name, 1.0))
    if unit in ("fahrenheit", "celsius", "degrees") or (
        unit is None and keyword == "temperature_c"
    ):
        celsius = units.temperature_c(q.value, unit)
        return ("temperature_c", celsius) if celsius is not None else None
    if unit == "mmol" or (
        unit == "mgdl" and (keyword == "glucose_mg_dl" or "d" in text[q.number_end : q.end])
    ):
        return "glucose_mg_dl", units.glucose_mg_dl(q.value, unit, decimal=q.decimal)
    if unit is None and keyword == "glucose_mg_dl":
        # No unit and no question asked: a sugar of 35 or less can only be mmol/L.
        return "glucose_mg_dl", units.glucose_mg_dl(q.value, None, decimal=True)
    if unit == "percent":
        if keyword == "peak_flow":
            return "peak_flow_percent", q.value
        return ("spo2_percent", q.value) if q.value <= 100 else None
    if unit is None and keyword == "spo2_percent":
        return ("spo2_percent", q.value) if q.value <= 100 else None
    if unit in ("kg", "lb") and (
        keyword == "weight_gain" or g.keyword_after(text, kws, q.end, "weight_gain_after")
    ):  # "weight up 2 kg this week", "vajan 2 kilo badh gaya"
        return "weight_gain_kg_week", units.weight_kg(q.value, unit)
    if unit in ("kg", "lb") or (unit is None and keyword == "weight_kg"):
        return "weight_kg", units.weight_kg(q.value, unit)
    if unit == "bpm" or (unit in (None, "lpm") and keyword == "heart_rate"):
        return "heart_rate", q.value
    if keyword == "peak_flow" and unit in (None, "lpm"):
        pct = units.peak_flow_percent(q.value, unit, personal_best)
        return ("peak_flow_percent", pct) if pct is not None else None
    if unit in (None, "times") and keyword == "rescue_inhaler_uses_day":
        return "rescue_inhaler_uses_day", q.value
    if unit is None and keyword == "age_years":
        return "age_years", q.value
    if unit is None and q.decimal and 34.0 <= q.value <= 42.9:
        return "temperature_c", round(q.value, 1)  # a bare "38.6" is a temperature
    return None
