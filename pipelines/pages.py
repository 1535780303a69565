"""The HTML pages of one date's ranking: the city center's overview and one page per station.

This module only prepares plain data (strings, numbers, lists, and the SVG charts of
web/charts.py) from the ranking frame; the markup lives in web/templates/ranking/, rendered
through the one autoescaping Jinja2 environment of web/render.py that the workbench and the
reports use too, so a household id or a reason can never become markup and a level looks the
same everywhere. pipelines/outputs.py writes the pages beside the CSV and Parquet files.

The pages stay self-contained static files (inline CSS, no script, nothing remote, links
relative and percent-encoded) and byte-identical for the same ranking, because the
ranking's id hashes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from markupsafe import Markup

from features.schema import CATEGORIES
from models.drift_views import drift_view
from models.levels import LEVELS
from pipelines.ranking_columns import _canonical, _missing, _scenario_name, _warnings
from web import charts, labels
from web.render import render

TOP_N = 50
"""How many warnings the city page lists, most urgent first."""

UNCATEGORISED = "未分类"
UNKNOWN_COUNTY = "旗县区不详"
CHART_WIDTH = 540
"""px: two charts side by side on a 1200 px screen with its scroll bar (.charts wraps them on narrower ones)."""


def render_center_page(ranking: pd.DataFrame, manifest: Mapping[str, Any]) -> str:
    """The city center's page for one date: totals, charts, county and category summaries, top 50, stations."""
    return center_html(_canonical(ranking), manifest)


def render_station_page(ranking: pd.DataFrame, station_id: str, manifest: Mapping[str, Any]) -> str:
    """One station's page: its warnings in rank order, model factors beside the rules' points and reasons."""
    return station_html(_canonical(ranking), station_id, manifest)


def center_html(
    frame: pd.DataFrame, manifest: Mapping[str, Any], *, households: int | None = None, in_scope: int | None = None
) -> str:
    """The city page of a canonical frame (pipelines/ranking_columns.py ``_canonical``).

    The frame may hold only the rows the page reads (``CanonicalRanking.light_rows``: the warnings
    and the first row of each station and county); ``households`` and ``in_scope`` then give the
    city's totals, which those rows cannot.
    """
    return render("ranking/center.html", **center_context(frame, manifest, households=households, in_scope=in_scope))


def station_html(frame: pd.DataFrame, station_id: str, manifest: Mapping[str, Any]) -> str:
    """A station's page of a canonical frame; the frame may hold other stations' rows too."""
    return render("ranking/station.html", **station_context(frame, station_id, manifest))


# --------------------------------------------------------------------- plain values


def _text(value: Any) -> str:
    """A cell as text for a template: nothing becomes "" (Jinja2 would print ``None``)."""
    return "" if _missing(value) else str(value)


def _number(value: Any) -> float | None:
    return None if _missing(value) else float(value)


def _code(value: Any) -> str | None:
    """A level/category/raised_by code, or None (the templates' filters show None as nothing)."""
    return None if _missing(value) else str(value)


# --------------------------------------------------------------------- shared pieces


def _date_of(frame: pd.DataFrame, manifest: Mapping[str, Any]) -> str:
    """The page's date: the manifest's, else the one date of the rows (empty when they disagree)."""
    dates = sorted(set(frame["date"].dropna()))
    return str(manifest.get("date") or (dates[0] if len(dates) == 1 else ""))


def _is_rules(frame: pd.DataFrame, manifest: Mapping[str, Any]) -> bool:
    """Whether the rules engine ranked (the model was unavailable): both pages then carry the banner."""
    return manifest.get("engine") == "rules" or bool((frame["engine"] == "rules").any())


