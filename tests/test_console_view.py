"""What the console shows: labels with units, masked numbers, the grouped summary, charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.console_view import (
    charts,
    concept_labels,
    duration,
    format_value,
    mask_address,
    summarize,
    unit_label,
)
from bot.flow import Library
from bot.store import ReadingRow

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def test_labels_come_from_the_flows_and_units_read_as_clinicians_write_them(lib: Library) -> None:
    labels = concept_labels(lib)
    assert labels["cyanosis"] == "Blue or grey lips or face"
    assert (labels["spo2_percent"], labels["temperature_c"]) == ("SpO₂", "Temperature")
    assert [unit_label(u) for u in ("Cel", "mm[Hg]", "a", None)] == ["°C", "mmHg", "years", ""]


@pytest.mark.parametrize(
    ("address", "masked"),
    [("+15557654321", "+•••••••4321"), ("731255409", "•••••5409"), ("7312", "•••12")],
)
def test_numbers_are_masked_but_for_the_last_digits(address: str, masked: str) -> None:
    assert mask_address(address) == masked
    assert address not in masked


def test_values_and_durations_read_naturally() -> None:
    assert [format_value(v) for v in (True, False, None, 38.5, 71.0, "low_risk")] == [
        "yes",
        "no",
        "don't know",
        "38.5",
        "71",
        "low risk",
    ]
    assert [duration(s) for s in (5, 125, 3 * 3600 + 300, 50 * 3600)] == [
        "5 s",
        "2 min",
        "3 h 5 min",
        "2 d 2 h",
    ]


def test_the_summary_is_grouped_for_a_quick_read() -> None:
    summary = summarize(
        {
            "answers": {
                "fever": {"value": True, "unit": None},
                "cough": {"value": False, "unit": None},
                "pregnant": {"value": None, "unit": None},
                "temperature_c": {"value": 38.6, "unit": "Cel"},
                "consent_care": {"value": True, "unit": None},
            },
            "risk_band": "high",
            "trends": ["BP last 3: 142/90, 151/94, 152/95"],
            "trend_rule": "3 check-ins in a row at or above 140/90",
            "missed_checkins": 3,
        },
        {"fever": "Fever or feeling hot", "temperature_c": "Temperature"},
    )
    assert summary.present == ["Fever or feeling hot"]  # consent is not a finding
    assert (summary.absent, summary.unknown) == (["Cough"], ["Pregnant"])
    assert [(m.label, m.value, m.unit) for m in summary.measurements] == [
        ("Temperature", "38.6", "°C")
    ]
    assert summary.risk_band == "high"
    assert [(t.label, t.value) for t in summary.trend] == [
        ("BP last 3", "142/90, 151/94, 152/95"),
        ("Trend", "3 check-ins in a row at or above 140/90"),
    ]
    assert [(o.label, o.value) for o in summary.other] == [("Missed checkins", "3")]


def test_a_chart_puts_the_oldest_reading_left_and_the_highest_on_top() -> None:
    rows = [
        ReadingRow(i, 1, None, "spo2_percent", value, "%", T0 + timedelta(days=i))
        for i, value in enumerate([97.0, 95.0, 91.0])
    ] + [ReadingRow(9, 1, None, "age_years", 70.0, "a", T0)]
    [chart] = charts(rows, {"spo2_percent": "SpO₂"}, UTC)  # age is not charted
    xs = [p.x for p in chart.points]
    ys = [p.y for p in chart.points]
    assert xs == sorted(xs) and xs[0] == chart.left and xs[-1] == chart.right
    assert ys == sorted(ys)  # falling values go down the chart
    assert (chart.label, chart.unit, chart.latest.value) == ("SpO₂", "%", "91")
    assert chart.top <= min(ys) and max(ys) <= chart.bottom
