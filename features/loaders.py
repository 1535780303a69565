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
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import pyarrow.parquet as pq

from features.arrow_frames import one_chunk_frame
from features.coercion import coerce, surely_unique, surely_valid
from features.csv_reader import LINE, RAW, REASON, ROW, CsvError, NoHeader, broken_frame, read_csv_table
from features.partitions import Partition, read_partitioned, table_path
from features.schema import TABLES, Table

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
    "source_label",
    "validate_frame",
    "window_flags_none",
    "write_quarantine",
]

OPTIONAL_TABLES = frozenset({"relations", "cases", "visits"})
"""Tables a center may export empty (header only, or a zero-byte file): not every system keeps links between
persons, cases or visits, and the pipeline runs without them (features are zero). Every other table must hold
rows: an empty registry or incident table is a broken export, and ranking from it would publish nothing."""

DateSpan = tuple[pd.Timestamp | None, pd.Timestamp | None]
"""A date column's earliest and latest value (None: the column holds no date)."""

REASON_SEPARATOR = "; "
"""Between the reasons of one quarantined row."""


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
    dates: dict[str, DateSpan] = field(default_factory=dict)
    """Each date column's earliest and latest value over every row read (None: no date): what the window saw."""

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
            frame = one_chunk_frame(pq.read_table(path))
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


def validate_frame(
    frame: pd.DataFrame, table: Table, source: str, window: DateWindow | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a frame into rows that meet the contract and quarantined rows with reasons.

    The frame's index must be the 1-based source row number. With ``window``,
    datetimes after the export date, and event times before its earliest day,
    are quarantined too.
    """
    accepted, quarantine, _ = _validate(frame, table, source, window)
    return accepted, quarantine


def window_flags_none(dates: dict[str, DateSpan], table: Table, window: DateWindow | None) -> bool:
    """True when ``window`` quarantines no row of a table whose date columns span ``dates``.

    The window only adds reasons, so a table it flags nothing in is validated the same under
    every such window: a stored validation (pipelines/table_cache.py) is reused on that ground.
    """
    if window is None:
        return True
    for name, col in table.columns.items():
        if col.kind != "datetime":
            continue
        if name not in dates:
            return False
        earliest, latest = dates[name]
        if latest is not None and latest >= window.end:
            return False
        if col.event and earliest is not None and earliest < window.earliest:
            return False
    return True


def _validate(
    frame: pd.DataFrame, table: Table, source: str, window: DateWindow | None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, DateSpan]]:
    """:func:`validate_frame`, plus each date column's earliest and latest typed value over every row."""
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
    dates: dict[str, DateSpan] = {}
    for name, col in table.columns.items():
        typed[name], failed = coerce(frame[name], col)
        flag(failed, f"{name}: not a valid {col.kind}")
        if col.kind == "bool":  # pandera checks plain bool; flag gaps here, then fill them for the quarantined rows
            flag(typed[name].isna() & ~failed & (not col.nullable), f"{name}: fails not_nullable")
            typed[name] = typed[name].fillna(False).astype(bool)
        if col.kind == "datetime":
            present = typed[name].dropna()
            dates[name] = (present.min(), present.max()) if len(present) else (None, None)
        if col.kind == "datetime" and window is not None:
            flag(typed[name] >= window.end, f"{name}: after the export date {window.export_date:%Y-%m-%d}")
            if col.event:
                flag(typed[name] < window.earliest, f"{name}: before {window.earliest:%Y-%m-%d}, not plausible")

    if table.key and not surely_unique(typed, table.key):
        flag(
            typed.duplicated(list(table.key), keep="first"),
            f"duplicate key ({', '.join(table.key)}) of an earlier row",
        )

    candidates = typed.drop(index=list(reasons)) if reasons else typed
    try:
        if not surely_valid(candidates, table):
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
    return accepted, quarantine.reset_index(drop=True), dates


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
    source = source_label(path, partition)
    if len(frame) + len(broken) == 0 and spec.name not in OPTIONAL_TABLES:
        raise DataContractError(
            f"{path}: table {spec.name!r} has no rows (a header only), and it is required; "
            "fix: export the table's rows (only relations, cases and visits may be empty; see docs/data-contract.md)"
        )
    accepted, quarantine, dates = _validate(frame, spec, source, window)
    quarantine = _with_lines_and_broken(quarantine, lines, broken)
    return LoadResult(spec.name, source, accepted, quarantine, len(frame) + len(broken), dates)


def source_label(path: Path, partition: Partition | None) -> str:
    """How messages name a table's source: its path, and the partition when one is selected."""
    selected = partition is not None and not partition.everything
    return f"{path} [{partition.label()}]" if selected else str(path)


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
    load: Callable[..., LoadResult] | None = None,
) -> Dataset:
    """Load every contract table found in a folder (all of them must be there).

    Dates are checked against ``window``; by default the folder's own
    (:meth:`DateWindow.for_folder` with the settings' ``earliest_event_date``
    and ``export_date``). ``partition`` loads one city (or county) of a
    partitioned dataset, opening only its files. ``load`` replaces :func:`load_table`
    (same arguments and result): the daily job's reuse of validated registry tables
    (pipelines/table_cache.py).
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
        dataset.tables[name] = (load or load_table)(path, name, encoding, window, partition)
    return dataset


def write_quarantine(dataset: Dataset, out: Path) -> list[Path]:
    """Write each non-empty quarantine table to ``out/<table>.parquet`` (see :mod:`features.quarantine`)."""
    from features.quarantine import write_quarantine as write

    return write({name: r.quarantine for name, r in dataset.tables.items()}, out)
