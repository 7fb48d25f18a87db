"""Scoring (nlu/evaluate.py): the numbers `carebridge nlu test` and the bench print."""

from __future__ import annotations

import pytest

from nlu.evaluate import entity_counts, intent_scores, score_examples
from nlu.training import Example, Span


def test_intent_scores() -> None:
    gold = ["a", "a", "b", "b"]
    pred = ["a", "b", "b", "b"]
    s = intent_scores(gold, pred)
    assert (s["a"].precision, s["a"].recall) == (1.0, 0.5)
    assert s["b"].precision == pytest.approx(2 / 3) and s["b"].recall == 1.0
    assert s["a"].f1 == pytest.approx(2 / 3) and s["b"].support == 2


def test_entity_counts_need_name_and_overlap() -> None:
    gold = [("fever", 0, 5), ("cough", 10, 15)]
    pred = [("fever", 2, 4), ("cough", 20, 25), ("fever", 0, 5)]
    assert entity_counts(gold, pred) == (1, 3, 2)


def test_score_examples() -> None:
    examples = [
        Example("hi", "greet"),
        Example("fever", "report_symptom", (Span("fever", 0, 5, "fever"),)),
        Example("bye", "goodbye"),
    ]
    answers = {
        "hi": ("greet", []),
        "fever": ("report_symptom", [("fever", 0, 5), ("x", 0, 1)]),
        "bye": ("greet", []),
    }
    r = score_examples(examples, lambda t: answers[t])
    assert r.accuracy == pytest.approx(2 / 3)
    assert r.confusions == [("goodbye", "greet", 1)]
    assert r.errors == [("bye", "goodbye", "greet")]
    assert r.entity_f1 == 1.0  # "x" is not a gold entity name: not scored
    assert r.per_intent["goodbye"].f1 == 0.0
    assert r.macro_f1 == pytest.approx((2 / 3 + 1 + 0) / 3)
