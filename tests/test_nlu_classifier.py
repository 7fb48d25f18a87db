"""The embedded intent classifier (nlu/classifier.py): accuracy, speed, on-disk cache."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from nlu import classifier
from nlu.evaluate import evaluate_intents, nlu_tests_dir
from nlu.interpreter import Interpreter, default_interpreter
from nlu.training import load_training_data

TINY = """\
version: "3.1"
nlu:
- intent: greet
  examples: |
    - hi
    - hello
    - hey there
    - good morning
- intent: stop
  examples: |
    - stop
    - unsubscribe
    - stop texting me
    - no more messages
- intent: ask_human
  examples: |
    - talk to a doctor
    - human please
    - call me
    - i want a nurse
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    (tmp_path / "nlu").mkdir()
    (tmp_path / "nlu" / "en.yml").write_text(TINY, encoding="utf-8")
    return tmp_path


def test_second_load_reuses_the_cache(tiny: Path) -> None:
    before = classifier.TRAIN_COUNT
    first = classifier.load_or_train("en", tiny)
    assert before + 1 == classifier.TRAIN_COUNT
    path = classifier.cache_path("en", tiny)
    assert path.exists() and path.parent == tiny / "cache" / "nlu"
    mtime = path.stat().st_mtime_ns
    time.sleep(0.01)

    again = Interpreter(tiny).classifier("en")  # a "restart": a new interpreter
    assert before + 1 == classifier.TRAIN_COUNT
    assert path.stat().st_mtime_ns == mtime
    assert again.rank("hello") == first.rank("hello")


def test_changed_data_retrains_and_drops_the_old_model(tiny: Path) -> None:
    classifier.load_or_train("en", tiny)
    old = classifier.cache_path("en", tiny)
    before = classifier.TRAIN_COUNT
    with (tiny / "nlu" / "en.yml").open("a", encoding="utf-8") as fh:
        fh.write("    - doctor please\n")
    new = classifier.cache_path("en", tiny)
    assert new != old
    classifier.load_or_train("en", tiny)
    assert before + 1 == classifier.TRAIN_COUNT
    assert new.exists() and not old.exists()


def test_force_retrains(tiny: Path) -> None:
    classifier.load_or_train("en", tiny)
    before = classifier.TRAIN_COUNT
    classifier.load_or_train("en", tiny, force=True)
    assert before + 1 == classifier.TRAIN_COUNT


def test_cache_is_plain_arrays_not_pickle(tiny: Path) -> None:
    classifier.load_or_train("en", tiny)
    with np.load(classifier.cache_path("en", tiny), allow_pickle=False) as z:
        assert set(z.files) == {"vocab", "idf", "weights", "intercept", "meta"}


def test_unreadable_cache_is_retrained(tiny: Path) -> None:
    classifier.load_or_train("en", tiny)
    path = classifier.cache_path("en", tiny)
    path.write_bytes(b"garbage")
    before = classifier.TRAIN_COUNT
    clf = classifier.load_or_train("en", tiny)
    assert before + 1 == classifier.TRAIN_COUNT
    assert clf.predict("hello")[0] == "greet"


def test_unwritable_cache_location_still_works(tiny: Path) -> None:
    blocker = tiny / "blocker"
    blocker.write_text("a file where a folder should be", encoding="utf-8")
    clf = classifier.load_or_train("en", tiny, cache_dir=blocker / "cache")
    assert clf.predict("stop")[0] == "stop"


def test_fast_inference_matches_scikit_learn(tiny: Path) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    data = load_training_data(tiny / "nlu" / "en.yml")
    clf = classifier.train(data)
    vec = TfidfVectorizer(analyzer=clf.featurizer.features, sublinear_tf=True, lowercase=False)
    x = vec.fit_transform([e.text for e in data.examples])
    model = LogisticRegression(C=classifier.C, max_iter=3000, class_weight="balanced")
    model.fit(x, [e.intent for e in data.examples])
    for text in ("hello doc", "stop it", "zzz", "talk to someone please"):
        expected = model.predict_proba(vec.transform([text]))[0]
        assert clf.scores(text) == pytest.approx(expected, abs=1e-6)


def test_heldout_accuracy() -> None:
    it = default_interpreter()
    report = evaluate_intents(lambda t: it.interpret(t), nlu_tests_dir() / "en_heldout.yml")
    assert report.total >= 200
    assert report.macro_f1 >= 0.9, report.confusions


def test_heldout_file_is_never_trained_on() -> None:
    train = {
        e.text.lower()
        for e in load_training_data(
            Path(classifier.__file__).parent.parent / "data" / "nlu" / "en.yml"
        ).examples
    }
    heldout = load_training_data(nlu_tests_dir() / "en_heldout.yml").examples
    assert not [e.text for e in heldout if e.text.lower() in train]


def test_latency_of_interpret_is_sub_millisecond() -> None:
    it = default_interpreter()
    msgs = ["yes", "fever and cough since 3 days", "bp 150/95 sugar 13.9", "talk to a doctor"]
    for m in msgs:
        it.interpret(m)
    times = []
    for _ in range(100):
        for m in msgs:
            t0 = time.perf_counter()
            it.interpret(m)
            times.append(time.perf_counter() - t0)
    times.sort()
    assert times[len(times) // 2] < 0.001  # bench/nlu.py measures the real p50 (~0.2 ms)