def _provenance(frame: pd.DataFrame, manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs naming what produced the ranking; empty values are left out by the template."""
    engine_codes = [manifest["engine"]] if manifest.get("engine") else sorted(set(frame["engine"].dropna()))
    versions = manifest.get("model_version") or "、".join(sorted(set(frame["model_version"].dropna())))
    return [
        ("引擎", "、".join(labels.engine_name(e) for e in engine_codes)),
        ("模型版本", _text(versions)),
        ("数据指纹", _text(manifest.get("data_fingerprint"))),
        ("代码版本", _text(manifest.get("code_version"))),
    ]


def _level_totals(frame: pd.DataFrame) -> dict[str, Any]:
    """Warnings per level (in LEVELS order) and their sum."""
    counts = [(lvl, int((frame["level"] == lvl).sum())) for lvl in LEVELS]
    return {"levels": counts, "total": int(frame["level"].notna().sum())}


def _by_level(warned: pd.DataFrame, key: str, order: Sequence[Any]) -> dict[Any, list[int]]:
    """Counts per level for each value of ``key`` in ``order`` (None: the rows where ``key`` is empty)."""
    counts = warned.groupby([warned[key].fillna("__none__"), "level"]).size()
    return {
        value: [int(counts.get(("__none__" if value is None else value, lvl), 0)) for lvl in LEVELS] for value in order
    }


def _level_table(label: str, rows: Mapping[str, list[int]], warned: pd.DataFrame) -> dict[str, Any]:
    """A name x level table with row and column totals (the column totals count every warning)."""
    totals = [int((warned["level"] == lvl).sum()) for lvl in LEVELS]
    return {
        "label": label,
        "levels": list(LEVELS),
        "rows": [{"name": name, "counts": nums, "total": sum(nums)} for name, nums in rows.items()],
        "totals": totals,
        "total": sum(totals),
    }


def _level_chart(title: str, rows: Mapping[str, list[int]], *, horizontal: bool) -> Markup:
    """Warnings per row stacked by level, in the levels' colours; no warnings -> the 本期无数据 chart."""
    names = [labels.level_name(lvl) for lvl in LEVELS]
    colours = {labels.level_name(lvl): labels.LEVEL_COLOURS[lvl] for lvl in LEVELS}
    if not any(sum(nums) for nums in rows.values()):
        return charts.bar_chart(title, [], {}, width=CHART_WIDTH)
    series = {name: [nums[i] for nums in rows.values()] for i, name in enumerate(names)}
    return charts.bar_chart(
        title, list(rows), series, stacked=True, colours=colours, horizontal=horizontal, width=CHART_WIDTH
    )


# --------------------------------------------------------------------- the city page


def _urgency_order(warned: pd.DataFrame) -> pd.DataFrame:
    """Warnings city-wide, most urgent first: level, the model's raw score, points, then station/rank/id."""
    level_rank = {lvl: i for i, lvl in enumerate(LEVELS)}
    keys = pd.DataFrame(
        {
            "level": warned["level"].map(level_rank),
            "score": -warned["score"].fillna(-float("inf")),
            "points": -warned["rules_points"].fillna(-1.0),
            "station": warned["station_id"],
            "rank": warned["rank_in_station"],
            "household": warned["household_id"],
        }
    )
    order = keys.sort_values(list(keys.columns), kind="mergesort").index
    return warned.loc[order]


def _counties(frame: pd.DataFrame) -> list[tuple[str | None, str, str]]:
    """(code, table label, chart label) of every county in the ranking, by code; rows without a code come last.

    The table names each county with its code (科尔沁区（150502）); the chart's narrower axis uses the
    name alone unless two counties share it.
    """
    pairs = frame[["county_code", "county_name"]].drop_duplicates("county_code")
    rows = []
    for r in pairs.sort_values("county_code", na_position="last").itertuples():
        code, name = _code(r.county_code), _text(r.county_name)
        rows.append((code, f"{name}（{code}）" if code else name or UNKNOWN_COUNTY, name or code or UNKNOWN_COUNTY))
    names = [short for _, _, short in rows]
    return [(code, label, short if names.count(short) == 1 else label) for code, label, short in rows]


def _top_rows(warned: pd.DataFrame) -> list[dict[str, Any]]:
    """The TOP_N most urgent warnings with the reasons of the side that raised each (first three)."""
    rows = []
    for i, r in enumerate(_urgency_order(warned).head(TOP_N).itertuples(index=False), start=1):
        reasons = (r.rules_reasons if r.raised_by == "rules" else r.model_reasons) or r.rules_reasons
        rows.append(
            {
                "index": i,
                "level": _code(r.level),
                "raised_by": _code(r.raised_by),
                "probability": _number(r.probability),
                "rules_points": _number(r.rules_points),
                "household_id": _text(r.household_id),
                "station_id": _text(r.station_id),
                "station_name": _text(r.station_name) or _text(r.station_id),
                "rank": int(r.rank_in_station),
                "county_name": _text(r.county_name),
                "community": _text(r.community),
                "category": _code(r.category),
                "reasons": list(reasons[:3]),
            }
        )
    return rows


def _station_rows(frame: pd.DataFrame, warned: pd.DataFrame) -> list[dict[str, Any]]:
    """Every station of the ranking (warned or not) with its counts per level, by station id."""
    stations = frame[["station_id", "station_name", "county_name"]].drop_duplicates("station_id")
    counts = warned.groupby(["station_id", "level"]).size()
    rows = []
    for r in stations.sort_values("station_id").itertuples(index=False):
        nums = [int(counts.get((r.station_id, lvl), 0)) for lvl in LEVELS]
        rows.append(
            {
                "id": _text(r.station_id),
                "name": _text(r.station_name),
                "county_name": _text(r.county_name),
                "counts": nums,
                "total": sum(nums),
            }
        )
    return rows


def center_context(
    frame: pd.DataFrame, manifest: Mapping[str, Any], *, households: int | None = None, in_scope: int | None = None
) -> dict[str, Any]:
    """Everything ranking/center.html shows, as plain values, from a canonical frame (totals: :func:`center_html`)."""
    date = _date_of(frame, manifest)
    warned = _warnings(frame)

    counties = _counties(frame)
    county_rows = _by_level(warned, "county_code", [code for code, _, _ in counties])
    county_table = {label: county_rows[code] for code, label, _ in counties}
    county_chart = {short: county_rows[code] for code, _, short in counties}

    cat_order: list[Any] = list(CATEGORIES)
    if warned["category"].isna().any():
        cat_order.append(None)
    cat_rows = {
        labels.category_name(cat) if cat is not None else UNCATEGORISED: nums
        for cat, nums in _by_level(warned, "category", cat_order).items()
    }
    raised_rows = {
        labels.raised_by_name(code): nums
        for code, nums in _by_level(warned, "raised_by", list(labels.RAISED_BY_NAMES)).items()
    }

    return {
        "title": f"预警日报 {date}".strip(),
        "date": date,
        "rules_banner": _is_rules(frame, manifest),
        "provenance": _provenance(frame, manifest),
        "households": len(frame) if households is None else int(households),
        "in_scope": int(frame["in_scope"].sum()) if in_scope is None else int(in_scope),
        "warnings": len(warned),
        "stations_warned": int(warned["station_id"].nunique()),
        "totals": _level_totals(frame),
        "charts": [
            _level_chart("各旗县区预警（按等级）", county_chart, horizontal=True),
            _level_chart("各纠纷类别预警（按等级）", cat_rows, horizontal=True),
            _level_chart("预警来源：积分规则 / 模型（按等级）", raised_rows, horizontal=False),
        ],
        "by_county": _level_table("旗县区", county_table, warned),
        "by_category": _level_table("纠纷类别", cat_rows, warned),
        "top_n": TOP_N,
        "top": _top_rows(warned),
        "levels": list(LEVELS),
        "stations": _station_rows(frame, warned),
        "drift": drift_view(manifest.get("drift")),  # docs/drift.md
    }


# --------------------------------------------------------------------- a station's page


def _warning_row(r: Any) -> dict[str, Any]:
    """One warned household as the station page shows it: both sides' levels and reasons, the recent calls."""
    moved = not _missing(r.threshold_level) and r.threshold_level != r.level
    return {
        "rank": int(r.rank_in_station),
        "level": _code(r.level),
        "raised_by": _code(r.raised_by),
        "threshold_level": _code(r.threshold_level) if moved else None,
        "probability": _number(r.probability),
        "household_id": _text(r.household_id),
        "address_id": _text(r.address_id),
        "community": _text(r.community),
        "category": _code(r.category),
        "model_level": _code(r.model_level),
        "model_reasons": list(r.model_reasons),
        "rules_level": _code(r.rules_level),
        "rules_points": _number(r.rules_points),
        "rules_scenario": _scenario_name(r.rules_scenario),
        "rules_reasons": list(r.rules_reasons),
        "calls_90d": int(r.calls_90d),
        "disputes_90d": int(r.disputes_90d),
        "last_call_date": _text(r.last_call_date),
        "recent_calls": list(r.recent_calls),
        "matched_terms": list(r.matched_terms),
    }


def station_context(frame: pd.DataFrame, station_id: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Everything ranking/station.html shows, as plain values: this station's rows only."""
    rows_of = frame[frame["station_id"] == station_id]
    if rows_of.empty:
        raise ValueError("station_id is not in the ranking")
    first = rows_of.iloc[0]
    date = _date_of(rows_of, manifest)
    name = _text(first["station_name"]) or station_id
    return {
        "title": f"{name} 预警 {date}".strip(),
        "date": date,
        "station_id": station_id,
        "station_name": name,
        "county_name": _text(first["county_name"]),
        "rules_banner": _is_rules(rows_of, manifest),
        "provenance": _provenance(rows_of, manifest),
        "totals": _level_totals(rows_of),
        "warnings": [_warning_row(r) for r in _warnings(rows_of).itertuples(index=False)],
    }
