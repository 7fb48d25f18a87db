"""The learned second opinion on red flags: character n-grams (TF-IDF, scikit-learn) into a
logistic regression (SGD) over labelled red-flag and benign messages in every language. It never
raises a red flag by itself: where the rules found none and the model is confident, or a
message is near a sign, the bot asks one yes/no question (docs/nlu.md, "Confirmation").

Training messages are composed from the term groups of data/nlu/redflags/compose/rules.yml
(each rule's parts in random order with filler words; typos come from the character
n-grams) against benign messages: the Rasa training data of every language (those the rules
read as no red flag), single parts of a sign, and look-alikes (`unless:` words). Fixed seed;
cached on disk keyed by a hash of the data. Imports only the standard library, PyYAML,
scikit-learn (lazily), nlu.compose and nlu.lexicon.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from nlu.compose import load_composer

log = logging.getLogger(__name__)

MODEL_VERSION = "rf-char-sgd-3"
NONE = "none"
SEED = 11
FILLER = ("", "my", "is", "very", "and", "the", "mera", "hai", "mi", "es", "muy", "y", "ki", "la")
TRAIN_COUNT = 0
"""How many times this process trained a model (tests use it to prove cache reuse)."""


class RedFlagModel:
    """A fitted vectorizer and classifier; `scores(text)` -> {flag: probability}."""

    def __init__(self, vectorizer: Any, classifier: Any) -> None:
        self.vectorizer = vectorizer
        self.classifier = classifier
        self.labels: list[str] = [str(c) for c in classifier.classes_]

    def scores(self, text: str) -> dict[str, float]:
        probs = self.classifier.predict_proba(self.vectorizer.transform([text.lower()]))[0]
        return {lab: float(p) for lab, p in zip(self.labels, probs, strict=True) if lab != NONE}


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
    terms: dict[str, list[str]] = {k: [str(t).replace("*", "") for t in v] for k, v in doc["terms"].items()}
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
            text = f"{rng.choice(short)} {text}" if rng.random() < 0.5 else f"{text} {rng.choice(short)}"
        out.append((text, label))
    return out + [(t, NONE) for t in benign]


def train(pairs: list[tuple[str, str]]) -> RedFlagModel:
    global TRAIN_COUNT
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier

    texts = [t.lower() for t, _ in pairs]
    labels = [lab for _, lab in pairs]
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=1)
    x = vec.fit_transform(texts)
    clf = SGDClassifier(loss="log_loss", alpha=1e-5, max_iter=15, tol=None, random_state=SEED)
    clf.fit(x, labels)
    TRAIN_COUNT += 1
    return RedFlagModel(vec, clf)


def _key(data_dir: Path, benign: list[str]) -> str:
    h = hashlib.sha256(MODEL_VERSION.encode())
    h.update((data_dir / "nlu" / "redflags" / "compose" / "rules.yml").read_bytes())
    for t in benign:
        h.update(t.encode("utf-8"))
    return h.hexdigest()[:16]


_LOCK = threading.Lock()
_MODELS: dict[str, RedFlagModel] = {}


def load_or_train(
    data_dir: Path,
    benign: list[str],
    is_red_flag: Callable[[str], bool],
    cache_dir: Path | None = None,
) -> RedFlagModel | None:
    """The model for the current data: from memory, the disk cache, or trained now (and
    cached); None when scikit-learn or the rules are missing. `benign`: candidate benign
    messages; those `is_red_flag` reads as a red flag are left out when training."""
    rules = data_dir / "nlu" / "redflags" / "compose" / "rules.yml"
    if load_composer(data_dir) is None or not rules.exists():
        return None
    with _LOCK:
        key = _key(data_dir, benign)
        found = _MODELS.get(key)
        if found is not None:
            return found
        folder = cache_dir or (data_dir / "cache" / "nlu")
        path = folder / f"redflags-{key}.pkl"
        if path.exists():
            try:
                with path.open("rb") as fh:
                    found = pickle.load(fh)  # noqa: S301 - our own cache file, keyed by hash
            except (OSError, pickle.PickleError, EOFError, AttributeError) as exc:
                log.warning("nlu: red-flag model cache unreadable: %s", type(exc).__name__)
        if not isinstance(found, RedFlagModel):
            try:
                texts = [t for t in benign if not is_red_flag(t)]
                found = train(training_set(data_dir, texts))
            except ImportError:
                log.warning("nlu: red-flag second opinion unavailable (scikit-learn missing)")
                return None
            try:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                with tmp.open("wb") as fh:
                    pickle.dump(found, fh)
                tmp.replace(path)
            except OSError as exc:
                log.warning("nlu: cannot write red-flag model cache: %s", type(exc).__name__)
        _MODELS[key] = found
        return found
