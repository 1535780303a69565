"""Escalations (民转刑) and whether the scoring rules saw them coming: the lead time of a warning.

A violent case (features.schema.VIOLENT_CHARGES) opened against a member of a
household is the event every warning exists to prevent. For each such case
and household this module answers, point in time: what level did the scoring
rules (积分预警) give the household on the morning the case was opened, and on
which day of the 90 before did they first give it any level at all? The
difference is the lead time a station had. Both the daily ranking (its
``escalations.parquet``, read by the workbench) and the analysis reports call
:func:`escalation_lead_times`, so the two never tell different stories.

"As of the morning of D" is the ranking's convention (pipelines/ranking.py):
calls received before D count, calls of D itself do not. The rules' level is
the one policy's (models/levels.py :func:`worst_scenarios` over
models/warning.py :func:`points_at_snapshots`), never re-implemented here.
Pure functions over DataFrames; no personal data in the output (ids of
cases, households and stations, dates, charges and levels).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from features.household_keys import positions_in
from features.schema import VIOLENT_CHARGES
from models.levels import worst_scenarios
from models.warning import Scenario, load_scenarios, points_at_snapshots

LOOKBACK_DAYS = 90
"""How far back a first warning counts as "beforehand": the escalation model's horizon (horizon_days)."""

LevelGrid = Callable[[pd.DataFrame, pd.DataFrame, Callable[[np.ndarray], np.ndarray]], np.ndarray]
"""How :func:`escalation_lead_times` gets the rules' levels of its (household, case day) pairs.

Called as ``grid(pairs, calls, compute)``: ``pairs`` has ``household_id`` and ``day`` (the
case's day) per pair, ``calls`` the calls of those households the rules read, and
``compute(rows)`` gives the levels of the pairs at positions ``rows``, one row per pair and one
column per morning (the case's own first, then each day back). A pair's levels depend on its
household's calls received before the case's day only, so a daily run may keep them
(pipelines/escalation_cache.py); the default computes every pair.
"""

COLUMNS = (
    "case_id",
    "household_id",
    "station_id",
    "county_code",
    "opened_at",
    "charge",
    "rules_level_before",
    "first_rules_warning_at",
    "lead_days",
)
"""The columns of :func:`escalation_lead_times` (and of a ranking's ``escalations.parquet``)."""


def household_places(
    households: pd.DataFrame, addresses: pd.DataFrame, only: pd.Series | np.ndarray | None = None
) -> pd.DataFrame:
    """Each household's station and county (through its address): where a warning for it would have gone.

    ``only``: the household ids asked about (default every household); a city's registry is a
    million rows, the violent cases of a year name a few thousand households.
    """
    if only is not None:
        # looked up in Arrow: ``isin`` on Arrow strings builds its value set as Python objects, one per id
        households = households[positions_in(households["household_id"], np.asarray(only, dtype=object)) >= 0]
        addresses = addresses[positions_in(addresses["address_id"], households["address_id"]) >= 0]
    place = addresses.drop_duplicates("address_id").set_index("address_id")[["station_id", "county_code"]]
    hh = households[["household_id", "address_id"]].drop_duplicates("household_id")
    located = place.reindex(hh["address_id"].to_numpy())
    return pd.DataFrame(
        {
            "household_id": hh["household_id"].astype(str).to_numpy(),
            "station_id": located["station_id"].to_numpy(object),
            "county_code": located["county_code"].to_numpy(object),
        }
    )


