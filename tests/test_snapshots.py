"""Household snapshots: strictly point-in-time, exact window counts, labels, and the temporal split."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.snapshots import WindowIndex, build_snapshots, escalation_labels, snapshot_dates, to_seconds
from models.backtest import rolling_origin_folds
from models.rules import rule_verdicts
from models.warning import points_at_snapshots
from pipelines.training import incident_calls
from simulation.city import City

TABLES = ("households", "persons", "addresses", "cases", "visits", "relations")


def _calls(city: City) -> pd.DataFrame:
    """Incidents with the rules' verdicts; households from the simulator's places (linking is tested apart)."""
    incidents = city.tables["incidents"]
    truth = city.truth["incidents"].set_index("incident_id").loc[incidents["incident_id"]]
    links = pd.DataFrame(
        {"household_id": truth["place_household_id"].to_numpy(), "person_id": truth["caller_person_id"].to_numpy()}
    )
    return incident_calls(incidents, rule_verdicts(incidents["narrative"]).reset_index(drop=True), links)


@pytest.fixture(scope="module")
def prepared(small_city: tuple[City, Path]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    city, _ = small_city
    return _calls(city), {name: city.tables[name] for name in TABLES}


D = pd.Timestamp("2024-03-04")


def test_window_index_counts_exactly() -> None:
    t = to_seconds(
        pd.to_datetime(["2024-01-01", "2024-01-10", "2024-01-20", "2024-01-20 23:59", "2024-02-01"], format="mixed")
    )
    entity = np.array([0, 0, 0, 1, 0])
    index = WindowIndex.build(entity, t)
    end = to_seconds(pd.to_datetime(["2024-01-20", "2024-01-21", "2024-02-02"]))
    zeros = np.zeros(3, dtype=np.int64)
    assert list(index.window_sum(None, zeros, end, 10)) == [
        1.0,
        1.0,
        1.0,
    ]  # [D-10, D): the 10th drops out as the 20th comes in
    assert list(index.window_sum(None, zeros, end, None)) == [2.0, 3.0, 4.0]
    weights = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    assert list(index.window_sum(weights, zeros, end, 30)) == [3.0, 7.0, 22.0]
    assert list(index.window_sum(None, np.ones(3, dtype=np.int64), end, 30)) == [0.0, 1.0, 1.0]
    last = index.last_before(t, zeros, end)
    assert list(last) == list(t[[1, 2, 4]])


def test_changes_after_d_leave_the_snapshot_unchanged(prepared: tuple[pd.DataFrame, dict]) -> None:
    calls, tables = prepared
    dates = pd.DatetimeIndex([D])
    before = build_snapshots(calls, tables, dates).frame

    later_calls = calls.copy()
    after = later_calls["received_at"] >= D
    later_calls.loc[after, "is_dispute"] = True  # every later call becomes a violent family dispute
    later_calls.loc[after, "category"] = "family"
    later_calls.loc[after, "cue_violence"] = 1
    extra = later_calls[after].head(500).assign(received_at=D + pd.Timedelta(hours=1))
    later_calls = pd.concat([later_calls, extra], ignore_index=True)  # and more calls come in on D itself
    later = {name: frame.copy() for name, frame in tables.items()}
    cases = later["cases"]
    cases.loc[cases["opened_at"] >= D, "charge"] = "故意杀人"
    cases_extra = cases.head(50).assign(opened_at=D, case_id=lambda f: "NEW" + f["case_id"])
    later["cases"] = pd.concat([cases, cases_extra], ignore_index=True)
    visits = later["visits"]
    visits.loc[visits["visited_at"] >= D, "outcome"] = "未化解"
    relations = later["relations"]
    relations.loc[relations["since"] >= D, "relation"] = "ex_partner"

    changed = build_snapshots(later_calls, later, dates).frame
    pd.testing.assert_frame_equal(before, changed)
    assert len(before) > 100


def test_snapshot_features_equal_a_naive_recount(prepared: tuple[pd.DataFrame, dict]) -> None:
    calls, tables = prepared
    frame = build_snapshots(calls, tables, pd.DatetimeIndex([D])).frame
    sample = frame.sample(40, random_state=1)
    for row in sample.itertuples(index=False):
        mine = calls[(calls["household_id"] == row.household_id) & (calls["received_at"] < D)]
        in90 = mine[mine["received_at"] >= D - pd.Timedelta(days=90)]
        assert row.calls_90d == len(in90)
        assert row.disputes_90d == int(in90["is_dispute"].sum())
        assert row.cue_violence_90d == int((in90["cue_violence"] > 0).sum())
        assert row.cat_family_365d == int(
            (
                mine["is_dispute"]
                & (mine["category"] == "family")
                & (mine["received_at"] >= D - pd.Timedelta(days=365))
            ).sum()
        )
        last = mine.loc[mine["is_dispute"], "received_at"].max()
        assert row.days_since_last_dispute == pytest.approx((D - last).total_seconds() / 86400, rel=1e-5)


def test_only_households_with_a_recent_dispute_are_snapshotted(prepared: tuple[pd.DataFrame, dict]) -> None:
    calls, tables = prepared
    frame = build_snapshots(calls, tables, pd.DatetimeIndex([D])).frame
    assert (frame["disputes_365d"] >= 1).all()
    year = calls[
        (calls["received_at"] < D) & (calls["received_at"] >= D - pd.Timedelta(days=365)) & calls["is_dispute"]
    ]
    assert set(frame["household_id"]) == set(year["household_id"].dropna())


def test_labels_look_forward_over_the_horizon(prepared: tuple[pd.DataFrame, dict]) -> None:
    _, tables = prepared
    persons = tables["persons"]
    member = persons.iloc[0]
    case = {
        "case_id": "T1",
        "case_type": "criminal",
        "charge": "故意伤害",
        "station_id": "S001",
        "person_id": member["person_id"],
        "role": "suspect",
        "source_incident_id": None,
    }
    snaps = pd.DataFrame({"household_id": [member["household_id"]] * 4, "snapshot_date": [D] * 4})
    for opened, expected in (
        (D, 1),
        (D + pd.Timedelta(days=89, hours=23), 1),
        (D + pd.Timedelta(days=90), 0),
        (D - pd.Timedelta(seconds=1), 0),
    ):
        cases = pd.DataFrame([{**case, "opened_at": opened}])
        labels = escalation_labels(snaps.head(1), cases, persons, tables["households"], 90)
        assert labels[0] == expected, opened
    theft = pd.DataFrame([{**case, "opened_at": D, "charge": "盗窃"}])
    assert escalation_labels(snaps.head(1), theft, persons, tables["households"], 90)[0] == 0


def test_rule_points_on_snapshots_match_the_batch_scoring(prepared: tuple[pd.DataFrame, dict]) -> None:
    from models.warning import score_warnings

    calls, tables = prepared
    frame = build_snapshots(calls, tables, pd.DatetimeIndex([D])).frame
    points = points_at_snapshots(calls, frame["household_id"], frame["snapshot_date"])
    # The batch command counts calls up to the end of its as-of time; a snapshot on D counts calls before D.
    batch = score_warnings(calls[calls["received_at"] < D], D - pd.Timedelta(microseconds=1))
    by_household = {row["household_id"]: row["scenarios"] for row in batch.to_dict("records")}
    compared = 0
    for hh, fam in zip(frame["household_id"], points["family"], strict=True):
        expected = by_household.get(hh, {}).get("family", {}).get("points", 0.0)
        assert fam == pytest.approx(expected, abs=1e-6), hh
        compared += expected > 0
    assert compared > 10


def test_rolling_origin_folds_train_only_on_labels_known_before_each_test_period() -> None:
    dates = pd.Series(np.repeat(snapshot_dates(pd.Timestamp("2023-04-01"), pd.Timestamp("2024-09-28")), 3))
    folds = rolling_origin_folds(dates, 4, 0.4, horizon_days=90)
    assert len(folds) == 4
    tested: list[set] = []
    for fold in folds:
        train, tune, test = (set(dates[m]) for m in (fold.train, fold.tune, fold.test))
        assert train and tune and test and not (train & tune or tune & test or train & test)
        # a snapshot of D is labelled by what happens until D + 90 days: all of it known before testing starts
        assert max(tune) + pd.Timedelta(days=90) <= min(test)
        assert max(train) < min(tune)
        tested.append(test)
    assert all(max(a) < min(b) for a, b in itertools.pairwise(tested))  # consecutive, no overlap
    assert max(tested[-1]) == dates.max()
    assert len(set().union(*tested)) == round(dates.nunique() * 0.4)
    with pytest.raises(ValueError, match="fewer folds"):
        rolling_origin_folds(dates, 4, 0.95, horizon_days=90)
