"""Answer parsing: read a reply as the answer to the question the bot asked (an Expectation),
value normalised to the concept's unit.

Imports only the standard library and nlu.lexicon, nlu.readings, nlu.text, nlu.types,
nlu.units.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date

from nlu import units
from nlu.lexicon import Lexicon
from nlu.readings import Quantity, grammar
from nlu.text import fold, fuzzy_equal, words
from nlu.types import Answer, AnswerStatus, Entity, Expectation, Option, QuestionType

INVALID = Answer(AnswerStatus.INVALID)

_OPTION_NUMBER = re.compile(r"^\s*(?:option|number|no\.?|#|choice)?\s*(\d{1,2})\s*[.)]?\s*$")
_NUMBER_LIST = re.compile(r"^[\d\s,;&+/.\-]*$|^(?:\d+|\s|,|;|&|\+|and|n|or)+$")
_INT = re.compile(r"\d+")
_CLAUSE = re.compile(r"[^,;:.+/&\n]+")
_JOINERS = re.compile(r"\s(?:and|also|plus|y|e|tambien|también|aur|or|o|ya|bhi|और|या)\s")
_STOP = frozenset(
    {"a", "an", "the", "of", "or", "and", "to", "in", "on", "for", "with", "my", "i", "me"}
    | {"is", "it", "at", "by", "from", "per", "yes", "no", "not", "any"}
)


_FILLER = frozenset(
    {"also", "too", "bhi", "hai", "h", "ji", "tambien", "mucho", "muy", "very", "bit", "little"}
    | {"have", "has", "had", "got", "tengo", "tiene", "un", "una", "el", "la", "de", "poco"}
    | {"mujhe", "mere", "ko", "ka", "ki", "ke", "thoda", "bahut", "sa"}
)


def _norm(text: str) -> str:
    return " ".join(words(text))


def _norm_set(items: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for item in items:
        n = _norm(item)
        out.add(n if n else item.strip())
    return frozenset(out)


class AnswerReader:
    """Reads replies against Expectations, with the answer words of one lexicon."""

    def __init__(self, lex: Lexicon) -> None:
        self.lex = lex
        self.grammar = grammar(lex)
        self.bp_re = re.compile(
            rf"(?<![\d.])(\d{{2,3}})\s*(?:{self.grammar.bp_between})\s*(\d{{2,3}})(?![\d]|[.,]\d)"
        )
        a = lex.answers
        self.yes = _norm_set(a.get("yes", ()))
        self.no = _norm_set(a.get("no", ()))
        self.unknown = _norm_set(a.get("unknown", ()))
        self.none = _norm_set(a.get("none", ()))
        self.yes_starts = _norm_set(a.get("yes_starts", ()))
        self.no_starts = _norm_set(a.get("no_starts", ()))
        filler = {t for p in self.yes | self.no | self.none for t in p.split() if not t.isdigit()}
        self.filler = frozenset(filler | _STOP | _FILLER)
        # "nope nothing", "nahi kuch nahi", "no, ninguno": none said in several pieces
        self.none_pieces = frozenset(
            tuple(p.split()) for p in self.none | self.no if p and (p == "0" or not p.isdigit())
        )

    def read(
        self,
        text: str,
        exp: Expectation,
        entities: Sequence[Entity] = (),
        *,
        today: date | None = None,
    ) -> Answer:
        """The answer `text` gives to `exp`; `entities` are the message's findings."""
        stripped = text.strip()
        if exp.type is QuestionType.TEXT:
            return Answer(AnswerStatus.OK, stripped) if stripped else INVALID
        norm = _norm(stripped)
        if not norm and not stripped:
            return INVALID
        if exp.type is QuestionType.MULTI and (norm in self.none or self.says_none(norm)):
            return Answer(AnswerStatus.OK, ())
        if norm in self.unknown or stripped in self.unknown:
            return Answer(AnswerStatus.UNKNOWN) if exp.allow_unknown else INVALID
        if exp.type is QuestionType.BOOL:
            found = self._bool(norm, exp, entities)
        elif exp.type is QuestionType.NUMBER:
            found = self._number(fold(stripped), norm, exp, today)
        elif exp.type is QuestionType.BP:
            found = self._bp(fold(stripped))
        elif exp.type is QuestionType.CHOICE:
            found = self._choice(stripped, norm, exp, entities)
        elif exp.type is QuestionType.MULTI:
            found = self._multi(stripped, norm, exp, entities)
        else:
            found = INVALID
        if found.status is AnswerStatus.INVALID and self.lex.unknown_reply.search(fold(stripped)):
            # "no thermometer at home", "didn't check": a don't-know in more words
            return Answer(AnswerStatus.UNKNOWN) if exp.allow_unknown else INVALID
        return found

    def says_none(self, norm: str) -> bool:
        """Whether a reply is made only of none/no words ("nope nothing", "no nada")."""
        toks = tuple(norm.split())
        if not toks:
            return False
        longest = max((len(p) for p in self.none_pieces), default=0)
        reach = [True] + [False] * len(toks)
        for i in range(len(toks)):
            if not reach[i]:
                continue
            for n in range(1, min(longest, len(toks) - i) + 1):
                if toks[i : i + n] in self.none_pieces:
                    reach[i + n] = True
        return reach[-1]

    # --- bool ----------------------------------------------------------------------------

    def _bool(self, norm: str, exp: Expectation, entities: Sequence[Entity]) -> Answer:
        if norm in self.yes:
            return Answer(AnswerStatus.OK, True)
        if norm in self.no:
            return Answer(AnswerStatus.OK, False)
        # What the patient said about the very concept asked ("i have no fever").
        about = [e for e in entities if e.entity == exp.concept and not e.uncertain]
        if about:
            return Answer(AnswerStatus.OK, not about[-1].negated)
        if any(e.entity == exp.concept and e.uncertain for e in entities):
            return Answer(AnswerStatus.UNKNOWN) if exp.allow_unknown else INVALID
        toks = norm.split()
        for n in (2, 1):
            head = " ".join(toks[:n])
            if len(toks) > n or n == 1:
                if head in self.yes_starts:
                    return Answer(AnswerStatus.OK, True)
                if head in self.no_starts:
                    return Answer(AnswerStatus.OK, False)
        return INVALID

    # --- number --------------------------------------------------------------------------

    def _number(self, folded: str, norm: str, exp: Expectation, today: date | None) -> Answer:
        unit = exp.unit or ""
        quantities = self.grammar.quantities(folded, words_alone=True)
        value: float | None = None
        if unit == "d":
            value = self._days(folded, quantities, today)
        elif quantities:
            value = self._convert(quantities, exp)
        if value is None:
            return INVALID
        if exp.range is not None and not exp.range[0] <= value <= exp.range[1]:
            return Answer(AnswerStatus.OUT_OF_RANGE, value)
        return Answer(AnswerStatus.OK, value)

    def _days(self, folded: str, qs: list[Quantity], today: date | None) -> float | None:
        g = self.grammar
        for q in qs:
            if q.unit is None or q.unit.startswith("time:"):
                v = q.upper if q.upper is not None else q.value
                name = q.unit[5:] if q.unit else "day"
                return units.days(v, g.time_days.get(name, 1.0))
        rel = g.days_ago(folded, today or date.today())
        return rel[0][0] if rel else None

    def _convert(self, qs: list[Quantity], exp: Expectation) -> float | None:
        unit = exp.unit or ""
        accepts: dict[str, tuple[str | None, ...]] = {
            "Cel": (None, "fahrenheit", "celsius", "degrees"),
            "mg/dL": (None, "mmol", "mgdl"),
            "%": (None, "percent", "lpm"),
            "kg": (None, "kg", "lb"),
            "a": (None, "time:year", "time:month", "time:week", "time:day"),
            "/min": (None, "bpm"),
            "/d": (None, "times"),
        }
        allowed = accepts.get(unit)
        pick = next((q for q in qs if allowed is None or q.unit in allowed), None)
        if pick is None:
            return None
        v, u = pick.value, pick.unit
        if unit == "Cel":
            fahrenheit = u == "fahrenheit" or (u != "celsius" and v > 45)
            return round((v - 32) * 5 / 9 if fahrenheit else v, 1)
        if unit == "mg/dL":
            return units.glucose_mg_dl(v, u, decimal=pick.decimal, input_unit=exp.input_unit)
        if unit == "%":
            if exp.personal_best:
                pct = units.peak_flow_percent(v, u, exp.personal_best)
                return pct if pct is not None else v
            return v
        if unit == "kg":
            return units.weight_kg(v, u)
        if unit == "a":
            if u is None:
                return v
            name = u[5:]
            return units.years(v, name, self.grammar.time_days.get(name, 1.0))
        return v

    # --- blood pressure ------------------------------------------------------------------

    def _bp(self, folded: str) -> Answer:
        m = self.bp_re.search(folded)
        if m is None:
            return INVALID
        sys_v, dia_v = float(m.group(1)), float(m.group(2))
        if sys_v < dia_v:
            return INVALID
        # equal halves ("120/120") are a crisis reading as typed, not a typo to reject
        in_range = units.plausible_bp(sys_v + (sys_v == dia_v), dia_v)
        if not in_range:
            return Answer(AnswerStatus.OUT_OF_RANGE, (sys_v, dia_v))
        return Answer(AnswerStatus.OK, (sys_v, dia_v))

    # --- choice and multi ----------------------------------------------------------------

    def _choice(self, raw: str, norm: str, exp: Expectation, entities: Sequence[Entity]) -> Answer:
        m = _OPTION_NUMBER.match(raw)
        if m is not None:
            k = int(m.group(1))
            if 1 <= k <= len(exp.options):
                return Answer(AnswerStatus.OK, exp.options[k - 1].value)
            return INVALID
        scored = [(score_option(norm, opt), i) for i, opt in enumerate(exp.options)]
        # one shared word is not an answer ("chequeo de mi azucar" is not "Chequeo de
        # COVID-19"): a partial match counts only when the reply says nothing else
        scored = [
            (s, i) for s, i in scored if s != 1.0 or self._only_option_words(norm, exp.options[i])
        ]
        best = max((s for s, _ in scored), default=0.0)
        if best > 0:
            winners = [i for s, i in scored if s == best]
            if len(winners) == 1:
                return Answer(AnswerStatus.OK, exp.options[winners[0]].value)
            return INVALID
        asserted = {e.entity for e in entities if not e.negated and not e.uncertain}
        hits = [o.value for o in exp.options if o.value in asserted]
        if len(hits) == 1:
            return Answer(AnswerStatus.OK, hits[0])
        return INVALID

    def _only_option_words(self, norm: str, opt: Option) -> bool:
        """Whether every content word of a reply is a word of the option ("pressure" for
        "High blood pressure"), so that a partial match names that option and nothing else."""
        label_words = {w for label in opt.labels for w in _label_words(label)}
        for t in norm.split():
            if t in self.filler or len(t) < 3:
                continue
            if not any(fuzzy_equal(t, w) for w in label_words):
                return False
        return True

    def _multi(self, raw: str, norm: str, exp: Expectation, entities: Sequence[Entity]) -> Answer:
        n = len(exp.options)
        if _NUMBER_LIST.match(norm) and _INT.search(norm):
            picked: set[int] = set()
            for tok in _INT.findall(norm):
                k = int(tok)
                if not 1 <= k <= n:
                    return INVALID
                picked.add(k - 1)
            return Answer(AnswerStatus.OK, tuple(exp.options[i].value for i in sorted(picked)))
        chosen: set[str] = set()
        for opt in exp.options:
            if score_option(norm, opt, partial=False) > 0:
                chosen.add(opt.value)
        asserted = {e.entity for e in entities if not e.negated and not e.uncertain}
        negated = {e.entity for e in entities if e.negated} - asserted
        chosen |= {o.value for o in exp.options if o.value in asserted}
        chosen -= negated
        if not chosen:
            return INVALID
        values = tuple(o.value for o in exp.options if o.value in chosen)
        if len(chosen) < n and self.unread_part(raw, exp, entities):
            # "yes, more phlegm and <something not understood>": what was read counts; the
            # rest is asked again, never recorded as "no"
            return Answer(AnswerStatus.PARTIAL, values)
        return Answer(AnswerStatus.OK, values)

    def unread_part(self, raw: str, exp: Expectation, entities: Sequence[Entity]) -> bool:
        """Whether a checklist reply has a clause that names no option, finding or answer word."""
        folded = fold(raw)
        values = {o.value for o in exp.options}
        spans = [(e.start, e.end) for e in entities if e.entity in values]
        marked = _JOINERS.sub(lambda m: "," + " " * (len(m.group(0)) - 1), folded)
        for m in _CLAUSE.finditer(marked):
            clause = m.group(0)
            norm = _norm(clause)
            if not norm or all(t in self.filler for t in norm.split()):
                continue
            if any(s < m.end() and e > m.start() for s, e in spans):
                continue
            if any(score_option(norm, opt, partial=False) > 0 for opt in exp.options):
                continue
            return True
        return False


