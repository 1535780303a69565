"""The rules' levels before each violent case, kept between daily runs in the incident cache.

A ranking's ``escalations.parquet`` gives, for every violent case of the year before, the
scoring rules' level on each of the 91 mornings up to the case (models/escalations.py). On the
full city that is 12k (household, case day) pairs, 1.1M mornings, 1.4-1.7 s of every day. A pair's
levels depend only on its household's calls received before the case's day: those calls are
history, so a new day changes the levels of the new day's cases and of pairs whose history the
export changed, and nothing else.

**Key.** The pair (household id and case day) and a hash of the calls the rules read of that
household before that day: every column :func:`models.warning.points_at_snapshots` reads
(:data:`CALL_INPUTS`), each call's row hash summed over the calls (so the set counts, not the
order, and a call present twice counts twice), with their number. A call added, removed,
relinked or re-scored before the day changes the key. **Version:** the rules' and the grid's
code (:data:`SOURCES`), the scenarios as loaded and the lookback. **Storage:** kind
``escalations`` in the incident cache's scope (pipelines/incident_cache.py: same parts,
repair and clean-up); one text cell per pair, a character per morning.

Without a cache (``yujing rank --no-cache``) every pair is computed, as before; with one the
levels are the same (tests/test_escalation_cache.py, and the published files byte for byte).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from features.household_keys import arrow_strings, positions_in
from features.utf8_bytes import utf8_bytes
from models.escalations import LevelGrid
from models.levels import LEVELS
from models.warning import CUE_GROUPS, Scenario
from pipelines.incident_cache import row_hashes, source_version
from pipelines.incident_readings import IncidentStore

KIND = "escalations"
SOURCES = (
    "models/escalations.py",
    "models/warning.py",
    "models/levels.py",
    "features/snapshots.py",
    "pipelines/escalation_cache.py",
)
"""The code behind a pair's levels: the rules' points and levels, the grid, and this module's coding."""
CALL_INPUTS = (
    "household_id",
    "received_at",
    "is_dispute",
    "category",
    *(f"cue_{g}" for g in CUE_GROUPS),
    "n_deescalation",
)
"""What the rules read of a call (models/warning.py ``points_at_snapshots``): the pair's key hashes these."""
_NONE = "-"
"""A morning below blue; a level is its position in ``LEVELS`` ("0" red ... "3" blue)."""


def cached_grid(store: IncidentStore, scenarios: Mapping[str, Scenario], lookback_days: int) -> LevelGrid:
    """A :data:`models.escalations.LevelGrid` that computes only the pairs the cache does not hold.

    ``scenarios`` and ``lookback_days`` must be those :func:`models.escalations.escalation_lead_times`
    is called with: they are part of the version.
    """
    setting = repr(sorted(scenarios.items())) + f" lookback {lookback_days}"
    version = source_version(SOURCES, setting)

    def grid(pairs: pd.DataFrame, calls: pd.DataFrame, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        if len(pairs) == 0:
            return compute(np.arange(0))
        days = pairs["day"].to_numpy("datetime64[ns]")
        keys = pd.DataFrame(
            {
                "incident_id": pd.array(
                    pairs["household_id"].astype(str) + "|" + pd.Series(days).dt.strftime("%Y-%m-%d"),
                    dtype=pd.StringDtype("pyarrow", na_value=np.nan),
                ),
                **dict(zip(("calls_hash", "calls"), calls_before(pairs["household_id"], days, calls), strict=True)),
                "pair": np.arange(len(pairs)),
            }
        )

        def levels_of(missing: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame({"levels": encode(compute(missing["pair"].to_numpy()))})

        values, _ = store.cached(KIND, version, keys, levels_of, ("incident_id", "calls_hash", "calls"), ("levels",))
        return decode(values["levels"], lookback_days + 1)

    return grid


def calls_before(households: pd.Series, days: np.ndarray, calls: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: the sum of the row hashes of its household's calls received before its day, and their number.

    The calls are sorted by (household, time) once, so a pair's calls are one run of that order:
    one binary search finds where its day falls, and the run's hashes sum to a difference of
    running sums (wrapping as unsigned 64-bit integers do). Times and days are ranked together
    first, so (household, time) is one integer.
    """
    keys, days = arrow_strings(households), np.asarray(days, dtype="datetime64[ns]").view(np.int64)
    code = positions_in(calls["household_id"], keys)  # -1: not one of the pairs' households
    known = code >= 0
    at = calls["received_at"].to_numpy("datetime64[ns]").view(np.int64)[known]  # NaT first: before every day
    hashed = row_hashes(calls[known], CALL_INPUTS)
    times = np.sort(np.concatenate([at, days]))
    span = np.int64(len(times) + 1)
    call_key = code[known] * span + np.searchsorted(times, at)
    order = np.argsort(call_key, kind="stable")
    call_key, running = (
        call_key[order],
        np.concatenate([np.zeros(1, np.uint64), np.cumsum(hashed[order], dtype=np.uint64)]),
    )
    pair_code = positions_in(keys, keys)
    first = np.searchsorted(call_key, pair_code * span, side="left")
    stop = np.searchsorted(call_key, pair_code * span + np.searchsorted(times, days), side="left")
    return running[stop] - running[first], (stop - first).astype(np.int64)


def encode(levels: np.ndarray) -> list[str]:
    """One text per row of a (pairs x mornings) level matrix: a character per morning (:data:`_NONE` below blue)."""
    chars = np.full(np.shape(levels), ord(_NONE), dtype=np.uint8)
    for i, level in enumerate(LEVELS):
        chars[levels == level] = ord(str(i))
    unknown = (chars == ord(_NONE)) & pd.notna(levels)
    if unknown.any():
        raise ValueError(f"{KIND}: a level outside {LEVELS} cannot be stored")
    return [row.tobytes().decode("ascii") for row in chars]


def decode(texts: pd.Series | pd.api.extensions.ExtensionArray, mornings: int) -> np.ndarray:
    """The level matrix (``None`` below blue) from :func:`encode`'s texts, each ``mornings`` characters long."""
    values, offsets, data = utf8_bytes(arrow_strings(pd.Series(texts)))
    if len(values) == 0:
        return np.empty((0, mornings), dtype=object)
    if (np.diff(offsets) != mornings).any():
        raise ValueError(f"{KIND}: a stored row does not hold {mornings} mornings")
    table = np.full(256, None, dtype=object)
    for i, level in enumerate(LEVELS):
        table[ord(str(i))] = level
    return table[data[offsets[0] : offsets[0] + len(values) * mornings].reshape(len(values), mornings)]
