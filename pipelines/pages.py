"""The HTML pages of one date's ranking: the city center's overview and one page per station.

Plain, self-contained pages (inline CSS, no script, every value escaped) that
pipelines/outputs.py writes beside the CSV and Parquet files. Each warning
shows its published level and who raised it (规则/模型), both sides' levels and
reasons, and the household's recent calls, so a station knows why to knock.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import pandas as pd

from features.schema import CATEGORIES, CATEGORY_NAMES
from models.levels import LEVELS
from pipelines.ranking_columns import (
    ENGINE_NAMES,
    LEVEL_COLOURS,
    LIST_SEPARATOR,
    _canonical,
    _category_name,
    _level_name,
    _missing,
    _pct,
    _points,
    _raised_by_name,
    _scenario_name,
    _warnings,
)

TOP_N = 50


_CSS = """
body{font-family:"Microsoft YaHei","PingFang SC","Noto Sans CJK SC",SimSun,sans-serif;margin:24px;color:#222;
font-size:14px;line-height:1.5}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:4px 0 12px}th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top;
text-align:left}th{background:#f3f3f3}td.n{text-align:right}tr:nth-child(even) td{background:#fafafa}
.badge{display:inline-block;padding:1px 8px;border-radius:3px;color:#fff;font-weight:bold;white-space:nowrap}
.b-red{background:#d62728}.b-orange{background:#ff7f0e}.b-yellow{background:#e6b800;color:#222}
.b-blue{background:#1f77b4}.b-none{background:#999}
.banner{background:#fff3cd;border:1px solid #e0b800;padding:8px 12px;margin:8px 0;font-weight:bold}
.prov{color:#666;font-size:12px}.muted{color:#888}ul{margin:0;padding-left:18px}.totals span{margin-right:12px}
""".strip()

_NO_RULES_LEVEL = '<span class="muted">未达积分预警</span>'
_RULES_BANNER = "降级：规则引擎 — 模型不可用，本期预警由积分规则排序，不含风险概率。"


def _e(value: Any) -> str:
    return "" if _missing(value) else html.escape(str(value), quote=True)


def _badge(level: Any) -> str:
    if _missing(level):
        return '<span class="badge b-none">无</span>'
    cls = f"b-{level}" if level in LEVEL_COLOURS else "b-none"
    return f'<span class="badge {cls}">{_e(_level_name(level))}</span>'


def _ul(items: Iterable[str]) -> str:
    items = list(items)
    if not items:
        return '<span class="muted">—</span>'
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _station_href(station_id: str, prefix: str = "stations/") -> str:
    return html.escape(prefix + quote(f"{station_id}.html"), quote=True)


def _page(title: str, body: list[str]) -> str:
    head = (
        "<!DOCTYPE html>\n"
        '<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
    )
    return head + "\n".join(body) + "\n</body>\n</html>\n"


def _is_rules(frame: pd.DataFrame, manifest: Mapping[str, Any]) -> bool:
    return manifest.get("engine") == "rules" or bool((frame["engine"] == "rules").any())


def _provenance(frame: pd.DataFrame, manifest: Mapping[str, Any]) -> str:
    engine_codes = [manifest["engine"]] if manifest.get("engine") else sorted(set(frame["engine"].dropna()))
    engines = "、".join(ENGINE_NAMES.get(e, str(e)) for e in engine_codes)
    versions = manifest.get("model_version") or "、".join(sorted(set(frame["model_version"].dropna())))
    items = [
        ("引擎", engines),
        ("模型版本", versions),
        ("数据指纹", manifest.get("data_fingerprint")),
        ("代码版本", manifest.get("code_version")),
    ]
    shown = [f"{label}：{_e(value)}" for label, value in items if not _missing(value) and value != ""]
    return f'<p class="prov">{" · ".join(shown)}</p>' if shown else ""


def _level_totals(frame: pd.DataFrame) -> str:
    parts = [f"<span>{_badge(lvl)} {int((frame['level'] == lvl).sum())}</span>" for lvl in LEVELS]
    parts.append(f"<span>合计 {int(frame['level'].notna().sum())}</span>")
    return '<p class="totals">' + "".join(parts) + "</p>"


def _by_level_table(frame: pd.DataFrame, key: str, label: str, names: Mapping[Any, str], order: list[Any]) -> str:
    """Rows ``order`` (values of ``key``, shown via ``names``) x levels, with totals."""
    warned = frame[frame["level"].notna()]
    counts = warned.groupby([warned[key].fillna("__none__"), "level"]).size()
    header = f"<tr><th>{_e(label)}</th>" + "".join(f"<th>{_badge(lvl)}</th>" for lvl in LEVELS) + "<th>合计</th></tr>"
    rows = []
    for value in order:
        k = "__none__" if value is None else value
        nums = [int(counts.get((k, lvl), 0)) for lvl in LEVELS]
        cells = "".join(f'<td class="n">{n}</td>' for n in nums)
        rows.append(
            f"<tr><td>{_e(names.get(value, value) if value is not None else '未分类')}</td>{cells}"
            f'<td class="n">{sum(nums)}</td></tr>'
        )
    totals = [int((warned["level"] == lvl).sum()) for lvl in LEVELS]
    rows.append(
        "<tr><th>合计</th>"
        + "".join(f'<td class="n">{n}</td>' for n in totals)
        + f'<td class="n">{sum(totals)}</td></tr>'
    )
    return "<table>\n" + header + "\n" + "\n".join(rows) + "\n</table>"


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


def _date_of(frame: pd.DataFrame, manifest: Mapping[str, Any]) -> str:
    """The page's date: the manifest's, else the one date of the rows (empty when they disagree)."""
    dates = sorted(set(frame["date"].dropna()))
    return str(manifest.get("date") or (dates[0] if len(dates) == 1 else ""))


def render_center_page(ranking: pd.DataFrame, manifest: dict) -> str:
    """The city center's page for one date: totals, county and category summaries, top 50, stations."""
    return _center_html(_canonical(ranking), manifest)


def _center_html(frame: pd.DataFrame, manifest: Mapping[str, Any]) -> str:
    date = _date_of(frame, manifest)
    title = f"预警日报 {date}".strip()
    warned = _warnings(frame)
    body = [f"<h1>{_e(title)}</h1>"]
    if _is_rules(frame, manifest):
        body.append(f'<div class="banner">{_e(_RULES_BANNER)}</div>')
    body.append(_provenance(frame, manifest))
    body.append(
        f"<p>评估户数 {len(frame)}，其中近一年有纠纷报警 {int(frame['in_scope'].sum())} 户；"
        f"预警 {len(warned)} 户，涉及派出所 {warned['station_id'].nunique()} 个。</p>"
    )
    body += ["<h2>预警总数</h2>", _level_totals(frame)]

    counties = frame[["county_code", "county_name"]].drop_duplicates().sort_values(["county_code", "county_name"])
    county_names = {r.county_code: f"{r.county_name or ''}（{r.county_code}）" for r in counties.itertuples()}
    county_order = list(dict.fromkeys(counties["county_code"]))
    body += ["<h2>按旗县区</h2>", _by_level_table(frame, "county_code", "旗县区", county_names, county_order)]
    cat_order: list[Any] = list(CATEGORIES)
    if warned["category"].isna().any():
        cat_order.append(None)
    body += ["<h2>按纠纷类别</h2>", _by_level_table(frame, "category", "纠纷类别", CATEGORY_NAMES, cat_order)]

    top = _urgency_order(warned).head(TOP_N)
    body.append(f"<h2>全市前{TOP_N}条预警</h2>")
    if top.empty:
        body.append("<p>无预警</p>")
    else:
        rows = [
            "<tr><th>序号</th><th>等级</th><th>来源</th><th>风险概率</th><th>积分</th><th>户编号</th><th>派出所</th>"
            "<th>站内排名</th><th>旗县区</th><th>社区/村</th><th>纠纷类别</th><th>主要因素</th></tr>"
        ]
        for i, r in enumerate(top.itertuples(index=False), start=1):
            reasons = (r.rules_reasons if r.raised_by == "rules" else r.model_reasons) or r.rules_reasons
            rows.append(
                f'<tr><td class="n">{i}</td><td>{_badge(r.level)}</td><td>{_e(_raised_by_name(r.raised_by))}</td>'
                f'<td class="n">{_e(_pct(r.probability))}</td>'
                f'<td class="n">{_e(_points(r.rules_points))}</td><td>{_e(r.household_id)}</td>'
                f'<td><a href="{_station_href(r.station_id)}">{_e(r.station_name or r.station_id)}</a></td>'
                f'<td class="n">{int(r.rank_in_station)}</td><td>{_e(r.county_name)}</td><td>{_e(r.community)}</td>'
                f"<td>{_e(_category_name(r.category))}</td><td>{_e(LIST_SEPARATOR.join(reasons[:3]))}</td></tr>"
            )
        body.append("<table>\n" + "\n".join(rows) + "\n</table>")

    body.append("<h2>各派出所</h2>")
    stations = frame[["station_id", "station_name", "county_name"]].drop_duplicates("station_id")
    counts = warned.groupby(["station_id", "level"]).size()
    rows = [
        "<tr><th>派出所</th><th>旗县区</th>"
        + "".join(f"<th>{_badge(lvl)}</th>" for lvl in LEVELS)
        + "<th>合计</th><th>页面</th></tr>"
    ]
    for r in stations.sort_values("station_id").itertuples(index=False):
        nums = [int(counts.get((r.station_id, lvl), 0)) for lvl in LEVELS]
        name = f"{r.station_name or ''}（{r.station_id}）"
        link = f'<a href="{_station_href(r.station_id)}">查看</a>' if sum(nums) else '<span class="muted">无预警</span>'
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{_e(r.county_name)}</td>"
            + "".join(f'<td class="n">{n}</td>' for n in nums)
            + f'<td class="n">{sum(nums)}</td><td>{link}</td></tr>'
        )
    body.append("<table>\n" + "\n".join(rows) + "\n</table>")
    return _page(title, body)


def render_station_page(ranking: pd.DataFrame, station_id: str, manifest: dict) -> str:
    """One station's page: its warnings in rank order, model factors beside the rules' points and reasons."""
    return _station_html(_canonical(ranking), station_id, manifest)


def _station_html(frame: pd.DataFrame, station_id: str, manifest: Mapping[str, Any]) -> str:
    rows_of = frame[frame["station_id"] == station_id]
    if rows_of.empty:
        raise ValueError("station_id is not in the ranking")
    first = rows_of.iloc[0]
    date = _date_of(rows_of, manifest)
    name = first["station_name"] or station_id
    title = f"{name} 预警 {date}".strip()
    warned = _warnings(rows_of)

    body = [
        '<p><a href="../index.html">← 返回全市预警日报</a></p>',
        f"<h1>{_e(name)}（{_e(station_id)}） 预警 {_e(date)}</h1>",
        f"<p>{_e(first['county_name'])}</p>",
    ]
    if _is_rules(rows_of, manifest):
        body.append(f'<div class="banner">{_e(_RULES_BANNER)}</div>')
    body.append(_provenance(rows_of, manifest))
    body += [_level_totals(rows_of), "<h2>预警户（按站内排名）</h2>"]
    if warned.empty:
        body.append("<p>无预警</p>")
        return _page(title, body)
    rows = [
        "<tr><th>排名</th><th>等级</th><th>风险概率</th><th>户编号 / 地址编号</th><th>社区/村</th><th>纠纷类别</th>"
        "<th>模型因素</th><th>积分预警</th><th>近期报警</th><th>匹配词</th></tr>"
    ]
    for r in warned.itertuples(index=False):
        level = f"{_badge(r.level)}<br>来源：{_e(_raised_by_name(r.raised_by))}"
        if not _missing(r.threshold_level) and r.threshold_level != r.level:
            level += f'<br><span class="muted">阈值：{_e(_level_name(r.threshold_level))}（按警力容量调整）</span>'
        model = f"{_badge(r.model_level)}" if not _missing(r.model_level) else '<span class="muted">模型未预警</span>'
        model += _ul(r.model_reasons) if r.model_reasons else ""
        rules_badge = _badge(r.rules_level) if not _missing(r.rules_level) else _NO_RULES_LEVEL
        rules = f"{rules_badge} 积分 {_e(_points(r.rules_points))}"
        if not _missing(r.rules_scenario):
            rules += f"<br>{_e(_scenario_name(r.rules_scenario))}"
        if r.rules_reasons:
            rules += _ul(r.rules_reasons)
        recent = (
            f"近90天报警 {int(r.calls_90d)} 次，其中纠纷 {int(r.disputes_90d)} 次"
            f"<br>最近 {_e(r.last_call_date) or '—'}" + (_ul(r.recent_calls) if r.recent_calls else "")
        )
        rows.append(
            f'<tr><td class="n">{int(r.rank_in_station)}</td><td>{level}</td>'
            f'<td class="n">{_e(_pct(r.probability)) or "—"}</td>'
            f"<td>{_e(r.household_id)}<br>{_e(r.address_id)}</td><td>{_e(r.community)}</td>"
            f"<td>{_e(_category_name(r.category))}</td><td>{model}</td><td>{rules}</td>"
            f"<td>{recent}</td><td>{_e(LIST_SEPARATOR.join(r.matched_terms)) or '—'}</td></tr>"
        )
    body.append("<table>\n" + "\n".join(rows) + "\n</table>")
    return _page(title, body)
