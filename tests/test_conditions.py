"""Conditions and rule tables: evaluate every row, the most urgent level wins."""

from __future__ import annotations

from bot.conditions import evaluate, triage
from bot.flow import AllOf, AnyOf, Compare, Count, Not, Row, Truthy

SPO2_LOW = Row(Compare("spo2_percent", (("lt", 90.0),)), "emergency_ambulance")
SPO2_MID = Row(Compare("spo2_percent", (("between", (90.0, 92.0)),)), "emergency")
DYSPNEA = Row(Truthy("dyspnea"), "consultation_24")
OTHERWISE = Row(None, "self_care")
TABLE = (OTHERWISE, DYSPNEA, SPO2_MID, SPO2_LOW)


def test_most_urgent_matching_row_wins_not_the_first() -> None:
    level, rows = triage(TABLE, {"dyspnea": True, "spo2_percent": 91.0}, {})
    assert level == "emergency"
    assert rows == (0, 1, 2)


def test_between_is_inclusive_at_both_ends() -> None:
    assert triage(TABLE, {"spo2_percent": 90.0}, {})[0] == "emergency"
    assert triage(TABLE, {"spo2_percent": 92.0}, {})[0] == "emergency"
    assert triage(TABLE, {"spo2_percent": 89.9}, {})[0] == "emergency_ambulance"
    assert triage(TABLE, {"spo2_percent": 92.1}, {})[0] == "self_care"


def test_unanswered_or_unknown_numbers_match_no_comparison() -> None:
    assert triage(TABLE, {}, {})[0] == "self_care"
    assert triage(TABLE, {"spo2_percent": None}, {})[0] == "self_care"
    assert evaluate(Not(Compare("spo2_percent", (("ge", 90.0),))), {}, {})


def test_unanswered_bool_is_false_and_logic_composes() -> None:
    cond = AllOf((AnyOf((Truthy("fever"), Truthy("cough"))), Not(Truthy("pregnant"))))
    assert evaluate(cond, {"cough": True}, {})
    assert not evaluate(cond, {"cough": True, "pregnant": True}, {})
    assert not evaluate(cond, {"fever": None}, {})


def test_count_of_and_defined_names_and_red_flag() -> None:
    three = Count((Truthy("fever"), Truthy("cough"), Truthy("myalgia")), (("ge", 3.0),))
    assert evaluate(three, {"fever": True, "cough": True, "myalgia": True}, {})
    assert not evaluate(three, {"fever": True, "cough": True}, {})
    defines = {"symptomatic": AnyOf((Truthy("fever"), Compare("temperature_c", (("ge", 38.0),))))}
    assert evaluate(Truthy("symptomatic"), {"temperature_c": 38.0}, defines)
    assert not evaluate(Truthy("symptomatic"), {"temperature_c": 37.9}, defines)
    assert evaluate(Truthy("red_flag"), {"cyanosis": True}, {})
    assert not evaluate(Truthy("red_flag"), {"dyspnea": True}, {})
