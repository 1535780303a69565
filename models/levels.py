"""Warning levels for a day's ranking: calibrated thresholds first, then each station's capacity.

A level is a promise of action: a red warning means a visit today. The model's
calibrated probability earns a level by threshold (conf/settings.py
``level_thresholds``); then each station keeps at most ``station_capacity``
warnings of a level, in order of probability, and the rest move one level
down (red to orange, orange to yellow, yellow to blue; blue has no limit).
Nobody is dropped: a household the station cannot visit today stays on its
list, lower down, with the level it earned kept beside it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

LEVELS = ("red", "orange", "yellow", "blue")
"""Most urgent first (the same four levels as the scoring warning models)."""


def threshold_levels(probability: np.ndarray, thresholds: Mapping[str, float]) -> np.ndarray:
    """The level each probability reaches (None below blue)."""
    p = np.asarray(probability, dtype=np.float64)
    out = np.full(len(p), None, dtype=object)
    for level in reversed(LEVELS):  # blue first: the highest threshold reached wins
        out[p >= thresholds[level]] = level
    return out


def apply_capacity(
    levels: np.ndarray, priority: np.ndarray, station: np.ndarray, capacity: Mapping[str, int]
) -> np.ndarray:
    """Levels after each station's capacity: the excess of a level moves one level down, cascading.

    ``priority`` orders households within a station (higher first); ties keep
    input order, so the result is deterministic.
    """
    out = np.asarray(levels, dtype=object).copy()
    order = np.lexsort((np.arange(len(out)), -np.asarray(priority, dtype=np.float64), np.asarray(station)))
    stations = np.asarray(station)[order]
    starts = np.flatnonzero(np.r_[True, stations[1:] != stations[:-1]])
    for lo, hi in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        rows = order[lo:hi]
        for i, level in enumerate(LEVELS[:-1]):
            limit = capacity.get(level)
            if limit is None:
                continue
            at_level = rows[out[rows] == level]
            out[at_level[limit:]] = LEVELS[i + 1]
    return out


def rank_within_station(levels: np.ndarray, priority: np.ndarray, station: np.ndarray) -> np.ndarray:
    """1 for a station's most urgent warning, 2 for the next...; 0 for households without a level."""
    levels = np.asarray(levels, dtype=object)
    level_rank = np.array([LEVELS.index(v) if isinstance(v, str) else len(LEVELS) for v in levels])
    frame = pd.DataFrame(
        {"station": np.asarray(station), "level": level_rank, "p": -np.asarray(priority, np.float64)}
    ).reset_index()
    warned = frame[frame["level"] < len(LEVELS)].sort_values(["station", "level", "p", "index"])
    out = np.zeros(len(levels), dtype=np.int64)
    out[warned["index"].to_numpy()] = warned.groupby("station", sort=False).cumcount().to_numpy() + 1
    return out


def assign_levels(
    by_threshold: np.ndarray,
    priority: np.ndarray,
    station: np.ndarray,
    eligible: np.ndarray,
    capacity: Mapping[str, int],
) -> pd.DataFrame:
    """``threshold_level``, ``level`` (after capacity) and ``rank_in_station`` for each household.

    ``by_threshold`` is the level each household earned (the model's
    :func:`threshold_levels`, or the scoring rules' when the model is
    unavailable); ``priority`` orders a station's list (probability or points).
    Only ``eligible`` households (in the model's population) can be warned.
    """
    earned = np.asarray(by_threshold, dtype=object).copy()
    earned[~np.asarray(eligible, dtype=bool)] = None
    priority = np.nan_to_num(np.asarray(priority, np.float64), nan=-1.0)
    final = apply_capacity(earned, priority, station, capacity)
    return pd.DataFrame(
        {
            "threshold_level": pd.Series(earned, dtype=object),  # object: None (not NaN) for "no warning"
            "level": pd.Series(final, dtype=object),
            "rank_in_station": rank_within_station(final, priority, station),
        }
    )
