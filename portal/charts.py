"""Charts drawn on the server as inline SVG: the geometry is computed here, the markup is in templates.

No JavaScript and nothing fetched from elsewhere. Every chart is data first: each value carries the
link to the list behind it and a tooltip, and the templates draw the same data again as a visually
hidden table, which is what screen readers read (the SVG itself is hidden from them).
Coordinates are in the SVG's own units (its viewBox); CSS scales the drawing to the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WIDTH = 640
HEIGHT = 240
LABEL_LENGTH = 22  # characters of a bar's label that fit beside a horizontal bar


@dataclass(frozen=True)
class Datum:
    label: str
    value: int
    url: str = ""
    title: str = ""  # the tooltip; "label: value" when empty

    @property
    def tooltip(self) -> str:
        return self.title or f"{self.label}: {self.value}"


@dataclass(frozen=True)
class Box:
    """The plot area inside the drawing, leaving room for labels."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def tick_x(self) -> float:
        """Where the value axis's numbers end, just left of the plot."""
        return self.left - 6

    @property
    def under(self) -> float:
        """The baseline of the labels under the plot."""
        return self.bottom + 16


@dataclass(frozen=True)
class Tick:
    value: int
    at: float  # y for a vertical value axis, x for a horizontal one


@dataclass(frozen=True)
class Bar:
    datum: Datum
    x: float
    y: float
    width: float
    height: float
    short_label: str  # what fits on the drawing; the full label is in the tooltip and the table
    label_x: float
    label_y: float
    value_x: float
    value_y: float


@dataclass(frozen=True)
class Point:
    datum: Datum
    x: float
    y: float
    # The column around the point that the link covers: a 3-pixel dot alone is too small to hit.
    hit_x: float
    hit_width: float
    labelled: bool  # whether its label is drawn under the axis (every few points, so they never overlap)
    anchor: str  # the label's text-anchor: the first and last hug the plot's edges instead of overflowing


@dataclass(frozen=True)
class BarChart:
    caption: str
    label_heading: str
    value_heading: str
    horizontal: bool
    plot: Box
    bars: list[Bar]
    ticks: list[Tick]
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def data(self) -> list[Datum]:
        return [bar.datum for bar in self.bars]


@dataclass(frozen=True)
class LineChart:
    caption: str
    label_heading: str
    value_heading: str
    plot: Box
    points: list[Point]
    path: str
    ticks: list[Tick]
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def data(self) -> list[Datum]:
        return [point.datum for point in self.points]


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 1): the axis top."""
    if value <= 1:
        return 1
    power = int(10 ** math.floor(math.log10(value)))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def value_ticks(top: int) -> list[int]:
    """0, the middle when it is a whole number, and the top."""
    return sorted({0, top} | ({top // 2} if top % 2 == 0 else set()))


def bar_chart(
    data: list[Datum],
    *,
    caption: str,
    label_heading: str,
    value_heading: str,
    horizontal: bool = False,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> BarChart:
    """Bars for a handful of categories: columns, or rows when the labels are long (names)."""
    top = nice_ceiling(max((d.value for d in data), default=0))
    if horizontal:
        plot = Box(left=170, top=6, right=width - 48, bottom=height - 6)
        bars = _rows(data, plot, top)
        ticks: list[Tick] = []  # each row prints its value; a value axis would only repeat them
    else:
        plot = Box(left=44, top=14, right=width - 8, bottom=height - 28)
        bars = _columns(data, plot, top)
        ticks = [Tick(value, _round(plot.bottom - plot.height * value / top)) for value in value_ticks(top)]
    return BarChart(caption, label_heading, value_heading, horizontal, plot, bars, ticks, width, height)


def _columns(data: list[Datum], plot: Box, top: int) -> list[Bar]:
    slot = plot.width / max(len(data), 1)
    bars = []
    for index, datum in enumerate(data):
        length = plot.height * datum.value / top
        x = plot.left + slot * index + slot * 0.15
        centre = plot.left + slot * (index + 0.5)
        bars.append(
            Bar(
                datum=datum,
                x=_round(x),
                y=_round(plot.bottom - length),
                width=_round(slot * 0.7),
                height=_round(length),
                short_label=_shorten(datum.label, max(4, int(slot / 7))),
                label_x=_round(centre),
                label_y=_round(plot.under),
                value_x=_round(centre),
                value_y=_round(plot.bottom - length - 4),
            )
        )
    return bars


def _rows(data: list[Datum], plot: Box, top: int) -> list[Bar]:
    slot = plot.height / max(len(data), 1)
    bars = []
    for index, datum in enumerate(data):
        length = plot.width * datum.value / top
        middle = plot.top + slot * (index + 0.5)
        bars.append(
            Bar(
                datum=datum,
                x=plot.left,
                y=_round(plot.top + slot * index + slot * 0.15),
                width=_round(length),
                height=_round(slot * 0.7),
                short_label=_shorten(datum.label, LABEL_LENGTH),
                label_x=_round(plot.left - 6),
                label_y=_round(middle + 4),
                value_x=_round(plot.left + length + 4),
                value_y=_round(middle + 4),
            )
        )
    return bars


def line_chart(
    data: list[Datum],
    *,
    caption: str,
    label_heading: str,
    value_heading: str,
    labels: int = 6,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> LineChart:
    """A line through one value per step (a day), with a dot and a link at each; about `labels` labels."""
    plot = Box(left=44, top=14, right=width - 12, bottom=height - 28)
    top = nice_ceiling(max((d.value for d in data), default=0))
    step = plot.width / max(len(data) - 1, 1)
    every = max(1, math.ceil(len(data) / labels))
    last = len(data) - 1
    points = []
    for index, datum in enumerate(data):
        x = plot.left + step * index if len(data) > 1 else plot.left + plot.width / 2
        hit_left, hit_right = max(plot.left, x - step / 2), min(plot.right, x + step / 2)
        points.append(
            Point(
                datum=datum,
                x=_round(x),
                y=_round(plot.bottom - plot.height * datum.value / top),
                hit_x=_round(hit_left),
                hit_width=_round(max(hit_right - hit_left, 1)),
                # Counted back from the last point, so the newest (today) is always labelled.
                labelled=(last - index) % every == 0,
                anchor=_anchor(index, last),
            )
        )
    path = " ".join(f"{'M' if i == 0 else 'L'}{p.x:g},{p.y:g}" for i, p in enumerate(points))
    ticks = [Tick(value, _round(plot.bottom - plot.height * value / top)) for value in value_ticks(top)]
    return LineChart(caption, label_heading, value_heading, plot, points, path, ticks, width, height)


def _anchor(index: int, last: int) -> str:
    if last and index == 0:
        return "start"
    if last and index == last:
        return "end"
    return "middle"


def _shorten(label: str, length: int) -> str:
    return label if len(label) <= length else label[: length - 1] + "…"


def _round(value: float) -> float:
    # One decimal is finer than a pixel and keeps the markup short.
    return round(float(value), 1)
