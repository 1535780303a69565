"""The overview's charts, drawn by web/charts.py from the page's figures (inline SVG: no script, no download)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from models.levels import LEVELS
from web.charts import bar_chart, line_chart
from web.labels import LEVEL_COLOURS, LEVEL_NAMES, category_name


def overview_charts(overview: dict[str, Any], county: str | None) -> list[Markup]:
    """By level, by county (or station), by category, the 90-day dispute trend, warnings per ranking date."""
    counts = overview["counts"]
    level_colours = {LEVEL_NAMES[level]: LEVEL_COLOURS[level] for level in LEVELS}
    groups = overview["groups"]
    charts = [
        bar_chart(
            f"{overview['date']} 预警（按等级）",
            [LEVEL_NAMES[level] for level in LEVELS],
            {"预警数": [counts[level] for level in LEVELS]},
        ),
        bar_chart(
            f"{overview['date']} 预警（按{'县区' if county is None else '派出所'}）",
            [g["name"] for g in groups],
            {LEVEL_NAMES[level]: [g["levels"][level] for g in groups] for level in LEVELS},
            stacked=True,
            horizontal=True,
            colours=level_colours,
        ),
        bar_chart(
            f"{overview['date']} 预警（按纠纷类别）",
            [category_name(c) for c in overview["by_category"]],
            {"预警数": list(overview["by_category"].values())},
        ),
    ]
    trend = overview["trend"]
    if trend is not None:
        charts.append(line_chart("近90天纠纷警情（每日）", [d[5:] for d in trend.days], {"纠纷警情": trend.total}))
    per_date = overview["per_date"]
    charts.append(
        line_chart(
            "各排名日预警数（近90天）",
            [d[5:] for d in per_date["dates"]],
            {LEVEL_NAMES[level]: values for level, values in per_date["levels"].items()},
            colours=level_colours,
        )
    )
    return charts
