"""The linker's normalised registry kept per incident-cache scope: a day's few new calls do not pay for it again.

Linking a day's 900 new calls needs the registry as :func:`features.linking.link_registry`
builds it: every person's ID, phone, name and station, and every address, normalised (NFKC,
identifiers cleaned, compounds coded). Building that costs far more than linking the calls
(full Tongliao city: ~11-40 s by machine load, against ~4 s to read it back), and it depends on
nothing but the registry and the linker's code. So it is stored beside the cached links, in
``<scope>/registry-<version>/``: the scope (pipelines/incident_cache.py) hashes the registry
files' bytes and the rows the loader accepted, the version the linker's and loader's source, so a
stored registry is valid exactly as long as the links cached next to it.

**Storage.** One uncompressed Arrow IPC file per table, one record batch each, in a sealed
folder (pipelines/sealed_files.py: files renamed into place, ``index.json`` with each file's
checksum last), read back as a memory map of the page cache, like the kept registry tables
(pipelines/table_cache.py). The zstd files it replaced took a sixth of the disk (78 MB against
482 MB for the full city) but 1.36 s to read back with their sha256 check, against 0.70 s mapped, and
were decompressed into fresh memory every day (docs/decisions.md, issue 14's sixth round).
A damaged or unreadable copy is a miss: the registry is rebuilt from this run's tables and
written again, with one warning line (``logging``), never a traceback.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from features.arrow_frames import ipc_frame, one_batch_ipc
from features.linking import LinkRegistry, link_registry
from pipelines.sealed_files import SealBroken, read_sealed, remove_others, write_sealed

_log = logging.getLogger("yujing.incident_cache")

KIND = "registry"


def cached_registry(
    persons: pd.DataFrame,
    households: pd.DataFrame,
    addresses: pd.DataFrame,
    scope: Path,
    version: str,
    stats: Any,
) -> LinkRegistry:
    """The linker's registry of these tables: read from ``scope`` when stored there, else built and stored.

    ``stats`` (``incident_cache.CacheStats``): ``"registry"`` is added to ``stats.rebuilt`` when a
    stored copy was damaged.
    """
    folder = Path(scope) / f"{KIND}-{version}"
    stored = _read(folder, stats)
    if stored is not None:
        return stored
    registry = link_registry(persons, households, addresses)
    try:
        _write(folder, registry)
    except OSError as exc:  # a full disk or a read-only folder costs tomorrow's reuse, not today's ranking
        _log.warning("incident cache %s not written (%s); the registry is normalised again next run", folder, exc)
    return registry


def _read(folder: Path, stats: Any) -> LinkRegistry | None:
    try:
        stored = read_sealed(folder, mapped=True)  # the tables stay in the page cache: no copy, no decompression
        if stored is None:
            return None
        files, _ = stored
        tables = {name.removesuffix(".arrow"): ipc_frame(data) for name, data in files.items()}
        return LinkRegistry.from_tables(tables)
    except (SealBroken, pa.ArrowException, KeyError, ValueError) as exc:  # a miss: rebuilt from this run's tables
        _log.warning("incident cache %s unreadable (%s); rebuilding it from this run", folder, str(exc)[:120])
        stats.rebuilt.append(KIND)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _write(folder: Path, registry: LinkRegistry) -> None:
    """Every table as uncompressed Arrow IPC in a sealed folder; older versions of the scope's registry removed."""
    remove_others(folder.parent, f"{KIND}-", folder)  # an older linker or loader: never read again
    files = {}
    for name, frame in registry.tables().items():
        files[f"{name}.arrow"] = one_batch_ipc(frame, "uncompressed", preserve_index=False)
    write_sealed(folder, files)
