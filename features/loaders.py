"""Load contract tables from Parquet or CSV without losing a row.

Chinese systems often export CSV in GB18030/GBK, with Chinese date formats and
the odd broken line. The loaders read what they can, coerce each column to
the contract's type, and move every row that does not fit into a quarantine
table together with the reason, so that for every load
``read == accepted + quarantined``. Reasons name the column and the check,
never the value (values are personal data).

A file that cannot be read at all, lacks a required column, or holds no
row of a required table, is a :class:`DataContractError` whose one-line
message names the file, the column and the fix. CSV files are split into
records by :mod:`features.csv_reader`, which quarantines a broken line on its
own (with its raw text) and keeps reading the lines after it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc

from features.csv_reader import LINE, RAW, REASON, ROW, CsvError, NoHeader, broken_frame, read_csv_table
from features.partitions import Partition, read_partitioned, table_path
from features.schema import DTYPES, TABLES, Col, Table
from features.utf8_bytes import HASH_BASE, utf8_bytes

__all__ = [
    "LINE",
    "OPTIONAL_TABLES",
    "RAW",
    "REASON",
    "ROW",
    "DataContractError",
    "Dataset",
    "DateWindow",
    "LoadResult",
    "export_date_of",
    "find_table_file",
    "load_dataset",
    "load_table",
    "validate_frame",
    "write_quarantine",
]

OPTIONAL_TABLES = frozenset({"relations", "cases", "visits"})
"""Tables a center may export empty (header only, or a zero-byte file): not every system keeps links between
persons, cases or visits, and the pipeline runs without them (features are zero). Every other table must hold
rows: an empty registry or incident table is a broken export, and ranking from it would publish nothing."""

REASON_SEPARATOR = "; "
"""Between the reasons of one quarantined row."""

_TRUE = {"true", "t", "1", "yes", "y", "是"}
_FALSE = {"false", "f", "0", "no", "n", "否"}
_CN_DATE = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日")
_CN_MARKS = "[年月日时點点分秒]"
_CN_TIME = re.compile(r"(\d{1,2})[时點点:](\d{1,2})(?:[分:](\d{1,2})秒?)?分?")


class DataContractError(ValueError):
    """A file that cannot be loaded at all: unreadable, or missing a column."""


@dataclass(frozen=True)
class DateWindow:
    """When recorded events may have happened: from ``earliest`` (event columns) to the end of the export date.

    A call dated 2099 or 1900 is a typo or an export's placeholder; accepted,
    it would make "the day after the latest call" 2099 and publish an empty
    ranking. Such rows are quarantined with a reason instead.
    """

    earliest: pd.Timestamp
    export_date: pd.Timestamp
    """Midnight of the export day; rows up to the end of that day are accepted."""

    @property
    def end(self) -> pd.Timestamp:
        return self.export_date + pd.Timedelta(days=1)

    @classmethod
    def for_folder(cls, root: Path, earliest: str, export_date: str | None = None) -> DateWindow:
        """The window of one export folder: its manifest's ``export_date``, else ``export_date``, else today."""
        stated = export_date_of(root) or export_date
        day = _parse_day(stated, "export_date") if stated else pd.Timestamp.now().normalize()
        return cls(_parse_day(earliest, "earliest_event_date"), day)


def _parse_day(text: str, name: str) -> pd.Timestamp:
    try:
        day = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise DataContractError(f"{name} {text!r} is not a date; fix: use YYYY-MM-DD") from None
    if pd.isna(day) or day != day.normalize():
        raise DataContractError(f"{name} {text!r} is not a day; fix: use YYYY-MM-DD")
    return day


