"""How a dashboard `Table` is drawn: inline-SVG geometry (rectangles, lines and labels) that a
loop in dash.html renders, so charts need no script and no CDN and fit the console's CSP
(colours come from CSS classes, never style attributes). Columns over time, horizontal stacked
bars, and time-to-claim bars with the deadline marked.

Imports bot.dashboards.service only; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bot.dashboards.service import Number, Table, num, number

WIDTH = 640  # viewBox units; the SVG scales to its box (letter sizes in dashboards.css)


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    key: str  # series: CSS class s-<key>
    title: str  # tooltip: "2024-05-01 · Self-care: 3"


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "start"
    cls: str = "tick"


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    cls: str = "axis"


@dataclass(frozen=True)
class Svg:
    width: int
    height: int
    title: str
    desc: str
    rects: tuple[Rect, ...]
    labels: tuple[Label, ...]
    lines: tuple[Line, ...]
    legend: tuple[tuple[str, str], ...]  # (key, heading)


def nice_max(value: float) -> float:
    """The next 1, 2 or 5 times a power of ten at or above `value` (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _short(text: str, limit: int = 16) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _desc(table: Table) -> str:
    """A sentence a screen reader reads out: the total of each drawn series."""
    parts = []
    for key, heading in zip(table.columns, table.headers, strict=True):
        if key in table.drawn:
            total = sum(num(values[table.columns.index(key)]) for _, values in table.rows)
            parts.append(f"{heading}: {number(total)}")
    return f"{len(table.rows)} rows. Totals: " + "; ".join(parts) if table.rows else "No data."


def draw(table: Table) -> Svg:
    """The chart of `table` as geometry for the template."""
    if table.kind == "columns":
        return _columns(table)
    if table.kind == "claim":
        return _claim(table)
    return _bars(table)


def _legend(table: Table) -> tuple[tuple[str, str], ...]:
    return tuple(
        (k, h) for k, h in zip(table.columns, table.headers, strict=True) if k in table.drawn
    )


def _columns(table: Table) -> Svg:
    """Stacked columns, one per bucket (day or week), oldest on the left."""
    height, left, right, top, bottom = 260, 44, 12, 14, 34
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    drawn = [table.columns.index(k) for k in table.drawn]
    n = max(len(table.rows), 1)
    scale = nice_max(max((sum(num(v[i]) for i in drawn) for _, v in table.rows), default=0))
    slot = plot_w / n
    bar = max(slot * 0.72, 1.0)
    rects, labels = [], []
    lines = [Line(left, top + plot_h, WIDTH - right, top + plot_h)]
    for frac in (0.5, 1.0) if (scale / 2).is_integer() else (1.0,):  # whole counts only
        y = top + plot_h * (1 - frac)
        lines.append(Line(left, y, WIDTH - right, y, "grid"))
        labels.append(Label(left - 6, y + 4, number(scale * frac), "end"))
    labels.append(Label(left - 6, top + plot_h + 4, "0", "end"))
    every = math.ceil(n / 8)
    for i, (row, values) in enumerate(table.rows):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        for idx in drawn:
            count = num(values[idx])
            if count:
                h = plot_h * count / scale
                y -= h
                title = f"{row} · {table.headers[idx]}: {number(count)}"
                rects.append(
                    Rect(
                        round(x, 2),
                        round(y, 2),
                        round(bar, 2),
                        round(h, 2),
                        table.columns[idx],
                        title,
                    )
                )
        if i % every == 0:
            labels.append(Label(round(x + bar / 2, 2), height - 12, row[5:], "middle"))
    if not table.rows:
        labels.append(Label(WIDTH / 2, height / 2, "No data in this period.", "middle"))
    return Svg(
        WIDTH,
        height,
        table.title,
        _desc(table),
        tuple(rects),
        tuple(labels),
        tuple(lines),
        _legend(table),
    )


def _bars(table: Table) -> Svg:
    """One horizontal stacked bar per row on one scale, its total at the end."""
    left, right, top, bar, gap = 176, 56, 8, 28, 12
    drawn = [table.columns.index(k) for k in table.drawn]
    totals = [sum(num(v[i]) for i in drawn) for _, v in table.rows]
    scale = max(totals, default=0) or 1
    height = top + max(len(table.rows), 1) * (bar + gap) + 4
    rects, labels = [], []
    lines = [Line(left, 0, left, height)]
    for i, (row, values) in enumerate(table.rows):
        y = top + i * (bar + gap)
        labels.append(Label(left - 8, y + bar / 2 + 4, _short(row), "end"))
        x = float(left)
        for idx in drawn:
            count = num(values[idx])
            if count:
                w = (WIDTH - left - right) * count / scale
                title = f"{row} · {table.headers[idx]}: {number(count)}"
                rects.append(Rect(round(x, 2), y, round(w, 2), bar, table.columns[idx], title))
                x += w
        labels.append(Label(round(x + 6, 2), y + bar / 2 + 4, number(totals[i])))
    if not table.rows:
        labels.append(Label(left + 8, top + bar / 2 + 4, "No data in this period."))
    return Svg(
        WIDTH,
        height,
        table.title,
        _desc(table),
        tuple(rects),
        tuple(labels),
        tuple(lines),
        _legend(table),
    )


def _claim(table: Table) -> Svg:
    """Per priority: a p50 bar and a p90 bar, each group on its own scale with its claim
    deadline as a dashed line (deadlines differ by orders of magnitude between priorities)."""
    left, right, top, bar, gap = 110, 70, 10, 16, 22
    cols = table.columns
    rects, labels, lines = [], [], []
    y = float(top)
    for row, values in table.rows:
        v: dict[str, Number] = dict(zip(cols, values, strict=True))
        scale = max(num(v["p90"]), num(v["deadline"]), 1.0) * 1.15
        width = WIDTH - left - right
        labels.append(Label(left - 8, y + bar + 4, row, "end"))
        for j, key in enumerate(("p50", "p90")):
            by = y + j * (bar + 3)
            w = width * num(v[key]) / scale
            title = f"{row} · {key}: {number(v[key])} min"
            if w:
                rects.append(Rect(left, by, round(w, 2), bar, key, title))
            text = f"{key} {number(v[key])} min" if v[key] is not None else f"{key}: none claimed"
            labels.append(Label(round(left + w + 6, 2), by + bar - 3, text))
        dx = left + width * num(v["deadline"]) / scale
        lines.append(Line(round(dx, 2), y - 4, round(dx, 2), y + 2 * bar + 7, "deadline"))
        y += 2 * bar + 3 + gap
    height = int(y)
    lines.append(Line(left, 0, left, height))
    desc = "; ".join(
        f"{row}: "
        + (f"p50 {number(v[2])} min, p90 {number(v[3])} min" if v[1] else "none claimed")
        + f", deadline {number(v[4])} min"
        for row, v in table.rows
    )
    legend = (("p50", "p50 (median)"), ("p90", "p90"), ("deadline", "claim deadline"))
    return Svg(WIDTH, height, table.title, desc, tuple(rects), tuple(labels), tuple(lines), legend)
