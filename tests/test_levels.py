"""Warning levels: thresholds, each station's capacity, order within a station."""

from __future__ import annotations

import numpy as np
import pytest

from models.levels import apply_capacity, assign_levels, rank_within_station, threshold_levels

THRESHOLDS = {"red": 0.2, "orange": 0.1, "yellow": 0.05, "blue": 0.02}


def test_threshold_levels_take_the_highest_reached() -> None:
    p = np.array([0.5, 0.2, 0.199, 0.1, 0.05, 0.02, 0.0199, np.nan])
    assert list(threshold_levels(p, THRESHOLDS)) == ["red", "red", "orange", "orange", "yellow", "blue", None, None]


def test_capacity_moves_the_excess_one_level_down_and_cascades() -> None:
    levels = np.array(["red"] * 5 + ["orange"] * 2 + ["yellow"], dtype=object)
    priority = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.15, 0.12, 0.06])
    station = np.array(["S1"] * 8)
    out = apply_capacity(levels, priority, station, {"red": 2, "orange": 3, "yellow": 2})
    # 2 red stay; 3 excess reds join 2 oranges: 5 oranges, 3 stay, 2 (the lowest priority) go yellow;
    # then 3 yellows with room for 2: the lowest goes blue.
    assert list(out) == ["red", "red", "orange", "orange", "orange", "yellow", "yellow", "blue"]


def test_capacity_is_per_station_and_never_drops_anyone() -> None:
    rng = np.random.default_rng(3)
    station = rng.choice(["S1", "S2", "S3"], size=300)
    priority = rng.random(300)
    levels = threshold_levels(priority, {"red": 0.6, "orange": 0.4, "yellow": 0.2, "blue": 0.0})
    capacity = {"red": 3, "orange": 5, "yellow": 10}
    out = apply_capacity(levels, priority, station, capacity)
    assert (out != None).sum() == (levels != None).sum()  # noqa: E711 - elementwise comparison
    for s in ("S1", "S2", "S3"):
        for level, limit in capacity.items():
            assert ((out == level) & (station == s)).sum() == limit  # plenty of candidates: every slot filled
    # Within a station a household never outranks one with a higher priority.
    order = {"red": 0, "orange": 1, "yellow": 2, "blue": 3}
    for s in ("S1", "S2", "S3"):
        rows = np.flatnonzero(station == s)
        rows = rows[np.argsort(-priority[rows])]
        ranks = [order[v] for v in out[rows]]
        assert ranks == sorted(ranks)


def test_rank_within_station_orders_by_level_then_priority() -> None:
    levels = np.array(["blue", "red", None, "red", "yellow", "red"], dtype=object)
    priority = np.array([0.9, 0.3, 0.99, 0.5, 0.1, 0.4])
    station = np.array(["A", "A", "A", "A", "A", "B"])
    assert list(rank_within_station(levels, priority, station)) == [4, 2, 0, 1, 3, 1]


def test_assign_levels_warns_only_eligible_households() -> None:
    p = np.array([0.5, 0.5, 0.01])
    table = assign_levels(
        threshold_levels(p, THRESHOLDS), p, np.array(["S", "S", "S"]), np.array([True, False, True]), {"red": 5}
    )
    assert list(table["level"]) == ["red", None, None]
    assert list(table["rank_in_station"]) == [1, 0, 0]


@pytest.mark.parametrize("bad", [{"red": 0.1, "orange": 0.2, "yellow": 0.05, "blue": 0.01}, {"red": 0.3}])
def test_settings_refuse_thresholds_that_do_not_fall(bad: dict) -> None:
    from conf import Settings

    with pytest.raises(ValueError, match="level_thresholds"):
        Settings(level_thresholds=bad)
