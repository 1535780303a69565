"""The rules' levels before violent cases kept between runs (pipelines/escalation_cache.py): the same table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_escalations import CALLS, CASES, PERSONS, PLACES, _calls

from models.escalations import LOOKBACK_DAYS, escalation_lead_times
from models.warning import load_scenarios
from pipelines.escalation_cache import cached_grid, calls_before, decode, encode
from pipelines.incident_readings import IncidentStore

START, END = "2024-04-01", "2024-06-30"


def _lead_times(calls: pd.DataFrame, store: IncidentStore | None) -> pd.DataFrame:
    scenarios = load_scenarios()
    grid = None if store is None else cached_grid(store, scenarios, LOOKBACK_DAYS)
    return escalation_lead_times(calls, CASES, PERSONS, PLACES, START, END, LOOKBACK_DAYS, scenarios, grid)


def _counts(store: IncidentStore) -> tuple[int, int]:
    return store.counts.get("escalations_hits", 0), store.counts.get("escalations_misses", 0)


def test_kept_levels_give_the_same_table_and_only_new_pairs_are_computed(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "scope", {})
    expected = _lead_times(CALLS, None)
    assert expected["rules_level_before"].notna().any()  # the fixture has warned pairs to keep
    pd.testing.assert_frame_equal(_lead_times(CALLS, store), expected)
    assert _counts(store) == (0, 4)  # four (household, case day) pairs, all computed
    pd.testing.assert_frame_equal(_lead_times(CALLS, store), expected)
    assert _counts(store) == (4, 4)  # the next run reads every pair back


def test_a_changed_call_before_the_case_recomputes_its_pair_only(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "scope", {})
    _lead_times(CALLS, store)
    extra = pd.concat(
        [CALLS, _calls([("H3", "2024-04-10 09:00", "family", True), ("H1", "2024-07-01 09:00", "family", True)])],
        ignore_index=True,
    )
    fresh = IncidentStore(tmp_path / "scope", {})
    pd.testing.assert_frame_equal(_lead_times(extra, fresh), _lead_times(extra, None))
    # H3's call is before its case (20 April): its pair is new; H1's is after all of H1's cases: still kept
    assert _counts(fresh) == (3, 1)
    rescored = extra.copy()
    rescored.loc[0, "cue_violence"] = 0  # H1's call read again without the violence cue
    again = IncidentStore(tmp_path / "scope", {})
    pd.testing.assert_frame_equal(_lead_times(rescored, again), _lead_times(rescored, None))
    assert _counts(again) == (2, 2)  # H1's two cases (15 April and 1 June)


def test_calls_before_counts_each_households_calls_before_the_day() -> None:
    calls = _calls(
        [
            ("A", "2024-01-01 10:00", "family", True),
            ("B", "2024-01-02 10:00", "family", False),
            ("A", "2024-01-03 10:00", "family", False),
            ("A", "2024-01-03 10:00", "family", False),  # the same call twice counts twice
        ]
    )
    households = pd.Series(["A", "A", "B", "C", "A"])
    days = pd.to_datetime(["2024-01-03", "2024-01-04", "2024-01-02", "2024-01-09", "2024-01-01"]).to_numpy()
    hashes, counts = calls_before(households, days, calls)
    assert hashes.dtype == np.uint64
    assert counts.tolist() == [1, 3, 0, 0, 0]
    assert hashes[2] == hashes[3] == hashes[4] == 0 and hashes[0] != 0
    # the order of the calls does not matter, their set does
    shuffled, _ = calls_before(households, days, calls.iloc[::-1].reset_index(drop=True))
    assert np.array_equal(shuffled, hashes)


@pytest.mark.parametrize("mornings", [1, 3, LOOKBACK_DAYS + 1])
def test_levels_are_stored_and_read_back_exactly(mornings: int) -> None:
    rng = np.random.default_rng(mornings)
    choices = np.array([None, "red", "orange", "yellow", "blue"], dtype=object)
    levels = choices[rng.integers(0, len(choices), size=(7, mornings))]
    texts = pd.array(encode(levels), dtype=pd.StringDtype("pyarrow", na_value=np.nan))
    assert (decode(texts, mornings) == levels).all()
    with pytest.raises(ValueError, match="mornings"):
        decode(texts, mornings + 1)
    with pytest.raises(ValueError, match="outside"):  # a level the store has no character for is not stored as none
        encode(np.array([["red", "purple"]], dtype=object))
