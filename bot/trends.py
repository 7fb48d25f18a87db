"""Pure: the trend rule of PROTOCOLS.md over a patient's stored readings, and the compact
summaries a clinician reads on a phone ("BP last 5: 142/90, 151/94, 158/96").

Imports only the standard library. Readings are anything shaped like bot.store.ReadingRow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

RAISED_SYSTOLIC = 140.0
RAISED_DIASTOLIC = 90.0
TREND_RUN = 3
"""PROTOCOLS.md: three check-ins in a row at >= 140 systolic or >= 90 diastolic raise
`consultation`."""
TREND_LEVEL = "consultation"
SUMMARY_LAST = 5

# concept -> (label, unit shown); BP is summarised as pairs, below.
_SERIES: tuple[tuple[str, str, str], ...] = (
    ("glucose_mg_dl", "Glucose", "mg/dL"),
    ("peak_flow_percent", "Peak flow", "% best"),
    ("weight_gain_kg_week", "Weight gain", "kg/wk"),
    ("temperature_c", "Temp", "C"),
    ("spo2_percent", "SpO2", "%"),
)


class Reading(Protocol):
    """What the trend code needs of a stored measurement."""

    @property
    def concept(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def at(self) -> datetime: ...
    @property
    def session_id(self) -> int | None: ...


@dataclass(frozen=True)
class BloodPressure:
    """One blood-pressure answer."""

    systolic: float
    diastolic: float | None
    at: datetime
    session_id: int | None

    @property
    def raised(self) -> bool:
        """At or above 140 systolic or 90 diastolic."""
        return self.systolic >= RAISED_SYSTOLIC or (
            self.diastolic is not None and self.diastolic >= RAISED_DIASTOLIC
        )

    def __str__(self) -> str:
        dia = "?" if self.diastolic is None else _num(self.diastolic)
        return f"{_num(self.systolic)}/{dia}"


def blood_pressures(readings: Iterable[Reading]) -> list[BloodPressure]:
    """One blood pressure per answer (its two halves share the time they were recorded),
    oldest first. A conversation may hold several (a re-measure, check-ins reached by MENU)."""
    pairs: dict[tuple[int | None, datetime], dict[str, Reading]] = {}
    for r in readings:
        if r.concept in ("systolic_bp", "diastolic_bp"):
            pairs.setdefault((r.session_id, r.at), {})[r.concept] = r
    out = []
    for (session_id, at), pair in pairs.items():
        systolic = pair.get("systolic_bp")
        if systolic is not None:
            diastolic = pair.get("diastolic_bp")
            out.append(
                BloodPressure(
                    systolic.value, diastolic.value if diastolic else None, at, session_id
                )
            )
    return sorted(out, key=lambda bp: bp.at)


def raised_streak(series: list[BloodPressure]) -> int:
    """How many of the latest check-ins in a row were at or above 140/90."""
    n = 0
    for bp in reversed(series):
        if not bp.raised:
            break
        n += 1
    return n


def trend_alert(series: list[BloodPressure], run: int = TREND_RUN) -> bool:
    """The trend rule: the latest `run` check-ins in a row were all at or above 140/90."""
    return raised_streak(series) >= run


def summary_lines(readings: Iterable[Reading], last: int = SUMMARY_LAST) -> list[str]:
    """Compact, oldest-first lines per measured concept, e.g. "BP last 3: 142/90, 151/94"."""
    rows = list(readings)
    lines = []
    bps = blood_pressures(rows)[-last:]
    if bps:
        lines.append(f"BP last {len(bps)}: " + ", ".join(str(bp) for bp in bps))
    for concept, label, unit in _SERIES:
        values = sorted((r for r in rows if r.concept == concept), key=lambda r: r.at)[-last:]
        if values:
            shown = ", ".join(_num(r.value) for r in values)
            lines.append(f"{label} last {len(values)} ({unit}): {shown}")
    return lines


def _num(value: float) -> str:
    return f"{value:g}"
