"""The linker's normalised registry kept per incident-cache scope: a day's few new calls do not pay for it again.

Linking a day's 900 new calls needs the registry as :func:`features.linking.link_registry`
builds it: every person's ID, phone, name and station, and every address, normalised (NFKC,
identifiers cleaned, compounds coded). Building that costs far more than linking the calls
(full Tongliao city: ~11-40 s by machine load, against ~4 s to read it back), and it depends on
nothing but the registry and the linker's code. So it is stored beside the cached links, in
``<scope>/registry-<version>/``: the scope (pipelines/incident_cache.py) hashes the registry
files' bytes and the rows the loader accepted, the version the linker's and loader's source, so a
stored registry is valid exactly as long as the links cached next to it.

**Storage.** One Arrow IPC file per table (zstd: a third of the Parquet read time) plus
``index.json`` with each file's sha256; files are written under temporary names and renamed, the
index last, so a killed run leaves no index naming a half-written file. A file whose bytes do not
match the index, or an index that cannot be read, is a miss: the registry is rebuilt from this
run's tables and written again, with one warning line (``logging``), never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

from features.linking import LinkRegistry, link_registry
from pipelines.incident_cache import _fsync

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
    index_path = folder / "index.json"
    if not index_path.exists():
        return None
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        tables = {}
        for name, entry in index["tables"].items():
            data = (folder / entry["file"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise ValueError(f"{entry['file']} does not match its checksum")
            tables[name] = feather.read_table(pa.BufferReader(data)).to_pandas()
        return LinkRegistry.from_tables(tables)
    except Exception as exc:  # any unreadable copy is a miss: rebuilt by the caller from this run's tables
        _log.warning(
            "incident cache %s unreadable (%s: %s); rebuilding it from this run",
            folder,
            type(exc).__name__,
            str(exc)[:120],
        )
        stats.rebuilt.append(KIND)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _write(folder: Path, registry: LinkRegistry) -> None:
    """Every table under a temporary name, renamed, then ``index.json`` last; older versions of the scope removed.

    The folder is the owner's only (0700): it holds the registry's ID numbers, phones and names, as the export does.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in folder.parent.glob(f"{KIND}-*"):
        if stale != folder and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)  # an older linker or loader: never read again
    index: dict[str, Any] = {"tables": {}}
    for name, frame in registry.tables().items():
        file = f"{name}-{uuid.uuid4().hex[:16]}.arrow"
        tmp = folder / f".{file}.tmp"
        feather.write_feather(pa.Table.from_pandas(frame, preserve_index=False), tmp, compression="zstd")
        index["tables"][name] = {"file": file, "sha256": hashlib.sha256(tmp.read_bytes()).hexdigest()}
        _fsync(tmp)
        os.replace(tmp, folder / file)
    tmp = folder / f".index.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(json.dumps(index, indent=1), encoding="utf-8")
    _fsync(tmp)
    os.replace(tmp, folder / "index.json")
    named = {entry["file"] for entry in index["tables"].values()} | {"index.json"}
    for path in folder.iterdir():
        if path.name not in named and not path.name.startswith("."):
            path.unlink(missing_ok=True)  # files of an earlier write that this index replaced
