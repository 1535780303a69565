"""Charts as inline SVG: bars (grouped, stacked, horizontal) and lines, with no script and no download.

A page that must open on an offline intranet and print to PDF cannot load a charting
library from the internet, and a station's browser may block scripts. SVG drawn on the
server works everywhere, prints sharply and is searchable. Every element is built with
:mod:`xml.etree.ElementTree`, which escapes every text and attribute, so a community's or
station's name can never break the markup; the result is wrapped in :class:`Markup` for the
templates. Each chart carries a ``<title>`` and ``aria-label`` (screen readers, tests) and
``data-chart`` with its title, and every bar or point its value as a ``<title>`` tooltip.

Layout is computed from the text it has to hold (an estimate: a CJK character is as wide as
the font size, a Latin one about 0.6 of it), so long county names rotate or move to the left
of horizontal bars instead of running into each other, the legend wraps instead of dropping
series, and value labels get room beside the longest bar. The same input gives the same
bytes: the published pages are hashed into the ranking's id.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
FONT = '"Microsoft YaHei","PingFang SC","Noto Sans CJK SC","WenQuanYi Zen Hei",sans-serif'
WIDTH, HEIGHT = 600, 280
EMPTY_TEXT = "本期无数据"
_LEFT, _RIGHT, _TOP = 48, 16, 34
_FONT_SIZE = 11
_ROW = 22  # px per bar row of a horizontal chart
_LEGEND_ROW = 16
_MAX_LABEL = 180  # px: longer axis labels are shortened with "…" (the full text stays in the tooltip)
_ANGLE = 40  # degrees: column labels that do not fit side by side are rotated
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# --------------------------------------------------------------------- text and numbers


def _clean(text: object) -> str:
    """Text without the control characters XML cannot hold (a stray one would break the whole page's SVG)."""
    return _NOT_XML.sub("", str(text))


def _text_width(text: str, size: float = _FONT_SIZE) -> float:
    """Estimated width in px: wide (CJK, full-width) characters take the font size, others 0.6 of it."""
    return sum(size if ord(ch) >= 0x2E80 else size * 0.6 for ch in text)


def _shorten(text: str, limit: float, size: float = _FONT_SIZE) -> str:
    """``text`` cut with "…" so that it fits ``limit`` px."""
    if _text_width(text, size) <= limit:
        return text
    out = ""
    for ch in text:
        if _text_width(out + ch + "…", size) > limit:
            break
        out += ch
    return out + "…"


def _fmt(value: float | None, unit: str = "") -> str:
    """A value as a label: thousands separators, at most two decimals; missing -> '—'."""
    if value is None or not math.isfinite(value):
        return "—"
    text = (
        f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")
    )
    return ("0" if text == "-0" else text) + unit


@dataclass(frozen=True)
class _Scale:
    """A value axis: its ends (round numbers) and the gridline values between them."""

    lo: float
    hi: float
    ticks: tuple[float, ...]

    def frac(self, value: float) -> float:
        """Where ``value`` lies between the ends, 0..1."""
        return (value - self.lo) / (self.hi - self.lo)


def _scale(values: Sequence[float], integer: bool) -> _Scale:
    """Round ends and at most six gridlines covering ``values`` and zero; whole steps for counts."""
    lo, hi = min(0.0, *values), max(0.0, *values)
    if hi - lo <= 0:
        hi = lo + 1.0
    raw = (hi - lo) / 4
    power = 10.0 ** math.floor(math.log10(raw))
    step = 10 * power
    for mult in (1, 2, 2.5, 5, 10):
        candidate = mult * power
        if candidate >= raw and (not integer or float(candidate).is_integer()):
            step = candidate
            break
    if integer:
        step = max(1.0, step)
    first, last = math.floor(round(lo / step, 9)), math.ceil(round(hi / step, 9))
    ticks = tuple(round(k * step, 9) for k in range(first, last + 1))
    return _Scale(ticks[0], ticks[-1], ticks)


def _check(labels: Sequence[str], series: Mapping[str, Sequence[float | None]]) -> dict[str, list[float | None]]:
    """Series as floats (None where a value is missing), each as long as ``labels``."""
    out: dict[str, list[float | None]] = {}
    for name, values in series.items():
        if len(values) != len(labels):
            raise ValueError(f"chart series {name!r} has {len(values)} values for {len(labels)} labels")
        clean: list[float | None] = []
        for v in values:
            try:
                number = None if v is None else float(v)
            except (TypeError, ValueError):
                raise ValueError(f"chart series {name!r} holds a value that is not a number") from None
            clean.append(number if number is not None and math.isfinite(number) else None)
        out[_clean(name)] = clean
    return out


def _is_integer(data: Mapping[str, Sequence[float | None]]) -> bool:
    return all(v is None or float(v).is_integer() for values in data.values() for v in values)


# --------------------------------------------------------------------- SVG pieces


def _svg(title: str, width: int, height: float) -> ET.Element:
    svg = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "class": "chart",
            "role": "img",
            "aria-label": title,
            "data-chart": title,
            "width": str(width),
            "height": f"{height:.0f}",
            "viewBox": f"0 0 {width} {height:.0f}",
            "font-family": FONT,
            "font-size": str(_FONT_SIZE),
        },
    )
    ET.SubElement(svg, "title").text = title
    heading = ET.SubElement(
        svg, "text", {"x": f"{width / 2:.1f}", "y": "18", "text-anchor": "middle", "font-size": "14"}
    )
    heading.text = _shorten(title, width - 16, 14)
    return svg


