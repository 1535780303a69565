"""Content fingerprints: which data made an artifact.

A dataset's fingerprint hashes the bytes of its contract tables in name
order, so the same export (or the same simulated city) always gives the same
string, and any changed row gives another. Every trained model, report and
ranking records it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from features.loaders import find_table_file
from features.schema import TABLES

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_fingerprint(root: str | Path) -> str:
    """16 hex characters over every contract table found in ``root`` (table name and bytes)."""
    root = Path(root)
    digest = hashlib.sha256()
    for name in sorted(TABLES):
        path = find_table_file(root, name)
        if path is not None:
            digest.update(f"{name}:{file_sha256(path)}\n".encode())
    return digest.hexdigest()[:16]
