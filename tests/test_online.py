"""Online household features equal the batch snapshot features on the same history.

The service recomputes a household's call features from its stored calls plus
one new call (features/online.py, models/warning.household_points); the
daily ranking computes them for the whole city at once
(features/snapshots.py). Any difference would be training/serving skew, so
these tests compare the two on every in-scope household of a simulated city.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from features.online import Call, call_features, new_call_flags
from models.warning import household_points, load_scenarios
from pipelines import ranking
from pipelines.preparation import prepare
from serving.history import HouseholdHistory
from serving.incident import household_row

DAY = pd.Timestamp("2024-09-02")


@pytest.fixture(scope="module")
def stored(small_city, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[no-untyped-def]
    _, city_dir = small_city
    prepared = prepare(city_dir)
    scored = ranking.score_households(prepared, DAY, None, None)
    folder = tmp_path_factory.mktemp("history")
    for name, table in ranking.serving_tables(prepared, scored, 730).items():
        table.to_parquet(folder / f"{name}.parquet")
    manifest = {"date": f"{DAY:%Y-%m-%d}", "feature_names": scored.feature_names}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return {"prepared": prepared, "scored": scored, "history": HouseholdHistory(folder)}


def test_stored_calls_reuse_the_snapshots_flags_exactly(stored: dict) -> None:
    """The online tables take each call's household code and caller flags from the features' snapshots
    (``Scored.codes``); computed again from the registry they are the same, row for row."""
    prepared, scored = stored["prepared"], stored["scored"]
    assert scored.codes is not None
    reused = ranking.serving_tables(prepared, scored, 730)
    again = ranking.serving_tables(prepared, dataclasses.replace(scored, codes=None), 730)
    assert len(reused["calls"]) > 1000 and reused["calls"]["third_party"].any()
    assert reused["calls"]["distinct_start"].any() and not reused["calls"]["distinct_start"].all()
    for name in reused:
        pd.testing.assert_frame_equal(reused[name], again[name], check_exact=True)


def test_online_features_equal_the_batch_snapshot(stored: dict) -> None:
    scored, history = stored["scored"], stored["history"]
    names = scored.feature_names
    X = scored.frame[names].to_numpy(np.float32)
    in_scope = np.flatnonzero(scored.frame["in_scope"].to_numpy())
    quiet = np.arange(300)  # households with nothing on record too
    rows = np.unique(np.concatenate([in_scope, quiet]))
    assert len(in_scope) > 500
    scenarios = load_scenarios()
    worst = 0.0
    for i in rows:
        household = history.get(scored.frame["household_id"].iloc[i])
        online, _ = household_row(names, household, household.calls, history.day_sec, scenarios)
        worst = max(worst, float(np.abs(online[0] - X[i]).max()))
    assert worst < 1e-4


def test_a_new_call_counts_as_the_batch_would_count_it(stored: dict) -> None:
    """Adding a call and looking one second later equals the batch features of a history that holds it."""
    history = stored["history"]
    scored = stored["scored"]
    household_id = scored.frame.loc[scored.frame["in_scope"], "household_id"].iloc[0]
    household = history.get(household_id)
    t = history.day_sec + 3_600
    call = Call(t, True, "family", 0.9, 0, frozenset({"violence", "threat"}), False, False, None)
    before = call_features(household.calls, t + 1, household.first_dispute_sec)
    after = call_features((*household.calls, call), t + 1, household.first_dispute_sec)
    assert after["calls_7d"] == before["calls_7d"] + 1
    assert after["disputes_30d"] == before["disputes_30d"] + 1
    assert after["cat_family_90d"] == before["cat_family_90d"] + 1
    assert after["cue_violence_30d"] == before["cue_violence_30d"] + 1
    assert after["days_since_last_call"] == pytest.approx(1 / 86_400)
    assert after["max_dispute_score_90d"] >= 0.9
    points_before = household_points(household.calls, t + 1)
    points_after = household_points((*household.calls, call), t + 1)
    assert points_after["family"] > points_before["family"]
    assert points_after["max"] >= points_before["max"]


def test_new_call_flags_follow_the_batch_definitions() -> None:
    year = 365 * 86_400
    old = Call(0, True, "family", 0.9, 0, frozenset(), False, True, "P1")
    assert new_call_flags((old,), "P1", "H2", "H1", year - 1) == (True, False)  # same caller within a year
    assert new_call_flags((old,), "P1", "H1", "H1", year) == (False, True)  # a year later: counts again
    assert new_call_flags((old,), None, None, "H1", 10) == (False, False)  # unknown caller: neither