def violent_case_households(
    cases: pd.DataFrame, persons: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """One row per (violent case opened in ``[start, end)``, household of a person involved), oldest first.

    A case names persons (suspect, victim); their registered households are
    the ones it escalated in. Persons outside the registry have no household
    and drop out; two persons of one household make one row.
    """
    violent = cases[cases["charge"].isin(VIOLENT_CHARGES)]
    opened = pd.to_datetime(violent["opened_at"])
    violent = violent[(opened >= start) & (opened < end)]
    named = persons[positions_in(persons["person_id"], violent["person_id"]) >= 0]  # a few of the city's millions
    household = violent["person_id"].map(named.drop_duplicates("person_id").set_index("person_id")["household_id"])
    rows = pd.DataFrame(
        {
            "case_id": violent["case_id"].astype(str).to_numpy(),
            "household_id": household.to_numpy(object),
            "opened_at": pd.to_datetime(violent["opened_at"]).to_numpy(),
            "charge": violent["charge"].astype(str).to_numpy(),
        }
    )
    rows = rows[rows["household_id"].notna()]
    rows = rows.sort_values(["opened_at", "case_id", "household_id"], kind="stable")
    return rows.drop_duplicates(["case_id", "household_id"]).reset_index(drop=True)


def rules_verdicts(
    calls: pd.DataFrame,
    household_ids: pd.Series,
    days: pd.Series,
    scenarios: Mapping[str, Scenario] | None = None,
    codes: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The scoring rules' level and points of each (household, morning of day) pair (level None below blue).

    Exactly what the daily ranking publishes as ``rules_level`` and
    ``rules_points`` for that date (points over calls received before the
    day, the worst scenario wins). ``codes``: the household code of each call and of each pair, when
    the caller has them (``points_at_snapshots``' coding), so the ids are not hashed again.
    """
    if len(household_ids) == 0:
        return np.array([], dtype=object), np.array([], dtype=np.float64)
    chosen = dict(scenarios or load_scenarios())
    ids, at = household_ids.reset_index(drop=True), days.reset_index(drop=True)
    points = points_at_snapshots(calls, ids, at, chosen, codes)
    level, _, worst_points = worst_scenarios(points, chosen)
    return np.asarray(level, dtype=object), np.asarray(worst_points, dtype=np.float64)


def rules_levels(
    calls: pd.DataFrame,
    household_ids: pd.Series,
    days: pd.Series,
    scenarios: Mapping[str, Scenario] | None = None,
    codes: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The level half of :func:`rules_verdicts`."""
    return rules_verdicts(calls, household_ids, days, scenarios, codes)[0]


def escalation_lead_times(
    calls: pd.DataFrame,
    cases: pd.DataFrame,
    persons: pd.DataFrame,
    places: pd.DataFrame,
    start: pd.Timestamp | str,
    end: pd.Timestamp | str,
    lookback_days: int = LOOKBACK_DAYS,
    scenarios: Mapping[str, Scenario] | None = None,
    grid: LevelGrid | None = None,
) -> pd.DataFrame:
    """Violent cases opened in ``[start, end)`` with the rules' level before each and the lead time.

    ``calls``: one row per call with ``household_id``, ``received_at`` and the
    rules' columns (``Prepared.calls``); ``places``: :func:`household_places`.
    Per (case, household): ``rules_level_before`` is the rules' level on the
    morning of the day the case was opened (None below blue);
    ``first_rules_warning_at`` the earliest morning in the ``lookback_days``
    days before (that morning included) on which the level was blue or worse
    (NaT when never); ``lead_days`` the whole days from that morning to the
    day of the case (0: warned that very morning; NaN: not warned). ``grid``: where the
    levels of the pairs come from (:data:`LevelGrid`; default: computed here, all of them).
    """
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    rows = violent_case_households(cases, persons, start, end)
    located = places.drop_duplicates("household_id").set_index("household_id").reindex(rows["household_id"])
    rows["station_id"] = located["station_id"].to_numpy(object)
    rows["county_code"] = located["county_code"].to_numpy(object)
    opened_day = pd.to_datetime(rows["opened_at"]).dt.normalize()
    pairs = pd.DataFrame({"household_id": rows["household_id"], "day": opened_day}).drop_duplicates()
    # The grid of (pair, morning ``back`` days before), pair-major, in integer codes: a city's 12k pairs make
    # 1.1M rows, whose household ids as strings were hashed, repeated and grouped (seconds of every ranking).
    pair_code, households = pd.factorize(pairs["household_id"].to_numpy(object))
    steps = lookback_days + 1
    days = pairs["day"].to_numpy()[:, None] - np.arange(steps)[None, :] * np.timedelta64(1, "D")  # pair x back
    # the rules read only these households' calls: the rest of a city's (a hundred times more) would be
    # matched against them for nothing
    call_code = positions_in(calls["household_id"], households)  # the call's household among the pairs' (-1: none)
    own = calls[call_code >= 0].reset_index(drop=True)
    own_code = call_code[call_code >= 0]

    def compute(which: np.ndarray) -> np.ndarray:
        """The levels of the pairs at ``which``: each pair's rows depend on its household's calls only."""
        rows_code, rows_days = np.repeat(pair_code[which], steps), days[which].ravel()
        level = rules_levels(own, pd.Series(rows_code), pd.Series(rows_days), scenarios, (own_code, rows_code))
        return level.reshape(len(which), steps)

    level = compute(np.arange(len(pairs))) if grid is None else grid(pairs.reset_index(drop=True), own, compute)
    warned = pd.notna(level)
    # the earliest warned morning is the largest ``back`` with a level; NaN when none
    first_back = np.where(warned.any(axis=1), steps - 1 - np.argmax(warned[:, ::-1], axis=1), np.nan)
    row_keys = pd.MultiIndex.from_arrays([rows["household_id"], opened_day])
    pair_of_row = pd.MultiIndex.from_frame(pairs).get_indexer(row_keys)
    back = first_back[pair_of_row].astype(np.float64)
    rows["rules_level_before"] = pd.Series(level[pair_of_row, 0], dtype=object)
    rows["first_rules_warning_at"] = opened_day.to_numpy() - pd.to_timedelta(back, unit="D")
    rows["lead_days"] = back
    rows["rules_level_before"] = rows["rules_level_before"].where(rows["rules_level_before"].notna(), None)
    return rows[list(COLUMNS)].reset_index(drop=True)


def lead_time_bins(lead_days: pd.Series) -> pd.Series:
    """How many escalations were first warned 0-6, 7-13, 14-29, 30-59 and 60-90 days before, and not at all."""
    edges = [0, 7, 14, 30, 60, LOOKBACK_DAYS + 1]
    names = ["0-6天", "7-13天", "14-29天", "30-59天", "60-90天"]
    values = pd.to_numeric(lead_days, errors="coerce")
    binned = pd.cut(values.dropna(), bins=edges, right=False, labels=names)
    counts = binned.value_counts().reindex(names, fill_value=0)
    counts.loc["未预警"] = int(values.isna().sum())
    return counts.astype(int)
