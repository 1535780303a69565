"""A folder of files with an index of their checksums: a killed run or a damaged disk never passes for a copy.

The caches that keep whole tables between runs (pipelines/registry_cache.py: the linker's
normalised registry; pipelines/table_cache.py: the validated registry tables) store them the
same way:

- every file is written under a temporary name, flushed to disk and renamed; ``index.json``,
  naming each file with its size and CRC-32 and the caller's ``meta``, is written last the same
  way, so a run killed half-way leaves either the previous index or none;
- a read checks every file against the index; a missing index is "nothing stored" (None), and
  any mismatch or unreadable file raises :class:`SealBroken`, which the caller turns into a miss
  and one warning line (the folder is then removed and written again);
- the folder is the owner's only (0700): the tables hold ID numbers, phones and names, as the
  export does.

**Why CRC-32, not sha256.** The check is against damage (a torn or rotted file), not against
someone who can write the folder: whoever can replace a file can rewrite ``index.json`` with it.
CRC-32 catches every burst of up to 32 bits and random damage but for one chance in 4 billion,
and a daily run checks a full city's 1.4 GB of kept tables with it in 0.45 s, against 0.9 s for
sha256 (docs/decisions.md, issue 14's eighth round). A file is checked in pieces of
:data:`PIECE` bytes, one CRC-32 each, on two threads (zlib lets other threads run while it
computes): 0.23 s (ninth round).
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

INDEX = "index.json"
PIECE = 32 << 20
"""Bytes per CRC-32 of a file: the index lists one per piece, in order, so pieces swapped are refused too."""


class SealBroken(ValueError):
    """A stored folder whose index or files cannot be trusted (the message names the file, never its content)."""


def write_sealed(folder: Path, files: dict[str, bytes], meta: dict[str, Any] | None = None) -> None:
    """Store ``files`` (logical name -> bytes) and ``meta`` in ``folder``; files of an earlier write are removed."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    index: dict[str, Any] = {"files": {}, "meta": meta or {}}
    for name, data in files.items():
        stem, dot, suffix = name.partition(".")
        file = f"{stem}-{uuid.uuid4().hex[:16]}{dot}{suffix}"
        replace_file(folder / file, data)
        index["files"][name] = {"file": file, "size": len(data), "crc32": _crc32(data)}
    replace_file(folder / INDEX, json.dumps(index, indent=1, ensure_ascii=False).encode("utf-8"))
    named = {entry["file"] for entry in index["files"].values()} | {INDEX}
    for path in folder.iterdir():
        if path.name not in named and not path.name.startswith("."):
            path.unlink(missing_ok=True)  # files of an earlier write that this index replaced


def read_sealed(folder: Path, mapped: bool = False) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The files and ``meta`` stored in ``folder``; None when nothing is stored; :class:`SealBroken` when damaged.

    ``mapped``: each file as a read-only memory map (a ``memoryview``) instead of bytes. Reading a
    file copies it into fresh memory, which the kernel must zero page by page first (on this VM
    that cost ~3 s for a city's 900 MB of kept tables); a map reads the page cache in place. Files
    are only ever replaced by rename, so a mapped file cannot change under its reader.
    """
    index_path = folder / INDEX
    if not index_path.exists():
        return None
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        entries = index["files"].items()
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise SealBroken(f"{INDEX} unreadable ({type(exc).__name__})") from None
    files = {}
    for name, entry in entries:
        try:
            data = _mapped(folder / entry["file"]) if mapped else (folder / entry["file"]).read_bytes()
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise SealBroken(f"{name} unreadable ({type(exc).__name__})") from None
        if len(data) != entry.get("size") or _crc32(data) != entry.get("crc32"):
            raise SealBroken(f"{entry['file']} does not match its checksum")
        files[name] = data
    return files, index.get("meta") or {}


def _crc32(data: bytes | memoryview) -> list[str]:
    """The CRC-32 of each :data:`PIECE` of ``data``, computed two pieces at a time."""
    view = memoryview(data)
    pieces = [view[at : at + PIECE] for at in range(0, len(view), PIECE)] or [view]
    if len(pieces) == 1:
        return [f"{zlib.crc32(view):08x}"]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="crc32") as pool:
        return [f"{crc:08x}" for crc in pool.map(zlib.crc32, pieces)]


def remove_others(parent: Path, prefix: str, keep: Path) -> None:
    """Delete ``parent``'s folders named ``prefix*`` other than ``keep``: versions or keys never read again."""
    for stale in parent.glob(f"{prefix}*"):
        if stale != keep and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def _mapped(path: Path) -> memoryview | bytes:
    with path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return b""  # an empty file cannot be mapped
        return memoryview(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))


def replace_file(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file, flushed to disk, renamed over it.

    Also the incident cache's parts and index (pipelines/incident_cache.py).
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