def _label_words(label: str) -> list[str]:
    return words(label)


def _window_match(text_words: list[str], label_words: list[str]) -> int:
    """2: the label's words appear exactly in order; 1: with small typos; 0: not at all."""
    k = len(label_words)
    if k == 0:
        return 0
    joined = "".join(label_words)
    best = 0
    for i in range(len(text_words)):
        window = text_words[i : i + k]
        if len(window) == k and window == label_words:
            return 2
        for size in {k, max(1, k - 1), k + 1}:
            cand = text_words[i : i + size]
            if len(cand) == size and fuzzy_equal("".join(cand), joined):
                best = 1
    return best


def score_option(norm: str, opt: Option, *, partial: bool = True) -> float:
    """How well a normalised reply names an option: 4 exact, 3 whole label in the reply,
    2 label with typos, 1 a distinctive label word (when `partial`), 0 not at all."""
    text_words = norm.split()
    best = 0.0
    # a code ("hi", "es") is not an answer by itself: "hi" is a greeting, not Hindi
    value = opt.value.replace("_", " ")
    for label in (*opt.labels, *((value,) if len(value) > 2 else ())):
        lw = _label_words(label)
        if not lw:
            continue
        if norm == " ".join(lw):
            return 4.0
        found = _window_match(text_words, lw)
        if found == 2:
            best = max(best, 3.0 + len(lw) / 100)
        elif found == 1:
            best = max(best, 2.0 + len(lw) / 100)
        elif partial:
            key = [w for w in lw if w not in _STOP and len(w) >= 4]
            if any(fuzzy_equal(t, w) for w in key for t in text_words if len(t) >= 3):
                best = max(best, 1.0)
    return best
