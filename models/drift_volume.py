"""Call volume per station and per county against its own weekly history (models/drift.py's third check).

A station's calls in the last week are compared with the mean of its weekly counts in the
reference, with a negative-binomial tail probability whose dispersion is pooled over all
stations of the history by moments (variance = mean + alpha mean^2). Calls cluster: one
quarrelling family can call five times in a week, so a Poisson test would flag small
stations every week; the pooled alpha absorbs that, and a ratio threshold keeps a
significant but tiny change of a big county quiet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from models.drift_config import DriftConfig

__all__ = ["county_history", "volume_rows", "weekly_counts"]


def weekly_counts(
    received_at: pd.Series, groups: pd.Series, end: pd.Timestamp, weeks: int
) -> tuple[list[str], dict[str, list[int]]]:
    """Calls per group in each of the ``weeks`` 7-day blocks before ``end`` (oldest first), and the blocks' ends."""
    at = pd.to_datetime(received_at).to_numpy()
    end = pd.Timestamp(end)
    age = (end.to_datetime64() - at) / np.timedelta64(7, "D")
    keep = (age > 0) & (age <= weeks)
    block = weeks - 1 - np.floor(age[keep] - 1e-12).astype(np.int64)  # 0 = oldest
    table = pd.crosstab(groups.to_numpy()[keep], block)
    table = table.reindex(columns=range(weeks), fill_value=0)
    ends = [f"{end - pd.Timedelta(days=7 * (weeks - 1 - w)):%Y-%m-%d}" for w in range(weeks)]
    return ends, {str(g): [int(x) for x in row] for g, row in zip(table.index, table.to_numpy(), strict=True)}


def _dispersion(history: Mapping[str, Sequence[int]]) -> float:
    """Negative-binomial alpha (variance = mean + alpha mean^2), pooled over groups by moments; 0 = Poisson."""
    means = np.array([np.mean(w) for w in history.values() if len(w) > 1])
    variances = np.array([np.var(w, ddof=1) for w in history.values() if len(w) > 1])
    denominator = float(np.sum(means**2))
    return max(0.0, float(np.sum(variances - means)) / denominator) if denominator > 0 else 0.0


def _tail(calls: int, mean: float, alpha: float) -> float:
    """Probability of a count at least as far from ``mean`` as ``calls``, on the side it lies."""
    if mean <= 0:
        return 0.0 if calls > 0 else 1.0
    # scipy.special's functions, not scipy.stats' distributions: the same tails (the negative binomial's
    # within 1e-13, far below the 3 digits reported) without importing scipy.stats, ~1 s of every ranking
    if alpha <= 1e-9:  # Poisson: P(X >= calls) and P(X <= calls)
        return float(special.pdtrc(calls - 1, mean) if calls >= mean else special.pdtr(calls, mean))
    size = 1.0 / alpha  # negative binomial with success probability p: P(X <= k) = I_p(size, k + 1)
    p = size / (size + mean)
    return float(special.betaincc(size, calls, p) if calls >= mean else special.betainc(size, calls + 1, p))


def volume_rows(
    current: Mapping[str, int],
    history: Mapping[str, Sequence[int]],
    county_of: Mapping[str, str],
    window_days: int,
    config: DriftConfig,
    level: str,
) -> list[dict[str, Any]]:
    """One row per group (station or county): calls in the window, expected from its history, the status.

    ``p_value`` is Bonferroni-adjusted for the number of groups compared (``min(1, n x p)``): the
    thresholds of conf/drift.toml are then the chance that *any* station (or county) of a clean
    day is flagged, not each one's; 137 stations tested daily would otherwise flag one by chance
    every few days.
    """
    alpha = _dispersion(history)
    scale = window_days / 7.0
    rows = []
    groups = sorted(set(history) | set(current))
    for group in groups:
        calls = int(current.get(group, 0))
        weekly = history.get(group, [])
        expected = float(np.mean(weekly)) * scale if len(weekly) else 0.0
        p = min(1.0, len(groups) * _tail(calls, expected, alpha / scale if scale > 0 else alpha))
        ratio = calls / expected if expected > 0 else None
        status = "ok"
        if ratio is not None:
            far = max(ratio, 1 / ratio) if ratio > 0 else math.inf
            status = "alert" if far >= config.volume_ratio_alert and p <= config.volume_p_alert else status
            if status == "ok" and far >= config.volume_ratio_warn and p <= config.volume_p_warn:
                status = "warn"
        elif calls >= 10:  # a station the history never saw, with calls: new, or renamed in the export
            status = "warn"
        rows.append(
            {
                "station_id": group,
                "county_code": county_of.get(group, group) if level == "station" else group,
                "level": level,
                "calls": calls,
                "expected": round(expected, 2),
                "ratio": None if ratio is None else round(ratio, 3),
                "p_value": float(f"{p:.3g}"),
                "status": status,
            }
        )
    return rows


def county_history(stations: Mapping[str, Sequence[int]], county_of: Mapping[str, str]) -> dict[str, list[int]]:
    out: dict[str, np.ndarray] = {}
    for station, weekly in stations.items():
        county = county_of.get(station) or ""
        if county:
            out[county] = out.get(county, np.zeros(len(weekly), dtype=np.int64)) + np.asarray(weekly, dtype=np.int64)
    return {k: [int(x) for x in v] for k, v in out.items()}
