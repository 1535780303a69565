"""Household snapshots as of day D: point-in-time features and escalation labels.

A snapshot describes one household on the morning of day D using only what
was on record before D: calls received before D, cases opened before D,
visits before D, relations known before D. The label looks the other way:
a violent case involving a member opened in [D, D + horizon).

Every windowed count is computed with one sorted index per event table and
``searchsorted``: the count of events of household h in [D - w, D) is the
difference of two positions in the array sorted by (h, time), and weighted
sums come from cumulative sums. Cost grows with events plus snapshots, not
with their product, so a year of weekly snapshots for a whole city is a few
array operations (``benchmarks/bench_snapshots.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.distinct import distinct_sorted
from features.household_keys import (
    RegistryKeys,
    arrow_strings,
    code_households,
    household_keys,
    household_of,
    registry_keys,
)
from features.schema import CATEGORIES, VIOLENT_CHARGES

CUE_GROUPS = ("violence", "weapon", "injury", "threat", "alcohol", "self_harm", "separation", "repeat")
WINDOWS = (7, 30, 90, 365)
RELATION_KINDS = ("ex_partner", "partner", "neighbor", "creditor_debtor", "employer_worker", "land_neighbor")
DAY = np.int64(86_400)
MAX_DAYS = 730.0
"""``days_since_*`` features are capped here; a household with no such event reads as this long ago."""
_SHIFT = np.int64(1) << np.int64(34)  # seconds since 1970 fit in 34 bits until 2514
_MEMO_ROWS = 4_000_000
"""Window positions are remembered for queries up to this many rows (a city's households as of one day)."""
_MEMO_ENTRIES = 8


def to_seconds(times: pd.Series | pd.DatetimeIndex | Sequence[pd.Timestamp]) -> np.ndarray:
    """Seconds since the epoch as int64 (NaT becomes the smallest value: 'known since forever')."""
    values = pd.to_datetime(pd.Series(times)).astype("datetime64[ns]").to_numpy()
    out = values.astype("int64") // 1_000_000_000
    out[pd.isna(values)] = -(np.int64(1) << np.int64(33))
    return out


@dataclass(frozen=True)
class WindowIndex:
    """Events of one kind sorted by (entity, time), for counting what happened in a window before D."""

    keys: np.ndarray
    order: np.ndarray
    _memo: dict = field(default_factory=dict, compare=False, repr=False)
    """Positions already searched, per (entity, end, offset): every feature of a window asks for the same ones."""

    @classmethod
    def build(cls, entity_codes: np.ndarray, seconds: np.ndarray) -> WindowIndex:
        keys = entity_codes.astype(np.int64) * _SHIFT + (seconds + (np.int64(1) << np.int64(33)))
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], order)

    def _positions(self, entity: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        target = entity.astype(np.int64) * _SHIFT + (seconds + (np.int64(1) << np.int64(33)))
        return np.searchsorted(self.keys, target, side="left")

    def _positions_at(self, entity: np.ndarray, end: np.ndarray, offset: np.int64 | None) -> np.ndarray:
        """``_positions(entity, end - offset)`` (offset None: before everything), remembered for the same arrays.

        The memo holds the arrays themselves and checks identity, so a reused ``id`` cannot return
        another array's positions; it keeps at most :data:`_MEMO_ENTRIES` results of small queries.
        """
        key = (id(entity), id(end), offset)
        hit = self._memo.get(key)
        if hit is not None and hit[0] is entity and hit[1] is end:
            return hit[2]
        if offset is None:
            seconds = np.full(len(end), -(np.int64(1) << np.int64(33)))
        else:
            seconds = end - offset if offset else end
        out = self._positions(entity, seconds)
        if len(end) <= _MEMO_ROWS:
            if len(self._memo) >= _MEMO_ENTRIES:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = (entity, end, out)
        return out

    def window_sum(
        self, weights: np.ndarray | None, entity: np.ndarray, end: np.ndarray, days: float | None
    ) -> np.ndarray:
        """Sum of ``weights`` (or the count) over events with end - days <= t < end; all before end if days is None."""
        hi = self._positions_at(entity, end, np.int64(0))
        lo = self._positions_at(entity, end, None if days is None else np.int64(round(days * DAY)))
        if weights is None:
            return (hi - lo).astype(np.float64)
        cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(weights, dtype=np.float64)[self.order])])
        return cumulative[hi] - cumulative[lo]

    def last_before(self, seconds: np.ndarray, entity: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Time of the entity's latest event before ``end`` (NaN when none)."""
        hi = self._positions_at(entity, end, np.int64(0))
        first = self._positions_at(entity, end, None)
        has = hi > first
        out = np.full(len(end), np.nan)
        out[has] = seconds[self.order[hi[has] - 1]]
        return out

    def first_before(self, seconds: np.ndarray, entity: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Time of the entity's earliest event before ``end`` (NaN when none)."""
        hi = self._positions_at(entity, end, np.int64(0))
        first = self._positions_at(entity, end, None)
        has = hi > first
        out = np.full(len(end), np.nan)
        out[has] = seconds[self.order[first[has]]]
        return out


def snapshot_dates(start: pd.Timestamp, end: pd.Timestamp, every_days: int = 7) -> pd.DatetimeIndex:
    """Snapshot days from ``start`` to ``end`` inclusive, every ``every_days`` (midnight)."""
    return pd.date_range(pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize(), freq=f"{every_days}D")


def household_codes(households: pd.DataFrame) -> pd.Series:
    """A dense integer code per household id (the entity key of every index)."""
    return pd.Series(np.arange(len(households), dtype=np.int64), index=households["household_id"].to_numpy())


@dataclass
class Snapshots:
    """Rows (household, date) with features, plus what the label and reasons need."""

    frame: pd.DataFrame
    feature_names: list[str]
    codes: tuple[np.ndarray, np.ndarray] | None = None
    """The household code of each call (-1: none in the registry) and of each row: pass them to
    ``models.warning.points_at_snapshots`` so it does not hash the city's household ids again."""
    call_flags: tuple[np.ndarray, np.ndarray] | None = None
    """:func:`caller_flags` (third party, distinct caller start) per row of ``calls``, False for a call of no
    registered household: what the online service's stored calls hold, without a second hash join of the persons."""


def candidate_snapshots(
    calls: pd.DataFrame,
    codes: pd.Series,
    dates: pd.DatetimeIndex,
    lookback_days: int = 365,
    call_codes: np.ndarray | None = None,
) -> pd.DataFrame:
    """Households with at least one dispute call in the ``lookback_days`` before each date.

    These are the households a station has reason to rank: a dispute on record
    within the year. Households with no such call are not scored. ``call_codes``:
    ``code_households(calls["household_id"], codes)`` when the caller has it already.
    """
    if call_codes is None:
        call_codes = code_households(calls["household_id"], codes)
    chosen = calls["is_dispute"].astype(bool).to_numpy() & calls["household_id"].notna().to_numpy()
    disputes = calls[chosen]
    entity = call_codes[chosen]
    keep = entity >= 0
    index = WindowIndex.build(entity[keep], to_seconds(disputes["received_at"])[keep])
    households = distinct_sorted(entity[keep])
    date_sec = to_seconds(dates)
    hh = np.repeat(households, len(date_sec))
    end = np.tile(date_sec, len(households))
    active = index.window_sum(None, hh, end, lookback_days) > 0
    return pd.DataFrame({"household_code": hh[active], "snapshot_sec": end[active]})


def all_household_snapshots(
    calls: pd.DataFrame,
    codes: pd.Series,
    dates: pd.DatetimeIndex,
    lookback_days: int = 365,
    call_codes: np.ndarray | None = None,
) -> pd.DataFrame:
    """Every registered household at every date, with ``in_scope``: a dispute call in the year before.

    The daily ranking scores the whole registry so that the online service has
    a stored row for any household; only in-scope rows (the population the
    model was trained on) can be warned.
    """
    scoped = candidate_snapshots(calls, codes, dates, lookback_days, call_codes)
    date_sec = to_seconds(dates)
    hh = np.repeat(np.arange(len(codes), dtype=np.int64), len(date_sec))
    end = np.tile(date_sec, len(codes))
    in_scope = np.zeros(len(hh), dtype=bool)
    in_scope[
        scoped["household_code"].to_numpy() * len(date_sec) + np.searchsorted(date_sec, scoped["snapshot_sec"])
    ] = True
    return pd.DataFrame({"household_code": hh, "snapshot_sec": end, "in_scope": in_scope})


@dataclass(frozen=True)
class Spread:
    """One feature computed on the rows with events; every other row takes its snapshot time's value.

    Kept apart until it is written into the feature matrix, so a city's 1.15M-row column is not
    first built whole and then copied (docs/decisions.md, issue 14's fifth round).
    """

    n_rows: int
    rows: np.ndarray | None
    """The rows computed, ascending; None: every row (``values`` is the whole column)."""
    values: np.ndarray
    """The feature at ``rows``."""
    others: np.ndarray | None
    """The value of every other row: one value (a 0-d array) when all rows share one time, else per row."""

    def fill(self, column: np.ndarray) -> None:
        """Write the whole column into ``column`` (a row-length view, e.g. of the feature matrix)."""
        if self.rows is None:
            column[:] = self.values
            return
        column[:] = self.others
        column[self.rows] = self.values

    def dense(self) -> np.ndarray:
        if self.rows is None:
            return self.values
        column = np.empty(self.n_rows, dtype=self.values.dtype)
        self.fill(column)
        return column


def spread_rows(
    compute: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
    entities: np.ndarray,
    n_households: int,
    hh: np.ndarray,
    end: np.ndarray,
) -> dict[str, Spread]:
    """``compute(hh, end)``, run only on the rows whose household has an event in ``entities``.

    Every feature is a function of one row's own events, so a household with
    none gets what a household without events gets: ``compute`` runs on the
    rows with events plus one phantom row per snapshot time (code -1, which no
    event has), and the other rows take their time's phantom values. Most of
    a city's households never called, so the daily ranking computes a
    fraction of the rows; the values are the general path's bit for bit
    (tests/test_snapshots.py compares both).
    """
    has = np.zeros(n_households, dtype=bool)
    has[entities[entities >= 0]] = True
    rows = np.flatnonzero(has[np.maximum(hh, 0)] & (hh >= 0))  # -1: a household not coded, without events
    if len(rows) == len(hh):  # every row has events (training's snapshots): nothing to spread
        return {name: Spread(len(hh), None, values, None) for name, values in compute(hh, end).items()}
    times, which = np.unique(end, return_inverse=True)
    sub = compute(np.concatenate([hh[rows], np.full(len(times), -1, np.int64)]), np.concatenate([end[rows], times]))
    one = len(times) == 1  # the daily ranking: every other row takes one value
    return {
        name: Spread(len(hh), rows, values[: len(rows)], values[-1:].reshape(()) if one else values[len(rows) :][which])
        for name, values in sub.items()
    }


def rows_with_events(
    compute: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
    entities: np.ndarray,
    n_households: int,
    hh: np.ndarray,
    end: np.ndarray,
) -> dict[str, np.ndarray]:
    """:func:`spread_rows` as whole columns."""
    return {name: spread.dense() for name, spread in spread_rows(compute, entities, n_households, hh, end).items()}


def build_snapshots(
    calls: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    dates: pd.DatetimeIndex,
    scored_points: dict[str, np.ndarray] | None = None,
    all_households: bool = False,
    registry: RegistryKeys | None = None,
) -> Snapshots:
    """Point-in-time features for every (household, date) with a dispute call in the year before.

    With ``all_households`` every registered household gets a row, and the
    column ``in_scope`` says which ones had a dispute call in the year before.
    ``registry``: ``features.household_keys.registry_keys`` of ``tables``, when the caller kept it
    (the daily ranking keeps it per registry; the features are the same either way).

    ``calls`` is one row per incident with ``household_id`` (linked; null when
    unlinked), ``person_id`` (linked caller, nullable), ``received_at``,
    ``is_dispute``, ``category`` (dispute category or null), ``dispute_score``,
    ``cue_<group>`` (0/1) and ``n_deescalation``: the rule (or model) outputs
    per incident. ``tables`` holds the contract tables (households, persons,
    addresses, cases, visits, relations).
    """
    households, persons = tables["households"], tables["persons"]
    codes = household_codes(households)
    registry = registry or registry_keys(tables, codes)
    keys = household_keys(calls, tables, codes, registry)
    if all_households:
        snaps = all_household_snapshots(calls, codes, dates, call_codes=keys.calls)
    else:
        snaps = candidate_snapshots(calls, codes, dates, call_codes=keys.calls)
    hh = snaps["household_code"].to_numpy()
    end = snaps["snapshot_sec"].to_numpy()
    n = len(households)

    kept = keys.calls >= 0
    linked, entity = calls[kept].reset_index(drop=True), keys.calls[kept]
    seconds = to_seconds(linked["received_at"])
    third_party, distinct_start = caller_flags(linked, persons, codes, entity, seconds, keys.callers[kept])
    events = _CallEvents(linked, entity, seconds, third_party, distinct_start)
    features: dict[str, np.ndarray | Spread] = dict(spread_rows(events.features, entity, n, hh, end))
    features.update(_registry_features(households, persons, codes, hh, keys.members))
    for table, entities, compute in (
        ("cases", keys.cases, _case_features),
        ("visits", keys.visits, _visit_features),
        ("relations", keys.relations, _relation_features),
    ):
        index, kept_rows = compute(tables[table], entities)
        features.update(spread_rows(partial(_window_features, index, kept_rows), entities, n, hh, end))
    if scored_points:
        features.update({f"points_{k}": v for k, v in scored_points.items()})

    names = list(features)
    values = np.empty((len(hh), len(names)), dtype=np.float32, order="F")
    for j, name in enumerate(names):
        feature = features.pop(name)
        if isinstance(feature, Spread):
            feature.fill(values[:, j])
        else:
            values[:, j] = feature
    frame = pd.DataFrame(values, columns=names, copy=False)
    household_id, station_id, county_code = _place_columns(households, tables["addresses"], codes, hh, registry)
    frame.insert(0, "household_id", household_id)
    frame.insert(1, "snapshot_date", pd.to_datetime(end, unit="s"))
    frame.insert(2, "station_id", station_id)
    frame.insert(3, "county_code", county_code)
    if all_households:
        frame.insert(4, "in_scope", snaps["in_scope"].to_numpy())
    flags = np.zeros((2, len(calls)), dtype=bool)
    flags[0, kept], flags[1, kept] = third_party, distinct_start
    return Snapshots(frame, names, (keys.calls, hh), (flags[0], flags[1]))


def _place_columns(
    households: pd.DataFrame, addresses: pd.DataFrame, codes: pd.Series, hh: np.ndarray, registry: RegistryKeys
) -> tuple[pd.api.extensions.ExtensionArray | np.ndarray, ...]:
    """Each row's household id, station and county.

    With Arrow string columns (what the loaders give) they are taken in Arrow, at the address rows
    of ``registry``: the same strings as through Python objects, which cost a second per column
    for a city; other columns take the object path.
    """
    columns = (households["household_id"], households["address_id"], addresses["address_id"])
    columns += (addresses["station_id"], addresses["county_code"])
    arrow = all(isinstance(c.dtype, pd.StringDtype) and c.dtype.storage == "pyarrow" for c in columns)
    if arrow and registry.addresses_unique:
        address = registry.addresses[hh]
        return (
            households["household_id"].array.take(hh),
            addresses["station_id"].array.take(address, allow_fill=True),
            addresses["county_code"].array.take(address, allow_fill=True),
        )
    by_address = addresses.set_index("address_id")
    address_of = households["address_id"].to_numpy()[hh]
    return (
        codes.index.to_numpy()[hh],
        by_address["station_id"].reindex(address_of).to_numpy(),
        by_address["county_code"].reindex(address_of).to_numpy(),
    )


@dataclass(frozen=True)
class _CallEvents:
    """A city's linked calls, sorted once; :meth:`features` reads them for any rows."""

    linked: pd.DataFrame
    entity: np.ndarray
    seconds: np.ndarray
    third_party: np.ndarray
    distinct_start: np.ndarray

    def features(self, hh: np.ndarray, end: np.ndarray) -> dict[str, np.ndarray]:
        """The features that come from calls, for rows (household code, snapshot second)."""
        linked, entity, seconds = self.linked, self.entity, self.seconds
        features: dict[str, np.ndarray] = {}
        index = WindowIndex.build(entity, seconds)
        dispute = linked["is_dispute"].astype(bool).to_numpy()
        for w in WINDOWS:
            features[f"calls_{w}d"] = index.window_sum(None, hh, end, w)
            features[f"disputes_{w}d"] = index.window_sum(dispute, hh, end, w)
        for c in CATEGORIES:
            mask = dispute & (linked["category"] == c).to_numpy()
            for w in (90, 365):
                features[f"cat_{c}_{w}d"] = index.window_sum(mask, hh, end, w)
        for g in CUE_GROUPS:
            flag = linked[f"cue_{g}"].to_numpy() > 0
            for w in (30, 90, 365):
                features[f"cue_{g}_{w}d"] = index.window_sum(flag, hh, end, w)
        features["deescalation_90d"] = index.window_sum(linked["n_deescalation"].to_numpy() > 0, hh, end, 90)
        features["max_dispute_score_90d"] = _window_max(linked["dispute_score"].to_numpy(), index, hh, end, 90)
        recent, earlier = features["disputes_30d"], features["disputes_90d"] - features["disputes_30d"]
        features["acceleration"] = (recent + 1.0) / (earlier / 2.0 + 1.0)
        dispute_index = WindowIndex.build(entity[dispute], seconds[dispute])
        last = dispute_index.last_before(seconds[dispute], hh, end)
        first = dispute_index.first_before(seconds[dispute], hh, end)
        features["days_since_last_dispute"] = np.minimum(np.nan_to_num((end - last) / DAY, nan=MAX_DAYS), MAX_DAYS)
        features["days_since_first_dispute"] = np.minimum(np.nan_to_num((end - first) / DAY, nan=MAX_DAYS), MAX_DAYS)
        last_any = index.last_before(seconds, hh, end)
        features["days_since_last_call"] = np.minimum(np.nan_to_num((end - last_any) / DAY, nan=MAX_DAYS), MAX_DAYS)
        features.update(_trajectory_features(linked, dispute, entity, seconds, index, dispute_index, hh, end, features))
        features["third_party_calls_365d"] = index.window_sum(self.third_party, hh, end, 365)
        features["distinct_callers_365d"] = index.window_sum(self.distinct_start, hh, end, 365)
        return features


MEMORY_CUES = ("violence", "weapon", "threat", "injury")
"""Cues whose recent calls the escalation hazard remembers (a fight last week weighs more than one in spring)."""
EXCITATION_DAYS = 10.0
"""Time constant of the dispute-call excitation: calls come in bursts that fade over about ten days."""
MEMORY_DAYS = 30.0
"""Time constant of a cue's memory: violence a month ago still counts, a third as much."""
SHARE_CUES = ("alcohol", "violence", "threat", "weapon")
"""Cues whose share of a household's dispute calls over a year speaks of a trait (drinking, temper), not an event."""


def trajectory_feature_names() -> list[str]:
    """The features of :func:`_trajectory_features`, in order (online.py computes the same)."""
    return [
        "excitation",
        *(f"{g}_memory" for g in MEMORY_CUES),
        *(f"{g}_share_365d" for g in SHARE_CUES),
        "days_since_last_violence",
        "gap_last_disputes",
    ]


def decayed_sum(
    index: WindowIndex,
    seconds: np.ndarray,
    weights: np.ndarray | None,
    hh: np.ndarray,
    end: np.ndarray,
    tau_days: float,
) -> np.ndarray:
    """Sum over events before ``end`` of ``weight * exp(-age / tau)``, ages up to 6 tau (older ones weigh < 0.25 %).

    Computed pair by pair (snapshot, event in its window): a cumulative sum of
    ``exp(t / tau)`` would overflow or cancel across households.
    """
    hi = index._positions_at(hh, end, np.int64(0))
    lo = index._positions_at(hh, end, np.int64(round(6 * tau_days * DAY)))
    counts = hi - lo
    rows = np.repeat(np.arange(len(end)), counts)
    offsets = np.repeat(lo - np.r_[0, np.cumsum(counts)[:-1]], counts)
    event = index.order[np.arange(len(rows)) + offsets]
    w = np.exp(-(end[rows] - seconds[event]) / (tau_days * DAY))
    if weights is not None:
        w = w * np.asarray(weights, np.float64)[event]
    return np.bincount(rows, weights=w, minlength=len(end))


def _trajectory_features(
    linked: pd.DataFrame,
    dispute: np.ndarray,
    entity: np.ndarray,
    seconds: np.ndarray,
    index: WindowIndex,
    dispute_index: WindowIndex,
    hh: np.ndarray,
    end: np.ndarray,
    counts: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """How a household's disputes are moving: bursts, fresh violence, traits shown call after call, gaps.

    The hazard of a dispute turning violent rises with calls that come in
    bursts and with violence, weapons, threats and injuries in the last weeks,
    and with drinking or temper shown again and again (the share of a year's
    dispute calls with that cue, which a count confounds with how often the
    household calls). Negated cues (没有动手) never count: the rules drop them.
    """
    out: dict[str, np.ndarray] = {}
    out["excitation"] = decayed_sum(index, seconds, dispute.astype(np.float64), hh, end, EXCITATION_DAYS)
    for g in MEMORY_CUES:
        flag = (linked[f"cue_{g}"].to_numpy() > 0) & dispute
        out[f"{g}_memory"] = decayed_sum(index, seconds, flag.astype(np.float64), hh, end, MEMORY_DAYS)
    disputes_year = np.maximum(counts["disputes_365d"], 1.0)
    for g in SHARE_CUES:
        flag = (linked[f"cue_{g}"].to_numpy() > 0) & dispute
        out[f"{g}_share_365d"] = index.window_sum(flag, hh, end, 365) / disputes_year
    violent = dispute & (linked["cue_violence"].to_numpy() > 0)
    violence_index = WindowIndex.build(entity[violent], seconds[violent])
    last_violence = violence_index.last_before(seconds[violent], hh, end)
    out["days_since_last_violence"] = np.minimum(np.nan_to_num((end - last_violence) / DAY, nan=MAX_DAYS), MAX_DAYS)
    # Days between the last two dispute calls: a short gap is a conflict that is live, not a one-off.
    hi = dispute_index._positions_at(hh, end, np.int64(0))
    first = dispute_index._positions_at(hh, end, None)
    two = hi - first >= 2
    dispute_seconds = seconds[dispute]
    gap = np.full(len(end), MAX_DAYS)
    last = dispute_seconds[dispute_index.order[hi[two] - 1]]
    before_last = dispute_seconds[dispute_index.order[hi[two] - 2]]
    gap[two] = np.minimum((last - before_last) / DAY, MAX_DAYS)
    out["gap_last_disputes"] = gap
    return out


def _window_max(values: np.ndarray, index: WindowIndex, hh: np.ndarray, end: np.ndarray, days: int) -> np.ndarray:
    """Max of ``values`` in the window; computed on the few rows that have events in it."""
    hi = index._positions_at(hh, end, np.int64(0))
    lo = index._positions_at(hh, end, np.int64(days) * DAY)
    out = np.zeros(len(end))
    sorted_values = values[index.order]
    for i in np.flatnonzero(hi > lo):
        out[i] = sorted_values[lo[i] : hi[i]].max()
    return out


def caller_flags(
    linked: pd.DataFrame,
    persons: pd.DataFrame,
    codes: pd.Series,
    entity: np.ndarray,
    seconds: np.ndarray,
    caller_code: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per call: was the caller from another household, and is it the caller's first call to it within a year.

    A caller counts once per household: only each (household, caller)'s calls
    that come a year or more after the previous one (or are the first) start
    a "distinct caller"; exact for windows of one year. ``caller_code``: the
    household code of each call's caller when the caller has it (``HouseholdKeys.callers``).

    Calls are put in (household, caller, time) order by a stable sort on
    integer keys (a missing caller and an empty key are one group, never a
    distinct caller), so ties keep the calls' order as a sort on the strings would.
    """
    if caller_code is None:
        caller_code = code_households(household_of(linked["person_id"], persons), codes)
    third_party = (caller_code >= 0) & (caller_code != entity)
    person = arrow_strings(linked["person_id"])
    person = pc.if_else(pc.equal(person, ""), pa.scalar(None, person.type), person)
    caller = pc.fill_null(pc.dictionary_encode(person).indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.lexsort((seconds, caller, entity))
    e, c, t = entity[order], caller[order], seconds[order]
    same = np.r_[False, (e[1:] == e[:-1]) & (c[1:] == c[:-1])]
    long_gap = np.r_[True, (t[1:] - t[:-1]) >= 365 * DAY]
    first = np.zeros(len(linked), dtype=bool)
    first[order] = (~same | long_gap) & (c >= 0)
    return third_party, first


def _registry_features(
    households: pd.DataFrame, persons: pd.DataFrame, codes: pd.Series, hh: np.ndarray, member: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Static registry facts about the household's members (the registry is a current snapshot).

    ``member``: each person's household code (``HouseholdKeys.members``) when the caller has it.
    """
    if member is None:
        member = code_households(persons["household_id"], codes)
    n = len(households)

    def per_household(flag: np.ndarray) -> np.ndarray:
        return np.bincount(member[member >= 0], weights=flag[member >= 0].astype(float), minlength=n)[hh]

    size = households["size"].to_numpy().astype(float)[hh]
    return {
        "members": size,
        "mental_illness_members": per_household(persons["mental_illness_registry"].to_numpy()),
        "community_correction_members": per_household(persons["community_correction"].to_numpy()),
        "prior_record_members": per_household(persons["prior_record"].to_numpy()),
        "unemployed_members": per_household((persons["employment"] == "unemployed").to_numpy()),
        "floating_household": (households["household_type"].to_numpy() == "floating").astype(float)[hh],
    }


def _person_event_index(
    frame: pd.DataFrame, persons: pd.DataFrame, codes: pd.Series, time_column: str
) -> tuple[WindowIndex, pd.DataFrame]:
    entity = code_households(household_of(frame["person_id"], persons), codes)
    keep = entity >= 0
    kept = frame[keep].reset_index(drop=True)
    return WindowIndex.build(entity[keep], to_seconds(kept[time_column])), kept


Windows = list[tuple[str, np.ndarray | None, float | None]]
"""Features of one event table: (name, weights or None for the count, window in days or None for all before)."""


def _window_features(index: WindowIndex, windows: Windows, hh: np.ndarray, end: np.ndarray) -> dict[str, np.ndarray]:
    """Each window sum of ``windows`` for rows (household code, snapshot second)."""
    return {name: index.window_sum(weights, hh, end, days) for name, weights, days in windows}


def _case_features(cases: pd.DataFrame, entity: np.ndarray) -> tuple[WindowIndex, Windows]:
    """Cases involving a member before D: all time and in the last year, violent ones apart.

    ``entity``: each case's household code through its person (-1: unknown, ignored).
    """
    keep = entity >= 0
    kept = cases[keep].reset_index(drop=True)
    index = WindowIndex.build(entity[keep], to_seconds(kept["opened_at"]))
    violent = kept["charge"].isin(VIOLENT_CHARGES).to_numpy()
    suspect = (kept["role"] == "suspect").to_numpy()
    return index, [
        ("cases_365d", None, 365),
        ("violent_cases_365d", violent, 365),
        ("violent_cases_ever", violent, None),
        ("suspect_cases_ever", suspect, None),
    ]


def _visit_features(visits: pd.DataFrame, entity: np.ndarray) -> tuple[WindowIndex, Windows]:
    """Mediation and screening before D: what the station already did and found."""
    keep = entity >= 0
    v = visits[keep].reset_index(drop=True)
    index = WindowIndex.build(entity[keep], to_seconds(v["visited_at"]))
    unresolved = v["outcome"].isin(["未化解", "调解中"]).to_numpy()
    return index, [
        ("mediations_90d", (v["visit_type"] == "调解").to_numpy(), 90),
        ("unresolved_visits_90d", unresolved, 90),
        ("screening_found_365d", (v["visit_type"] == "矛盾排查").to_numpy(), 365),
        ("visits_365d", None, 365),
    ]


def _relation_features(relations: pd.DataFrame, entity: np.ndarray) -> tuple[WindowIndex, Windows]:
    """Recorded links of members by kind, known before D (a missing date counts as known).

    Each relation counts for both ends: ``entity`` holds the household codes of
    the ``person_id_a`` rows, then of the ``person_id_b`` rows.
    """
    keep = entity >= 0
    kind = np.concatenate([relations["relation"].to_numpy(object)] * 2)[keep]
    since = pd.concat([relations["since"], relations["since"]], ignore_index=True)[keep]
    index = WindowIndex.build(entity[keep], to_seconds(since))
    return index, [(f"relation_{k}", kind == k, None) for k in RELATION_KINDS]


def escalation_labels(
    snapshots: pd.DataFrame, cases: pd.DataFrame, persons: pd.DataFrame, households: pd.DataFrame, horizon_days: int
) -> np.ndarray:
    """1 when a violent case involving a member is opened in [D, D + horizon), else 0."""
    codes = household_codes(households)
    violent = cases[cases["charge"].isin(VIOLENT_CHARGES)]
    index, _ = _person_event_index(violent, persons, codes, "opened_at")
    hh = code_households(snapshots["household_id"], codes)
    start = to_seconds(snapshots["snapshot_date"])
    after = start + np.int64(horizon_days) * DAY
    return (index.window_sum(None, hh, after, horizon_days) > 0).astype(np.int8)
