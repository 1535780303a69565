"""Partitioned tables: a contract table as a folder of Parquet files, one per city (and county).

A province does not fit one file per table, and its cities are ranked apart
(each city links calls within its own registry), so a table may be a folder
in the hive layout instead of a file::

    root/incidents/city=1505/county=150502/part-0.parquet
    root/incidents/city=1505/part-0.parquet          (county level optional)

The partition folders are not contract columns: the reader drops them. A
:class:`Partition` selects a city (or a county) by folder name alone, so
loading one city opens only that city's files: the others may be being
rewritten, or broken, and the load of this city does not see them.

Everything here is deterministic: files are listed and read in sorted
relative-path order, rows within a file in file order, and the same frame is
written to the same bytes.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features.arrow_frames import one_chunk_frame

__all__ = [
    "PARTITION_KEYS",
    "Partition",
    "cities",
    "partition_files",
    "read_partitioned",
    "table_path",
    "write_partitioned",
]

PARTITION_KEYS = ("city", "county")
"""The hive partition levels, outermost first: a folder ``city=<code>`` may hold folders ``county=<code>``."""

_DIGITS = {"city": 4, "county": 6}
_CODE = {key: re.compile(rf"\d{{{n}}}") for key, n in _DIGITS.items()}
"""Administrative division codes: 4 digits for a city (地市, e.g. 1505 通辽), 6 for a county (旗县区, 150502)."""

_SCHEMA = pa.schema([pa.field(key, pa.string()) for key in PARTITION_KEYS])
"""Partition values are text: ``0150`` must stay ``0150``, never become the number 150."""

_WRITE_OPTIONS = {"compression": "snappy", "write_statistics": True, "use_dictionary": True}
"""Fixed Parquet options (pyarrow writes no timestamp), so the same frame gives the same bytes."""

_FIX = (
    "fix: a partitioned table is <name>/city=<4-digit code>/[county=<6-digit code>/]part-<n>.parquet "
    "(see docs/data-contract.md)"
)


def _error(message: str) -> Exception:
    """A :class:`features.loaders.DataContractError` (imported here: the loaders import this module)."""
    from features.loaders import DataContractError

    return DataContractError(message)


@dataclass(frozen=True)
class Partition:
    """Which part of a partitioned dataset to read: one city, one county of it, or (None) everything."""

    city: str | None = None
    county: str | None = None

    def __post_init__(self) -> None:
        for key in PARTITION_KEYS:
            value = getattr(self, key)
            if value is not None and not (isinstance(value, str) and _CODE[key].fullmatch(value)):
                raise _error(f"{key} code {value!r} is not {_DIGITS[key]} digits; fix: use its administrative code")
        if self.county is not None and self.city is not None and not self.county.startswith(self.city):
            raise _error(f"county {self.county} is not in city {self.city}; fix: its first 4 digits are its city")

    @property
    def everything(self) -> bool:
        return self.city is None and self.county is None

    def matches(self, values: dict[str, str]) -> bool:
        """Whether a file with these partition values (from its folder names) is selected."""
        return all(getattr(self, key) is None or values.get(key) == getattr(self, key) for key in PARTITION_KEYS)

    def expression(self) -> ds.Expression | None:
        """The same selection as a pyarrow filter on the partition fields (None: no filter)."""
        terms = [ds.field(key) == getattr(self, key) for key in PARTITION_KEYS if getattr(self, key) is not None]
        if not terms:
            return None
        out = terms[0]
        for term in terms[1:]:
            out = out & term
        return out

    def label(self) -> str:
        """``city=1505/county=150502`` (``all partitions`` for no filter): for messages and manifests."""
        parts = [f"{key}={getattr(self, key)}" for key in PARTITION_KEYS if getattr(self, key) is not None]
        return "/".join(parts) or "all partitions"


def _selecting(partition: Partition | None) -> Partition:
    return Partition() if partition is None else partition


def table_path(root: str | Path, name: str) -> Path | None:
    """Where table ``name`` lives in ``root``: ``name.parquet``, ``name.csv``, or the partition folder ``name/``.

    A file and a folder of the same table is an error: which one is current
    cannot be guessed, and reading the stale one would rank old data.
    """
    root = Path(root)
    file = next((root / f"{name}{s}" for s in (".parquet", ".csv") if (root / f"{name}{s}").is_file()), None)
    folder = root / name
    if folder.is_dir():
        if file is not None:
            raise _error(
                f"{root}: table {name!r} is both {file.name} and the folder {name}/; "
                "fix: keep one (the folder for a partitioned export, the file for a single city)"
            )
        return folder
    return file


def _values(folder: Path, relative: tuple[str, ...]) -> dict[str, str]:
    """Partition values of a file from its folder names; a name that is not ``key=code`` is an error."""
    values: dict[str, str] = {}
    for level, name in enumerate(relative[:-1]):
        key, sep, value = name.partition("=")
        expected = PARTITION_KEYS[level] if level < len(PARTITION_KEYS) else None
        if not sep or key != expected or not _CODE[key].fullmatch(value):
            where = folder.joinpath(*relative[: level + 1])
            wanted = f"{expected}=<{_DIGITS[expected]}-digit code>" if expected else "no deeper folder"
            raise _error(f"{where}: folder name {name!r} is not a partition ({wanted}); {_FIX}")
        values[key] = value
    if "city" not in values:
        raise _error(f"{folder.joinpath(*relative)}: a file outside any city=<4-digit code> folder; {_FIX}")
    if "county" in values and not values["county"].startswith(values["city"]):
        where = folder.joinpath(*relative[:-1])
        raise _error(f"{where}: county {values['county']} is not in city {values['city']}; {_FIX}")
    return values


def _all_files(folder: Path, city: str | None = None) -> list[tuple[tuple[str, ...], dict[str, str]]]:
    """Every data file under ``folder`` (sorted relative path, partition values), names checked, nothing opened.

    With ``city`` only that city's folder is listed: another city's export,
    half rewritten or misnamed, does not stop this city's load. Hidden files
    (``.part-0.parquet.tmp`` of a write in progress) and ``_``-files
    (``_SUCCESS``, ``_common_metadata`` of Spark and Arrow) are skipped, as
    every Parquet reader does.
    """
    top = folder if city is None else folder / f"city={city}"
    if not top.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        base = Path(dirpath).relative_to(folder).parts
        if base:  # every folder is checked, an empty one too
            _values(folder, (*base, "x.parquet"))
        for name in filenames:
            if name.startswith((".", "_")):
                continue
            relative = (*base, name)
            if not name.endswith(".parquet"):
                raise _error(f"{folder.joinpath(*relative)}: not a .parquet file in a partitioned table; {_FIX}")
            found.append((relative, _values(folder, relative)))
    if not found and city is None:
        raise _error(f"{folder}: a table folder with no Parquet file; {_FIX}")
    return sorted(found, key=lambda item: "/".join(item[0]))


def partition_files(folder: str | Path, partition: Partition | None = None) -> list[Path]:
    """The Parquet files of ``partition`` in a table folder, sorted by relative path (chosen by name only).

    Selecting a city that has no folder gives ``[]``; the whole table with no
    Parquet file is an error.
    """
    folder = Path(folder)
    selecting = _selecting(partition)
    listed = _all_files(folder, selecting.city)
    return [folder.joinpath(*rel) for rel, values in listed if selecting.matches(values)]


def cities(root: str | Path) -> list[str]:
    """The sorted city codes of a dataset's partitioned tables (from folder names: no file is opened).

    ``[]`` for a dataset of single files (one city). Every contract table
    folder of ``root`` is looked at, so a city that exports only some tables
    is listed (and its load says which table it lacks).
    """
    from features.schema import TABLES

    root = Path(root)
    found: set[str] = set()
    for name in TABLES:
        path = table_path(root, name)
        if path is not None and path.is_dir():
            found.update(values["city"] for _, values in _all_files(path))
    return sorted(found)


def read_partitioned(
    folder: str | Path, partition: Partition | None = None, columns: Iterable[str] | None = None
) -> pd.DataFrame:
    """The rows of a table folder in ``partition`` (files in sorted path order, rows in file order).

    Only the selected files are opened. The partition fields are read as
    text and dropped: they are where a row is filed, not what it says. An
    empty selection gives an empty frame (with ``columns`` when given): the
    caller knows whether the table may be empty.
    """
    folder = Path(folder)
    selecting = _selecting(partition)
    files = partition_files(folder, selecting)
    wanted = list(columns) if columns is not None else None
    if not files:
        return pd.DataFrame(columns=wanted or [])
    schemas = []
    for path in files:
        try:
            schemas.append(pq.read_schema(path))
        except Exception as exc:  # pyarrow raises several unrelated types for a broken file
            raise _error(f"{path}: not a readable Parquet file ({type(exc).__name__}); fix: re-export it") from None
    try:
        schema = pa.unify_schemas([_without_partition_fields(s) for s in schemas], promote_options="permissive")
        dataset = ds.dataset(
            [str(p) for p in files],
            schema=pa.unify_schemas([schema, _SCHEMA]),
            format="parquet",
            partitioning=ds.partitioning(_SCHEMA, flavor="hive"),
            partition_base_dir=str(folder),
        )
        table = dataset.to_table(columns=wanted, filter=selecting.expression())
    except Exception as exc:  # incompatible column types between files, or a broken data page
        raise _error(
            f"{folder}: the files of {selecting.label()} cannot be read as one table ({type(exc).__name__}); "
            "fix: re-export them with the same columns and types"
        ) from None
    frame = one_chunk_frame(table)
    return frame.drop(columns=[k for k in PARTITION_KEYS if k in frame.columns])


def _without_partition_fields(schema: pa.Schema) -> pa.Schema:
    keep = [f for f in schema if f.name not in PARTITION_KEYS]
    return pa.schema(keep, metadata=schema.metadata)


def write_partitioned(
    frame: pd.DataFrame,
    folder: str | Path,
    city: str,
    county: Iterable[str] | pd.Series | None = None,
    part: int = 0,
) -> list[Path]:
    """Write one city's rows of a table: ``folder/city=<city>/[county=<c>/]part-<part>.parquet``.

    With ``county`` (one code per row) the rows are split into one file per
    county, each in frame order; without, one file for the city. An empty
    frame still writes one zero-row file at city level, so the folder keeps
    the table's columns and a city without rows of an optional table is
    visible. Each file is written to a hidden temporary name and renamed (a
    reader never sees half a file); the same frame gives the same bytes.
    Other files in the folder are left alone. Returns the files, sorted.
    """
    folder = Path(folder)
    Partition(city=city)  # checks the code
    if part < 0:
        raise ValueError(f"part must be >= 0, got {part}")
    frame = frame.reset_index(drop=True)
    name = f"part-{part}.parquet"
    if county is None or frame.empty:
        return [_write_file(frame, folder / f"city={city}" / name)]
    codes = pd.Series(list(county) if not isinstance(county, pd.Series) else county.to_numpy(), dtype=object)
    if len(codes) != len(frame):
        raise ValueError(f"county has {len(codes)} values for {len(frame)} rows")
    if codes.isna().any():
        raise _error(f"{folder}: a row of city {city} has no county code; fix: give every row its county")
    codes = codes.astype(str)
    written = []
    for code in sorted(codes.unique()):
        Partition(city=city, county=code)  # checks the code and that it is in the city
        rows = frame[(codes == code).to_numpy()]
        written.append(_write_file(rows, folder / f"city={city}" / f"county={code}" / name))
    return written


def _write_file(frame: pd.DataFrame, path: Path) -> Path:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **_WRITE_OPTIONS)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, path)
    return path