def export_date_of(root: Path) -> str | None:
    """The ``export_date`` an export's ``manifest.json`` states (the simulator writes one), or None."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("export_date")
    except (OSError, ValueError, AttributeError):
        raise DataContractError(f"{path}: not a readable JSON object; fix: re-export it or remove it") from None
    return str(value) if value else None


@dataclass
class LoadResult:
    """One table as loaded: what passed, what was quarantined, and why."""

    table: str
    source: str
    data: pd.DataFrame
    quarantine: pd.DataFrame
    read: int

    @property
    def accepted(self) -> int:
        return len(self.data)

    @property
    def quarantined(self) -> int:
        return len(self.quarantine)

    def reasons(self) -> dict[str, int]:
        """How many quarantined rows give each reason (a row with two reasons counts for both), most frequent first."""
        counts: Counter[str] = Counter()
        for joined in self.quarantine[REASON] if self.quarantined else []:
            counts.update(str(joined).split(REASON_SEPARATOR))
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def counts(self) -> dict[str, object]:
        """``read``, ``accepted``, ``quarantined`` and the count per reason: what manifests and reports record."""
        return {
            "read": self.read,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "reasons": self.reasons(),
        }

    def summary(self) -> str:
        """One line of counts, then one indented line per quarantine reason (counts, lines and columns, no values)."""
        head = (
            f"{self.table}: read {self.read:,} = accepted {self.accepted:,} "
            f"+ quarantined {self.quarantined:,} ({self.source})"
        )
        return "\n".join([head, *(f"  {n:,} × {reason}" for reason, n in self.reasons().items())])


@dataclass
class Dataset:
    """All contract tables of one folder, as loaded."""

    root: Path
    tables: dict[str, LoadResult] = field(default_factory=dict)
    window: DateWindow | None = None

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name].data

    def summary(self) -> str:
        return "\n".join(r.summary() for r in self.tables.values())


def _read_any(
    path: Path, encoding: str | None, spec: Table, partition: Partition | None = None
) -> tuple[pd.DataFrame, pd.Series | None, pd.DataFrame]:
    """The file's rows (index: 1-based row number), the line each CSV row starts on, and CSV lines broken on read.

    A partition folder (:mod:`features.partitions`) gives the rows of the
    selected partition's files, numbered 1.. in their sorted-path order.
    """
    if path.is_dir():
        frame = read_partitioned(path, partition)
        if frame.empty and not len(frame.columns):  # no file selected: the caller decides if that is allowed
            frame = pd.DataFrame(columns=list(spec.columns), dtype="str")
        frame.index = pd.RangeIndex(1, len(frame) + 1)
        return frame, None, broken_frame([])
    if not path.is_file():
        raise DataContractError(f"{path}: no such file; fix: check the path or run `yujing simulate`")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types for a broken file
            raise DataContractError(
                f"{path}: not a readable Parquet file ({type(exc).__name__}); fix: re-export it"
            ) from None
        frame.index = pd.RangeIndex(1, len(frame) + 1)
        return frame, None, broken_frame([])
    if suffix in (".csv", ".txt"):
        try:
            table = read_csv_table(path, encoding)
        except NoHeader:
            if spec.name in OPTIONAL_TABLES:
                return pd.DataFrame(columns=list(spec.columns), dtype="str"), None, broken_frame([])
            raise DataContractError(
                f"{path}: empty file (0 bytes or no header row), but table {spec.name!r} is required; "
                f"fix: export the table with its header and its rows (see docs/data-contract.md)"
            ) from None
        except CsvError as exc:
            raise DataContractError(f"{path}: {exc}") from None
        return table.frame, table.lines, table.broken
    raise DataContractError(f"{path}: unsupported file type {suffix!r}; fix: use .parquet or .csv")


def _parse_cn_datetime(text: pd.Series) -> pd.Series:
    """``2024年4月11日 21时26分17秒`` -> ``2024-4-11 21:26:17``; other text untouched.

    Only values with a Chinese date or time character are rewritten: the
    rewrite runs in Python per value, and on ISO text it took half the load
    time of a 300,000-row table for nothing.
    """
    chinese = text.str.contains(_CN_MARKS, regex=True, na=False).to_numpy(bool)
    if not chinese.any():
        return text
    part = text[chinese].str.replace(_CN_DATE, r"\1-\2-\3", regex=True)
    part = part.str.replace(_CN_TIME, lambda m: f"{m[1]}:{m[2]}:{m[3] or '00'}", regex=True)
    out = text.copy()
    out[chinese] = part
    return out


def _coerce(values: pd.Series, col: Col) -> tuple[pd.Series, pd.Series]:
    """Cast a column to its contract type; returns the values and a mask of failed casts."""
    if col.kind == "str":
        if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
            return _strip_arrow(values), pd.Series(False, index=values.index)
        if values.dtype == object or pd.api.types.is_string_dtype(values):
            out = values.astype("str").where(values.notna(), None)
            out = out.str.strip()
            out = out.where(out != "", None)
        else:
            out = values.astype("str").where(values.notna(), None)
        return out.astype("str").where(out.notna(), None), pd.Series(False, index=values.index)

    present = values.notna()
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        stripped = values.astype("str").str.strip()
        present = values.notna() & (stripped != "")
    else:
        stripped = values

    if col.kind in ("int", "float"):
        numbers = pd.to_numeric(stripped.where(present), errors="coerce")
        failed = present & numbers.isna()
        if col.kind == "int":
            fractional = numbers.notna() & (numbers != numbers.round())
            failed |= fractional
            numbers = numbers.where(~fractional).astype("Int64")
        return numbers, failed
    if col.kind == "bool":
        if pd.api.types.is_bool_dtype(values):
            return values.astype(bool), pd.Series(False, index=values.index)
        lowered = stripped.astype("str").str.lower()
        out = pd.Series(pd.NA, index=values.index, dtype="boolean")
        out[lowered.isin(_TRUE)] = True
        out[lowered.isin(_FALSE)] = False
        failed = present & out.isna()
        return out, failed
    # datetime
    if pd.api.types.is_datetime64_any_dtype(values):
        return _in_nanosecond_range(values, present)
    parsed = pd.to_datetime(
        _parse_cn_datetime(stripped.astype("str").where(present, None)), errors="coerce", format="mixed"
    )
    return _in_nanosecond_range(parsed, present)


def _strip_arrow(values: pd.Series) -> pd.Series:
    """Arrow text stripped of surrounding whitespace, empty text missing: the object path below in two kernels.

    Parquet exports arrive as Arrow strings; the pandas path (astype, where, strip, where, astype)
    copies 2.87M names five times for the same values.
    """
    arr = pyarrow.chunked_array(pyarrow.array(values, from_pandas=True))
    trimmed = pc.utf8_trim_whitespace(arr)
    kept = pc.if_else(pc.equal(trimmed, ""), pyarrow.scalar(None, trimmed.type), trimmed)
    return pd.Series(pd.array(kept, dtype="str"), index=values.index)


def _in_nanosecond_range(values: pd.Series, present: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Datetimes as ``datetime64[ns]``; a value it cannot hold (9999-12-31, an export's "unknown") fails the row.

    Parquet keeps microseconds and parsing may give seconds, so 9999-12-31 or
    1600-01-01 arrive intact; casting them to nanoseconds would raise
    ``OutOfBoundsDatetime`` and stop the whole load for one cell.
    """
    values = pd.Series(values, index=present.index)
    if values.dtype == object:  # mixed parsing can leave Python datetimes; unparseable is NaT already
        values = pd.to_datetime(values, errors="coerce")
    outside = values.notna() & ((values < pd.Timestamp.min) | (values > pd.Timestamp.max))
    kept = values.where(~outside)
    return kept.astype("datetime64[ns]"), (present & kept.isna())