def _text(parent: ET.Element, x: float, y: float, text: str, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, "text", {"x": f"{x:.1f}", "y": f"{y:.1f}", **attrs})
    element.text = text
    return element


def _label(parent: ET.Element, x: float, y: float, text: str, limit: float, **attrs: str) -> None:
    """An axis label, shortened to ``limit`` px; a shortened one keeps its full text as a tooltip."""
    short = _shorten(text, limit)
    element = _text(parent, x, y, short, **attrs)
    if short != text:
        ET.SubElement(element, "title").text = text


def _legend_rows(names: Sequence[str], width: int) -> list[list[tuple[float, str]]]:
    """The legend's entries laid out in rows that fit ``width``: (x, name) per entry."""
    if len(names) < 2:
        return []
    rows: list[list[tuple[float, str]]] = [[]]
    x = float(_LEFT)
    for name in names:
        label = _shorten(name, width - _LEFT - _RIGHT - 14)
        size = 14 + _text_width(label) + 14
        if rows[-1] and x + size > width - _RIGHT:
            rows.append([])
            x = float(_LEFT)
        rows[-1].append((x, label))
        x += size
    return rows


def _legend(svg: ET.Element, rows: list[list[tuple[float, str]]], fills: Sequence[str], top: float) -> None:
    i = 0
    for r, row in enumerate(rows):
        y = top + _LEGEND_ROW * r + 11
        for x, label in row:
            attrs = {"x": f"{x:.1f}", "y": f"{y - 9:.1f}", "width": "10", "height": "10", "fill": fills[i]}
            ET.SubElement(svg, "rect", attrs)
            _text(svg, x + 14, y, label)
            i += 1


def _colours(names: Sequence[str], colours: Mapping[str, str] | Sequence[str] | None) -> list[str]:
    if isinstance(colours, Mapping):
        return [colours.get(n, PALETTE[i % len(PALETTE)]) for i, n in enumerate(names)]
    if colours:
        return [colours[i % len(colours)] for i in range(len(names))]
    return [PALETTE[i % len(PALETTE)] for i in range(len(names))]


def _markup(svg: ET.Element) -> Markup:
    return Markup(ET.tostring(svg, encoding="unicode"))


