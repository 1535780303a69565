"""Load contract tables from Parquet or CSV without losing a row.

Chinese systems often export CSV in GB18030/GBK, with Chinese date formats and
the odd broken line. The loaders read what they can, coerce each column to
the contract's type, and move every row that does not fit into a quarantine
table together with the reason, so that for every load
``read == accepted + quarantined``. Reasons name the column and the check,
never the value (values are personal data).

A file that cannot be read at all, or lacks a required column, is a
:class:`DataContractError` whose one-line message names the file, the column
and the fix.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from features.schema import TABLES, Col, Table

ROW = "_row"
REASON = "_reason"

_TRUE = {"true", "t", "1", "yes", "y", "是"}
_FALSE = {"false", "f", "0", "no", "n", "否"}
_CN_DATE = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日")
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

    def summary(self) -> str:
        return (
            f"{self.table}: read {self.read:,} = accepted {self.accepted:,} "
            f"+ quarantined {self.quarantined:,} ({self.source})"
        )


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


def read_csv_text(path: Path, encoding: str | None = None) -> tuple[pd.DataFrame, list[tuple[int, int]], str]:
    """Read a CSV as text, trying UTF-8 (with or without BOM) and then GB18030.

    GB18030 is a superset of GBK and GB2312, so one fallback covers the
    encodings Chinese systems export. Records whose field count differs from
    the header are returned apart, as ``(row number, field count)``, instead of
    being padded or dropped; the frame's index is the 1-based row number.
    """
    encodings = [encoding] if encoding else ["utf-8-sig", "gb18030"]
    last_error: Exception | None = None
    for enc in encodings:
        try:
            with path.open(encoding=enc, newline="") as handle:
                reader = csv.reader(handle)
                header = next(reader, None)
                if header is None:
                    raise DataContractError(f"{path}: empty file; fix: export the table with a header row")
                width = len(header)
                rows: list[list[str]] = []
                numbers: list[int] = []
                broken: list[tuple[int, int]] = []
                for number, record in enumerate(reader, start=1):
                    if len(record) == width:
                        rows.append(record)
                        numbers.append(number)
                    elif record:
                        broken.append((number, len(record)))
            frame = pd.DataFrame(rows, columns=[h.strip() for h in header], index=numbers, dtype="str")
            return frame, broken, enc
        except UnicodeDecodeError as exc:
            last_error = exc
        except csv.Error as exc:
            raise DataContractError(f"{path}: not a readable CSV ({type(exc).__name__}); fix: re-export it") from None
    raise DataContractError(
        f"{path}: cannot decode as {' or '.join(encodings)} ({type(last_error).__name__}); "
        "fix: export as UTF-8 or GB18030, or pass encoding="
    ) from None


def _read_any(path: Path, encoding: str | None) -> tuple[pd.DataFrame, list[tuple[int, int]]]:
    if not path.is_file():
        raise DataContractError(f"{path}: no such file; fix: check the path or run `yujing simulate`")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
            frame.index = pd.RangeIndex(1, len(frame) + 1)
            return frame, []
        except Exception as exc:  # pyarrow raises several unrelated types for a broken file
            raise DataContractError(
                f"{path}: not a readable Parquet file ({type(exc).__name__}); fix: re-export it"
            ) from None
    if suffix in (".csv", ".txt"):
        frame, bad, _ = read_csv_text(path, encoding)
        return frame, bad
    raise DataContractError(f"{path}: unsupported file type {suffix!r}; fix: use .parquet or .csv")


def _parse_cn_datetime(text: pd.Series) -> pd.Series:
    """``2024年4月11日 21时26分17秒`` -> ``2024-4-11 21:26:17``; other text untouched."""
    text = text.str.replace(_CN_DATE, r"\1-\2-\3", regex=True)
    return text.str.replace(_CN_TIME, lambda m: f"{m[1]}:{m[2]}:{m[3] or '00'}", regex=True)


def _coerce(values: pd.Series, col: Col) -> tuple[pd.Series, pd.Series]:
    """Cast a column to its contract type; returns the values and a mask of failed casts."""
    if col.kind == "str":
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

    if table.key:
        flag(
            typed.duplicated(list(table.key), keep="first"),
            f"duplicate key ({', '.join(table.key)}) of an earlier row",
        )

    candidates = typed.drop(index=list(reasons)) if reasons else typed
    try:
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
    accepted = typed.drop(index=bad).reset_index(drop=True)
    quarantine = raw.loc[bad].astype("str").where(raw.loc[bad].notna(), None).copy()
    quarantine.insert(0, REASON, ["; ".join(dict.fromkeys(reasons[r])) for r in bad])
    quarantine.insert(0, ROW, bad)
    return accepted, quarantine.reset_index(drop=True)


def load_table(
    path: str | Path, table: str | Table, encoding: str | None = None, window: DateWindow | None = None
) -> LoadResult:
    """Load one contract table from a Parquet or CSV file (dates checked against ``window`` when given)."""
    spec = TABLES[table] if isinstance(table, str) else table
    path = Path(path)
    frame, broken = _read_any(path, encoding)
    accepted, quarantine = validate_frame(frame, spec, str(path), window)
    if broken:
        width = frame.shape[1]
        lines = pd.DataFrame(
            {
                ROW: [n for n, _ in broken],
                REASON: [f"line has {k} fields, header has {width}" for _, k in broken],
            }
        )
        quarantine = pd.concat([quarantine, lines], ignore_index=True).sort_values(ROW, kind="stable")
        quarantine = quarantine.reset_index(drop=True)
    return LoadResult(spec.name, str(path), accepted, quarantine, len(frame) + len(broken))


def find_table_file(root: Path, name: str) -> Path | None:
    """The file holding table ``name`` in ``root``: ``name.parquet`` first, then ``name.csv``."""
    for suffix in (".parquet", ".csv"):
        candidate = root / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def load_dataset(
    root: str | Path,
    tables: Iterable[str] | None = None,
    encoding: str | None = None,
    window: DateWindow | None = None,
) -> Dataset:
    """Load every contract table found in a folder (all of them must be there).

    Dates are checked against ``window``; by default the folder's own
    (:meth:`DateWindow.for_folder` with the settings' ``earliest_event_date``
    and ``export_date``).
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
        dataset.tables[name] = load_table(path, name, encoding, window)
    return dataset


def write_quarantine(dataset: Dataset, out: Path) -> list[Path]:
    """Write each non-empty quarantine table to ``out/<table>.parquet``; returns the paths."""
    written = []
    for result in dataset.tables.values():
        if result.quarantined:
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"{result.table}.parquet"
            result.quarantine.to_parquet(path, index=False)
            written.append(path)
    return written
