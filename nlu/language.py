"""Which language a message is written in: Devanagari script, or clearly Hinglish, Spanish
or English words. The interpreter uses it to read a message in the language it is written
in (an English contact typing "mujhe bukhar hai"); the engine may use it at first contact.

The cues are data: the `detect:` section of data/nlu/lexicon/<lang>.yml (`script`: a
character range that settles it, `chars`: letters typical of the language, `strong` and
`weak` words). Imports only the standard library, PyYAML and nlu.lexicon, nlu.text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from nlu.lexicon import DATA_DIR, LexiconError, available_languages
from nlu.text import fold

_TOKEN = re.compile(r"[^\W_]+")


def _tokens(text: str) -> list[str]:
    # fold() already drops Latin accents ("días" -> "dias"); cue words are all Latin.
    return _TOKEN.findall(fold(text).replace("'", ""))


STRONG = 2.0
WEAK = 1.0
CLEAR_SCORE = 2.0
"""A language is recognised from a score of 2 (one strong word, or two weak ones) that is at
least twice the runner-up's."""


@dataclass(frozen=True)
class LanguageCues:
    """What gives one language away."""

    language: str
    script: re.Pattern[str] | None
    chars: re.Pattern[str] | None
    words: dict[str, float]


@lru_cache(maxsize=4)
def load_cues(data_dir: Path | None = None) -> tuple[LanguageCues, ...]:
    """The `detect:` cues of every language with a lexicon file (cached)."""
    root = data_dir or DATA_DIR
    out: list[LanguageCues] = []
    for lang in available_languages(root):
        path = root / "nlu" / "lexicon" / f"{lang}.yml"
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as fh:
            doc = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        spec = doc.get("detect") or {}
        if not isinstance(spec, dict):
            raise LexiconError(f"{path}: `detect` must be a mapping")
        script = spec.get("script")
        chars = str(spec.get("chars") or "").lower()
        table: dict[str, float] = {}
        for key, weight in (("weak", WEAK), ("strong", STRONG)):
            for w in spec.get(key) or ():
                for token in _tokens(str(w)):
                    table[token] = max(table.get(token, 0.0), weight)
        out.append(
            LanguageCues(
                language=lang,
                script=re.compile(f"[{script}]") if script else None,
                chars=re.compile("[" + re.escape(chars) + "]") if chars else None,
                words=table,
            )
        )
    return tuple(out)


def language_scores(text: str, data_dir: Path | None = None) -> dict[str, float]:
    """Score of each language for `text` (words and typical letters; script not included)."""
    tokens = _tokens(text)
    lowered = text.lower()
    scores: dict[str, float] = {}
    for cues in load_cues(data_dir):
        table = cues.words
        score = sum(table.get(t, 0.0) for t in tokens)
        if cues.chars is not None and cues.chars.search(lowered):
            score += WEAK
        scores[cues.language] = score
    return scores


def detect_language(
    text: str, candidates: Iterable[str] | None = None, *, data_dir: Path | None = None
) -> str | None:
    """The language `text` is clearly written in, if it is one of `candidates` (default:
    every language with NLU data); None when unclear ("ok", "hi", "no", "si").

    Devanagari -> "hi"; "mujhe bukhar hai" -> "hi"; "tengo fiebre" -> "es";
    "i have had a cough since monday" -> "en". Pure and fast (a few microseconds).
    """
    cues = load_cues(data_dir)
    allowed = set(candidates) if candidates is not None else {c.language for c in cues}
    for c in cues:
        if c.script is not None and c.script.search(text):
            return c.language if c.language in allowed else None
    scores = language_scores(text, data_dir)
    if not scores:
        return None
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    best, top = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
    if top < CLEAR_SCORE or top < 2 * runner_up:
        return None
    return best if best in allowed else None
