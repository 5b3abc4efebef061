"""portal/charts.py: the geometry of the server-drawn SVG charts, and what the templates make of it."""

from __future__ import annotations

import re

import pytest
from django.template.loader import render_to_string

from portal import charts
from portal.charts import Datum


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (10, 10), (11, 20), (180, 200), (501, 1000)],
)
def test_the_value_axis_ends_on_a_round_number_at_or_above_the_largest_value(
    value: int, ceiling: int
) -> None:
    assert charts.nice_ceiling(value) == ceiling


@pytest.mark.parametrize(("top", "ticks"), [(1, [0, 1]), (2, [0, 1, 2]), (5, [0, 5]), (20, [0, 10, 20])])
def test_ticks_are_whole_numbers(top: int, ticks: list[int]) -> None:
    assert charts.value_ticks(top) == ticks


def _columns() -> charts.BarChart:
    data = [Datum("a", 10, "/a"), Datum("b", 5, "/b"), Datum("c", 0, "/c"), Datum("d", 2, "")]
    return charts.bar_chart(data, caption="Things", label_heading="Thing", value_heading="Count")


def test_columns_stand_on_the_axis_with_heights_in_proportion() -> None:
    chart = _columns()
    plot = chart.plot
    heights = [bar.height for bar in chart.bars]
    assert heights == [plot.height, plot.height / 2, 0, pytest.approx(plot.height / 5, abs=0.1)]
    for bar in chart.bars:
        assert bar.y + bar.height == pytest.approx(plot.bottom, abs=0.1)
        assert plot.left <= bar.x
        assert bar.x + bar.width <= plot.right
    # Left to right in the order given, none overlapping, each label centred under its column.
    xs = [bar.x for bar in chart.bars]
    assert xs == sorted(xs)
    assert all(a.x + a.width < b.x for a, b in zip(chart.bars, chart.bars[1:], strict=False))
    assert all(bar.label_x == pytest.approx(bar.x + bar.width / 2, abs=0.1) for bar in chart.bars)
    assert [t.value for t in chart.ticks] == [0, 5, 10]
    assert chart.ticks[-1].at == plot.top
    assert chart.ticks[0].at == plot.bottom


def test_rows_start_at_the_left_edge_and_grow_to_the_right() -> None:
    data = [Datum("alice", 10, "/o/alice"), Datum("a-very-long-owner-name@example.test", 5, "/o/x")]
    chart = charts.bar_chart(
        data, caption="Owners", label_heading="Owner", value_heading="Open", horizontal=True
    )
    first, second = chart.bars
    assert first.x == second.x == chart.plot.left
    assert first.width == chart.plot.width
    assert second.width == chart.plot.width / 2
    assert first.y < second.y  # top to bottom in the order given
    assert second.short_label == "a-very-long-owner-nam…"
    assert len(second.short_label) == charts.LABEL_LENGTH
    assert second.datum.label == "a-very-long-owner-name@example.test"
    assert chart.ticks == []


def test_an_empty_chart_has_no_bars_and_a_unit_axis() -> None:
    chart = charts.bar_chart([], caption="Nothing", label_heading="x", value_heading="y")
    assert chart.bars == []
    assert [t.value for t in chart.ticks] == [0, 1]


def test_a_line_runs_through_one_point_per_value_from_left_to_right() -> None:
    data = [Datum(f"d{n}", value, f"/day/{n}") for n, value in enumerate([0, 4, 2, 4, 1])]
    chart = charts.line_chart(data, caption="Trend", label_heading="Day", value_heading="Open", labels=2)
    plot = chart.plot
    assert [p.x for p in chart.points] == pytest.approx(
        [plot.left + plot.width * n / 4 for n in range(5)], abs=0.1
    )
    # The axis tops out at 5, the round number above the largest value (4).
    assert [p.y for p in chart.points] == pytest.approx(
        [plot.bottom - plot.height * value / 5 for value in (0, 4, 2, 4, 1)], abs=0.1
    )
    assert chart.path.startswith(f"M{plot.left},{plot.bottom} L")
    assert chart.path.count("L") == 4
    # The newest point is always labelled; with room for two labels, every third one from the end.
    assert [p.labelled for p in chart.points] == [False, True, False, False, True]
    # The end labels hug the plot's edges rather than spilling out of the drawing.
    assert [p.anchor for p in chart.points] == ["start", "middle", "middle", "middle", "end"]


def test_each_point_links_a_column_that_touches_its_neighbours_without_overlap() -> None:
    data = [Datum(f"d{n}", n, f"/day/{n}") for n in range(10)]
    chart = charts.line_chart(data, caption="Trend", label_heading="Day", value_heading="Open")
    columns = [(p.hit_x, p.hit_x + p.hit_width) for p in chart.points]
    assert columns[0][0] == chart.plot.left
    assert columns[-1][1] == pytest.approx(chart.plot.right, abs=0.1)
    for (_, right), (left, _) in zip(columns, columns[1:], strict=False):
        assert left == pytest.approx(right, abs=0.11)
    for point, (left, right) in zip(chart.points, columns, strict=True):
        assert left <= point.x <= right


def test_the_bar_template_draws_links_tooltips_labels_and_a_hidden_table() -> None:
    html = render_to_string("portal/_findings_bar_chart.html", {"chart": _columns()})
    assert '<svg class="chart-svg" viewBox="0 0 640 240" aria-hidden="true"' in html
    assert html.count('<rect class="chart-bar"') == 4
    assert '<a href="/a" tabindex="-1">' in html
    assert '<a href="/b" tabindex="-1">' in html
    assert "<title>a: 10</title>" in html
    assert re.search(r'<text class="chart-label"[^>]*>a</text>', html)
    table = html[html.index('<table class="visually-hidden chart-data">') :]
    assert '<th scope="col">Thing</th><th scope="col">Count</th>' in table
    assert '<a href="/a">a</a></th><td class="num">10</td>' in table
    assert '<th scope="row">d</th>' in table  # no link where the datum has none


def test_the_line_template_draws_the_path_and_a_link_per_point() -> None:
    data = [Datum("1 May", 3, "/day/1", "3 open"), Datum("2 May", 5, "/day/2")]
    chart = charts.line_chart(data, caption="Trend", label_heading="Day", value_heading="Open")
    html = render_to_string("portal/_findings_line_chart.html", {"chart": chart})
    assert f'<path class="chart-line" d="{chart.path}">' in html
    assert html.count('class="chart-point"') == 2
    assert '<a href="/day/2" tabindex="-1" class="chart-point">' in html
    assert "<title>3 open</title>" in html
    assert "<title>2 May: 5</title>" in html
    assert '<a href="/day/1">1 May</a></th><td class="num">3</td>' in html
