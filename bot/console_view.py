"""What the clinician console shows, as plain data for the templates: concept labels and units,
masked addresses, summary items, durations, and chart geometry for readings over time.

Imports bot.flow and bot.store row types only; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from bot.flow import AskNode, Library
from bot.store import ReadingRow

UNITS = {  # UCUM codes in concepts.yaml -> how a clinician writes them
    "Cel": "°C",
    "[degF]": "°F",
    "mm[Hg]": "mmHg",
    "%": "%",
    "/min": "/min",
    "/d": "/day",
    "a": "years",
    "d": "days",
    "kg": "kg",
    "mg/dL": "mg/dL",
    "mmol/L": "mmol/L",
}
_SUFFIXES = ("_percent", "_mg_dl", "_years", "_days", "_kg", "_c", "_bp")
KNOWN_LABELS = {  # where the concept id does not make a good label
    "spo2_percent": "SpO₂",
    "systolic_bp": "Systolic BP",
    "diastolic_bp": "Diastolic BP",
    "peak_flow_percent": "Peak flow (% of best)",
    "rescue_inhaler_uses_day": "Rescue inhaler uses",
    "weight_gain_kg_week": "Weight gain this week",
    "symptom_onset_days": "Symptoms began",
    "free_text_note": "Patient's note",
    "checkin_condition": "Check-in for",
}
# Numbers that are facts about the patient rather than readings to follow over time.
NOT_CHARTED = frozenset({"age_years", "symptom_onset_days"})
# Answers about the conversation, not the patient's health (the risk band has its own line).
NOT_CLINICAL = frozenset(
    {
        "consent_care",
        "consent_checkins",
        "consent_broadcast",
        "preferred_language",
        "menu_choice",
        "covid_risk_band",
    }
)
LEVEL_LABELS = {
    "emergency_ambulance": "Emergency: ambulance",
    "emergency": "Emergency department",
    "consultation_24": "Consultation within 24 h",
    "consultation": "Consultation",
    "self_care": "Self-care",
}
REASON_LABELS = {
    "red_flag": "Red flag",
    "triage": "Triage outcome",
    "patient_request": "Patient asked for a human",
    "repeated_failures": "Bot could not understand",
    "flow": "Flow escalation",
    "bp_trend": "Blood pressure trend",
    "missed_checkins": "Missed check-ins",
}


def humanize(concept: str) -> str:
    """`temperature_c` -> "Temperature", `severe_dyspnea` -> "Severe dyspnea"."""
    name = concept
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def concept_labels(library: Library, language: str = "en") -> dict[str, str]:
    """A label per concept: the multi-select option text where a flow has one, else humanized."""
    labels = {
        concept: KNOWN_LABELS.get(concept) or humanize(concept) for concept in library.concepts
    }
    for flow in library.flows.values():
        for node in flow.nodes.values():
            if isinstance(node, AskNode) and node.type == "multi":
                for option in node.options:
                    text = option.text.get(language) or option.text.get("en")
                    if text and option.value in labels:
                        labels[option.value] = text
    return labels


def unit_label(unit: str | None) -> str:
    """A UCUM unit as a clinician writes it ("" for none)."""
    if not unit:
        return ""
    return UNITS.get(unit, unit)


def format_value(value: Any) -> str:
    """An answer as text: yes/no, numbers without a needless ".0", "don't know" for None."""
    if value is None:
        return "don't know"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value)
    return str(value).replace("_", " ")


def mask_address(address: str) -> str:
    """A phone number or chat id with all but the last digits hidden: +•••••••4321."""
    keep = 4 if len(address) >= 8 else 2
    head = "+" if address.startswith("+") else ""
    hidden = len(address) - keep - len(head)
    return head + "•" * max(hidden, 3) + address[-keep:]


def duration(seconds: float) -> str:
    """A waiting time as people say it: 45 s, 12 min, 2 h 5 min, 3 d 4 h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    minutes = s // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def local_time(when: datetime | None, zone: tzinfo) -> str:
    """A time in the console's zone: 2024-05-01 14:03 (empty for None)."""
    return "" if when is None else when.astimezone(zone).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class SummaryItem:
    label: str
    value: str
    unit: str = ""


@dataclass
class Summary:
    """A ticket's summary grouped the way a clinician reads it."""

    present: list[str] = field(default_factory=list)  # findings answered yes
    measurements: list[SummaryItem] = field(default_factory=list)
    other: list[SummaryItem] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # findings answered no
    unknown: list[str] = field(default_factory=list)  # asked; "don't know"
    risk_band: str | None = None
    trend: list[SummaryItem] = field(default_factory=list)


