"""Capacity curves: recall and false-alarm load per visits a day or a week, against hand counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.capacity import at, budget, capacity_curves


def test_budgets_per_weekly_snapshot() -> None:
    assert [budget(k, "week", 7) for k in (1, 5, 20)] == [1, 5, 20]
    assert [budget(k, "day", 7) for k in (1, 5, 20)] == [7, 35, 140]  # k a day for the 7 days to the next snapshot
    assert budget(1, "week", 14) == 2 and budget(1, "week", 1) == 1  # never less than one visit


def test_recall_and_false_alarms_equal_a_hand_count() -> None:
    """Two stations, two weeks. S1 week 1: scores .9 .8 .1, the .8 escalates; S2 week 1: .5 .4, the .5 escalates;
    S1 week 2: .3 .2, the .2 escalates (county B)."""
    frame = pd.DataFrame(
        {
            "station": ["S1", "S1", "S1", "S2", "S2", "S1", "S1"],
            "date": pd.to_datetime(["2024-01-01"] * 5 + ["2024-01-08"] * 2),
            "county": ["A", "A", "A", "A", "A", "A", "B"],
            "score": [0.9, 0.8, 0.1, 0.5, 0.4, 0.3, 0.2],
            "y": [0, 1, 0, 1, 0, 0, 1],
        }
    )
    rules = -frame["score"].to_numpy()  # the reverse order
    out = capacity_curves(
        {"model": frame["score"].to_numpy(), "rules": rules},
        frame["y"].to_numpy(),
        frame["station"],
        frame["date"],
        frame["county"],
        every_days=7,
        ks=[1, 2, 3],
    )
    week = out["city"]["model"]["week"]
    # k=1: visits .9 (S1 w1), .5 (S2), .3 (S1 w2): one hit of three escalations, two false alarms over 3 station-weeks
    # k=2: every escalation is among its list's top two; k=3 adds S1 week 1's .1, a false alarm
    assert (week["visits"], week["hits"], week["false_alarms"]) == ([3, 6, 7], [1, 3, 3], [2, 3, 4])
    assert week["recall"] == [round(1 / 3, 4), 1.0, 1.0]
    assert week["precision"] == [round(1 / 3, 4), 0.5, round(3 / 7, 4)]
    assert week["false_alarms_per_station_week"] == [round(2 / 3, 3), 1.0, round(4 / 3, 3)]
    assert out["city"]["model"]["day"]["recall"] == [1.0, 1.0, 1.0]  # 7 visits a week: every row
    assert out["city"]["rules"]["week"]["hits"] == [1, 3, 3]  # reversed order: .1 and .4 miss, S1 week 2's .2 hits
    assert out["counties"]["B"]["positives"] == 1 and out["counties"]["B"]["model"]["week"]["recall"] == [0.0, 1.0, 1.0]
    assert out["counties"]["A"]["model"]["week"]["hits"] == [1, 2, 2]
    assert at(out, "model", "week", 1) == round(1 / 3, 4) and at(out, "model", "week", 9) is None
    assert (out["rows"], out["positives"], out["station_weeks"]) == (7, 3, 3)


def test_recall_and_load_never_fall_as_k_grows() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    station = rng.choice([f"S{i}" for i in range(12)], n)
    date = pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 8, n) * 7, unit="D")
    y = rng.random(n) < 0.03
    score = y * 0.5 + rng.random(n)
    out = capacity_curves(
        {"model": score, "rules": rng.random(n)}, y, pd.Series(station), pd.Series(date), pd.Series(station)
    )
    for side in ("model", "rules"):
        for cadence in ("day", "week"):
            curve = out["city"][side][cadence]
            assert np.all(np.diff(curve["recall"]) >= 0) and np.all(np.diff(curve["false_alarms"]) >= 0)
    assert at(out, "model", "week", 5) > at(out, "rules", "week", 5)  # the informative score buys more recall
    assert at(out, "model", "day", 20) == pytest.approx(1.0)  # 140 visits a week: every household of a station
