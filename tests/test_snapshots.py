"""Household snapshots: strictly point-in-time, exact window counts, labels, and the temporal split."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.matrix import float32_matrix
from features.snapshots import WindowIndex, build_snapshots, escalation_labels, snapshot_dates, to_seconds
from models.backtest import rolling_origin_folds
from models.rules import rule_verdicts
from models.warning import points_at_snapshots
from pipelines.preparation import incident_calls
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


def test_rows_without_events_get_what_the_general_path_computes(prepared: tuple[pd.DataFrame, dict]) -> None:
    """Features computed only for households with events, the rest filled, equal the full computation bit for bit."""
    from features.household_keys import household_keys
    from features.snapshots import (
        _CallEvents,
        _case_features,
        _relation_features,
        _visit_features,
        _window_features,
        caller_flags,
        household_codes,
        rows_with_events,
        spread_rows,
    )

    calls, tables = prepared
    codes = household_codes(tables["households"])
    keys = household_keys(calls, tables, codes)
    n = len(codes)
    dates = to_seconds(pd.DatetimeIndex([D - pd.Timedelta(days=200), D, D + pd.Timedelta(days=30)]))
    rng = np.random.default_rng(7)
    hh = rng.permutation(np.repeat(np.arange(n, dtype=np.int64), len(dates)))  # any order, several dates
    end = rng.choice(dates, len(hh))
    kept = keys.calls >= 0
    linked, entity = calls[kept].reset_index(drop=True), keys.calls[kept]
    seconds = to_seconds(linked["received_at"])
    flags = caller_flags(linked, tables["persons"], codes, entity, seconds, keys.callers[kept])
    groups = [(_CallEvents(linked, entity, seconds, *flags).features, entity)]
    for table, entities, compute in (
        ("cases", keys.cases, _case_features),
        ("visits", keys.visits, _visit_features),
        ("relations", keys.relations, _relation_features),
    ):
        index, windows = compute(tables[table], entities)
        groups.append((lambda h, e, index=index, windows=windows: _window_features(index, windows, h, e), entities))
    one_day = np.full(len(hh), dates[1])  # the daily ranking: every other row takes one value
    for compute, entities in groups:
        has = np.isin(hh, entities)
        assert 0 < has.sum() < len(hh)  # both kinds of rows are there
        for rows, when in ((hh, end), (hh, one_day), (hh[has], end[has])):  # the last: every row has events
            sparse = rows_with_events(compute, entities, n, rows, when)
            full = compute(rows, when)
            assert list(sparse) == list(full)
            matrix = np.zeros((len(rows), len(full)), dtype=np.float32, order="F")
            for j, (name, spread) in enumerate(spread_rows(compute, entities, n, rows, when).items()):
                np.testing.assert_array_equal(sparse[name], full[name], err_msg=name)
                assert sparse[name].dtype == full[name].dtype
                spread.fill(matrix[:, j])  # written straight into the feature matrix, as build_snapshots does
                np.testing.assert_array_equal(matrix[:, j], full[name].astype(np.float32), err_msg=name)


def test_rule_points_of_households_without_calls_are_the_empty_households(prepared: tuple[pd.DataFrame, dict]) -> None:
    from models.warning import household_points

    calls, tables = prepared
    ids = tables["households"]["household_id"]
    dates = pd.Series([D] * len(ids))
    points = points_at_snapshots(calls, ids, dates)
    called = ids.isin(calls["household_id"]).to_numpy()
    assert 0 < called.sum() < len(ids)
    # Only households with calls: every row takes the general path.
    alone = points_at_snapshots(calls, ids[called].reset_index(drop=True), dates[called].reset_index(drop=True))
    empty = household_points([], int(to_seconds(pd.Series([D]))[0]))
    for name, values in points.items():
        np.testing.assert_array_equal(values[called], alone[name], err_msg=name)
        np.testing.assert_array_equal(values[~called], np.full((~called).sum(), empty[name]), err_msg=name)


def test_caller_flags_follow_the_string_sort_definition(prepared: tuple[pd.DataFrame, dict]) -> None:
    """The integer-key caller flags equal the definition on strings, ties and empty callers included."""
    from features.household_keys import code_households
    from features.snapshots import caller_flags, household_codes

    calls, tables = prepared
    codes = household_codes(tables["households"])
    linked = calls[calls["household_id"].notna()].reset_index(drop=True)
    twins = linked.head(300)  # same household, caller and second: only the first starts a caller
    blank = linked.iloc[300:400].assign(person_id="")  # an empty key is no caller
    linked = pd.concat([linked, twins, blank], ignore_index=True)
    entity = code_households(linked["household_id"], codes)
    linked, entity = linked[entity >= 0].reset_index(drop=True), entity[entity >= 0]
    seconds = to_seconds(linked["received_at"])
    _, first = caller_flags(linked, tables["persons"], codes, entity, seconds)

    person = linked["person_id"].fillna("").to_numpy()
    frame = pd.DataFrame({"entity": entity, "person": person, "t": seconds}).sort_values(["entity", "person", "t"])
    gap = frame.groupby(["entity", "person"], sort=False)["t"].diff()
    expected = np.zeros(len(linked), dtype=bool)
    expected[frame.index.to_numpy()] = (gap.isna() | (gap >= 365 * 86_400)).to_numpy() & (
        frame["person"].to_numpy() != ""
    )
    np.testing.assert_array_equal(first, expected)
    assert first.sum() > 100 and not first[len(linked) - 100 :].any()


def test_snapshots_carry_the_caller_flags_of_every_call(prepared: tuple[pd.DataFrame, dict]) -> None:
    """``Snapshots.call_flags`` are :func:`caller_flags` of the linked calls, in the rows of ``calls``."""
    from features.household_keys import code_households
    from features.snapshots import caller_flags, household_codes

    calls, tables = prepared
    snaps = build_snapshots(calls, tables, pd.DatetimeIndex([D]))
    codes = household_codes(tables["households"])
    entity = code_households(calls["household_id"], codes)
    linked = calls[entity >= 0].reset_index(drop=True)
    expected = caller_flags(linked, tables["persons"], codes, entity[entity >= 0], to_seconds(linked["received_at"]))
    assert snaps.call_flags is not None
    for got, want in zip(snaps.call_flags, expected, strict=True):
        assert len(got) == len(calls) and not got[entity < 0].any()
        np.testing.assert_array_equal(got[entity >= 0], want)
    assert expected[0].any() and expected[1].any()


def test_the_feature_matrix_equals_pandas_conversion(prepared: tuple[pd.DataFrame, dict]) -> None:
    """features.matrix.float32_matrix on a city's snapshot frame: pandas' values, byte for byte."""
    calls, tables = prepared
    snaps = build_snapshots(calls, tables, pd.DatetimeIndex([D]), all_households=True)
    names = snaps.feature_names
    assert len(snaps.frame) > 10_000 and len(names) > 20
    got = float32_matrix(snaps.frame, names)
    assert got.tobytes() == np.ascontiguousarray(snaps.frame[names].to_numpy(np.float32)).tobytes()
