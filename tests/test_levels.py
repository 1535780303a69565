"""The one level policy (models/levels.py): rules' level, published level, raised_by, capacity, order.

Every scalar function is checked equal to its vectorised form on every
combination (ties included), and the promises to the stations are checked as
numbers: a rules level is never lowered, capacity moves only model-raised
excess, a model level without a recent call is not published.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from models.levels import (
    LEVELS,
    apply_capacity,
    assign_levels,
    level_rank,
    priority,
    publish_level,
    publish_levels,
    rank_within_station,
    threshold_level,
    threshold_levels,
    worst_scenario,
    worst_scenarios,
)
from models.warning import load_scenarios

THRESHOLDS = {"red": 0.2, "orange": 0.1, "yellow": 0.05, "blue": 0.02}
OPTIONS = (*LEVELS, None)


def test_threshold_levels_take_the_highest_reached() -> None:
    p = np.array([0.5, 0.2, 0.199, 0.1, 0.05, 0.02, 0.0199, np.nan])
    expected = ["red", "red", "orange", "orange", "yellow", "blue", None, None]
    assert list(threshold_levels(p, THRESHOLDS)) == expected
    assert [threshold_level(float(x), THRESHOLDS) for x in p] == expected


def test_ties_between_scenarios_go_to_the_one_listed_first_in_the_file() -> None:
    """Issue 10: family and escalation both at 10 points (both yellow) gave family in batch, escalation online."""
    scenarios = load_scenarios()
    assert list(scenarios).index("family") < list(scenarios).index("escalation")
    points = {name: 0.0 for name in scenarios} | {"family": 10.0, "escalation": 10.0}
    assert worst_scenario(points, scenarios) == ("yellow", "family", 10.0)
    level, name, best = worst_scenarios({k: np.array([v]) for k, v in points.items()}, scenarios)
    assert (level[0], name[0], best[0]) == ("yellow", "family", 10.0)
    # A worse level beats more points: escalation red at 22 beats repeat_caller... and family at 21 (red too)
    points = {name: 0.0 for name in scenarios} | {"family": 21.0, "escalation": 22.0, "repeat_caller": 17.0}
    assert worst_scenario(points, scenarios) == ("red", "escalation", 22.0)
    # orange with more points loses to red with fewer
    points = {name: 0.0 for name in scenarios} | {"family": 20.0, "escalation": 21.0}
    assert worst_scenario(points, scenarios) == ("red", "family", 20.0)
    # below blue everywhere: no level, no scenario, the most points
    points = {name: 0.0 for name in scenarios} | {"family": 3.0, "escalation": 3.5}
    assert worst_scenario(points, scenarios) == (None, None, 3.5)


def test_worst_scenario_scalar_equals_vectorised_on_every_combination() -> None:
    """Values at, just under and between every scenario's thresholds, for all five scenarios at once."""
    scenarios = load_scenarios()
    grid = [0.0, 3.9, 4.0, 5.0, 8.0, 9.0, 10.0, 12.0, 14.0, 15.0, 18.0, 20.0, 22.0, 30.0]
    names = list(scenarios)
    rng = np.random.default_rng(0)
    combos = np.array(list(itertools.product(grid, repeat=2)))
    rows = []
    for a, b in itertools.combinations(range(len(names)), 2):  # every pair of scenarios over the whole grid
        block = np.zeros((len(combos), len(names)))
        block[:, a], block[:, b] = combos[:, 0], combos[:, 1]
        rows.append(block)
    rows.append(rng.choice(grid, size=(3000, len(names))))  # all five at once, many exact ties
    values = np.vstack(rows)
    level, name, best = worst_scenarios({s: values[:, j] for j, s in enumerate(names)}, scenarios)
    for i in range(len(values)):
        expected = worst_scenario(dict(zip(names, values[i].tolist(), strict=True)), scenarios)
        assert (level[i], name[i], best[i]) == expected, values[i]
    assert {v for v in level} == set(OPTIONS)  # every level reached, so the check covered them all


def test_publish_level_scalar_equals_vectorised_on_every_combination() -> None:
    combos = list(itertools.product(OPTIONS, OPTIONS, (True, False)))
    rules = np.array([c[0] for c in combos], dtype=object)
    model = np.array([c[1] for c in combos], dtype=object)
    evidence = np.array([c[2] for c in combos])
    levels, raised = publish_levels(rules, model, evidence)
    for i, (r, m, e) in enumerate(combos):
        assert (levels[i], raised[i]) == publish_level(r, m, e)
        published = publish_level(r, m, e)[0]
        # the rules' level is never lowered; the model only counts with evidence
        assert level_rank(published) <= level_rank(r)
        expected = min(level_rank(r), level_rank(m if e else None))
        assert level_rank(published) == expected
    assert publish_level("red", "blue") == ("red", "rules")
    assert publish_level("blue", "orange") == ("orange", "model")
    assert publish_level("yellow", "yellow") == ("yellow", "both")
    assert publish_level(None, "red", evidence=False) == (None, None)  # static traits alone: no warning
    assert publish_level("blue", "red", evidence=False) == ("blue", "rules")
    assert publish_level(None, None) == (None, None)


