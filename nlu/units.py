"""Unit conversions into the units of data/concepts.yaml, and plausibility checks.

Imports only the standard library.
"""

from __future__ import annotations

SYSTOLIC_RANGE = (50.0, 300.0)
DIASTOLIC_RANGE = (20.0, 200.0)
MMOL_TO_MG_DL = 18.0
LB_TO_KG = 0.45359237
DAYS_PER_YEAR = 365.25


def temperature_c(value: float, unit: str | None) -> float | None:
    """Degrees Celsius, 1 decimal; Fahrenheit when said so or when above 45 (None: implausible)."""
    fahrenheit = unit == "fahrenheit" or (unit != "celsius" and value > 45)
    celsius = (value - 32) * 5 / 9 if fahrenheit else value
    if not 25.0 <= celsius <= 46.0:
        return None
    return round(celsius, 1)


def glucose_mg_dl(
    value: float, unit: str | None, *, decimal: bool = False, input_unit: str | None = None
) -> float:
    """Glucose in mg/dL (integer). mmol/L when said so, or when the unit is unsaid and the
    patient was asked in mmol/L (value <= 35) or typed a decimal <= 35."""
    mmol = unit == "mmol" or (
        unit is None and value <= 35 and (decimal or (input_unit or "").lower().startswith("mmol"))
    )
    return float(round(value * MMOL_TO_MG_DL if mmol else value))


def weight_kg(value: float, unit: str | None) -> float:
    """Weight in kg, 1 decimal (pounds converted)."""
    return round(value * LB_TO_KG, 1) if unit == "lb" else round(value, 1)


def days(value: float, unit_days: float) -> float:
    """A duration in days, 2 decimals ("2 hrs" -> 0.08)."""
    return round(value * unit_days, 2)


def years(value: float, unit_name: str, unit_days: float) -> float | None:
    """An age in years, 2 decimals ("6 months" -> 0.5); None for ages under a minute."""
    if unit_name == "year":
        return value
    if unit_name == "month":
        return round(value / 12, 2)
    if unit_name in ("week", "day"):
        return round(value * unit_days / DAYS_PER_YEAR, 2)
    return None


def peak_flow_percent(value: float, unit: str | None, personal_best: float | None) -> float | None:
    """Peak flow as % of personal best, 1 decimal; a value over 100 (or in L/min) needs the
    personal best, else None."""
    if unit == "percent":
        return value
    if unit == "lpm" or value > 100:
        if not personal_best:
            return None
        return round(value / personal_best * 100, 1)
    return value


def plausible_bp(systolic: float, diastolic: float) -> bool:
    """Both halves in their sensible ranges and systolic above diastolic."""
    return (
        SYSTOLIC_RANGE[0] <= systolic <= SYSTOLIC_RANGE[1]
        and DIASTOLIC_RANGE[0] <= diastolic <= DIASTOLIC_RANGE[1]
        and systolic > diastolic
    )
