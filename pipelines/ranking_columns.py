"""The columns of a daily ranking, declared once for every output that shows them.

``ranking.parquet`` (types), ``warnings.csv`` (Chinese headers), the HTML
pages, the API's ``/v1/rankings/<date>`` and the warnings database (the
``reasons`` JSON of each warning) all read this table, so a new column is added
in one place. docs/ranking-outputs.md describes each column.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.schema import CATEGORIES, CATEGORY_NAMES
from models.levels import LEVELS, RAISED_BY
from models.warning import load_scenarios
from web import labels

# The Chinese names and colours live once, in web/labels.py; re-exported for callers that import them from here.
from web.labels import ENGINE_NAMES as ENGINE_NAMES
from web.labels import LEVEL_COLOURS as LEVEL_COLOURS
from web.labels import LEVEL_NAMES as LEVEL_NAMES
from web.labels import RAISED_BY_NAMES as RAISED_BY_NAMES

Kind = Literal["string", "level", "float", "int", "bool", "list"]


@dataclass(frozen=True)
class RankingColumn:
    """One ranking column: its name, type, its header in warnings.csv (None: not in the CSV), and
    whether the API's ranking route returns it."""

    name: str
    kind: Kind
    csv: str | None
    api: bool = True


RANKING_COLUMNS: tuple[RankingColumn, ...] = (
    RankingColumn("date", "string", "日期", api=False),
    RankingColumn("household_id", "string", "户编号"),
    RankingColumn("address_id", "string", "地址编号", api=False),
    RankingColumn("station_id", "string", "派出所"),
    RankingColumn("station_name", "string", "派出所名称"),
    RankingColumn("county_code", "string", "旗县区代码"),
    RankingColumn("county_name", "string", "旗县区"),
    RankingColumn("community", "string", "社区/村", api=False),
    RankingColumn("in_scope", "bool", None, api=False),
    RankingColumn("level", "level", "预警等级"),
    RankingColumn("raised_by", "string", "预警来源"),
    RankingColumn("threshold_level", "level", "阈值等级"),
    RankingColumn("rank_in_station", "int", "站内排名"),
    RankingColumn("probability", "float", "风险概率"),
    RankingColumn("score", "float", None),
    RankingColumn("model_level", "level", "模型等级"),
    RankingColumn("category", "string", "纠纷类别"),
    RankingColumn("model_reasons", "list", "模型因素"),
    RankingColumn("rules_level", "level", "积分预警"),
    RankingColumn("rules_points", "float", "积分"),
    RankingColumn("rules_scenario", "string", "积分场景"),
    RankingColumn("rules_reasons", "list", "积分因素"),
    RankingColumn("recent_calls", "list", "近期报警"),
    RankingColumn("matched_terms", "list", "匹配词"),
    RankingColumn("calls_90d", "int", "近90天报警"),
    RankingColumn("disputes_90d", "int", "近90天纠纷报警"),
    RankingColumn("last_call_date", "string", "最近报警日期"),
    RankingColumn("engine", "string", "引擎", api=False),
    RankingColumn("model_version", "string", "模型版本", api=False),
)
"""Every column of a ranking, in the order ranking.parquet stores them (extra columns follow)."""

REQUIRED_COLUMNS: tuple[str, ...] = tuple(c.name for c in RANKING_COLUMNS)
LEVEL_COLUMNS = tuple(c.name for c in RANKING_COLUMNS if c.kind == "level")
STRING_COLUMNS = tuple(c.name for c in RANKING_COLUMNS if c.kind in ("string", "level"))
FLOAT_COLUMNS = tuple(c.name for c in RANKING_COLUMNS if c.kind == "float")
INT_COLUMNS = tuple(c.name for c in RANKING_COLUMNS if c.kind == "int")
BOOL_COLUMNS = tuple(c.name for c in RANKING_COLUMNS if c.kind == "bool")
LIST_COLUMNS = tuple(c.name for c in RANKING_COLUMNS if c.kind == "list")
CSV_COLUMNS: dict[str, str] = {c.csv: c.name for c in RANKING_COLUMNS if c.csv}
"""Header of warnings.csv -> ranking column."""
API_COLUMNS: tuple[str, ...] = tuple(c.name for c in RANKING_COLUMNS if c.api)
"""What ``GET /v1/rankings/<date>`` returns per warning."""

DB_REASON_FIELDS = (
    "raised_by",
    "rules_level",
    "rules_scenario",
    "rules_points",
    "model_level",
    "probability",
    "score",
)
"""Policy fields each stored warning carries in its ``reasons`` JSON (the table's columns stay as they were,
so an existing warnings database needs no migration)."""


def _plain(value: Any) -> Any:
    """JSON-plain scalar: NaN and missing become None, numpy numbers become Python numbers."""
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    return value