def test_capacity_moves_only_model_raised_excess_and_never_below_the_rules_level() -> None:
    # One station: 3 rules-red, 3 model-red (rules: orange, yellow, none), room for 2 reds and 2 oranges.
    rules = np.array(["red", "red", "red", "orange", "yellow", None], dtype=object)
    model = np.array([None, "blue", None, "red", "red", "red"], dtype=object)
    evidence = np.ones(6, dtype=bool)
    score = np.array([0.01, 0.02, 0.03, 0.9, 0.8, 0.7])  # the model ranks its own households first
    order = priority(score, np.zeros(6), np.array([f"H{i}" for i in range(6)]))
    table = assign_levels(rules, model, evidence, order, np.array(["S"] * 6), {"red": 2, "orange": 2})
    # The rules' reds stay red beyond the capacity; every model-raised red moves down.
    assert list(table["level"][:3]) == ["red", "red", "red"]
    assert list(table["raised_by"][:3]) == ["rules", "rules", "rules"]
    # Orange has room for 2: the rules-orange household (fixed) and the best model one; the third goes yellow.
    assert list(table["level"][3:]) == ["orange", "orange", "yellow"]
    assert list(table["raised_by"][3:]) == ["both", "model", "model"]  # capped onto its rules level: both
    assert list(table["threshold_level"]) == ["red", "red", "red", "red", "red", "red"]
    for final, floor in zip(table["level"], rules, strict=True):
        assert level_rank(final) <= level_rank(floor)


def test_a_model_level_without_a_recent_call_is_not_published() -> None:
    """Static traits alone (流动人口户, 家庭成员N人) never make a warning: the rules' level stands."""
    rules = np.array([None, "blue", None], dtype=object)
    model = np.array(["yellow", "orange", "yellow"], dtype=object)
    evidence = np.array([False, False, True])
    order = priority(np.array([0.5, 0.4, 0.3]), np.zeros(3), np.array(["H1", "H2", "H3"]))
    table = assign_levels(rules, model, evidence, order, np.array(["S"] * 3), {})
    assert list(table["level"]) == [None, "blue", "yellow"]
    assert list(table["raised_by"]) == [None, "rules", "model"]
    assert list(table["rank_in_station"]) == [0, 2, 1]


def test_capacity_is_per_station_and_never_drops_anyone() -> None:
    rng = np.random.default_rng(3)
    station = rng.choice(["S1", "S2", "S3"], size=300)
    prio = rng.random(300)
    levels = threshold_levels(prio, {"red": 0.6, "orange": 0.4, "yellow": 0.2, "blue": 0.0})
    capacity = {"red": 3, "orange": 5, "yellow": 10}
    out = apply_capacity(levels, prio, station, capacity)
    assert (out != None).sum() == (levels != None).sum()  # noqa: E711 - elementwise comparison
    for s in ("S1", "S2", "S3"):
        for level, limit in capacity.items():
            assert ((out == level) & (station == s)).sum() == limit  # plenty of candidates: every slot filled
        rows = np.flatnonzero(station == s)
        rows = rows[np.argsort(-prio[rows])]
        ranks = [level_rank(v) for v in out[rows]]
        assert ranks == sorted(ranks)  # a household never outranks one with a higher priority


def test_order_in_a_station_is_level_then_raw_score_then_points_then_household() -> None:
    score = np.array([0.3, 0.3, 0.3, np.nan, 0.9])
    points = np.array([5.0, 7.0, 5.0, 30.0, 0.0])
    ids = np.array(["H3", "H1", "H2", "H0", "H4"])
    prio = priority(score, points, ids)
    assert len(set(prio)) == len(prio)  # strictly ordered
    assert list(np.argsort(-prio)) == [4, 1, 2, 0, 3]  # score, then points, then id; NaN score last
    levels = np.array(["blue", "blue", "blue", "red", None], dtype=object)
    assert list(rank_within_station(levels, prio, np.array(["A"] * 5))) == [4, 2, 3, 1, 0]


def test_a_rules_red_household_is_red_in_the_ranking_however_low_the_model_scores_it() -> None:
    """A hand-built city: the model scores every household near zero; the rules-red one is still red."""
    from pipelines.ranking import RankConfig, Scored, level_table

    scenarios = load_scenarios()
    n = 50
    frame = pd.DataFrame(
        {
            "household_id": [f"H{i:03d}" for i in range(n)],
            "station_id": ["S1"] * n,
            "in_scope": [True] * n,
            "calls_90d": [3] * n,
        }
    )
    points = {s: np.zeros(n) for s in scenarios}
    points["family"][:4] = [24.0, 22.0, 21.0, 20.0]  # four rules-red households in one station
    points["max"] = np.max(np.vstack([points[s] for s in scenarios]), axis=0)
    probability = np.full(n, 1e-4)
    score = np.linspace(0.001, 0.0001, n)
    probability[10:14] = 0.9  # four model-red households, rules below blue
    score[10:14] = 0.99
    scored = Scored(pd.Timestamp("2024-06-01"), frame, [], points, "model", probability, {}, None, score)
    config = RankConfig(thresholds=THRESHOLDS, capacity={"red": 2, "orange": 2, "yellow": 5})
    table = level_table(scored, config)
    assert list(table["level"][:4]) == ["red"] * 4  # capacity 2, yet all four rules reds stay red
    assert list(table["raised_by"][:4]) == ["rules"] * 4
    assert list(table["model_level"][:4]) == [None] * 4
    assert list(table["level"][10:14]) == ["orange", "orange", "yellow", "yellow"]  # model excess moved down
    assert (table["raised_by"][10:14] == "model").all()
    # The rules rank when there is no model: same rules levels, raised_by rules everywhere.
    rules_only = Scored(scored.day, frame, [], points, "rules", np.full(n, np.nan), {})
    table = level_table(rules_only, config)
    assert list(table["level"][:4]) == ["red"] * 4 and table["level"][4:].isna().all()
    assert set(table["raised_by"].dropna()) == {"rules"}


@pytest.mark.parametrize("bad", [{"red": 0.1, "orange": 0.2, "yellow": 0.05, "blue": 0.01}, {"red": 0.3}])
def test_settings_refuse_thresholds_that_do_not_fall(bad: dict) -> None:
    from conf import Settings

    with pytest.raises(ValueError, match="level_thresholds"):
        Settings(level_thresholds=bad)
