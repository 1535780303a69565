"""The registry's household keys kept per incident-cache scope: the daily ranking does not hash an unchanged registry.

Every morning the features need each person's household code, each household's address row, and
the households' and persons' ids indexed for looking up the calls', visits', cases' and
relations' ids (:class:`features.household_keys.RegistryKeys`, :class:`~features.household_keys.KeyIndex`).
They depend on the registry tables alone, and finding them hashes a city's 2.87M persons' and
1.15M households' ids: ~2 s of a day's ranking whose registry is, on most days, the one of the
day before.

So they are kept beside the cached links and the linker's registry, in
``<scope>/household-keys-<version>/``: the scope (pipelines/incident_cache.py) hashes the
registry files' bytes and the rows the loader accepted, the version the code below. Storage is a
sealed folder (pipelines/sealed_files.py) of six ``.npy`` arrays (96 MB for the full city), read
back as views of the page cache; a damaged, unreadable or mis-sized copy is a miss, rebuilt with
one warning line, and the features are the same either way (tests/test_household_keys_cache.py).
"""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.household_keys import KeyIndex, RegistryKeys, registry_keys
from features.snapshots import household_codes
from pipelines.incident_cache import source_version
from pipelines.sealed_files import SealBroken, read_sealed, remove_others, write_sealed

_log = logging.getLogger("yujing.incident_cache")

KIND = "household-keys"
SOURCES = (
    "features/household_keys.py",
    "features/snapshots.py",
    "pipelines/household_keys_cache.py",
    "pipelines/sealed_files.py",
)
"""The code behind the kept keys and their storage: a change to any is a new version."""


def cached_registry_keys(tables: dict[str, pd.DataFrame], scope: Path | None, counts: dict[str, Any]) -> RegistryKeys:
    """The registry keys of ``tables``: read from ``scope`` when kept there, else computed and kept.

    ``scope``: the incident cache's scope folder (None: no cache, computed here). ``counts``
    (``Prepared.cache``): ``"household keys"`` is added to its ``rebuilt`` list when a kept copy was
    damaged.
    """
    codes = household_codes(tables["households"])
    if scope is None:
        return registry_keys(tables, codes)
    folder = Path(scope) / f"{KIND}-{source_version(SOURCES)}"
    kept = _read(folder, len(tables["persons"]), len(tables["households"]), counts)
    if kept is not None:
        return kept
    keys = registry_keys(tables, codes, indexed=True)
    assert keys.household_index is not None and keys.person_index is not None
    arrays = {
        "members": keys.members,
        "addresses": keys.addresses,
        "household_hashes": keys.household_index.hashes,
        "household_rows": keys.household_index.rows,
        "person_hashes": keys.person_index.hashes,
        "person_rows": keys.person_index.rows,
    }
    try:
        remove_others(folder.parent, f"{KIND}-", folder)  # an older version: never read again
        write_sealed(
            folder, {f"{name}.npy": _npy(a) for name, a in arrays.items()}, {"addresses_unique": keys.addresses_unique}
        )
    except OSError as exc:  # a full disk costs tomorrow's reuse, not today's ranking
        _log.warning("incident cache %s not written (%s); the keys are computed again next run", folder, exc)
    return keys


def _npy(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return buffer.getvalue()


def _array(data: memoryview | bytes) -> np.ndarray:
    """The array of ``.npy`` bytes as a read-only view of them (a mapped file stays in the page cache, not copied)."""
    stream = io.BytesIO(bytes(data[:4096]))  # the header: magic, version, then a dict of at most a few hundred bytes
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f".npy version {version} is not one this module writes")
    if fortran or len(shape) != 1 or dtype.hasobject:
        raise ValueError("not a one-dimensional array of numbers")
    return np.frombuffer(data, dtype=dtype, count=shape[0], offset=stream.tell())


def _read(folder: Path, persons: int, households: int, counts: dict[str, Any]) -> RegistryKeys | None:
    try:
        stored = read_sealed(folder, mapped=True)
        if stored is None:
            return None
        files, meta = stored
        a = {name.removesuffix(".npy"): _array(data) for name, data in files.items()}
        sizes = {"members": persons, "person_hashes": persons, "person_rows": persons}
        sizes |= {"addresses": households, "household_hashes": households, "household_rows": households}
        for name, size in sizes.items():
            want = np.uint64 if name.endswith("_hashes") else np.int64
            if a[name].shape != (size,) or a[name].dtype != want:
                raise ValueError(f"{name}.npy does not match the registry's rows")
        return RegistryKeys(
            a["members"],
            a["addresses"],
            bool(meta["addresses_unique"]),
            KeyIndex(a["household_hashes"], a["household_rows"]),
            KeyIndex(a["person_hashes"], a["person_rows"]),
        )
    except (SealBroken, KeyError, ValueError, TypeError) as exc:  # a miss: computed again from this run's tables
        _log.warning("incident cache %s unreadable (%s); computing the keys again", folder, str(exc)[:120])
        counts.setdefault("rebuilt", []).append("household keys")
        shutil.rmtree(folder, ignore_errors=True)
        return None
