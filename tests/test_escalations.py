"""Escalations and the rules' lead time (models/escalations.py), and the two files the ranking adds for them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.escalations import (
    COLUMNS,
    LOOKBACK_DAYS,
    escalation_lead_times,
    household_places,
    lead_time_bins,
    rules_levels,
)
from models.warning import CUE_GROUPS


def _calls(rows: list[tuple[str, str, str, bool]]) -> pd.DataFrame:
    """Calls as the rules score them: (household, received_at, category, violence cue)."""
    frame = pd.DataFrame(
        {
            "household_id": [r[0] for r in rows],
            "received_at": pd.to_datetime([r[1] for r in rows]),
            "is_dispute": True,
            "category": [r[2] for r in rows],
            "n_deescalation": 0,
        }
    )
    for group in CUE_GROUPS:
        frame[f"cue_{group}"] = [int(group == "violence" and r[3]) for r in rows]
    return frame


CALLS = _calls(
    [
        ("H1", "2024-03-01 10:00", "family", True),  # 45 days before H1's case: blue by the morning of the case
        ("H2", "2024-04-15 08:00", "family", True),  # the case's own day: not known on its morning
        ("H3", "2023-12-01 10:00", "family", True),  # warned before the 90-day lookback began: lead capped at 90
    ]
)
PERSONS = pd.DataFrame({"person_id": ["P1", "P1b", "P2", "P3", "P4"], "household_id": ["H1", "H1", "H2", "H3", "H4"]})
PLACES = pd.DataFrame(
    {
        "household_id": ["H1", "H2", "H3", "H4"],
        "station_id": ["S001", "S002", "S001", "S003"],
        "county_code": ["150502", "150503", "150502", "150504"],
    }
)
CASES = pd.DataFrame(
    {
        "case_id": ["C1", "C1", "C1", "C2", "C2", "C3", "C4"],
        "opened_at": pd.to_datetime(
            ["2024-04-15 14:00"] * 3 + ["2024-04-20 09:00"] * 2 + ["2024-04-16 10:00", "2024-06-01 10:00"]
        ),
        "charge": ["故意伤害"] * 3 + ["殴打他人"] * 2 + ["盗窃", "故意伤害"],
        "person_id": ["P1", "P1b", "P2", "P3", "P9", "P4", "P1"],  # P9 is not in the registry
        "role": ["suspect", "victim", "victim", "suspect", "victim", "suspect", "suspect"],
    }
)


def _table() -> pd.DataFrame:
    return escalation_lead_times(CALLS, CASES, PERSONS, PLACES, "2024-04-01", "2024-05-01")


def test_one_row_per_violent_case_and_household_in_the_window() -> None:
    table = _table()
    assert list(table.columns) == list(COLUMNS)
    # C1 in H1 (two members, one row) and H2; C2 in H3 (P9 has no household); C3 is theft; C4 is after the window
    assert list(zip(table["case_id"], table["household_id"], strict=True)) == [("C1", "H1"), ("C1", "H2"), ("C2", "H3")]
    assert list(table["station_id"]) == ["S001", "S002", "S001"]
    assert list(table["county_code"]) == ["150502", "150503", "150502"]
    assert list(table["charge"]) == ["故意伤害", "故意伤害", "殴打他人"]


def test_the_lead_time_is_counted_from_the_first_morning_the_rules_gave_a_level() -> None:
    table = _table().set_index("household_id")
    # H1: one violent family call on 03-01 earns a level from the morning of 03-02; on 04-15 it is 45 days old (blue)
    assert table.loc["H1", "rules_level_before"] == "blue"
    assert table.loc["H1", "first_rules_warning_at"] == pd.Timestamp("2024-03-02")
    assert table.loc["H1", "lead_days"] == 44
    # H2: the only call came on the case's own day: the morning of that day knew nothing
    assert table.loc["H2", "rules_level_before"] is None
    assert pd.isna(table.loc["H2", "first_rules_warning_at"]) and np.isnan(table.loc["H2", "lead_days"])
    # H3: warned since 12-02, so on the first morning of the lookback already: the lead is the lookback, 90 days
    assert table.loc["H3", "first_rules_warning_at"] == pd.Timestamp("2024-04-20") - pd.Timedelta(days=LOOKBACK_DAYS)
    assert table.loc["H3", "lead_days"] == LOOKBACK_DAYS
    assert table.loc["H3", "rules_level_before"] is None  # the call left the 90-day window on 03-01


def test_the_vectorised_search_equals_asking_the_rules_day_by_day() -> None:
    table = _table()
    for row in table.itertuples():
        opened = pd.Timestamp(row.opened_at).normalize()
        days = pd.Series(pd.date_range(opened - pd.Timedelta(days=LOOKBACK_DAYS), opened, freq="D"))
        one_by_one = [rules_levels(CALLS, pd.Series([row.household_id]), days.iloc[[i]])[0] for i in range(len(days))]
        warned = [d for d, level in zip(days, one_by_one, strict=True) if level is not None]
        assert one_by_one[-1] == row.rules_level_before
        if warned:
            assert warned[0] == row.first_rules_warning_at
            assert (opened - warned[0]).days == row.lead_days
        else:
            assert pd.isna(row.first_rules_warning_at)


def test_no_violent_case_gives_an_empty_table_with_the_columns() -> None:
    empty = escalation_lead_times(CALLS, CASES.iloc[0:0], PERSONS, PLACES, "2024-01-01", "2024-12-31")
    assert list(empty.columns) == list(COLUMNS) and empty.empty


def test_lead_times_are_binned_with_the_unwarned_apart() -> None:
    bins = lead_time_bins(pd.Series([0, 6, 7, 29, 30, 90, np.nan, np.nan]))
    assert bins.to_dict() == {"0-6天": 2, "7-13天": 1, "14-29天": 1, "30-59天": 1, "60-90天": 1, "未预警": 2}


def test_household_places_follow_the_address() -> None:
    households = pd.DataFrame({"household_id": ["H1", "H2"], "address_id": ["A2", "A1"]})
    addresses = pd.DataFrame({"address_id": ["A1", "A2"], "station_id": ["S1", "S2"], "county_code": ["1", "2"]})
    places = household_places(households, addresses)
    assert places.to_dict("list") == {
        "household_id": ["H1", "H2"],
        "station_id": ["S2", "S1"],
        "county_code": ["2", "1"],
    }


# ------------------------------------------------------------------------------- the ranking's files


@pytest.fixture(scope="module")
def prepared(ranked: dict):  # type: ignore[no-untyped-def]
    from pipelines.preparation import prepare

    return prepare(ranked["city"])


@pytest.mark.xdist_group("trained")
def test_the_rules_level_is_the_one_the_ranking_published(ranked: dict, prepared) -> None:  # type: ignore[no-untyped-def]
    folder = ranked["result"].folder
    table = pd.read_parquet(folder / "ranking.parquet", columns=["household_id", "rules_level"])
    day = pd.Timestamp(ranked["result"].date)
    levels = rules_levels(prepared.calls, table["household_id"], pd.Series([day] * len(table)))
    published = table["rules_level"].to_numpy(object)
    assert sum(isinstance(v, str) for v in levels) > 50  # the city has rules warnings to compare
    assert [v if isinstance(v, str) else None for v in published] == list(levels)


@pytest.mark.xdist_group("trained")
def test_the_ranking_writes_escalations_and_visits_without_personal_data(ranked: dict, prepared) -> None:  # type: ignore[no-untyped-def]
    folder = ranked["result"].folder
    day = pd.Timestamp(ranked["result"].date)
    escalations = pd.read_parquet(folder / "escalations.parquet")
    assert list(escalations.columns) == list(COLUMNS)
    expected = escalation_lead_times(
        prepared.calls,
        prepared.tables["cases"],
        prepared.tables["persons"],
        household_places(prepared.tables["households"], prepared.tables["addresses"]),
        day - pd.Timedelta(days=365),
        day,
    )
    assert len(escalations) == len(expected) > 20

    def plain(frame: pd.DataFrame) -> list[dict]:
        return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]

    assert plain(escalations) == plain(expected)
    assert (pd.to_datetime(escalations["opened_at"]) < day).all()
    assert (pd.to_datetime(escalations["opened_at"]) >= day - pd.Timedelta(days=365)).all()
    assert escalations["lead_days"].dropna().between(0, LOOKBACK_DAYS).all()
    assert escalations["lead_days"].notna().sum() > 0  # the rules saw some coming
    visits = pd.read_parquet(folder / "visits.parquet")
    assert list(visits.columns) == ["household_id", "visited_at", "visit_type", "outcome"]
    at = pd.to_datetime(visits["visited_at"])
    assert len(visits) > 1000 and (at < day).all() and (at >= day - pd.Timedelta(days=730)).all()
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert {"escalations.parquet", "visits.parquet"} <= set(manifest["files"])
