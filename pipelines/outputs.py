"""One date's ranking as files, published atomically (docs/ranking-outputs.md).

``yujing rank --date D`` computes one row per scored household; this module
turns it into what the city center and the stations read:

- ``ranking.parquet``: every row, list columns kept as lists;
- ``warnings.csv``: the warned rows, Chinese headers, UTF-8 with BOM so Excel
  on a Chinese Windows desktop opens it without garbling;
- ``index.html`` (city center) and ``stations/<station_id>.html``: plain,
  self-contained pages (inline CSS, no script, every value escaped);
- ``<name>.parquet`` for each extra table the job hands over;
- ``manifest.json``: the job's manifest plus each file's size and sha256 and
  the counts.

Everything is first written and fsynced into a hidden sibling folder
``out_root/.<date>-<unique>/`` (:func:`stage_outputs`), then made visible by
swapping the symlink ``out_root/<date>`` onto it (:func:`publish`), so
readers see the old or the new complete folder and never a half-written one.
The same input gives byte-identical files: rows are sorted, nothing reads the
clock, and the only timestamps are the ones the manifest brings.

Error messages name columns and files, never values (rows hold personal data).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import html
import io
import json
import math
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.schema import CATEGORIES, CATEGORY_NAMES
from models.warning import LEVELS, load_scenarios

STRING_COLUMNS = (
    "date",
    "household_id",
    "address_id",
    "station_id",
    "station_name",
    "county_code",
    "county_name",
    "community",
    "level",
    "threshold_level",
    "category",
    "rules_level",
    "rules_scenario",
    "last_call_date",
    "engine",
    "model_version",
)
FLOAT_COLUMNS = ("probability", "rules_points")
INT_COLUMNS = ("rank_in_station", "calls_90d", "disputes_90d")
BOOL_COLUMNS = ("in_scope",)
LIST_COLUMNS = ("rules_reasons", "model_reasons", "matched_terms")

REQUIRED_COLUMNS: tuple[str, ...] = (
    "date",
    "household_id",
    "address_id",
    "station_id",
    "station_name",
    "county_code",
    "county_name",
    "community",
    "in_scope",
    "probability",
    "level",
    "threshold_level",
    "rank_in_station",
    "category",
    "rules_points",
    "rules_level",
    "rules_scenario",
    "rules_reasons",
    "model_reasons",
    "matched_terms",
    "calls_90d",
    "disputes_90d",
    "last_call_date",
    "engine",
    "model_version",
)
"""The columns of a ranking, in the order ranking.parquet stores them (extra columns follow)."""

_ARROW_TYPES: dict[str, pa.DataType] = {
    **dict.fromkeys(STRING_COLUMNS, pa.string()),
    **dict.fromkeys(FLOAT_COLUMNS, pa.float64()),
    **dict.fromkeys(INT_COLUMNS, pa.int64()),
    **dict.fromkeys(BOOL_COLUMNS, pa.bool_()),
    **dict.fromkeys(LIST_COLUMNS, pa.list_(pa.string())),
}

LEVEL_COLOURS = {"red": "#d62728", "orange": "#ff7f0e", "yellow": "#e6b800", "blue": "#1f77b4"}
LEVEL_NAMES = {"red": "红色预警", "orange": "橙色预警", "yellow": "黄色预警", "blue": "蓝色预警"}
ENGINE_NAMES = {"model": "模型", "rules": "积分规则"}
assert tuple(CATEGORY_NAMES) == CATEGORIES and tuple(LEVEL_NAMES) == LEVELS

CSV_COLUMNS: dict[str, str] = {
    "日期": "date",
    "户编号": "household_id",
    "地址编号": "address_id",
    "派出所": "station_id",
    "派出所名称": "station_name",
    "旗县区代码": "county_code",
    "旗县区": "county_name",
    "社区/村": "community",
    "预警等级": "level",
    "阈值等级": "threshold_level",
    "风险概率": "probability",
    "站内排名": "rank_in_station",
    "纠纷类别": "category",
    "模型因素": "model_reasons",
    "积分预警": "rules_level",
    "积分": "rules_points",
    "积分场景": "rules_scenario",
    "积分因素": "rules_reasons",
    "匹配词": "matched_terms",
    "近90天报警": "calls_90d",
    "近90天纠纷报警": "disputes_90d",
    "最近报警日期": "last_call_date",
    "引擎": "engine",
    "模型版本": "model_version",
}
"""Header of warnings.csv -> ranking column."""

LIST_SEPARATOR = "；"
TOP_N = 50
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_STATION_FILE = re.compile(r"^[\w-][\w.-]*$")  # \w includes CJK; no separators, no leading dot
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what Excel would read as a formula


@dataclass(frozen=True)
class Staged:
    """A fully written, fsynced publication that readers cannot see yet."""

    date: str
    path: Path
    final: Path


# --------------------------------------------------------------------- checks and canonical form


def _check_date(date: str) -> str:
    """``date`` as given, if it is a real YYYY-MM-DD day (it becomes a folder name)."""
    if not isinstance(date, str) or not _DATE.match(date):
        raise ValueError("date must be a string YYYY-MM-DD")
    try:
        dt.date.fromisoformat(date)
    except ValueError:
        raise ValueError("date must be a real calendar day YYYY-MM-DD") from None
    return date


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

    for col, allowed in (("level", LEVELS), ("threshold_level", LEVELS), ("rules_level", LEVELS)):
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


def _level_name(level: Any) -> str:
    return "" if _missing(level) else LEVEL_NAMES.get(level, str(level))


def _category_name(category: Any) -> str:
    return "" if _missing(category) else CATEGORY_NAMES.get(category, str(category))


@lru_cache(maxsize=1)
def _scenario_labels() -> dict[str, str]:
    try:
        return {name: s.label for name, s in load_scenarios().items()}
    except (OSError, ValueError):  # labels are a nicety; the raw name still says which system fired
        return {}


def _scenario_name(name: Any) -> str:
    return "" if _missing(name) else _scenario_labels().get(name, str(name))


def _excel_text(value: str) -> str:
    """A text cell Excel will not run as a formula (CSV injection): a leading = + - @ gets a quote."""
    return "'" + value if value.startswith(_FORMULA_START) else value


# --------------------------------------------------------------------- files


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> Path:
    """Write and fsync one file."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def _parquet_bytes(table: pa.Table | pd.DataFrame, name: str) -> bytes:
    """Parquet bytes of a table; Arrow's conversion errors quote cell values, so they are replaced."""
    buf = io.BytesIO()
    try:
        if isinstance(table, pd.DataFrame):
            table = pa.Table.from_pandas(table)
        pq.write_table(table, buf, compression="snappy")
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ValueError(f"table {name} cannot be written as Parquet ({type(exc).__name__})") from None
    return buf.getvalue()


