"""A report as files: the page (web/templates/report/), its PDF, its numbers as JSON, and a manifest.

The page is rendered by the one Jinja2 environment of web/render.py
(autoescape on) and its charts are web/charts.py's inline SVG, so the HTML is
self-contained: it opens offline, prints, and WeasyPrint turns the very same
HTML into the PDF. A report folder is written beside its final place and
renamed into it, so a reader (the workbench's report list) never sees half a
report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from models.drift_views import drift_view
from models.levels import LEVELS
from models.warning_tables import OUTCOMES, STATUSES
from pipelines.reports.analysis import HOT_SPOT_FDR, HOT_SPOT_MIN_CALLS
from web import labels
from web.charts import bar_chart, line_chart
from web.render import render

FONT_HELP = (
    "no Chinese font is installed (`fc-list :lang=zh` lists none): the PDF will show boxes instead of Chinese; "
    "fix: install one, e.g. `apt-get install fonts-noto-cjk` or `apt-get install fonts-wqy-zenhei`, or pass --no-pdf"
)


# --------------------------------------------------------------------------------------- plain values


def plain(value: Any) -> Any:
    """``value`` as JSON: frames as lists of records, dates as ISO text, NaN and NaT as null."""
    if isinstance(value, pd.DataFrame):
        return [plain(r) for r in value.to_dict("records")]
    if isinstance(value, pd.Series):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | np.ndarray):
        return [plain(v) for v in value]
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp | dt.datetime):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows for a template: missing values as None, the data's own (naive) times as text.

    Times of the data (calls, cases, visits) are wall-clock times without a
    zone: a midnight one is shown as its day, others to the minute. Aware
    times (the warnings database's) are left for the ``local_time`` filter.
    """
    return [{k: _cell(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _cell(value: Any) -> Any:
    if _missing(value):
        return None
    if isinstance(value, pd.Timestamp) and value.tzinfo is None:
        return value.strftime("%Y-%m-%d") if value == value.normalize() else value.strftime("%Y-%m-%d %H:%M")
    return value


def _missing(value: Any) -> bool:
    if isinstance(value, list | tuple | np.ndarray):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------------- charts

NOW_SERIES, BEFORE_SERIES = "本期", "上期（按本期天数折算）"
SERIES_COLOURS = {NOW_SERIES: "#1f3b57", BEFORE_SERIES: "#9fb3c8", "上期": "#9fb3c8"}


def _compared(frame: pd.DataFrame, days: int) -> dict[str, list[float]]:
    return {
        NOW_SERIES: frame["current"].astype(float).tolist(),
        BEFORE_SERIES: (frame["previous_per_day"] * days).round(1).astype(float).tolist(),
    }


def period_charts(numbers: Mapping[str, Any], station_names: Mapping[str, str]) -> dict[str, Markup]:
    """Every chart of the period report, by the name the template places it under."""
    period = numbers["period"]
    days = period["days"]
    category = numbers["by_category"]
    county = numbers["by_county"]
    trend = numbers["trend"]
    unit = "日" if period["bucket_days"] == 1 else "周"
    warnings = numbers["warnings"]
    by_date = warnings["by_date"]
    level_series = {labels.LEVEL_NAMES[lv]: by_date[lv].astype(float).tolist() for lv in LEVELS} if len(by_date) else {}
    level_colours = {labels.LEVEL_NAMES[lv]: labels.LEVEL_COLOURS[lv] for lv in LEVELS}
    by_status = warnings["by_status"]
    by_county = warnings["by_county"]
    counties = dict(zip(county["key"], county["name"], strict=False))
    esc = numbers["escalations"]["summary"]
    hot = numbers["hot_spots"].head(10)
    repeat = numbers["repeat"]
    repeat_bins = (
        repeat["calls"].clip(upper=6).value_counts().reindex(range(3, 7), fill_value=0) if len(repeat) else None
    )
    levels = numbers["levels"]
    observed = numbers["model"]["levels_observed"]
    league = numbers["league"].head(20)
    charts = {
        "category": bar_chart(
            "争议警情分类（起）",
            [labels.category_name(k) for k in category["key"]],
            _compared(category, days),
            colours=SERIES_COLOURS,
        ),
        "county": bar_chart(
            "争议警情分县区（起）",
            list(county["name"]),
            _compared(county, days),
            colours=SERIES_COLOURS,
            horizontal=True,
        ),
        "trend": bar_chart(
            f"争议警情按{unit}（第N{unit}，自各期首日起）",
            [f"第{b}{unit}" for b in trend["bucket"]],
            {"本期": trend["current"].fillna(0).tolist(), "上期": trend["previous"].fillna(0).tolist()},
            colours=SERIES_COLOURS,
        ),
        "warnings_by_date": bar_chart(
            "预警签发（按排名日期与等级）", list(by_date["date"]), level_series, stacked=True, colours=level_colours
        ),
        "status": bar_chart(
            "本期预警当前处置状态",
            [labels.status_name(s) for s in by_status["status"]],
            {"预警数": by_status["warnings"].astype(float).tolist()},
        ),
        "loop_by_county": bar_chart(
            "分县区预警签发、处置与超期",
            [counties.get(c, c) for c in by_county["county_code"]],
            {
                "签发": by_county["issued"].astype(float).tolist(),
                "已处置": by_county["closed"].astype(float).tolist(),
                "超期": by_county["overdue"].astype(float).tolist(),
            },
            colours={"签发": "#4e79a7", "已处置": "#59a14f", "超期": "#d62728"},
        ),
        "lead_time": bar_chart(
            "民转刑案件：积分规则首次预警提前天数（户）",
            list(esc["lead_bins"]["bin"]),
            {"户数": esc["lead_bins"]["households"].astype(float).tolist()},
        ),
        "hot_spots": bar_chart(
            "争议警情上升最显著的社区（起）",
            list(hot["community"]),
            _compared(hot, days) if len(hot) else {},
            colours=SERIES_COLOURS,
            horizontal=True,
        ),
        "repeat": bar_chart(
            "重复报警户：本期争议警情次数分布（户）",
            ["3次", "4次", "5次", "6次及以上"],
            {"户数": repeat_bins.astype(float).tolist()} if repeat_bins is not None else {},
        ),
        "levels": bar_chart(
            "各预警等级实际激化率（90天内民转刑）",
            [labels.level_name(lv) if lv != "none" else "未预警" for lv in (levels["level"] if len(levels) else [])],
            {"激化率": (levels["rate"].fillna(0) * 100).round(2).tolist()} if len(levels) else {},
            unit="%",
        )
        if len(levels)
        else bar_chart(
            "各预警等级实际激化率（模型回测，留出期）",
            [labels.level_name(r["level"]) if r["level"] != "none" else "未预警" for r in observed],
            {"激化率": [round((r.get("rate") or 0) * 100, 2) for r in observed]} if observed else {},
            unit="%",
        ),
        "league": bar_chart(
            "派出所考评得分（前20名）",
            [station_names.get(s, s) for s in league["station_id"]],
            {"得分": league["score"].astype(float).tolist()} if len(league) else {},
            horizontal=True,
        ),
    }
    return charts


def incident_charts(numbers: Mapping[str, Any]) -> dict[str, Markup]:
    """The special analysis's charts: the rules' points before the incident, and calls per month."""
    timeline = numbers["timeline"]
    days = sorted(timeline["day"].unique()) if len(timeline) else []
    series = {
        h: timeline[timeline["household_id"] == h].sort_values("day")["points"].round(1).tolist()
        for h in list(dict.fromkeys(timeline["household_id"]))[:6]
    }
    calls = numbers["calls"]
    before = calls[~calls["after"]] if len(calls) else calls
    months = pd.to_datetime(before["received_at"]).dt.strftime("%Y-%m") if len(before) else pd.Series([], dtype=object)
    table = pd.crosstab(months, before["household_id"]) if len(before) else pd.DataFrame()
    return {
        "points": line_chart(
            "积分规则得分（事发前90天，每日早晨）",
            [pd.Timestamp(d).strftime("%m-%d") for d in days],
            series,
        ),
        "calls": bar_chart(
            "涉事户事发前报警（按月）",
            list(table.index),
            {str(h): table[h].astype(float).tolist() for h in table.columns},
            stacked=True,
        ),
    }


# --------------------------------------------------------------------------------------- pages


def period_page(
    numbers: Mapping[str, Any],
    city_names: Mapping[str, Mapping[str, str]],
    provenance: Mapping[str, Any],
    deadline_hours: Mapping[str, int],
) -> str:
    """The period report's HTML (``deadline_hours``: the setting the loop's deadlines came from)."""
    stations = city_names["stations"]
    return render(
        "report/period.html",
        n=numbers,
        charts=period_charts(numbers, stations),
        rows={
            "category": records(numbers["by_category"]),
            "county": records(numbers["by_county"]),
            "trend": records(numbers["trend"]),
            "by_date": records(numbers["warnings"]["by_date"]),
            "by_status": records(numbers["warnings"]["by_status"]),
            "by_county": records(numbers["warnings"]["by_county"]),
            "by_level": records(numbers["warnings"]["by_level"]),
            "escalations": records(numbers["escalations"]["table"]),
            "lead_bins": records(numbers["escalations"]["summary"]["lead_bins"]),
            "hot_spots": records(numbers["hot_spots"].head(20)),
            "repeat": records(numbers["repeat"].head(50)),
            "levels": records(numbers["levels"]),
            "league": records(numbers["league"]),
        },
        stations=stations,
        counties=city_names["counties"],
        deadline_hours=dict(deadline_hours),
        min_calls=HOT_SPOT_MIN_CALLS,
        fdr=HOT_SPOT_FDR,
        levels=LEVELS,
        statuses=STATUSES,
        outcomes=OUTCOMES,
        prov=provenance,
        drift=drift_view(numbers.get("drift")),  # models/drift_views.py
    )


def incident_page(numbers: Mapping[str, Any], provenance: Mapping[str, Any]) -> str:
    """The special analysis's HTML."""
    timeline = numbers["timeline"]
    day = timeline["day"].max() if len(timeline) else None
    marks = [0, 1, 7, 14, 30, 60, 90]
    levels_at = []
    for h in dict.fromkeys(timeline["household_id"]):
        own = timeline[timeline["household_id"] == h].set_index("day")
        levels_at.append(
            {
                "household_id": h,
                "levels": [own["level"].get(day - pd.Timedelta(days=m)) for m in marks],
            }
        )
    return render(
        "report/incident.html",
        n=numbers,
        charts=incident_charts(numbers),
        rows={
            "cases": records(numbers["cases"]),
            "parties": records(numbers["parties"]),
            "calls": records(numbers["calls"]),
            "visits": records(numbers["visits"]),
            "lead_times": records(numbers["lead_times"]),
            "related": records(numbers["related"]),
            "warnings": records(numbers["warnings"]),
            "events": records(numbers["events"]),
            "levels_at": levels_at,
        },
        marks=marks,
        prov=provenance,
    )


# --------------------------------------------------------------------------------------- files


def cjk_font_missing() -> bool:
    """Whether fontconfig lists no Chinese font (then the PDF shows boxes); False when fc-list is not there."""
    try:
        listed = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return not listed.stdout.strip()


def write_pdf(html: str, path: Path) -> None:
    """The page as a PDF through WeasyPrint (its many layout warnings silenced: they are not the reader's business)."""
    for name in ("weasyprint", "fontTools", "fontTools.subset", "fontTools.ttLib"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from weasyprint import HTML

    HTML(string=html, base_url=str(path.parent)).write_pdf(str(path))


def _digest(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def write_report(
    out_root: Path,
    name: str,
    html: str,
    numbers: Mapping[str, Any],
    manifest: Mapping[str, Any],
    pdf: bool,
) -> Path:
    """``out_root/name/`` with report.html, report.pdf (unless ``pdf`` is False), report.json and manifest.json.

    Written into a hidden sibling first and renamed into place (an older
    report of the same name is replaced whole).
    """
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / name
    staging = out_root / f".{name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        (staging / "report.html").write_text(html, encoding="utf-8")
        (staging / "report.json").write_text(
            json.dumps(plain(numbers), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        if pdf:
            write_pdf(html, staging / "report.pdf")
        files = {p.name: _digest(p) for p in sorted(staging.iterdir())}
        full = {**manifest, "files": files}
        (staging / "manifest.json").write_text(json.dumps(plain(full), ensure_ascii=False, indent=1) + "\n", "utf-8")
        if final.exists():
            old = out_root / f".{name}-old-{os.getpid()}"
            final.rename(old)
            staging.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
