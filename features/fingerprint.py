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
from pathlib import Path

from features.loaders import find_table_file
from features.partitions import Partition, partition_files
from features.schema import TABLES

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
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