def _empty(title: str, width: int, height: float) -> Markup:
    """The chart of a period without data: its title and 本期无数据, so the page keeps its layout."""
    svg = _svg(title, width, height)
    _text(svg, width / 2, height / 2, EMPTY_TEXT, **{"text-anchor": "middle", "fill": "#888", "class": "empty"})
    return _markup(svg)


def _grid(svg: ET.Element, scale: _Scale, box: tuple[float, float, float, float], unit: str, columns: bool) -> None:
    """Gridlines with their values: horizontal lines for column and line charts, vertical ones for bar charts."""
    x0, x1, y0, y1 = box
    for value in scale.ticks:
        f = scale.frac(value)
        stroke = "#999" if value == 0 else "#e5e5e5"
        if columns:
            y = y1 - (y1 - y0) * f
            ET.SubElement(
                svg, "line", {"x1": f"{x0}", "x2": f"{x1}", "y1": f"{y:.1f}", "y2": f"{y:.1f}", "stroke": stroke}
            )
            _text(svg, x0 - 4, y + 4, _fmt(value, unit), **{"text-anchor": "end", "fill": "#666"})
        else:
            x = x0 + (x1 - x0) * f
            ET.SubElement(
                svg, "line", {"x1": f"{x:.1f}", "x2": f"{x:.1f}", "y1": f"{y0}", "y2": f"{y1}", "stroke": stroke}
            )
            _text(svg, x, y1 + 14, _fmt(value, unit), **{"text-anchor": "middle", "fill": "#666"})


def _every(count: int, room: float, need: float) -> int:
    """Show every n-th of ``count`` labels so that each gets ``need`` px when each slot has ``room``."""
    return max(1, math.ceil(need / max(room, 1e-9))) if count else 1


# --------------------------------------------------------------------- charts


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    stacked: bool = False,
    colours: Mapping[str, str] | Sequence[str] | None = None,
    horizontal: bool = False,
    unit: str = "",
    width: int = WIDTH,
    height: int | None = None,
) -> Markup:
    """Bars of series over ``labels``: grouped side by side or ``stacked``; ``horizontal`` for long names.

    Missing values (None, NaN) draw no bar and say "—" in the tooltip; negative values hang
    below the zero line (not when ``stacked``: a stack of signed parts has no honest total).
    Stacked and single-series bars show their total at the end of the bar.
    """
    title = _clean(title)
    labels = [_clean(x) for x in labels]
    data = _check(labels, series)
    names = list(data)
    fills = _colours(names, colours)
    if not labels or not names:
        return _empty(title, width, height or HEIGHT)
    if stacked and any(v is not None and v < 0 for values in data.values() for v in values):
        raise ValueError("a stacked bar chart needs values >= 0")
    totals = [sum(data[n][i] or 0.0 for n in names) for i in range(len(labels))]
    ends = totals if stacked else [v for values in data.values() for v in values if v is not None]
    scale = _scale(ends or [0.0], _is_integer(data))
    show_totals = stacked or len(names) == 1
    draw = _horizontal if horizontal else _columns
    return draw(title, labels, data, fills, scale, totals, stacked, show_totals, unit, width, height)