def reasons_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``reasons`` JSON of one stored warning: the policy fields, then both sides' reasons and the calls."""
    out: dict[str, Any] = {field: _plain(row.get(field)) for field in DB_REASON_FIELDS}
    out.update(
        {
            "model": list(row.get("model_reasons") or []),
            "rules": list(row.get("rules_reasons") or []),
            "calls": list(row.get("recent_calls") or []),
            "terms": list(row.get("matched_terms") or []),
        }
    )
    return out


LIST_SEPARATOR = "；"
assert tuple(CATEGORY_NAMES) == CATEGORIES and tuple(LEVEL_NAMES) == LEVELS and tuple(RAISED_BY_NAMES) == RAISED_BY


# --------------------------------------------------------------------- checks and canonical form


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _as_list(value: Any) -> list[str]:
    """A list cell as a list of strings (None / NaN become the empty list)."""
    if type(value) is list and all(type(v) is str for v in value):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value if not _missing(v)]


def _check_columns(ranking: pd.DataFrame, columns: Iterable[str] = REQUIRED_COLUMNS) -> None:
    missing = [c for c in columns if c not in ranking.columns]
    if missing:
        raise ValueError(f"ranking lacks column(s): {', '.join(missing)}")


def _canonical(ranking: pd.DataFrame) -> pd.DataFrame:
    """The ranking checked, typed (strings/None, lists, ints) and sorted deterministically.

    Order: station, then its warnings by rank, then its other households by id.
    """
    _check_columns(ranking)
    out: dict[str, Any] = {}
    for col in STRING_COLUMNS:
        text = ranking[col].astype("string")  # numbers become their text; every gap becomes <NA>
        out[col] = text.astype(object).where(text.notna(), None).to_numpy()
    for col in FLOAT_COLUMNS:
        try:
            out[col] = pd.to_numeric(ranking[col], errors="raise").astype("float64").to_numpy()
        except (TypeError, ValueError):
            raise ValueError(f"column {col} must be numeric") from None
    for col in INT_COLUMNS:
        values = pd.to_numeric(ranking[col], errors="coerce")
        if values.isna().any() or (values != values.round()).any():
            raise ValueError(f"column {col} must hold whole numbers without gaps")
        out[col] = values.astype("int64").to_numpy()
    for col in BOOL_COLUMNS:
        s = ranking[col]
        if s.isna().any():
            raise ValueError(f"column {col} must be true/false without gaps")
        out[col] = s.astype(bool).to_numpy()
    for col in LIST_COLUMNS:
        out[col] = [_as_list(v) for v in ranking[col].astype(object)]
    index = pd.RangeIndex(len(ranking))
    frame = pd.DataFrame(
        {
            c: pd.Series(out[c], index=index, dtype=object if c in STRING_COLUMNS or c in LIST_COLUMNS else None)
            for c in REQUIRED_COLUMNS
        }
    )
    extras = [c for c in ranking.columns if c not in REQUIRED_COLUMNS]
    for col in extras:
        frame[col] = ranking[col].array

    for col, allowed in [*((c, LEVELS) for c in LEVEL_COLUMNS), ("raised_by", RAISED_BY)]:
        if not set(frame[col].dropna()).issubset(allowed):
            raise ValueError(f"column {col} must be one of {', '.join(allowed)} or empty")
    if not set(frame["category"].dropna()).issubset(CATEGORIES):
        raise ValueError(f"column category must be one of {', '.join(CATEGORIES)} or empty")
    if frame["household_id"].isna().any() or frame["station_id"].isna().any():
        raise ValueError("columns household_id and station_id must not be empty")
    if frame["household_id"].duplicated().any():
        raise ValueError("column household_id must be unique (one row per household)")

    warned = frame["level"].notna()
    keys = pd.DataFrame(
        {
            "station": frame["station_id"],
            "unwarned": ~warned,
            "rank": frame["rank_in_station"].where(warned, 0),
            "household": frame["household_id"],
        }
    )
    order = keys.sort_values(["station", "unwarned", "rank", "household"], kind="mergesort").index
    return frame.loc[order].reset_index(drop=True)


def _warnings(frame: pd.DataFrame) -> pd.DataFrame:
    """Warned rows of a canonical frame, by station then rank (the canonical order already)."""
    return frame[frame["level"].notna()].reset_index(drop=True)


# --------------------------------------------------------------------- small formatters


def _pct(p: float) -> str:
    return "" if _missing(p) else f"{float(p) * 100:.1f}%"


def _points(x: float) -> str:
    if _missing(x):
        return ""
    text = f"{float(x):.1f}"
    return text[:-2] if text.endswith(".0") else text


_level_name = labels.level_name
_category_name = labels.category_name
_raised_by_name = labels.raised_by_name


@lru_cache(maxsize=1)
def _scenario_labels() -> dict[str, str]:
    try:
        return {name: s.label for name, s in load_scenarios().items()}
    except (OSError, ValueError):  # labels are a nicety; the raw name still says which system fired
        return {}


def _scenario_name(name: Any) -> str:
    return "" if _missing(name) else _scenario_labels().get(name, str(name))