def _ranking_table(frame: pd.DataFrame) -> pa.Table:
    arrays, fields = [], []
    for col in frame.columns:
        kind = _ARROW_TYPES.get(col)
        values = frame[col]
        try:
            if kind is None:  # an extra column: let Arrow infer it
                arr = pa.array(values, from_pandas=True)
            elif col in LIST_COLUMNS or col in STRING_COLUMNS:
                arr = pa.array(values.tolist(), type=kind)
            else:
                arr = pa.array(values.to_numpy(), type=kind, from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise ValueError(f"column {col} cannot be written as Parquet ({type(exc).__name__})") from None
        arrays.append(arr)
        fields.append(pa.field(str(col), arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_csv(warnings: pd.DataFrame, path: Path) -> Path:
    """The warnings as an Excel-friendly CSV: UTF-8 with BOM, CRLF, Chinese headers; returns ``path``.

    Only warned rows (``level`` set) are written, by station then rank. Lists are
    joined with "；", probability is a percentage, level and category are in Chinese.
    """
    return _write_bytes(Path(path), _csv_bytes(_canonical(warnings)))


def _csv_bytes(canonical: pd.DataFrame) -> bytes:
    frame = _warnings(canonical)
    cols: dict[str, list[str]] = {}
    for header, col in CSV_COLUMNS.items():
        values = frame[col]
        if col in ("level", "threshold_level", "rules_level"):
            cells = [_level_name(v) for v in values]
        elif col == "category":
            cells = [_category_name(v) for v in values]
        elif col == "probability":
            cells = [_pct(v) for v in values]
        elif col == "rules_points":
            cells = [_points(v) for v in values]
        elif col == "rules_scenario":
            cells = [_scenario_name(v) for v in values]
        elif col in LIST_COLUMNS:
            cells = [LIST_SEPARATOR.join(v) for v in values]
        elif col in INT_COLUMNS:
            cells = [str(int(v)) for v in values]
        else:
            cells = ["" if v is None else str(v) for v in values]
        cols[header] = [_excel_text(c) for c in cells]
    text = pd.DataFrame(cols, columns=list(CSV_COLUMNS)).to_csv(index=False, lineterminator="\r\n")
    return text.encode("utf-8-sig")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _counts(frame: pd.DataFrame) -> dict[str, Any]:
    warned = frame["level"].notna()
    return {
        "rows": len(frame),
        "in_scope": int(frame["in_scope"].sum()),
        "warnings": int(warned.sum()),
        "by_level": {lvl: int((frame["level"] == lvl).sum()) for lvl in LEVELS},
        "stations": int(frame["station_id"].nunique()),
        "stations_with_warnings": int(frame.loc[warned, "station_id"].nunique()),
    }


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _new_hidden(out_root: Path, date: str, kind: str) -> Path:
    """``out_root/.<date>-<ns>-<host>-<pid>-<kind>``: hidden, unique, and telling when and by whom it was made."""
    return out_root / f".{date}-{time.time_ns():020d}-{_host()}-{os.getpid()}-{kind}"


def stage_outputs(
    ranking: pd.DataFrame,
    out_root: Path,
    date: str,
    manifest: dict[str, Any],
    extra_tables: Mapping[str, pd.DataFrame] = {},  # read only, never mutated
) -> Staged:
    """Write one date's publication into a hidden folder beside ``out_root/<date>``; nothing is visible yet.

    On any failure the hidden folder is removed and the error re-raised, so the
    current publication and ``out_root`` are left as they were. Call
    :func:`publish` to make the result visible, or :func:`discard` to drop it.
    """
    _check_date(date)
    frame = _canonical(ranking)
    dates = set(frame["date"].dropna())
    if frame["date"].isna().any() or dates - {date}:
        raise ValueError("column date must equal the date being published in every row")
    if manifest.get("date", date) != date:
        raise ValueError("manifest date differs from the date being published")
    for name in extra_tables:
        if not isinstance(name, str) or not _TABLE_NAME.match(name) or name == "ranking":
            raise ValueError("extra table names must be [A-Za-z0-9_-]+ and not 'ranking'")
    stations = sorted(set(frame.loc[frame["level"].notna(), "station_id"]))
    bad = [s for s in stations if not _STATION_FILE.match(s)]
    if bad:
        raise ValueError("column station_id must be usable as a file name (letters, digits, _ . -)")

    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    staging = _new_hidden(out_root, date, secrets.token_hex(4))
    staging.mkdir(mode=0o755)
    try:
        _write_bytes(staging / "ranking.parquet", _parquet_bytes(_ranking_table(frame), "ranking"))
        _write_bytes(staging / "warnings.csv", _csv_bytes(frame))
        (staging / "stations").mkdir(mode=0o755)
        page_manifest = {**manifest, "date": date}
        _write_bytes(staging / "index.html", _center_html(frame, page_manifest).encode("utf-8"))
        by_station = dict(list(frame.groupby("station_id", sort=True)))
        for station in stations:
            page = _station_html(by_station[station], station, page_manifest)
            _write_bytes(staging / "stations" / f"{station}.html", page.encode("utf-8"))
        for name in sorted(extra_tables):
            _write_bytes(staging / f"{name}.parquet", _parquet_bytes(extra_tables[name], name))
        _fsync_dir(staging / "stations")

        files = {
            p.relative_to(staging).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(staging.rglob("*"))
            if p.is_file()
        }
        full = {**manifest, "date": date, "files": files, "counts": _counts(frame)}
        text = json.dumps(full, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n"
        _write_bytes(staging / "manifest.json", text.encode("utf-8"))
        _fsync_dir(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Staged(date=date, path=staging, final=out_root / date)


# --------------------------------------------------------------------- publish


@contextlib.contextmanager
def _publish_lock(out_root: Path) -> Iterator[None]:
    """One publisher at a time under ``out_root`` (the swap and the clean-up are not reentrant)."""
    with open(out_root / ".publish.lock", "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _hidden_parts(name: str, date: str) -> tuple[int, str, int] | None:
    """``(ns, host, pid)`` of one of our hidden names for ``date``, or None."""
    found = re.fullmatch(rf"\.{re.escape(date)}-(\d{{20}})-([0-9a-f]{{8}})-(\d+)-[A-Za-z0-9]+", name)
    return (int(found.group(1)), found.group(2), int(found.group(3))) if found else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _ours(path: Path, out_root: Path, date: str) -> bool:
    """Whether ``path`` is one of our hidden folders for ``date`` directly under ``out_root``."""
    return path.parent == out_root and _hidden_parts(path.name, date) is not None


def publish(staged: Staged) -> Path:
    """Make ``staged`` the visible ``out_root/<date>`` in one atomic step; returns ``out_root/<date>``.

    A temporary symlink to the staged folder is renamed over ``out_root/<date>``
    (``os.replace``: atomic on POSIX), then the previously published folder is
    removed, and so are hidden leftovers of crashed runs for this date (older
    than this one, from processes that are gone). A legacy real directory at
    ``out_root/<date>`` is first moved aside under a hidden name (the only case
    with a brief moment where the date is not visible).
    """
    date = _check_date(staged.date)
    final = Path(staged.final)
    out_root = final.parent.resolve()
    target = out_root / date
    path = out_root / Path(staged.path).name
    if final.name != date or Path(staged.path).parent.resolve() != out_root:
        raise ValueError("staged folder and target must be siblings under the same out_root")
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(f"{path}: not a complete staged publication")
    with _publish_lock(out_root):
        old: Path | None = None
        if target.is_symlink():
            old = (out_root / os.readlink(target)).resolve()
        elif target.is_dir():
            old = _new_hidden(out_root, date, "legacy")
            os.rename(target, old)
        elif target.exists():
            raise FileExistsError(f"{target}: exists and is neither a symlink nor a folder")

        link = _new_hidden(out_root, date, "link")
        os.symlink(path.name, link)  # relative: the tree stays valid when mounted elsewhere
        os.replace(link, target)
        _fsync_dir(out_root)

        if old is not None and old != path and _ours(old, out_root, date):
            _remove(old)
        mine = _hidden_parts(path.name, date)
        if mine is not None:  # leftovers of crashed runs: older, this host, process gone
            for entry in sorted(out_root.iterdir()):
                parts = _hidden_parts(entry.name, date)
                if parts is None or entry.name == path.name:
                    continue
                if parts[0] < mine[0] and parts[1] == _host() and not _alive(parts[2]):
                    _remove(entry)
    return final


def discard(staged: Staged) -> None:
    """Remove a staged publication after a failure; a folder that is already published is left alone."""
    path = Path(staged.path)
    visible = published(Path(staged.final).parent, staged.date)
    if visible is not None and visible == path.resolve():
        return
    if path.is_dir() and _hidden_parts(path.name, staged.date) is not None:
        shutil.rmtree(path, ignore_errors=True)


def published(out_root: Path, date: str) -> Path | None:
    """The folder currently visible for ``date`` (symlink resolved), or None.

    Read every file of one publication from the returned folder: it is a
    consistent snapshot until the next publish of the date replaces it.
    """
    final = Path(out_root) / _check_date(date)
    if final.is_symlink():
        target = final.resolve()
        return target if target.is_dir() else None
    return final if final.is_dir() else None


# --------------------------------------------------------------------- HTML

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
    """Warnings city-wide, most urgent first: level, probability, points, then station/rank/id for ties."""
    level_rank = {lvl: i for i, lvl in enumerate(LEVELS)}
    keys = pd.DataFrame(
        {
            "level": warned["level"].map(level_rank),
            "prob": -warned["probability"].fillna(-1.0),
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
            "<tr><th>序号</th><th>等级</th><th>风险概率</th><th>积分</th><th>户编号</th><th>派出所</th>"
            "<th>站内排名</th><th>旗县区</th><th>社区/村</th><th>纠纷类别</th><th>主要因素</th></tr>"
        ]
        for i, r in enumerate(top.itertuples(index=False), start=1):
            reasons = r.model_reasons or r.rules_reasons
            rows.append(
                f'<tr><td class="n">{i}</td><td>{_badge(r.level)}</td><td class="n">{_e(_pct(r.probability))}</td>'
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
        "<th>模型因素</th><th>积分预警</th><th>匹配词</th><th>近期报警</th></tr>"
    ]
    for r in warned.itertuples(index=False):
        level = _badge(r.level)
        if not _missing(r.threshold_level) and r.threshold_level != r.level:
            level += f'<br><span class="muted">阈值：{_e(_level_name(r.threshold_level))}（按警力容量调整）</span>'
        rules_badge = _badge(r.rules_level) if not _missing(r.rules_level) else _NO_RULES_LEVEL
        rules = f"{rules_badge} 积分 {_e(_points(r.rules_points))}"
        if not _missing(r.rules_scenario):
            rules += f"<br>{_e(_scenario_name(r.rules_scenario))}"
        if r.rules_reasons:
            rules += _ul(r.rules_reasons)
        recent = (
            f"近90天报警 {int(r.calls_90d)} 次<br>其中纠纷 {int(r.disputes_90d)} 次"
            f"<br>最近 {_e(r.last_call_date) or '—'}"
        )
        rows.append(
            f'<tr><td class="n">{int(r.rank_in_station)}</td><td>{level}</td>'
            f'<td class="n">{_e(_pct(r.probability)) or "—"}</td>'
            f"<td>{_e(r.household_id)}<br>{_e(r.address_id)}</td><td>{_e(r.community)}</td>"
            f"<td>{_e(_category_name(r.category))}</td><td>{_ul(r.model_reasons)}</td><td>{rules}</td>"
            f"<td>{_e(LIST_SEPARATOR.join(r.matched_terms)) or '—'}</td><td>{recent}</td></tr>"
        )
    body.append("<table>\n" + "\n".join(rows) + "\n</table>")
    return _page(title, body)