def _horizontal(
    title: str,
    labels: list[str],
    data: dict[str, list[float | None]],
    fills: list[str],
    scale: _Scale,
    totals: list[float],
    stacked: bool,
    show_totals: bool,
    unit: str,
    width: int,
    height: int | None,
) -> Markup:
    names = list(data)
    legend = _legend_rows(names, width)
    label_room = min(_MAX_LABEL, max(_text_width(x) for x in labels)) + 10
    value_room = max(_text_width(_fmt(t, unit)) for t in totals) + 8 if show_totals else 0
    x0 = max(_LEFT, 8 + label_room)
    x1 = width - _RIGHT - value_room - 8  # the last gridline value is centred on x1
    bottom = 22 + _LEGEND_ROW * len(legend)
    if height is None:
        height = int(_TOP + _ROW * len(labels) + bottom + 4)
    y0, y1 = float(_TOP), float(height - bottom - 4)
    svg = _svg(title, width, height)
    _grid(svg, scale, (x0, x1, y0, y1), unit, columns=False)
    band = (y1 - y0) / len(labels)
    thick = band * 0.7 / (1 if stacked else len(names))
    span = x1 - x0
    zero = x0 + span * scale.frac(0.0)
    for i, label in enumerate(labels):
        start = y0 + band * i + band * 0.15
        base = 0.0
        for j, name in enumerate(names):
            value = data[name][i]
            top_y = start + (0 if stacked else j * thick)
            if value is not None:
                a = zero + span * base / (scale.hi - scale.lo)
                b = zero + span * (base + value) / (scale.hi - scale.lo)
                box = {
                    "x": f"{min(a, b):.1f}",
                    "y": f"{top_y:.1f}",
                    "width": f"{abs(b - a):.1f}",
                    "height": f"{thick:.1f}",
                }
                rect = ET.SubElement(svg, "rect", {**box, "fill": fills[j], "data-value": _fmt(value)})
                ET.SubElement(rect, "title").text = f"{label} · {name}：{_fmt(value, unit)}"
                if stacked:
                    base += value
        centre = y0 + band * i + band / 2 + 4
        _label(svg, x0 - 6, centre, label, label_room - 10, **{"text-anchor": "end"})
        if show_totals:
            end = zero + span * max(totals[i], 0.0) / (scale.hi - scale.lo)
            _text(svg, end + 4, centre, _fmt(totals[i], unit), **{"fill": "#444", "class": "total"})
    _legend(svg, legend, fills, height - _LEGEND_ROW * len(legend) - 2)
    return _markup(svg)


