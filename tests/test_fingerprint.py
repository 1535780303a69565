"""features.fingerprint.file_sha256: hashed once per process, never stale after a write."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from features import fingerprint
from features.fingerprint import file_sha256


def test_a_settled_file_is_hashed_once_and_a_written_one_again(tmp_path: Path) -> None:
    path = tmp_path / "persons.parquet"
    path.write_bytes(b"a" * 1000)
    time.sleep(1.2)  # settled: older than the kernel's time-stamp granularity by far
    assert file_sha256(path) == hashlib.sha256(b"a" * 1000).hexdigest()
    assert any(v == hashlib.sha256(b"a" * 1000).hexdigest() for v in fingerprint._KNOWN.values())
    path.write_bytes(b"b" * 1000)  # the same size, a new ctime
    assert file_sha256(path) == hashlib.sha256(b"b" * 1000).hexdigest()


def test_a_file_just_written_is_not_remembered(tmp_path: Path) -> None:
    path = tmp_path / "households.parquet"
    path.write_bytes(b"x" * 1000)
    assert file_sha256(path) == hashlib.sha256(b"x" * 1000).hexdigest()
    with path.open("r+b") as handle:  # rewritten in place at once: maybe within the same time stamp
        handle.write(b"y")
    assert file_sha256(path) == hashlib.sha256(b"y" + b"x" * 999).hexdigest()
