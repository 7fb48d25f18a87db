"""The embedded intent classifier: TF-IDF over character and word n-grams into a
multinomial logistic regression (scikit-learn), trained from the Rasa YAML at first use
and cached on disk keyed by a hash of the data, so a restart does not retrain.

Inference does not call scikit-learn: the fitted vocabulary, idf and weights are plain
arrays, so one message costs a few dictionary look-ups and one small matrix product.
Imports only the standard library, numpy, scikit-learn (training only) and nlu.text,
nlu.training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nlu.text import fold
from nlu.training import TrainingData, load_training_data, training_files

log = logging.getLogger(__name__)

MODEL_VERSION = "tfidf-lr-5"
"""Part of the cache key: bump when features or hyperparameters change."""

CHAR_NGRAMS = (2, 4)
C = 10.0

TRAIN_COUNT = 0
"""How many times this process trained a model (tests use it to prove cache reuse)."""

_NUM = re.compile(r"\d+(?:[.,]\d+)?")
_TOKEN = re.compile(r"(?:[^\W_]|[\u0900-\u0963\u0966-\u097f])+|[?!]")

FloatArray = npt.NDArray[np.float64]


def _tokens(text: str) -> list[str]:
    t = _NUM.sub(" 0 ", fold(text).replace("'", ""))
    return _TOKEN.findall(t)


class Featurizer:
    """Text -> feature counts: word uni/bigrams, char n-grams per word, regex and lookup hits."""

    def __init__(self, regexes: dict[str, list[str]], lookups: dict[str, list[str]]) -> None:
        self.regexes = [
            (name, re.compile("|".join(pats))) for name, pats in sorted(regexes.items())
        ]
        self.lookups = {w.lower(): name for name, ws in sorted(lookups.items()) for w in ws}

    def features(self, text: str) -> list[str]:
        """The features of one message, repeated as often as they occur."""
        toks = _tokens(text)
        lo, hi = CHAR_NGRAMS
        feats: list[str] = []
        add = feats.append
        extend = feats.extend
        prev = "<s>"
        for tok in toks:
            add("w:" + tok)
            add("b:" + prev + " " + tok)
            prev = tok
            padded = " " + tok + " "
            size = len(padded)
            for n in range(lo, min(hi, size) + 1):
                extend([padded[i : i + n] for i in range(size - n + 1)])
        if toks:
            add("b:" + prev + " </s>")
            if len(toks) <= 2:
                add("len:short")
        low = text.lower()
        for name, rx in self.regexes:
            if rx.search(low):
                add("rx:" + name)
        lookups = self.lookups
        for tok in toks:
            table = lookups.get(tok)
            if table is not None:
                add("lk:" + table)
        return feats

    def __call__(self, text: str) -> dict[str, int]:
        """Feature -> count for one message."""
        return dict(Counter(self.features(text)))


@dataclass
class IntentClassifier:
    """A fitted classifier as plain arrays (see the module docstring)."""

    classes: list[str]
    vocab: dict[str, int]
    idf: FloatArray
    weights: FloatArray  # (n_features, n_classes)
    intercept: FloatArray  # (n_classes,)
    featurizer: Featurizer
    key: str = ""

    def __post_init__(self) -> None:
        self._idf = [float(v) for v in self.idf]
        self._intercept = np.asarray(self.intercept, dtype=np.float64)

    def probabilities(self, text: str) -> list[float]:
        """Class probabilities for one message, in the order of `classes`."""
        vocab = self.vocab
        idf = self._idf
        idx: list[int] = []
        vals: list[float] = []
        sq = 0.0
        for f, count in Counter(self.featurizer.features(text)).items():
            j = vocab.get(f)
            if j is not None:
                w = (1.0 + math.log(count)) * idf[j] if count > 1 else idf[j]
                idx.append(j)
                vals.append(w)
                sq += w * w
        if idx:
            rows = self.weights.take(np.fromiter(idx, dtype=np.intp, count=len(idx)), axis=0)
            tf = np.fromiter(vals, dtype=np.float64, count=len(vals))
            logits = ((tf @ rows) / math.sqrt(sq) + self._intercept).tolist()
        else:
            logits = self._intercept.tolist()
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        total = sum(exps)
        return [v / total for v in exps]

    def scores(self, text: str) -> FloatArray:
        """Class probabilities for one message, as an array."""
        return np.asarray(self.probabilities(text))

    def rank(self, text: str, top: int = 10) -> list[tuple[str, float]]:
        """(intent, confidence) pairs, most likely first."""
        probs = self.probabilities(text)
        pairs = sorted(zip(self.classes, probs, strict=True), key=lambda p: -p[1])[:top]
        return [(name, round(p, 4)) for name, p in pairs]

    def predict(self, text: str) -> tuple[str, float]:
        """The most likely intent and its confidence."""
        return self.rank(text, 1)[0]


def data_key(files: Iterable[Path]) -> str:
    """Hash of the training files and the model version: the cache key."""
    h = hashlib.sha256(MODEL_VERSION.encode())
    for path in sorted(files):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def train(data: TrainingData, key: str = "") -> IntentClassifier:
    """Fit the classifier on training data (scikit-learn)."""
    global TRAIN_COUNT
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    if len({e.intent for e in data.examples}) < 2:
        raise ValueError("training data needs at least two intents")
    featurizer = Featurizer(data.regexes, data.lookups)
    texts = [e.text for e in data.examples]
    labels = [e.intent for e in data.examples]

    vec = TfidfVectorizer(analyzer=featurizer.features, sublinear_tf=True, lowercase=False)
    x = vec.fit_transform(texts)
    model = LogisticRegression(C=C, max_iter=3000, class_weight="balanced")
    model.fit(x, labels)
    TRAIN_COUNT += 1
    vocab = {str(f): int(i) for f, i in vec.vocabulary_.items()}
    return IntentClassifier(
        classes=[str(c) for c in model.classes_],
        vocab=vocab,
        idf=np.asarray(vec.idf_, dtype=np.float64),
        weights=np.ascontiguousarray(model.coef_.T, dtype=np.float64),
        intercept=np.asarray(model.intercept_, dtype=np.float64),
        featurizer=featurizer,
        key=key,
    )


def save(clf: IntentClassifier, path: Path, data: TrainingData) -> None:
    """Write the model atomically as .npz (no pickle)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    words = sorted(clf.vocab, key=clf.vocab.__getitem__)
    meta = {
        "version": MODEL_VERSION,
        "key": clf.key,
        "classes": clf.classes,
        "regexes": data.regexes,
        "lookups": data.lookups,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                vocab=np.array(words, dtype=str),
                idf=clf.idf,
                weights=clf.weights,
                intercept=clf.intercept,
                meta=np.array(json.dumps(meta)),
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a model holds no secrets
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> IntentClassifier:
    """Read a model written by `save`."""
    with np.load(path, allow_pickle=False) as z:
        meta: dict[str, Any] = json.loads(str(z["meta"]))
        words = [str(w) for w in z["vocab"]]
        return IntentClassifier(
            classes=list(meta["classes"]),
            vocab={w: i for i, w in enumerate(words)},
            idf=np.asarray(z["idf"], dtype=np.float64),
            weights=np.asarray(z["weights"], dtype=np.float64),
            intercept=np.asarray(z["intercept"], dtype=np.float64),
            featurizer=Featurizer(meta.get("regexes", {}), meta.get("lookups", {})),
            key=str(meta.get("key", "")),
        )


def cache_path(language: str, data_dir: Path, cache_dir: Path | None = None) -> Path:
    """Where the model for the current training data of `language` is cached."""
    files = training_files(data_dir, language)
    if not files:
        raise FileNotFoundError(f"no training data: {data_dir / 'nlu' / f'{language}.yml'}")
    folder = cache_dir or (data_dir / "cache" / "nlu")
    return folder / f"intent-{language}-{data_key(files)}.npz"


def load_or_train(
    language: str, data_dir: Path, *, cache_dir: Path | None = None, force: bool = False
) -> IntentClassifier:
    """The cached model for the current data, or a freshly trained (and cached) one."""
    path = cache_path(language, data_dir, cache_dir)
    if path.exists() and not force:
        try:
            return load(path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("nlu: cached model unreadable, retraining: %s", type(exc).__name__)
    files = training_files(data_dir, language)
    data = load_training_data(*files)
    clf = train(data, key=path.stem)
    try:
        save(clf, path, data)
        for old in path.parent.glob(f"intent-{language}-*.npz"):
            if old != path:  # models of older data are never read again
                old.unlink(missing_ok=True)
    except OSError as exc:  # read-only checkout: keep the model in memory only
        log.warning("nlu: cannot write model cache %s: %s", path, type(exc).__name__)
    return clf
