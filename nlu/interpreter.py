"""The embedded interpreter: one message in, an Understanding out. Red flags first (always,
deterministic), then findings, readings and who is ill, the intent from the embedded
classifier, and the answer to the question asked.

Imports only the standard library and the nlu package.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from nlu.answers import AnswerReader
from nlu.compose import load_composer
from nlu.context import load_context
from nlu.findings import EXTRACTOR as FINDINGS_EXTRACTOR
from nlu.findings import finding_hits, subject
from nlu.language import detect_language
from nlu.lexicon import (
    BASE_LANGUAGE,
    DATA_DIR,
    Lexicon,
    Matches,
    available_languages,
    load_lexicon,
    scan,
)
from nlu.readings import extract_readings
from nlu.redflags import EXTRACTOR as REDFLAGS_EXTRACTOR
from nlu.redflags import flags_of, hit_entities, near_flags, red_flag_hits
from nlu.scope import Scope
from nlu.text import fold
from nlu.types import GLOBAL_RED_FLAGS, Entity, Expectation, Intent, Understanding

if TYPE_CHECKING:
    from nlu.classifier import IntentClassifier
    from nlu.redflag_model import RedFlagModel

log = logging.getLogger(__name__)

FALLBACK_INTENT = "out_of_scope"
DEFAULT_THRESHOLD = 0.25
"""Below this confidence the intent is reported as `out_of_scope` (the bot asks again)."""
CONFIRM_MODEL = 0.85
"""The second opinion alone (no rule found the sign) asks from this probability on."""
CONFIRM_NEAR = 0.5
"""A near match (`near:` rule) asks when the second opinion gives it at least this."""


class Interpreter:
    """Reads messages with the deterministic extractors and the embedded intent classifier.

    Everything is built lazily on first use and cached; the classifier is optional:
    without it (not trained yet, no training data for the language, scikit-learn
    missing) the intent is `out_of_scope` with confidence 0 and all else still works.
    """

    name = "embedded"

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        cache_dir: Path | None = None,
        use_classifier: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else DATA_DIR
        self.threshold = threshold
        self.cache_dir = cache_dir
        self.use_classifier = use_classifier
        self._classifiers: dict[str, IntentClassifier | None] = {}
        self._lexicon_language: dict[str, str] = {}
        self._languages: tuple[str, ...] | None = None
        self._readers: dict[int, AnswerReader] = {}
        self._lock = threading.RLock()
        self._rf_model: RedFlagModel | None = None
        self._rf_loaded = False
        self.ready = False
        """True once `warm_all()` has built everything (for /readyz)."""

    # --- building blocks ---------------------------------------------------------------

    def languages(self) -> tuple[str, ...]:
        """Languages with NLU data of their own under the data folder (English first)."""
        if self._languages is None:
            self._languages = available_languages(self.data_dir) or (BASE_LANGUAGE,)
        return self._languages

    def reading_language(self, text: str, language: str) -> str:
        """The language a message is read in: the contact's `language` (English when it has
        no NLU data), unless the message is clearly written in another language that has
        data ("mujhe bukhar hai" from an English contact is read as Hindi). Every language
        includes English, so a clearly English message keeps the contact's language."""
        langs = self.languages()
        base = language if language in langs else BASE_LANGUAGE
        if len(langs) < 2:
            return base
        seen = detect_language(text, langs, data_dir=self.data_dir)
        if seen is not None and seen not in (base, BASE_LANGUAGE):
            return seen
        return base

    def lexicon(self, language: str) -> Lexicon:
        """The compiled lexicon for `language` (English is always part of it; a language
        without lexicon files of its own uses the English one)."""
        lang = self._lexicon_language.get(language)
        if lang is None:
            own = any(
                (self.data_dir / "nlu" / kind / f"{language}.yml").exists()
                for kind in ("redflags", "findings", "lexicon")
            )
            lang = self._lexicon_language[language] = language if own else "en"
        return load_lexicon(lang, self.data_dir)

    def classifier(self, language: str) -> IntentClassifier | None:
        """The intent classifier for `language` (English when the language has no training
        data), trained or loaded from the cache on first use; None when unavailable."""
        if language in self._classifiers:
            return self._classifiers[language]
        with self._lock:
            if language not in self._classifiers:
                has_data = (self.data_dir / "nlu" / f"{language}.yml").exists()
                if has_data or language == "en":
                    self._classifiers[language] = self._load_classifier(language)
                else:
                    self._classifiers[language] = self.classifier("en")
        return self._classifiers[language]

    def _load_classifier(self, lang: str) -> IntentClassifier | None:
        if not self.use_classifier:
            return None
        try:
            from nlu.classifier import load_or_train

            return load_or_train(lang, self.data_dir, cache_dir=self.cache_dir)
        except ImportError:  # numpy / scikit-learn missing: deterministic parts still work
            log.warning("nlu: intent classifier unavailable (numpy/scikit-learn not installed)")
            return None
        except (OSError, ValueError) as exc:
            log.warning("nlu: intent classifier for %s unavailable: %s", lang, type(exc).__name__)
            return None

    def reader(self, lex: Lexicon) -> AnswerReader:
        """The answer reader for a lexicon (cached)."""
        r = self._readers.get(id(lex))
        if r is None:
            r = self._readers[id(lex)] = AnswerReader(lex)
        return r

    def red_flag_model(self) -> RedFlagModel | None:
        """The learned second opinion on red flags (None when unavailable), built once."""
        if not self._rf_loaded:
            with self._lock:
                if not self._rf_loaded:
                    self._rf_model = self._load_rf_model()
                    self._rf_loaded = True
        return self._rf_model

    def _load_rf_model(self) -> RedFlagModel | None:
        if not self.use_classifier:
            return None
        try:
            from nlu.redflag_model import load_or_train
            from nlu.training import load_training_data

            files = sorted((self.data_dir / "nlu").glob("*.yml"))

            def benign() -> list[str]:
                return [ex.text for ex in load_training_data(*files).examples] if files else []

            def is_red_flag(text: str) -> bool:
                lex = self.lexicon(BASE_LANGUAGE)
                folded = fold(text)
                return bool(flags_of(self.entities(folded, lex, scan(lex, folded))))

            return load_or_train(self.data_dir, files, benign, is_red_flag, self.cache_dir)
        except (ImportError, OSError, ValueError) as exc:
            log.warning("nlu: red-flag second opinion unavailable: %s", type(exc).__name__)
            return None

    def candidates(
        self, text: str, folded: str, entities: list[Entity], red_flags: tuple[str, ...]
    ) -> tuple[str, ...]:
        """Red flags to confirm with one yes/no question: none when a red flag was found;
        else the signs the second opinion is confident of, and near matches it supports,
        never one the rules read as denied or past ("no chest pain", "last year")."""
        if red_flags or len(text.strip()) < 4:
            return ()
        model = self.red_flag_model()
        composer = load_composer(self.data_dir)
        if model is None or composer is None or composer.has_group(folded, "reassured"):
            return ()  # no second opinion, or "I can breathe fine": nothing to confirm
        if any(e.extractor == REDFLAGS_EXTRACTOR and e.negated for e in entities):
            return ()  # the rules read a sign here and its negation or time
        scores = model.scores(text)
        near = set(near_flags(folded, self.data_dir))
        loose = {h.concept for h in composer.find(folded) if h.loose}
        vetoed = composer.vetoed(folded)
        context = load_context(self.data_dir)
        denied = context is not None and bool(context.categories(folded))
        picked = [
            (p, f)
            for f, p in scores.items()
            if f not in vetoed
            and (
                (p >= CONFIRM_MODEL and not denied)
                or (f in near and p >= CONFIRM_NEAR)
                or (f in loose and not denied)
            )
        ]
        return tuple(f for _, f in sorted(picked, reverse=True))

    def warm(self, language: str = "en") -> None:
        """Build everything for `language` now instead of on the first message, and for
        every other language with data (a message is read in the language it is written
        in, see `reading_language`)."""
        self.warm_all((language,))

    def warm_all(self, languages: tuple[str, ...] = ()) -> float:
        """Build the lexicons, classifiers, composition rules, time triggers and the
        red-flag second opinion of `languages` and of every language with data, then set
        `ready`; returns the seconds it took. Cheap once models are cached on disk."""
        started = time.perf_counter()
        for lang in dict.fromkeys((*languages, *self.languages())):
            lex = self.lexicon(lang)
            lex.matcher.warm()
            self.reader(lex)
            self.classifier(lang)
        load_composer(self.data_dir)
        load_context(self.data_dir)
        self.red_flag_model()
        self.ready = True
        return time.perf_counter() - started

    # --- the one job ---------------------------------------------------------------------

    def interpret(
        self,
        text: str,
        expecting: Expectation | None = None,
        language: str = "en",
        *,
        today: date | None = None,
    ) -> Understanding:
        """Read one patient message: red flags, findings, readings, intent and answer.

        `Understanding.language` is the language the message was read in (see
        `reading_language`): the contact's, another one the message is clearly written in,
        or English for a language without NLU data."""
        language = self.reading_language(text, language)
        lex = self.lexicon(language)
        folded = fold(text)
        matches = scan(lex, folded)
        entities = self.entities(folded, lex, matches, expecting=expecting, today=today)
        intent, ranking, low = self._intent(text, language)
        answer = (
            self.reader(lex).read(text, expecting, entities, today=today)
            if expecting is not None
            else None
        )
        flags = flags_of(entities)
        return Understanding(
            text=text,
            language=language,
            intent=intent,
            intent_ranking=ranking,
            entities=tuple(entities),
            red_flags=flags,
            red_flag_candidates=self.candidates(text, folded, entities, flags),
            answer=answer,
            subject=subject(matches),
            extra={"backend": self.name, "low_confidence": low},
        )

    def entities(
        self,
        folded: str,
        lex: Lexicon,
        matches: Matches,
        *,
        expecting: Expectation | None = None,
        today: date | None = None,
    ) -> list[Entity]:
        """Red flags, findings and readings of a scanned message, in text order."""
        rf = red_flag_hits(folded, lex, matches, self.data_dir)
        fi = [
            replace(h, red_flag=h.concept in GLOBAL_RED_FLAGS)
            for h in finding_hits(folded, lex, matches)
        ]
        out: list[Entity] = []
        if rf or fi:
            scope = Scope(folded, lex, rf + fi, matches["cue"])
            out.extend(hit_entities(rf, scope, REDFLAGS_EXTRACTOR, self.data_dir))
            out.extend(hit_entities(fi, scope, FINDINGS_EXTRACTOR, self.data_dir))
        out.extend(
            extract_readings(
                folded,
                lex,
                today=today or date.today(),
                personal_best=expecting.personal_best if expecting else None,
                keywords=matches["kw"],
            )
        )
        out.sort(key=lambda e: (e.start, e.end))
        return out

    def _intent(self, text: str, language: str) -> tuple[Intent, tuple[Intent, ...], bool]:
        clf = self.classifier(language)
        if clf is None:
            return Intent(FALLBACK_INTENT, 0.0), (), True
        ranking = tuple(Intent(name, conf) for name, conf in clf.rank(text))
        top = ranking[0]
        if top.confidence < self.threshold:
            return Intent(FALLBACK_INTENT, top.confidence), ranking, True
        return top, ranking, False


@lru_cache(maxsize=1)
def default_interpreter() -> Interpreter:
    """The process-wide embedded interpreter over the repository's data/ (built lazily)."""
    return Interpreter()
