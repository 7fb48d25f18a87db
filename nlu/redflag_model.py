"""The learned second opinion on red flags: character n-grams (TF-IDF, scikit-learn) into a
logistic regression (SGD) over labelled red-flag and benign messages in every language. It never
raises a red flag by itself: where the rules found none and the model is confident, or a
message is near a sign, the bot asks one yes/no question (docs/nlu.md, "Confirmation").

Training messages are composed from the term groups of data/nlu/redflags/compose/rules.yml
(each rule's parts in random order with filler words; typos come from the character
n-grams) against benign messages: the Rasa training data of every language (those the rules
read as no red flag), single parts of a sign, and look-alikes (`unless:` words). Fixed seed;
cached on disk as plain arrays keyed by a hash of the data; inference needs numpy only.
Imports only the standard library, numpy, PyYAML, scikit-learn (training only) and nlu.compose.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from nlu.compose import load_composer

FloatArray = npt.NDArray[np.float64]

log = logging.getLogger(__name__)

MODEL_VERSION = "rf-char-sgd-4"
NGRAMS = (2, 4)
NONE = "none"
SEED = 11
FILLER = ("", "my", "is", "very", "and", "the", "mera", "hai", "mi", "es", "muy", "y", "ki", "la")
TRAIN_COUNT = 0
"""How many times this process trained a model (tests use it to prove cache reuse)."""


_WS = re.compile(r"\s\s+")


def char_ngrams(text: str) -> list[str]:
    """The character n-grams (2-4) of each space-padded word, as scikit-learn's `char_wb`
    analyzer makes them (so inference needs no scikit-learn)."""
    out: list[str] = []
    for w in _WS.sub(" ", text.lower()).split():
        w = f" {w} "
        for n in range(NGRAMS[0], NGRAMS[1] + 1):
            offset = 0
            out.append(w[offset : offset + n])
            while offset + n < len(w):
                offset += 1
                out.append(w[offset : offset + n])
            if offset == 0:
                break
    return out


class RedFlagModel:
    """Fitted n-gram vocabulary, idf and one-vs-rest logistic weights as plain arrays;
    `scores(text)` -> {flag: probability}."""

    def __init__(
        self,
        vocabulary: dict[str, int],
        idf: FloatArray,
        coef: FloatArray,
        intercept: FloatArray,
        labels: list[str],
    ) -> None:
        self.vocabulary = vocabulary
        self.idf = idf
        self.coef = coef
        self.intercept = intercept
        self.labels = labels

    def scores(self, text: str) -> dict[str, float]:
        counts: dict[int, int] = {}
        for g in char_ngrams(text):
            j = self.vocabulary.get(g)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts:
            return {}
        idx = np.fromiter(counts, dtype=np.int64)
        tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64))
        x = tf * self.idf[idx]
        x /= np.linalg.norm(x) or 1.0
        z = self.coef[:, idx] @ x + self.intercept
        p = 1.0 / (1.0 + np.exp(-z))
        p /= p.sum() or 1.0
        return {lab: float(v) for lab, v in zip(self.labels, p, strict=True) if lab != NONE}

    def save(self, path: Path) -> None:
        words = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        np.savez_compressed(
            path,
            words=np.array(words, dtype=object).astype(str),
            idf=self.idf,
            coef=self.coef,
            intercept=self.intercept,
            labels=np.array(self.labels).astype(str),
        )

    @classmethod
    def load(cls, path: Path) -> RedFlagModel:
        with np.load(path, allow_pickle=False) as z:
            words = [str(w) for w in z["words"]]
            return cls(
                {w: i for i, w in enumerate(words)},
                z["idf"],
                z["coef"],
                z["intercept"],
                [str(x) for x in z["labels"]],
            )


def _typo(text: str, rng: random.Random) -> str:
    """One random slip (swap, drop, double) in one word of 4+ letters."""
    words = text.split()
    idx = [i for i, w in enumerate(words) if len(w) >= 4]
    if not idx:
        return text
    i = rng.choice(idx)
    w = words[i]
    k = rng.randrange(1, len(w) - 1)
    op = rng.randrange(3)
    if op == 0:
        w = w[: k - 1] + w[k] + w[k - 1] + w[k + 1 :]
    elif op == 1:
        w = w[:k] + w[k + 1 :]
    else:
        w = w[:k] + w[k] + w[k:]
    words[i] = w
    return " ".join(words)


def _compose_examples(doc: dict[str, Any], rng: random.Random) -> list[tuple[str, str]]:
    terms: dict[str, list[str]] = {
        k: [str(t).replace("*", "") for t in v] for k, v in doc["terms"].items()
    }
    out: list[tuple[str, str]] = []
    for concept, spec in doc["rules"].items():
        spec = spec if isinstance(spec, dict) else {"all": spec}
        for alt in spec.get("all") or []:
            for _ in range(60):
                parts = [rng.choice(terms[g]) for g in alt]
                rng.shuffle(parts)
                text = " ".join(f" {rng.choice(FILLER)} ".join(parts).split())
                out.append((text, str(concept)))
                out.append((_typo(text, rng), str(concept)))
        for alt in (spec.get("all") or []) + (spec.get("near") or []):
            if len(alt) > 1:  # one part alone is not the sign
                for g in alt:
                    for _ in range(6):
                        out.append((rng.choice(terms[g]), NONE))
        for g in spec.get("unless") or []:
            for alt in spec.get("all") or []:
                for _ in range(8):
                    parts = [rng.choice(terms[x]) for x in (g, *alt)]
                    out.append((" ".join(parts), NONE))
    return out


def training_set(data_dir: Path, benign: list[str]) -> list[tuple[str, str]]:
    """(text, label) pairs: composed signs (half of them inside a short benign message, so
    everyday words around a sign do not hide it) and benign messages."""
    path = data_dir / "nlu" / "redflags" / "compose" / "rules.yml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    rng = random.Random(SEED)
    short = [t for t in benign if len(t.split()) <= 5] or [""]
    out: list[tuple[str, str]] = []
    for text, label in _compose_examples(doc, rng):
        if label != NONE and rng.random() < 0.5:
            text = (
                f"{rng.choice(short)} {text}"
                if rng.random() < 0.5
                else f"{text} {rng.choice(short)}"
            )
        out.append((text, label))
    return out + [(t, NONE) for t in benign]


def train(pairs: list[tuple[str, str]]) -> RedFlagModel:
    global TRAIN_COUNT
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier

    texts = [t.lower() for t, _ in pairs]
    labels = [lab for _, lab in pairs]
    vec = TfidfVectorizer(analyzer=char_ngrams, sublinear_tf=True, min_df=1)
    x = vec.fit_transform(texts)
    clf = SGDClassifier(loss="log_loss", alpha=1e-5, max_iter=15, tol=None, random_state=SEED)
    clf.fit(x, labels)
    TRAIN_COUNT += 1
    vocab = {str(k): int(v) for k, v in vec.vocabulary_.items()}
    return RedFlagModel(
        vocab,
        np.asarray(vec.idf_, dtype=np.float64),
        np.asarray(clf.coef_, dtype=np.float64),
        np.asarray(clf.intercept_, dtype=np.float64),
        [str(c) for c in clf.classes_],
    )


def _key(data_dir: Path, sources: list[Path]) -> str:
    h = hashlib.sha256(MODEL_VERSION.encode())
    for path in [data_dir / "nlu" / "redflags" / "compose" / "rules.yml", *sources]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


_LOCK = threading.Lock()
_MODELS: dict[str, RedFlagModel] = {}


def load_or_train(
    data_dir: Path,
    sources: list[Path],
    benign: Callable[[], list[str]],
    is_red_flag: Callable[[str], bool],
    cache_dir: Path | None = None,
) -> RedFlagModel | None:
    """The model for the current data: from memory, the disk cache, or trained now (and
    cached); None when scikit-learn or the rules are missing. `sources`: the files the
    `benign` messages come from (the cache key); those `is_red_flag` reads as a red flag
    are left out when training."""
    rules = data_dir / "nlu" / "redflags" / "compose" / "rules.yml"
    if load_composer(data_dir) is None or not rules.exists():
        return None
    with _LOCK:
        key = _key(data_dir, sources)
        found = _MODELS.get(key)
        if found is not None:
            return found
        folder = cache_dir or (data_dir / "cache" / "nlu")
        path = folder / f"redflags-{key}.npz"
        if path.exists():
            try:
                found = RedFlagModel.load(path)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("nlu: red-flag model cache unreadable: %s", type(exc).__name__)
        if found is None:
            try:
                texts = [t for t in benign() if not is_red_flag(t)]
                found = train(training_set(data_dir, texts))
            except ImportError:
                log.warning("nlu: red-flag second opinion unavailable (scikit-learn missing)")
                return None
            try:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f"redflags-{key}.tmp.npz"
                found.save(tmp)
                tmp.replace(path)
            except OSError as exc:
                log.warning("nlu: cannot write red-flag model cache: %s", type(exc).__name__)
        _MODELS[key] = found
        return found
