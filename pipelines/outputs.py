"""One date's ranking as files, published atomically (docs/ranking-outputs.md).

``yujing rank --date D`` computes one row per scored household; this module
turns it into what the city center and the stations read:

- ``ranking.parquet``: every row, list columns kept as lists;
- ``warnings.csv``: the warned rows, Chinese headers, UTF-8 with BOM so Excel
  on a Chinese Windows desktop opens it without garbling;
- ``warnings.xlsx``: the same rows and headers as a workbook whose id and code
  cells are text, so Excel keeps ``00000001`` and 18-digit ids as they are;
- ``index.html`` (city center) and ``stations/<station_id>.html``: plain,
  self-contained pages (inline CSS and SVG charts, no script, every value
  escaped) rendered by pipelines/pages.py from web/templates/ranking/;
- ``<name>.parquet`` for each extra table the job hands over;
- ``manifest.json``: the job's manifest plus each file's size and sha256, the
  counts, and ``ranking_id`` (a hash of the date and the files): the id the
  warnings database stores with the ranking, so a reader can tell which
  ranking the files and the rows belong to.

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
import io
import json
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.quarantine import FOLDER as QUARANTINE_FOLDER
from features.quarantine import fsync_dir as _fsync_dir
from features.quarantine import write_quarantine
from pipelines.pages import TOP_N, center_html, render_center_page, render_station_page, station_html
from pipelines.ranking_columns import (
    CATEGORY_NAMES,
    CSV_COLUMNS,
    INT_COLUMNS,
    LEVEL_COLUMNS,
    LIST_COLUMNS,
    LIST_SEPARATOR,
    REQUIRED_COLUMNS,
    CanonicalRanking,
    _canonical,
    _category_name,
    _level_name,
    _pct,
    _points,
    _raised_by_name,
    _scenario_name,
    _warnings,
)

__all__ = [
    "CATEGORY_NAMES",
    "CSV_COLUMNS",
    "REQUIRED_COLUMNS",
    "TOP_N",
    "Staged",
    "discard",
    "publish",
    "published",
    "render_center_page",
    "render_station_page",
    "stage_outputs",
    "sweep",
    "write_csv",
    "write_xlsx",
]


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_STATION_FILE = re.compile(r"^[\w-][\w.-]*$")  # \w includes CJK; no separators, no leading dot
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what Excel would read as a formula


@dataclass(frozen=True)
class Staged:
    """A fully written, fsynced publication that readers cannot see yet.

    ``ranking_id`` is the manifest's: a hash of the date and every file's sha256, equal for
    byte-identical re-runs (the warnings database stores it with the ranking's rows).
    """

    date: str
    path: Path
    final: Path
    ranking_id: str = ""


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


def _excel_text(value: str) -> str:
    """A text cell Excel will not run as a formula (CSV injection): a leading = + - @ gets a quote."""
    return "'" + value if value.startswith(_FORMULA_START) else value


# --------------------------------------------------------------------- files


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


def write_csv(warnings: pd.DataFrame, path: Path) -> Path:
    """The warnings as an Excel-friendly CSV: UTF-8 with BOM, CRLF, Chinese headers; returns ``path``.

    Only warned rows (``level`` set) are written, by station then rank. Lists are
    joined with "；", probability is a percentage, levels, ``raised_by`` and category are in Chinese.
    Columns and headers: pipelines/ranking_columns.py.
    """
    return _write_bytes(Path(path), _csv_bytes(_canonical(warnings)))


def _text_cells(frame: pd.DataFrame, col: str) -> list[str]:
    """One column of the warned rows as the text a station reads (Chinese names, joined lists, 12.3%)."""
    values = frame[col]
    if col in LEVEL_COLUMNS:
        return [_level_name(v) for v in values]
    if col == "raised_by":
        return [_raised_by_name(v) for v in values]
    if col == "category":
        return [_category_name(v) for v in values]
    if col == "probability":
        return [_pct(v) for v in values]
    if col == "rules_points":
        return [_points(v) for v in values]
    if col == "rules_scenario":
        return [_scenario_name(v) for v in values]
    if col in LIST_COLUMNS:
        return [LIST_SEPARATOR.join(v) for v in values]
    if col in INT_COLUMNS:
        return [str(int(v)) for v in values]
    return ["" if v is None else str(v) for v in values]


def _csv_bytes(canonical: pd.DataFrame) -> bytes:
    frame = _warnings(canonical)
    cols = {header: [_excel_text(c) for c in _text_cells(frame, col)] for header, col in CSV_COLUMNS.items()}
    text = pd.DataFrame(cols, columns=list(CSV_COLUMNS)).to_csv(index=False, lineterminator="\r\n")
    return text.encode("utf-8-sig")


def write_xlsx(warnings: pd.DataFrame, path: Path, date: str) -> Path:
    """The warnings as an Excel workbook beside the CSV; returns ``path`` (see :func:`_xlsx_bytes`)."""
    return _write_bytes(Path(path), _xlsx_bytes(_canonical(warnings), _check_date(date)))


def _xlsx_bytes(canonical: pd.DataFrame, date: str) -> bytes:
    """The CSV's rows and Chinese headers as one worksheet in which every text column is a *text* cell.

    Excel guesses the type of every CSV field, so digit-only ids lose their leading zeros and
    18-digit ones become 1.505e+17; in a workbook the cell type is stored, and every column the
    ranking declares as text (ids, codes, dates, levels, reasons: pipelines/ranking_columns.py) is
    written as a string. Counts, ranks and points are numbers, the probability a number shown as a
    percentage. A text cell is never a formula, so no quote prefix is needed. The workbook's
    creation time is the ranking date, so a re-run gives the same bytes.
    """
    import xlsxwriter

    frame = _warnings(canonical)
    buf = io.BytesIO()
    options = {"in_memory": True, "strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False}
    book = xlsxwriter.Workbook(buf, options)
    book.set_properties({"created": dt.datetime.fromisoformat(date), "title": f"预警 {date}"})
    sheet = book.add_worksheet("预警")
    bold = book.add_format({"bold": True})
    percent = book.add_format({"num_format": "0.0%"})
    numeric = set(INT_COLUMNS) | {"probability", "rules_points"}
    for j, (header, col) in enumerate(CSV_COLUMNS.items()):
        sheet.write_string(0, j, header, bold)
        if col in numeric:
            for i, value in enumerate(frame[col]):
                if not pd.isna(value):
                    sheet.write_number(i + 1, j, float(value), percent if col == "probability" else None)
        else:
            for i, text in enumerate(_text_cells(frame, col)):
                if text:
                    sheet.write_string(i + 1, j, text)
        sheet.set_column(j, j, min(60, max(8, 2 * len(header) + 2)))
    sheet.freeze_panes(1, 0)
    if len(frame):
        sheet.autofilter(0, 0, len(frame), len(CSV_COLUMNS) - 1)
    book.close()
    return buf.getvalue()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


PARTS_PREFIX = ".parts-"
"""A cluster run's scratch folder ``out_root/.parts-<ns>-<host>-<pid>/`` holds its workers' parts until the driver
published them (pipelines/cluster_ranking.py); :func:`sweep` removes those a killed run left."""


def new_parts_folder(out_root: Path) -> Path:
    """A new private scratch folder for a cluster run's parts, beside the publications (on the same disk)."""
    out_root.mkdir(parents=True, exist_ok=True)
    path = out_root / f"{PARTS_PREFIX}{time.time_ns():020d}-{_host()}-{os.getpid()}"
    path.mkdir(mode=0o700)
    return path


def _new_hidden(out_root: Path, date: str, kind: str) -> Path:
    """``out_root/.<date>-<ns>-<host>-<pid>-<kind>``: hidden, unique, and telling when and by whom it was made."""
    return out_root / f".{date}-{time.time_ns():020d}-{_host()}-{os.getpid()}-{kind}"


def _write_parquet(staging: Path, name: str, table: pa.Table | pd.DataFrame | Callable[[], pa.Table]) -> Path:
    """``staging/<name>.parquet`` of ``table`` (or of what it builds: the writer thread builds it too)."""
    return _write_bytes(staging / f"{name}.parquet", _parquet_bytes(table() if callable(table) else table, name))


def _write_readable(
    staging: Path, frame: pd.DataFrame, stations: list[str], date: str, manifest: dict[str, Any], counts: dict
) -> None:
    """What people read: the warnings as CSV and workbook, the center's page and one page per station."""
    _write_bytes(staging / "warnings.csv", _csv_bytes(frame))
    _write_bytes(staging / "warnings.xlsx", _xlsx_bytes(frame, date))
    (staging / "stations").mkdir(mode=0o755)
    page_manifest = {**manifest, "date": date}
    center = center_html(frame, page_manifest, households=counts["rows"], in_scope=counts["in_scope"])
    _write_bytes(staging / "index.html", center.encode("utf-8"))
    by_station = dict(list(frame.groupby("station_id", sort=True)))
    for station in stations:
        page = station_html(by_station[station], station, page_manifest)
        _write_bytes(staging / "stations" / f"{station}.html", page.encode("utf-8"))


def stage_outputs(
    ranking: pd.DataFrame,
    out_root: Path,
    date: str,
    manifest: dict[str, Any],
    extra_tables: Mapping[str, pd.DataFrame] = {},  # read only, never mutated
    quarantine: Mapping[str, pd.DataFrame] = {},  # read only: the rows the load rejected, per table
) -> Staged:
    """Write one date's publication into a hidden folder beside ``out_root/<date>``; nothing is visible yet.

    On any failure the hidden folder is removed and the error re-raised, so the
    current publication and ``out_root`` are left as they were. Call
    :func:`publish` to make the result visible, or :func:`discard` to drop it.
    """
    _check_date(date)
    canonical = CanonicalRanking(ranking)
    dates = canonical.columns["date"]
    if dates.null_count or set(pc.unique(dates).to_pylist()) - {date}:
        raise ValueError("column date must equal the date being published in every row")
    if manifest.get("date", date) != date:
        raise ValueError("manifest date differs from the date being published")
    for name in extra_tables:
        if not isinstance(name, str) or not _TABLE_NAME.match(name) or name == "ranking":
            raise ValueError("extra table names must be [A-Za-z0-9_-]+ and not 'ranking'")
    # what the CSV, the workbook and the pages read: the warned rows, one row per station and county
    frame = canonical.frame(canonical.light_rows())
    stations = sorted(set(frame.loc[frame["level"].notna(), "station_id"]))
    bad = [s for s in stations if not _STATION_FILE.match(s)]
    if bad:
        raise ValueError("column station_id must be usable as a file name (letters, digits, _ . -)")
    counts = canonical.counts()

    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    staging = _new_hidden(out_root, date, secrets.token_hex(4))
    staging.mkdir(mode=0o755)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet") as writer:
            # The Parquet files (a million rows each: Arrow's C++, which releases the GIL) are encoded on
            # the second core while this thread renders what people read (Python: CSV, workbook, pages).
            # Their bytes do not depend on it; every file is written before the folder is sealed.
            tables = [("ranking", canonical.table), *((name, extra_tables[name]) for name in sorted(extra_tables))]
            parquet = [writer.submit(_write_parquet, staging, name, table) for name, table in tables]
            _write_readable(staging, frame, stations, date, manifest, counts)
            for done in parquet:
                done.result()  # the first failure is raised here, and the staging removed below
        _fsync_dir(staging / "stations")
        write_quarantine(quarantine, staging / QUARANTINE_FOLDER)  # hashed into the manifest like every file

        ranking_id = seal(staging, date, manifest, counts)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Staged(date=date, path=staging, final=out_root / date, ranking_id=ranking_id)


def seal(staging: Path, date: str, manifest: Mapping[str, Any], counts: Mapping[str, Any]) -> str:
    """Hash every staged file into ``manifest.json``, write it last and fsync: the staged folder is then whole.

    Both publishers (:func:`stage_outputs`, pipelines/gather.py) end with this, so a city's and a
    province's manifests list their files, counts and ranking id the same way. Returns the ranking id.
    """
    files = {
        p.relative_to(staging).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(staging.rglob("*"))
        if p.is_file()
    }
    ranking_id = _ranking_id(date, files)
    full = {**manifest, "date": date, "files": files, "counts": counts, "ranking_id": ranking_id}
    text = json.dumps(full, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n"
    _write_bytes(staging / "manifest.json", text.encode("utf-8"))
    _fsync_dir(staging)
    return ranking_id


def _ranking_id(date: str, files: Mapping[str, Mapping[str, Any]]) -> str:
    """A hash of the date and every file's sha256: names one ranking in the files and the database alike."""
    listing = json.dumps({"date": date, "files": {k: v["sha256"] for k, v in files.items()}}, sort_keys=True)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


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


def sweep(out_root: Path) -> list[str]:
    """Remove hidden folders that runs killed on this host left under ``out_root``, for every date; returns their names.

    A killed cluster run's parts folder (:data:`PARTS_PREFIX`) is one of them, whichever way the next run ranks.

    Only folders made by a process that no longer exists and that no date's symlink shows are
    removed: a live run's staging and every published folder stay. Call it after the warnings
    database recovered (``WarningStore.recover``), which drops the pending rows of these folders.
    """
    out_root = Path(out_root)
    if not out_root.is_dir():
        return []
    removed: list[str] = []
    with _publish_lock(out_root):
        visible = {(out_root / os.readlink(p)).resolve() for p in out_root.iterdir() if p.is_symlink()}
        for entry in sorted(out_root.iterdir()):
            found = re.fullmatch(r"\.(\d{4}-\d{2}-\d{2})-\d{20}-([0-9a-f]{8})-(\d+)-[A-Za-z0-9]+", entry.name)
            found = found or re.fullmatch(rf"{re.escape(PARTS_PREFIX)}\d{{20}}-()([0-9a-f]{{8}})-(\d+)", entry.name)
            if found is None or found.group(2) != _host() or _alive(int(found.group(3))):
                continue
            if not entry.is_symlink() and entry.resolve() in visible:
                continue  # a temporary link of a killed publish is removed; a shown folder never
            _remove(entry)
            removed.append(entry.name)
    return removed


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