def _columns(
    title: str,
    labels: list[str],
    data: dict[str, list[float | None]],
    fills: list[str],
    scale: _Scale,
    totals: list[float],
    stacked: bool,
    show_totals: bool,
    unit: str,
    width: int,
    height: int | None,
) -> Markup:
    names = list(data)
    legend = _legend_rows(names, width)
    x0, x1 = float(_LEFT), float(width - _RIGHT)
    band = (x1 - x0) / len(labels)
    widest = min(_MAX_LABEL, max(_text_width(x) for x in labels))
    rotate = widest > band * 0.9
    if rotate:  # a rotated label hangs down to the left of its column: the first one must stay inside
        x0 = max(x0, widest * math.cos(math.radians(_ANGLE)) - band / 2 + 6)
        band = (x1 - x0) / len(labels)
    every = _every(len(labels), band, 19 if rotate else widest + 6)
    tick_room = (widest * math.sin(math.radians(_ANGLE)) + 16) if rotate else 18.0
    bottom = tick_room + _LEGEND_ROW * len(legend) + 4
    if height is None:
        height = int(max(HEIGHT, _TOP + 160 + bottom))
    y0, y1 = float(_TOP + (14 if show_totals else 0)), float(height - bottom)
    svg = _svg(title, width, height)
    _grid(svg, scale, (x0, x1, y0, y1), unit, columns=True)
    thick = band * 0.7 / (1 if stacked else len(names))
    span = y1 - y0
    zero = y1 - span * scale.frac(0.0)
    for i, label in enumerate(labels):
        start = x0 + band * i + band * 0.15
        base = 0.0
        for j, name in enumerate(names):
            value = data[name][i]
            left = start + (0 if stacked else j * thick)
            if value is not None:
                a = zero - span * base / (scale.hi - scale.lo)
                size = span * value / (scale.hi - scale.lo)
                y, h = (a - size, size) if value >= 0 else (a, -size)
                box = {"x": f"{left:.1f}", "y": f"{y:.1f}", "width": f"{thick:.1f}", "height": f"{h:.1f}"}
                rect = ET.SubElement(svg, "rect", {**box, "fill": fills[j], "data-value": _fmt(value)})
                ET.SubElement(rect, "title").text = f"{label} · {name}：{_fmt(value, unit)}"
                if stacked:
                    base += value
        centre = x0 + band * i + band / 2
        if show_totals and _text_width(_fmt(totals[i], unit), 10) <= band + 4:
            top = zero - span * max(totals[i], 0.0) / (scale.hi - scale.lo)
            total = _fmt(totals[i], unit)
            attrs = {"text-anchor": "middle", "fill": "#444", "font-size": "10", "class": "total"}
            _text(svg, centre, top - 3, total, **attrs)
        if i % every:
            continue
        if rotate:
            attrs = {"text-anchor": "end", "transform": f"rotate(-{_ANGLE} {centre:.1f} {y1 + 12:.1f})"}
            _label(svg, centre, y1 + 12, label, widest, **attrs)
        else:
            _label(svg, centre, y1 + 14, label, widest, **{"text-anchor": "middle"})
    _legend(svg, legend, fills, height - _LEGEND_ROW * len(legend) - 2)
    return _markup(svg)


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    colours: Mapping[str, str] | Sequence[str] | None = None,
    unit: str = "",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Markup:
    """One line per series over ordered ``labels`` (days, weeks); every point carries its value as a tooltip.

    A missing value breaks the line there instead of pretending it was zero; only as many
    axis labels are written as fit side by side.
    """
    title = _clean(title)
    labels = [_clean(x) for x in labels]
    data = _check(labels, series)
    names = list(data)
    fills = _colours(names, colours)
    present = [v for values in data.values() for v in values if v is not None]
    if not labels or not names or not present:
        return _empty(title, width, height)
    legend = _legend_rows(names, width)
    scale = _scale(present, _is_integer(data))
    x0, x1 = float(_LEFT), float(width - _RIGHT)
    y0, y1 = float(_TOP), float(height - 24 - _LEGEND_ROW * len(legend))
    svg = _svg(title, width, height)
    _grid(svg, scale, (x0, x1, y0, y1), unit, columns=True)
    step = (x1 - x0) / max(1, len(labels) - 1)
    radius = "2.5" if len(labels) <= 60 else "1.5"
    for j, name in enumerate(names):
        points = [
            None if v is None else (x0 + i * step, y1 - (y1 - y0) * scale.frac(v)) for i, v in enumerate(data[name])
        ]
        segment: list[tuple[float, float]] = []
        for point in [*points, None]:
            if point is not None:
                segment.append(point)
                continue
            if len(segment) > 1:
                attrs = {"fill": "none", "stroke": fills[j], "stroke-width": "2"}
                ET.SubElement(svg, "polyline", {"points": " ".join(f"{x:.1f},{y:.1f}" for x, y in segment), **attrs})
            segment = []
        for point, label, value in zip(points, labels, data[name], strict=True):
            if point is None:
                continue
            x, y = point
            attrs = {"cx": f"{x:.1f}", "cy": f"{y:.1f}", "r": radius, "fill": fills[j], "data-value": _fmt(value)}
            dot = ET.SubElement(svg, "circle", attrs)
            ET.SubElement(dot, "title").text = f"{label} · {name}：{_fmt(value, unit)}"
    widest = min(_MAX_LABEL, max(_text_width(x) for x in labels))
    every = _every(len(labels), step, widest + 8)
    last = len(labels) - 1
    for i, label in enumerate(labels):
        if i % every == 0 or (i == last and last % every * step >= widest + 8):
            half = min(widest, _text_width(label)) / 2
            x = min(max(x0 + i * step, half + 4), width - half - 4)  # the end labels stay inside the chart
            _label(svg, x, y1 + 16, label, widest, **{"text-anchor": "middle", "fill": "#444"})
    _legend(svg, legend, fills, height - _LEGEND_ROW * len(legend) - 2)
    return _markup(svg)
