"""The registry's household keys kept per incident-cache scope: the daily ranking does not hash an unchanged registry.

Every morning the features need each person's household code and each household's address row
(:class:`features.household_keys.RegistryKeys`). They depend on the registry tables alone, and
finding them hashes a city's 2.87M persons' and 1.15M households' ids against the registry: ~1 s
of a day's ranking whose registry is, on most days, the one of the day before.

So they are kept beside the cached links and the linker's registry, in
``<scope>/household-keys-<version>/``: the scope (pipelines/incident_cache.py) hashes the
registry files' bytes and the rows the loader accepted, the version the code below. Storage is a
sealed folder (pipelines/sealed_files.py) of two ``.npy`` arrays; a damaged, unreadable or
mis-sized copy is a miss, rebuilt with one warning line, and the features are the same either
way (tests/test_household_keys_cache.py).
"""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.household_keys import RegistryKeys, registry_keys
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
    keys = registry_keys(tables, codes)
    try:
        remove_others(folder.parent, f"{KIND}-", folder)  # an older version: never read again
        write_sealed(
            folder,
            {"members.npy": _npy(keys.members), "addresses.npy": _npy(keys.addresses)},
            {"addresses_unique": keys.addresses_unique},
        )
    except OSError as exc:  # a full disk costs tomorrow's reuse, not today's ranking
        _log.warning("incident cache %s not written (%s); the keys are computed again next run", folder, exc)
    return keys


def _npy(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return buffer.getvalue()


def _read(folder: Path, persons: int, households: int, counts: dict[str, Any]) -> RegistryKeys | None:
    try:
        stored = read_sealed(folder)
        if stored is None:
            return None
        files, meta = stored
        members = np.load(io.BytesIO(files["members.npy"]), allow_pickle=False)
        addresses = np.load(io.BytesIO(files["addresses.npy"]), allow_pickle=False)
        if members.shape != (persons,) or addresses.shape != (households,) or members.dtype != np.int64:
            raise ValueError("arrays do not match the registry's rows")
        return RegistryKeys(members, addresses.astype(np.int64, copy=False), bool(meta["addresses_unique"]))
    except (SealBroken, KeyError, ValueError, TypeError) as exc:  # a miss: computed again from this run's tables
        _log.warning("incident cache %s unreadable (%s); computing the keys again", folder, str(exc)[:120])
        counts.setdefault("rebuilt", []).append("household keys")
        shutil.rmtree(folder, ignore_errors=True)
        return None
