"""Capacity curves: how much recall of next-horizon escalations k visits per station buy, and at what false-alarm load.

A station chooses how many households to visit; this answers "if we visit k
a day (or a week), what share of the households that went on to a violent
case would we have seen first, and how many doors do we knock on for
nothing?", for k = 1..20, city-wide and per county, for the model and the
scoring rules side by side, on the test period's snapshots.

Snapshots are weekly (``snapshot_every_days``), so a cadence is a budget per
snapshot: *per week*, k visits per station and snapshot week = the top
``k × every / 7`` of the station's list that date; *per day*, k visits a day
for the ``every`` days until the next snapshot = the top ``k × every`` of
that list (the station works down one list for the week; it does not
re-rank daily, since the features are weekly). Which rows are on a list is
``models.evaluation.top_k_chosen``, the rule every ranking metric uses.

Recall counts snapshot rows: a household that escalates is a positive on
each weekly snapshot in the horizon before its case, and is captured on the
weeks it was on the list (the same unit as ``recall_at_k`` in the training
report). False-alarm load = visits to rows that did not escalate, in total
and per station-week.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from models.evaluation import top_k_chosen

KS: tuple[int, ...] = tuple(range(1, 21))
CADENCES: tuple[str, ...] = ("day", "week")


def budget(k: int, cadence: str, every_days: int) -> int:
    """Visits per station and snapshot for ``k`` visits per ``cadence`` (at least one)."""
    per_day = {"day": float(k), "week": k / 7}[cadence]
    return max(1, round(per_day * every_days))


def _curve(frame: pd.DataFrame, chosen: dict[int, np.ndarray], ks: list[int], station_weeks: int) -> dict[str, list]:
    y = frame["y"].to_numpy(bool)
    positives = int(y.sum())
    out: dict[str, list] = {"visits": [], "hits": [], "recall": [], "precision": [], "false_alarms": []}
    out["false_alarms_per_station_week"] = []
    for k in ks:
        c = chosen[k]
        visits, hits = int(c.sum()), int((c & y).sum())
        out["visits"].append(visits)
        out["hits"].append(hits)
        out["recall"].append(round(hits / positives, 4) if positives else None)
        out["precision"].append(round(hits / visits, 4) if visits else None)
        out["false_alarms"].append(visits - hits)
        out["false_alarms_per_station_week"].append(round((visits - hits) / max(station_weeks, 1), 3))
    return out


def capacity_curves(
    scores: dict[str, np.ndarray],
    labels: np.ndarray,
    station_id: pd.Series,
    snapshot_date: pd.Series,
    county: pd.Series,
    every_days: int = 7,
    ks: Iterable[int] = KS,
) -> dict[str, Any]:
    """Recall and false-alarm load per k, cadence and scorer (``scores``: name -> score per row), city and counties.

    A county's recall uses the same lists (each station's top rows),
    restricted to the county's households: what the county's stations would
    have caught of the county's escalations.
    """
    ks = list(ks)
    frame = pd.DataFrame(
        {
            "station_id": pd.Series(station_id).to_numpy(),
            "snapshot_date": pd.Series(snapshot_date).to_numpy(),
            "county": pd.Series(county).astype(str).to_numpy(),
            "y": np.asarray(labels).astype(bool),
        }
    )
    groups = frame[["station_id", "snapshot_date"]]
    station_weeks = int(groups.drop_duplicates().shape[0])
    counties = sorted(frame["county"].unique())
    out: dict[str, Any] = {
        "k": ks,
        "every_days": every_days,
        "budgets": {c: [budget(k, c, every_days) for k in ks] for c in CADENCES},
        "rows": len(frame),
        "positives": int(frame["y"].sum()),
        "station_weeks": station_weeks,
        "first_date": str(pd.Timestamp(frame["snapshot_date"].min()).date()) if len(frame) else None,
        "last_date": str(pd.Timestamp(frame["snapshot_date"].max()).date()) if len(frame) else None,
        "city": {},
        "counties": {},
    }
    county_rows = {c: (frame["county"] == c).to_numpy() for c in counties}
    county_weeks = {c: int(groups[county_rows[c]].drop_duplicates().shape[0]) for c in counties}
    for name, score in scores.items():
        s = np.asarray(score, np.float64)
        out["city"][name] = {}
        for cadence in CADENCES:
            chosen = {k: top_k_chosen(s, groups, budget(k, cadence, every_days)) for k in ks}
            out["city"][name][cadence] = _curve(frame, chosen, ks, station_weeks)
            for c in counties:
                part = {k: v[county_rows[c]] for k, v in chosen.items()}
                entry = out["counties"].setdefault(c, {"positives": int(frame["y"][county_rows[c]].sum())})
                entry.setdefault(name, {})[cadence] = _curve(frame[county_rows[c]], part, ks, county_weeks[c])
    return out


def at(capacity: dict[str, Any], side: str, cadence: str, k: int, field: str = "recall") -> float | None:
    """One number of the city curve, e.g. the model's recall at 5 visits a day (for metrics and sentences)."""
    ks = capacity["k"]
    if k not in ks or side not in capacity["city"]:
        return None
    return capacity["city"][side][cadence][field][ks.index(k)]
