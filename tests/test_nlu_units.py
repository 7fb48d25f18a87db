"""Unit conversions and plausibility (nlu/units.py)."""

from __future__ import annotations

import pytest

from nlu import units


def test_unit_conversions() -> None:
    assert units.temperature_c(101.3, "fahrenheit") == 38.5
    assert units.temperature_c(101.3, None) == 38.5
    assert units.temperature_c(38.5, None) == 38.5
    assert units.temperature_c(200, None) is None
    assert units.glucose_mg_dl(13.9, "mmol") == 250
    assert units.glucose_mg_dl(13.9, None, input_unit="mmol/L") == 250
    assert units.glucose_mg_dl(30, None) == 30
    assert units.weight_kg(154, "lb") == 69.9
    assert units.days(2, 1 / 24) == 0.08
    assert units.years(6, "month", 30) == 0.5
    assert units.peak_flow_percent(350, None, 500) == 70.0
    assert units.peak_flow_percent(350, None, None) is None
    assert units.plausible_bp(150, 95)
    assert not units.plausible_bp(95, 150)


@pytest.mark.parametrize(
    ("systolic", "diastolic", "ok"),
    [(150, 95, True), (95, 150, False), (301, 95, False), (120, 19, False), (50, 20, True)],
)
def test_plausible_bp(systolic: float, diastolic: float, ok: bool) -> None:
    assert units.plausible_bp(systolic, diastolic) is ok
