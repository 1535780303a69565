"""Content fingerprints: which data made an artifact.

A dataset's fingerprint hashes the bytes of its contract tables in name
order, so the same export (or the same simulated city) always gives the same
string, and any changed row gives another. Every trained model, report and
ranking records it.

A partitioned table (:mod:`features.partitions`) contributes each selected
file's path inside the dataset and its bytes, so the fingerprint of one city
says nothing about, and does not change with, another city's files.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from features.loaders import find_table_file
from features.partitions import Partition, partition_files
from features.schema import TABLES

_CHUNK = 1 << 20
_SETTLED_NS = 1_000_000_000
_KNOWN: dict[tuple[int, int, int, int, int], str] = {}
"""sha256 of files already hashed by this process, by (device, inode, size, mtime, ctime)."""


def file_sha256(path: Path) -> str:
    """The file's sha256, hashed once per process while the file is unchanged.

    A daily ranking asks for the registry files' hashes three times (the dataset's fingerprint,
    the incident cache's scope, the kept tables' keys: pipelines/table_cache.py), ~130 MB each for a
    city. Any write to the file changes its ctime, so a changed file is hashed again. The kernel
    stamps times at its clock tick (milliseconds), so a file written within the last second
    could still change without a new stamp: such a file's hash is not remembered.
    """
    info = Path(path).stat()
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    if key in _KNOWN:
        return _KNOWN[key]
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    if time.time_ns() - max(info.st_mtime_ns, info.st_ctime_ns) > _SETTLED_NS:
        _KNOWN[key] = digest.hexdigest()
    return digest.hexdigest()


def dataset_fingerprint(root: str | Path, partition: Partition | None = None) -> str:
    """16 hex characters over every contract table found in ``root`` (table name and bytes).

    A partition folder adds ``<table>/<relative path>:<sha256>`` for each of
    its files that ``partition`` selects (by folder name; nothing else is
    opened); a single-file table is hashed whole, as before.
    """
    root = Path(root)
    digest = hashlib.sha256()
    for name in sorted(TABLES):
        path = find_table_file(root, name)
        if path is not None and path.is_dir():
            for file in partition_files(path, partition):
                digest.update(f"{name}/{file.relative_to(path).as_posix()}:{file_sha256(file)}\n".encode())
        elif path is not None:
            digest.update(f"{name}:{file_sha256(path)}\n".encode())
    return digest.hexdigest()[:16]