def summarize(summary: Mapping[str, Any], labels: Mapping[str, str]) -> Summary:
    """Group a ticket summary (bot.app._summary) into present / measured / other / absent."""
    out = Summary()
    answers = summary.get("answers") or {}
    for concept, raw in answers.items() if isinstance(answers, dict) else ():
        if concept in NOT_CLINICAL:
            continue
        value, unit = (raw.get("value"), raw.get("unit")) if isinstance(raw, dict) else (raw, None)
        label = labels.get(concept, humanize(concept))
        if value is True:
            out.present.append(label)
        elif value is False:
            out.absent.append(label)
        elif value is None:
            out.unknown.append(label)
        elif isinstance(value, int | float):
            out.measurements.append(SummaryItem(label, format_value(value), unit_label(unit)))
        else:
            out.other.append(SummaryItem(label, format_value(value)))
    band = summary.get("risk_band")
    out.risk_band = format_value(band) if band not in (None, "") else None
    for key in ("trends", "trend", "trend_rule"):
        out.trend += _trend_items(summary.get(key), labels)
    for key, value in summary.items():  # what other escalations add (missed check-ins, ...)
        if key not in _SUMMARY_KEYS and value not in (None, "", [], {}):
            out.other.append(SummaryItem(humanize(key), _trend_text(value)))
    return out


_SUMMARY_KEYS = frozenset(
    {"flow", "triage", "red_flags", "answers", "risk_band", "trends", "trend", "trend_rule"}
)


def _trend_items(trend: Any, labels: Mapping[str, str]) -> list[SummaryItem]:
    """Whatever shape the scheduler's trend takes: text, a mapping, or a list of mappings."""
    if trend in (None, "", [], {}):
        return []
    if isinstance(trend, str):
        return [_trend_line(trend)]
    if isinstance(trend, dict):
        return [
            SummaryItem(labels.get(str(k), humanize(str(k))), _trend_text(v))
            for k, v in trend.items()
        ]
    if isinstance(trend, list):
        items = []
        for entry in trend:
            if isinstance(entry, dict):
                concept = str(entry.get("concept", entry.get("name", "trend")))
                rest = {k: v for k, v in entry.items() if k not in ("concept", "name")}
                items.append(SummaryItem(labels.get(concept, humanize(concept)), _trend_text(rest)))
            elif isinstance(entry, str):
                items.append(_trend_line(entry))
            else:
                items.append(SummaryItem("Trend", format_value(entry)))
        return items
    return [SummaryItem("Trend", format_value(trend))]


def _trend_line(line: str) -> SummaryItem:
    """ "BP last 3: 142/90, 151/94" -> ("BP last 3", "142/90, 151/94")."""
    label, sep, rest = line.partition(": ")
    return SummaryItem(label, rest) if sep and len(label) <= 40 else SummaryItem("Trend", line)


def _trend_text(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{str(k).replace('_', ' ')}: {format_value(v)}" for k, v in value.items())
    return format_value(value)


# -- charts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    value: str
    at: str


@dataclass(frozen=True)
class Chart:
    """One concept's readings as inline-SVG geometry (the template draws it)."""

    concept: str
    label: str
    unit: str
    points: tuple[Point, ...]
    width: int
    height: int
    left: int
    top: int
    bottom: int
    right: int
    y_min: str
    y_max: str
    x_start: str
    x_end: str

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def latest(self) -> Point:
        return self.points[-1]


def charts(
    readings: Iterable[ReadingRow],
    labels: Mapping[str, str],
    zone: tzinfo,
    *,
    width: int = 560,
    height: int = 170,
) -> list[Chart]:
    """One chart per concept, oldest reading on the left; concepts in first-seen order."""
    by_concept: dict[str, list[ReadingRow]] = {}
    for reading in sorted(readings, key=lambda r: (r.at, r.id)):
        if reading.concept in NOT_CHARTED:
            continue
        by_concept.setdefault(reading.concept, []).append(reading)
    left, right, top, bottom = 56, 16, 14, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    out = []
    for concept, rows in by_concept.items():
        values = [r.value for r in rows]
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.1 or max(abs(hi) * 0.05, 1.0)
        lo, hi = lo - pad, hi + pad
        t0, t1 = rows[0].at.timestamp(), rows[-1].at.timestamp()
        span = t1 - t0
        points = tuple(
            Point(
                x=left + (plot_w / 2 if span == 0 else (r.at.timestamp() - t0) / span * plot_w),
                y=top + (hi - r.value) / (hi - lo) * plot_h,
                value=format_value(r.value),
                at=local_time(r.at, zone),
            )
            for r in rows
        )
        out.append(
            Chart(
                concept=concept,
                label=labels.get(concept, humanize(concept)),
                unit=unit_label(rows[-1].unit),
                points=points,
                width=width,
                height=height,
                left=left,
                top=top,
                bottom=height - bottom,
                right=width - right,
                y_min=format_value(round(lo, 1)),
                y_max=format_value(round(hi, 1)),
                x_start=local_time(rows[0].at, zone)[:10],
                x_end=local_time(rows[-1].at, zone)[:10],
            )
        )
    return out
