"""Validated registry tables kept between daily runs: an unchanged registry is not read and checked again.

A daily export repeats the registry (persons, households, addresses, relations) byte for byte
on most days, and reading and validating it is most of what a day's ranking spends on loading
(full Tongliao city: persons 2.5-3.6 s, addresses 0.6-2 s by machine load). The daily job
(``prepare`` with an incident cache) keeps each table as the loader accepted it and reads it
back in a fraction of a second the next day. The result is the loader's, row for row and type
for type (tests/test_table_cache.py); events tables change every day and are always loaded.

**Key.** The table's name, each of its files' sha256 and name within the table, the CSV
encoding, the partition, the loader's code (:data:`LOADER_SOURCES`) and the pandas and pyarrow
versions. The export date is not in the key: a stored validation is reused only when the date
window quarantines no row of the table, neither on the day it was stored nor today
(:func:`features.loaders.window_flags_none`). The window only adds reasons, so the validation is
then the same; a registry with a birth date after the export date is validated afresh every day.

**Storage.** ``<cache>/tables/<partition>/<table>-<key>/`` as a sealed folder
(pipelines/sealed_files.py): the accepted rows as uncompressed Arrow IPC (memory-mapped and read back
without decoding or copying), the quarantine as a pickle (its mixed object cells exactly), and the counts and date
spans. A full city's registry takes ~0.9 GB; a newer key for a table replaces the older one, so
there is one copy per table and partition. A damaged copy is a miss with one warning line.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import shutil
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from features.arrow_frames import ipc_frame, one_batch_ipc
from features.fingerprint import file_sha256
from features.loaders import DateWindow, LoadResult, load_table, source_label, window_flags_none
from features.partitions import Partition, partition_files
from features.schema import TABLES
from pipelines.incident_cache import source_version
from pipelines.sealed_files import SealBroken, read_sealed, remove_others, write_sealed

_log = logging.getLogger("yujing.incident_cache")

KEPT = ("persons", "households", "addresses", "relations")
"""Tables a daily export repeats unchanged; the events tables change every day and are not kept."""
LOADER_SOURCES = (
    "features/loaders.py",
    "features/coercion.py",
    "features/schema.py",
    "features/csv_reader.py",
    "features/partitions.py",
    "features/utf8_bytes.py",
    "features/arrow_frames.py",
    "pipelines/table_cache.py",
    "pipelines/sealed_files.py",
)
"""The code that decides what a loaded table holds, and how it is stored here."""
FOLDER = "tables"


def table_loader(cache_dir: Path, stats: Any) -> Callable[..., LoadResult]:
    """A ``load_table`` for ``features.loaders.load_dataset(load=...)`` that reuses validated :data:`KEPT` tables.

    ``stats`` (``incident_cache.CacheStats``) counts the tables reused and loaded.
    """
    code = source_version(LOADER_SOURCES, f"pandas {version('pandas')} pyarrow {version('pyarrow')}")

    def load(
        path: Path, name: str, encoding: str | None, window: DateWindow | None, partition: Partition | None
    ) -> LoadResult:
        if name not in KEPT:
            return load_table(path, name, encoding, window, partition)
        where = Path(cache_dir) / FOLDER / _partition_folder(partition)
        folder = where / f"{name}-{_key(Path(path), name, encoding, partition, code)}"
        stored = _read(folder, stats)
        if stored is not None:
            result = LoadResult(name, source_label(Path(path), partition), *stored)
            if window_flags_none(result.dates, TABLES[name], window):
                stats.tables_hits += 1
                return result
        result = load_table(path, name, encoding, window, partition)
        stats.tables_misses += 1
        if window_flags_none(result.dates, TABLES[name], window):
            try:
                remove_others(where, f"{name}-", folder)  # an older registry or loader: never read again
                _write(folder, result)
            except OSError as exc:  # a full disk costs tomorrow's reuse, not today's ranking
                _log.warning("incident cache %s not written (%s); the table is validated again next run", folder, exc)
        return result

    return load


def tables_size(cache_dir: Path, partition: Partition | None) -> int:
    """Bytes of the partition's kept tables (added to the cache's size on the CLI line)."""
    root = Path(cache_dir) / FOLDER / _partition_folder(partition)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0


def _partition_folder(partition: Partition | None) -> str:
    if partition is None or partition.everything:
        return "all"
    return "-".join(f"{k}{v}" for k, v in (("city", partition.city), ("county", partition.county)) if v)


def _key(path: Path, name: str, encoding: str | None, partition: Partition | None, code: str) -> str:
    digest = hashlib.sha256(f"{name}\n{encoding}\n{partition!r}\n{code}\n".encode())
    files = partition_files(path, partition) if path.is_dir() else [path]
    for file in files:
        relative = file.relative_to(path) if path.is_dir() else Path(file.name)
        digest.update(f"{relative.as_posix()}:{file_sha256(file)}\n".encode())
    return digest.hexdigest()[:16]


def _read(folder: Path, stats: Any) -> tuple[pd.DataFrame, pd.DataFrame, int, dict] | None:
    try:
        stored = read_sealed(folder, mapped=True)  # the rows stay in the page cache: no copy
        if stored is None:
            return None
        files, meta = stored
        data = ipc_frame(files["data.arrow"])
        quarantine = pickle.loads(files["quarantine.pickle"])  # written by this module, checked against its seal
        dates = {c: tuple(None if v is None else pd.Timestamp(v) for v in span) for c, span in meta["dates"].items()}
        return data, quarantine, int(meta["read"]), dates
    except (SealBroken, pa.ArrowException, KeyError, ValueError, TypeError, pickle.UnpicklingError) as exc:
        _log.warning("incident cache %s unreadable (%s); validating the table again", folder, str(exc)[:120])
        stats.rebuilt.append(f"table {folder.name.rsplit('-', 1)[0]}")
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _write(folder: Path, result: LoadResult) -> None:
    dates = {c: [None if v is None else v.isoformat() for v in span] for c, span in result.dates.items()}
    files = {
        "data.arrow": one_batch_ipc(result.data, "uncompressed"),
        "quarantine.pickle": pickle.dumps(result.quarantine, protocol=pickle.HIGHEST_PROTOCOL),
    }
    write_sealed(folder, files, {"read": result.read, "dates": dates})
