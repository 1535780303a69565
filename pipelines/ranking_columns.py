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
import pyarrow as pa
import pyarrow.compute as pc

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


ARROW_TYPES: dict[str, pa.DataType] = {
    **dict.fromkeys(STRING_COLUMNS, pa.string()),
    **dict.fromkeys(FLOAT_COLUMNS, pa.float64()),
    **dict.fromkeys(INT_COLUMNS, pa.int64()),
    **dict.fromkeys(BOOL_COLUMNS, pa.bool_()),
    **dict.fromkeys(LIST_COLUMNS, pa.list_(pa.string())),
}
"""How ranking.parquet stores each column (extra columns: as Arrow infers them)."""


def _single(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous Arrow array (Parquet pages then do not depend on how the input was chunked)."""
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _plain_lists(values: np.ndarray) -> bool:
    """Whether every cell is a ``list`` of ``str``: the common case, which Arrow converts exactly as is."""
    for value in values:
        if type(value) is not list:
            return False
        for item in value:
            if type(item) is not str:
                return False
    return True


def _list_array(values: pd.Series) -> pa.Array:
    """A list column as Arrow ``list<string>`` with :func:`_as_list`'s meaning (gaps become empty lists)."""
    cells = values.astype(object).to_numpy()
    if not _plain_lists(cells):
        cells = [_as_list(v) for v in cells]  # str, tuples, gaps, numbers: the cell-by-cell rules
    return _single(pa.array(cells, type=ARROW_TYPES[LIST_COLUMNS[0]]))


def _first_rows(columns: list[pa.Array]) -> np.ndarray:
    """Positions of the first row of each distinct combination of ``columns``' values (a gap is a value)."""
    key = np.zeros(len(columns[0]) if columns else 0, dtype=np.int64)
    for column in columns:
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        _, key = np.unique(key * (len(encoded.dictionary) + 1) + codes, return_inverse=True)
    return np.sort(np.unique(key, return_index=True)[1])


def _canonical_order(columns: dict[str, pa.Array]) -> np.ndarray:
    """Row order: station, then its warnings by rank, then its other households by id; ids must be unique.

    One sort of the ids both proves them unique (equal ids end up side by side) and ranks them;
    the rest is a numpy lexsort of small integers. A four-key Arrow sort plus a hash count of the
    distinct ids cost 1.8 s for a city's 1.15M households; this, under half of it. Byte order of
    UTF-8 is code point order, so both are the order Python's string comparison gives.
    """
    ids = columns["household_id"]
    by_id = pc.sort_indices(ids).to_numpy()
    ids_sorted = ids.take(by_id)
    if len(ids) > 1 and pc.any(pc.equal(ids_sorted.slice(1), ids_sorted.slice(0, len(ids) - 1))).as_py():
        raise ValueError("column household_id must be unique (one row per household)")
    id_rank = np.empty(len(ids), dtype=np.int64)
    id_rank[by_id] = np.arange(len(ids))
    stations = columns["station_id"].dictionary_encode()
    station_rank = np.empty(len(stations.dictionary), dtype=np.int64)
    station_rank[pc.sort_indices(stations.dictionary).to_numpy()] = np.arange(len(stations.dictionary))
    station = station_rank[stations.indices.to_numpy(zero_copy_only=False)]
    warned = columns["level"].is_valid().to_numpy(zero_copy_only=False)
    rank = np.where(warned, columns["rank_in_station"].to_numpy(zero_copy_only=False), 0)
    return np.lexsort((id_rank, rank, ~warned, station))


class CanonicalRanking:
    """A ranking checked, typed and in its canonical order, kept as Arrow columns.

    Order: station, then its warnings by rank, then its other households by id. The Parquet
    file takes every row straight from the Arrow columns (:meth:`table`); what people read
    (the CSV, the workbook, the pages) needs only the warned rows and one row per station and
    county (:meth:`light_rows`). A city has a million rows: turning each cell into a Python object
    took most of the time of writing the outputs, so only the rows a reader shows become
    Python values (:meth:`frame`). Errors name columns, never values.
    """

    def __init__(self, ranking: pd.DataFrame) -> None:
        _check_columns(ranking)
        columns: dict[str, pa.Array] = {}
        for col in STRING_COLUMNS:  # numbers become their text; every gap becomes null
            columns[col] = _single(pa.array(ranking[col].astype("string").array, type=pa.string()))
        for col in FLOAT_COLUMNS:
            try:
                values = pd.to_numeric(ranking[col], errors="raise").astype("float64").to_numpy()
            except (TypeError, ValueError):
                raise ValueError(f"column {col} must be numeric") from None
            columns[col] = pa.array(values, type=pa.float64(), from_pandas=True)  # NaN is stored as null
        for col in INT_COLUMNS:
            numbers = pd.to_numeric(ranking[col], errors="coerce")
            if numbers.isna().any() or (numbers != numbers.round()).any():
                raise ValueError(f"column {col} must hold whole numbers without gaps")
            columns[col] = pa.array(numbers.astype("int64").to_numpy(), type=pa.int64())
        for col in BOOL_COLUMNS:
            flags = ranking[col]
            if flags.isna().any():
                raise ValueError(f"column {col} must be true/false without gaps")
            columns[col] = pa.array(flags.astype(bool).to_numpy(), type=pa.bool_())
        for col in LIST_COLUMNS:
            columns[col] = _list_array(ranking[col])

        for col, allowed in [*((c, LEVELS) for c in LEVEL_COLUMNS), ("raised_by", RAISED_BY)]:
            if not set(pc.unique(columns[col]).drop_null().to_pylist()).issubset(allowed):
                raise ValueError(f"column {col} must be one of {', '.join(allowed)} or empty")
        if not set(pc.unique(columns["category"]).drop_null().to_pylist()).issubset(CATEGORIES):
            raise ValueError(f"column category must be one of {', '.join(CATEGORIES)} or empty")
        if columns["household_id"].null_count or columns["station_id"].null_count:
            raise ValueError("columns household_id and station_id must not be empty")
        self.order = _canonical_order(columns)
        self.columns = {col: columns[col].take(self.order) for col in REQUIRED_COLUMNS}
        self.extras = {
            col: ranking[col].array.take(self.order) for col in ranking.columns if col not in REQUIRED_COLUMNS
        }

    def __len__(self) -> int:
        return len(self.order)

    def table(self) -> pa.Table:
        """Every row as ranking.parquet stores them: the declared types, then extra columns as Arrow infers them."""
        arrays = [_single(self.columns[col]) for col in REQUIRED_COLUMNS]
        for col, values in self.extras.items():
            try:
                arrays.append(pa.array(pd.Series(values), from_pandas=True))
            except (pa.ArrowException, TypeError, ValueError) as exc:
                raise ValueError(f"column {col} cannot be written as Parquet ({type(exc).__name__})") from None
        fields = [pa.field(str(n), a.type) for n, a in zip([*REQUIRED_COLUMNS, *self.extras], arrays, strict=True)]
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def frame(self, rows: np.ndarray | None = None) -> pd.DataFrame:
        """Rows (positions in the canonical order; all when None) as a pandas frame of plain Python values.

        Text is ``str`` or None, lists are lists of ``str``, numbers are float64 (NaN for a gap),
        int64 and bool.
        """
        take = (lambda a: a) if rows is None else (lambda a: a.take(rows))
        out: dict[str, Any] = {}
        for col in REQUIRED_COLUMNS:
            values = take(self.columns[col])
            if col in LIST_COLUMNS:
                out[col] = pd.Series(values.to_pylist(), dtype=object)
            elif col in STRING_COLUMNS:
                out[col] = pd.Series(values.to_numpy(zero_copy_only=False), dtype=object)
            else:
                out[col] = pd.Series(values.to_numpy(zero_copy_only=False))
        frame = pd.DataFrame(out)
        for col, values in self.extras.items():
            frame[col] = take(values)
        return frame

    def light_rows(self) -> np.ndarray:
        """Positions of the rows a reader sees: every warning, and the first row of each station and county.

        Also the first row of each engine and model version, so the pages' banner and provenance
        (pipelines/pages.py) read the same values as from every row.
        """
        warned = np.flatnonzero(self.columns["level"].is_valid().to_numpy(zero_copy_only=False))
        keys = [self.columns[c] for c in ("station_id", "county_code", "engine", "model_version")]
        return np.union1d(warned, _first_rows(keys))

    def counts(self) -> dict[str, Any]:
        """The manifest's counts (pipelines/outputs.py): rows, scope, warnings per level, stations."""
        level, station = self.columns["level"], self.columns["station_id"]
        warned = level.is_valid()
        by_level = pc.value_counts(level.drop_null()).to_pylist()
        per_level = {item["values"]: item["counts"] for item in by_level}
        return {
            "rows": len(self),
            "in_scope": int(pc.sum(self.columns["in_scope"].cast(pa.int64())).as_py() or 0),
            "warnings": int(pc.sum(warned.cast(pa.int64())).as_py() or 0),
            "by_level": {lvl: int(per_level.get(lvl, 0)) for lvl in LEVELS},
            "stations": int(pc.count_distinct(station).as_py()),
            "stations_with_warnings": int(pc.count_distinct(station.filter(warned)).as_py()),
        }


def _canonical(ranking: pd.DataFrame) -> pd.DataFrame:
    """The ranking checked, typed (strings/None, lists, ints) and sorted deterministically (:class:`CanonicalRanking`).

    Order: station, then its warnings by rank, then its other households by id.
    """
    return CanonicalRanking(ranking).frame()


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