def validate_frame(
    frame: pd.DataFrame, table: Table, source: str, window: DateWindow | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a frame into rows that meet the contract and quarantined rows with reasons.

    The frame's index must be the 1-based source row number. With ``window``,
    datetimes after the export date, and event times before its earliest day,
    are quarantined too.
    """
    missing = [c for c in table.columns if c not in frame.columns]
    if missing:
        raise DataContractError(
            f"{source}: missing column {missing[0]!r} of table {table.name!r}"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; "
            f"fix: the export must have columns {', '.join(table.columns)} (see docs/data-contract.md)"
        )
    raw = frame
    reasons: dict[int, list[str]] = {}

    def flag(mask: pd.Series, reason: str) -> None:
        for row in mask.index[mask.to_numpy()]:
            reasons.setdefault(int(row), []).append(reason)

    typed = pd.DataFrame(index=frame.index)
    for name, col in table.columns.items():
        typed[name], failed = _coerce(frame[name], col)
        flag(failed, f"{name}: not a valid {col.kind}")
        if col.kind == "bool":  # pandera checks plain bool; flag gaps here, then fill them for the quarantined rows
            flag(typed[name].isna() & ~failed & (not col.nullable), f"{name}: fails not_nullable")
            typed[name] = typed[name].fillna(False).astype(bool)
        if col.kind == "datetime" and window is not None:
            flag(typed[name] >= window.end, f"{name}: after the export date {window.export_date:%Y-%m-%d}")
            if col.event:
                flag(typed[name] < window.earliest, f"{name}: before {window.earliest:%Y-%m-%d}, not plausible")

    if table.key and not _surely_unique(typed, table.key):
        flag(
            typed.duplicated(list(table.key), keep="first"),
            f"duplicate key ({', '.join(table.key)}) of an earlier row",
        )

    candidates = typed.drop(index=list(reasons)) if reasons else typed
    try:
        if not _surely_valid(candidates, table):
            table.schema().validate(candidates, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        row_level = cases[cases["index"].notna()]
        if len(row_level) < len(cases):
            column_level = cases[cases["index"].isna()].iloc[0]
            raise DataContractError(
                f"{source}: column {column_level['column']!r} fails {column_level['check']} for the whole table; "
                "fix: check the export against docs/data-contract.md"
            ) from None
        for row, column, check in row_level[["index", "column", "check"]].itertuples(index=False):
            reasons.setdefault(int(row), []).append(f"{column}: fails {check}")

    bad = sorted(reasons)
    accepted = (typed.drop(index=bad) if bad else typed).reset_index(drop=True)
    rows = raw.loc[bad] if bad else raw.iloc[:0]  # .loc[[]] makes Arrow concatenate every column's chunks
    quarantine = rows.astype("str").where(rows.notna(), None).copy()
    quarantine.insert(0, REASON, [REASON_SEPARATOR.join(dict.fromkeys(reasons[r])) for r in bad])
    quarantine.insert(0, ROW, bad)
    return accepted, quarantine.reset_index(drop=True)


def _surely_unique(typed: pd.DataFrame, key: tuple[str, ...]) -> bool:
    """True when a one-column text key holds no missing and no repeated value; False when unsure.

    Equal texts have equal hashes, so 64-bit hashes of the UTF-8 bytes that are all different
    prove the keys are (a pandas or Arrow hash table over 2.87M strings took 4-7 s on a loaded
    machine; this takes a fraction of a second). A repeated hash, a missing key, or any other
    kind of key answers False, and ``duplicated`` then finds the rows as before.
    """
    if len(key) != 1 or str(typed[key[0]].dtype) != "str":
        return False
    arr, offsets, data = utf8_bytes(pyarrow.array(typed[key[0]], from_pandas=True))
    if arr.null_count or len(arr) < 2:
        return arr.null_count == 0
    start, length = offsets[:-1], np.diff(offsets)
    if length.max() > 64:
        return False
    hashed = length.astype(np.uint64)
    width = int(length[0])
    if (length == width).all():  # one width (the usual key): the bytes are one (rows x width) matrix
        matrix = data[offsets[0] : offsets[0] + len(arr) * width].reshape(len(arr), width)
        for j in range(width):
            hashed = hashed * np.uint64(HASH_BASE) + matrix[:, j] + np.uint64(1)
    else:
        for j in range(int(length.max())):
            byte = data[np.minimum(start + j, len(data) - 1)].astype(np.uint64)
            hashed = hashed * np.uint64(HASH_BASE) + np.where(j < length, byte + np.uint64(1), np.uint64(0))
    hashed.sort()  # sorted, a repeat sits next to itself (a hash table over these values was slower)
    return not (hashed[1:] == hashed[:-1]).any()


def _surely_valid(frame: pd.DataFrame, table: Table) -> bool:
    """True only when every row surely meets the pandera schema, so it need not run; False when unsure.

    The same checks the schema makes (dtype, missing values, uniqueness, allowed values,
    pattern through the same ``str.match``, bounds; missing values pass the checks as in pandera),
    without pandera's per-check reports. Any failure, or a table keyed by several columns, answers
    False: pandera then runs and names every failing row and check exactly as before.
    """
    if len(table.key) > 1:
        return False
    for name, col in table.columns.items():
        values = frame[name]
        if str(values.dtype) != DTYPES[col.kind]:
            return False
        missing = values.isna().to_numpy(bool)
        if not col.nullable and missing.any():
            return False
        if col.unique and not (_surely_unique(frame, (name,)) if col.kind == "str" else values.is_unique):
            return False
        passes: list[pd.Series] = []
        if col.allowed is not None:
            passes.append(values.isin(list(col.allowed)))
        if col.pattern is not None:
            passes.append(values.str.match(col.pattern, na=False))
        if col.ge is not None:
            passes.append(values >= col.ge)
        if col.le is not None:
            passes.append(values <= col.le)
        for ok in passes:
            if not (np.asarray(ok.fillna(False).to_numpy(bool)) | missing).all():
                return False
    return True


def load_table(
    path: str | Path,
    table: str | Table,
    encoding: str | None = None,
    window: DateWindow | None = None,
    partition: Partition | None = None,
) -> LoadResult:
    """Load one contract table from a Parquet or CSV file, or a partition folder (dates checked against ``window``).

    ``partition`` selects a city (or county) of a partition folder; only its
    files are opened. A single file holds no partitions, so selecting one
    in it is an error rather than a silent read of every city's rows.
    """
    spec = TABLES[table] if isinstance(table, str) else table
    path = Path(path)
    selected = partition is not None and not partition.everything
    if selected and not path.is_dir():
        raise DataContractError(
            f"{path}: table {spec.name!r} is one file, not partitioned, so {partition.label()} cannot be selected; "
            "fix: export it as a partition folder like the other tables, or load the whole dataset"
        )
    frame, lines, broken = _read_any(path, encoding, spec, partition)
    if path.is_dir() and len(frame) == 0 and spec.name not in OPTIONAL_TABLES:
        where = partition.label() if selected else "any partition"
        raise DataContractError(
            f"{path}: table {spec.name!r} has no rows in {where}, and it is required; "
            f"fix: export the table's rows of {where} into {path.name}/ (see docs/data-contract.md)"
        )
    source = f"{path} [{partition.label()}]" if selected else str(path)
    if len(frame) + len(broken) == 0 and spec.name not in OPTIONAL_TABLES:
        raise DataContractError(
            f"{path}: table {spec.name!r} has no rows (a header only), and it is required; "
            "fix: export the table's rows (only relations, cases and visits may be empty; see docs/data-contract.md)"
        )
    accepted, quarantine = validate_frame(frame, spec, source, window)
    quarantine = _with_lines_and_broken(quarantine, lines, broken)
    return LoadResult(spec.name, source, accepted, quarantine, len(frame) + len(broken))


def _with_lines_and_broken(quarantine: pd.DataFrame, lines: pd.Series | None, broken: pd.DataFrame) -> pd.DataFrame:
    """The quarantine as written: ``_row, _line, _reason, _raw`` then the row's cells, in file order.

    Rows that failed a check keep their cells (``_raw`` empty); lines that
    could not be split into fields keep their raw text (cells empty).
    """
    rows = quarantine[ROW].to_numpy()
    line_of = lines.reindex(rows).to_numpy() if lines is not None else [None] * len(rows)
    quarantine.insert(1, LINE, pd.array(line_of, dtype="Int64"))
    quarantine.insert(3, RAW, pd.Series([None] * len(quarantine), dtype=object))
    if len(broken):
        extra = broken.astype({LINE: "Int64"})
        quarantine = pd.concat([quarantine, extra], ignore_index=True).sort_values(ROW, kind="stable")
    quarantine[ROW] = quarantine[ROW].astype("int64")
    return quarantine.reset_index(drop=True)


def find_table_file(root: Path, name: str) -> Path | None:
    """Where table ``name`` is in ``root``: ``name.parquet``, then ``name.csv``, then the partition folder ``name/``."""
    return table_path(root, name)


def load_dataset(
    root: str | Path,
    tables: Iterable[str] | None = None,
    encoding: str | None = None,
    window: DateWindow | None = None,
    partition: Partition | None = None,
) -> Dataset:
    """Load every contract table found in a folder (all of them must be there).

    Dates are checked against ``window``; by default the folder's own
    (:meth:`DateWindow.for_folder` with the settings' ``earliest_event_date``
    and ``export_date``). ``partition`` loads one city (or county) of a
    partitioned dataset, opening only its files.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataContractError(
            f"{root}: no such folder; fix: run `yujing simulate --out {root}` or point --data at an export"
        )
    if window is None:
        from conf import get_settings

        settings = get_settings()
        window = DateWindow.for_folder(root, settings.earliest_event_date, settings.export_date)
    dataset = Dataset(root, window=window)
    for name in tables or TABLES:
        path = find_table_file(root, name)
        if path is None:
            raise DataContractError(
                f"{root}: no {name}.parquet or {name}.csv; fix: export table {name!r} into this folder"
            )
        dataset.tables[name] = load_table(path, name, encoding, window, partition)
    return dataset


def write_quarantine(dataset: Dataset, out: Path) -> list[Path]:
    """Write each non-empty quarantine table to ``out/<table>.parquet`` (see :mod:`features.quarantine`)."""
    from features.quarantine import write_quarantine as write

    return write({name: r.quarantine for name, r in dataset.tables.items()}, out)
