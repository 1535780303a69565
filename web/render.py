"""The one Jinja2 environment every page renders through: autoescape on, undefined names fail.

Autoescape is on for every template (``.html`` and ``.svg`` alike), so a household id, a
reason or a masked note can never become markup; only values already wrapped in
:class:`markupsafe.Markup` (the SVG charts of web/charts.py, built with ElementTree) pass
through unescaped. ``StrictUndefined`` turns a misspelt variable into an error in the tests
instead of an empty cell in front of a station.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from web import labels

LOCAL_ZONE = ZoneInfo("Asia/Shanghai")
"""The zone people read times in: stations and the center work on Beijing time."""


def pct(value: Any, digits: int = 1) -> str:
    """0.1234 -> '12.3%'; nothing -> ''."""
    return "" if labels.missing(value) else f"{float(value) * 100:.{digits}f}%"


def points(value: Any) -> str:
    """Rule points without a trailing '.0'."""
    if labels.missing(value):
        return ""
    text = f"{float(value):.1f}"
    return text[:-2] if text.endswith(".0") else text


def number(value: Any, digits: int = 0) -> str:
    """A count or a measure with thousands separators; nothing -> '—'."""
    if labels.missing(value):
        return "—"
    return f"{float(value):,.{digits}f}"


def hours(value: Any) -> str:
    """A duration in hours as people say it: '3.5 小时' or '2.0 天' beyond 48 hours; nothing -> '—'."""
    if labels.missing(value):
        return "—"
    h = float(value)
    return f"{h / 24:.1f} 天" if abs(h) >= 48 else f"{h:.1f} 小时"


def local_time(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An aware datetime or ISO text shown in Beijing time; naive values are taken as UTC (the store's clock)."""
    if labels.missing(value) or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(LOCAL_ZONE).strftime(fmt)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def url_part(value: Any) -> str:
    """One path segment, percent-encoded (an id never breaks out of its segment)."""
    return quote(str(value), safe="")


def finite(value: Any) -> bool:
    """Whether a number is there to show (not None/NaN/inf)."""
    try:
        return not labels.missing(value) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


FILTERS = {
    "level_name": labels.level_name,
    "category_name": labels.category_name,
    "status_name": labels.status_name,
    "outcome_name": labels.outcome_name,
    "engine_name": labels.engine_name,
    "raised_by_name": labels.raised_by_name,
    "pct": pct,
    "points": points,
    "number": number,
    "hours": hours,
    "local_time": local_time,
    "url_part": url_part,
}


@functools.cache
def environment() -> Environment:
    """The shared environment (built once per process; templates are cached by Jinja2)."""
    env = Environment(
        loader=PackageLoader("web", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "svg", "xml"), default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    env.tests["finite"] = finite
    env.globals.update(
        LEVEL_NAMES=labels.LEVEL_NAMES,
        LEVEL_COLOURS=labels.LEVEL_COLOURS,
        STATUS_NAMES=labels.STATUS_NAMES,
        OUTCOME_NAMES=labels.OUTCOME_NAMES,
        CATEGORY_NAMES=labels.CATEGORY_NAMES,
        ENGINE_NAMES=labels.ENGINE_NAMES,
        RAISED_BY_NAMES=labels.RAISED_BY_NAMES,
    )
    return env


def render(template: str, **context: Any) -> str:
    """Render one template of web/templates with ``context``."""
    return environment().get_template(template).render(**context)
