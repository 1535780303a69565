"""The one level policy: what the scoring rules say, what the model says, what a station is told.

The reports' own system is the scoring rules (积分预警). The model must add to
them and never silently take a warning away, so every published level comes
from the functions here, and batch (pipelines/ranking.py), the ``yujing warn``
file command (models/warning.py) and the online service (serving/incident.py)
all call them:

1. **Rules' level** (:func:`worst_scenario`): the worst level any scenario
   reaches, then the most points, then the scenario listed first in
   conf/warning_models.toml. One tie rule, so batch and online agree.
2. **Model's level** (:func:`threshold_levels`): the calibrated probability
   against ``level_thresholds``. It only counts with *evidence*: a household
   with no call in the last :data:`EVIDENCE_DAYS` days cannot be warned by the
   model (a station needs a recent event to act on, not 流动人口户 alone).
3. **Published level** (:func:`publish_level`): the higher of the two, with
   ``raised_by`` naming the side(s) that reach it: ``rules``, ``model`` or
   ``both``. A rules level is never lowered.
4. **Capacity** (:func:`apply_capacity`): a station keeps at most
   ``station_capacity`` warnings of a level; the excess *model-raised*
   warnings move one level down (cascading), never below the rules' own level.
   A rules warning never moves, even when it alone exceeds the capacity: a
   rules-red household is red.
5. **Order in a station** (:func:`priority`, :func:`rank_within_station`):
   published level, then the model's raw score (strictly ordered; the
   calibrated probability has plateaus), then rules points, then household id.

Every function has a scalar form (one household, online) and a vectorised form
(the city, batch); tests/test_levels.py checks they agree on every combination.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from models.warning import Scenario

LEVELS = ("red", "orange", "yellow", "blue")
"""Most urgent first (the same four levels as the scoring warning models)."""

RAISED_BY = ("rules", "model", "both")
"""Which side reaches the published level."""

EVIDENCE_DAYS = 90
"""A model-raised level needs at least one call of the household in this many days before the as-of time."""

EVIDENCE_FEATURE = f"calls_{EVIDENCE_DAYS}d"
"""The feature (features/snapshots.py, features/online.py) that counts those calls, batch and online alike."""

_NONE = len(LEVELS)
_LEVEL_WORDS = {"red": "红色", "orange": "橙色", "yellow": "黄色", "blue": "蓝色"}


def level_rank(level: object) -> int:
    """0 for red ... 3 for blue, 4 for no level (None, NaN): smaller is more urgent."""
    return LEVELS.index(level) if isinstance(level, str) else _NONE


def _ranks(levels: Sequence[object] | np.ndarray) -> np.ndarray:
    """:func:`level_rank` of each element.

    A city ranks a million households and holds a handful of distinct levels: the distinct
    values are looked up once (``pd.factorize``, missing values as -1) instead of one Python
    lookup per household (seconds per call for a city).
    """
    lookup = {name: i for i, name in enumerate(LEVELS)}
    codes, distinct = pd.factorize(np.asarray(levels, dtype=object))
    table = [lookup.get(v, _NONE) if isinstance(v, str) else _NONE for v in distinct]
    return np.array([*table, _NONE], dtype=np.int64)[codes]  # code -1 (missing) takes the last entry


def _names(ranks: np.ndarray) -> np.ndarray:
    """Level names (None for no level) of rank codes."""
    names = np.array([*LEVELS, None], dtype=object)
    return names[np.asarray(ranks, dtype=np.int64)]


# --------------------------------------------------------------------------------------- the rules' level


def worst_scenario(
    points: Mapping[str, float], scenarios: Mapping[str, Scenario]
) -> tuple[str | None, str | None, float]:
    """The scoring rules' verdict for one household: ``(level, scenario, points)``.

    Worst level first, then most points, then the scenario listed first in
    conf/warning_models.toml (``scenarios`` keeps the file's order). Below
    blue everywhere: ``(None, None, most points of any scenario)``.
    """
    best: tuple[int, float, int] | None = None
    chosen = ""
    for position, (name, scenario) in enumerate(scenarios.items()):
        value = float(points[name])
        key = (level_rank(scenario.level_of(value)), -value, position)
        if best is None or key < best:
            best, chosen = key, name
    if best is None:
        return None, None, 0.0
    rank, negative, _ = best
    if rank == _NONE:
        return None, None, -negative
    return LEVELS[rank], chosen, -negative


def worst_scenarios(
    points: Mapping[str, np.ndarray], scenarios: Mapping[str, Scenario]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`worst_scenario` for many households: arrays of levels, scenario names and points."""
    names = list(scenarios)
    if not names:
        raise ValueError("no scenarios: conf/warning_models.toml needs at least one [scenarios.*] table")
    values = np.stack([np.asarray(points[s], dtype=np.float64) for s in names], axis=1)
    ranks = np.stack([_ranks(scenarios[s].level(values[:, j])) for j, s in enumerate(names)], axis=1)
    # Worst level, then most points among those at it, then the first in file order (argmax: first True).
    at_worst = ranks == ranks.min(axis=1, keepdims=True)
    most = np.where(at_worst, values, -np.inf).max(axis=1, keepdims=True)
    best = np.argmax(at_worst & (values == most), axis=1)
    rows = np.arange(len(values))
    rank = ranks[rows, best]
    level = _names(rank)
    scenario = np.where(rank < _NONE, np.array(names, dtype=object)[best], None)
    return level, scenario, values[rows, best]


# --------------------------------------------------------------------------------------- the model's level


def threshold_levels(probability: np.ndarray, thresholds: Mapping[str, float]) -> np.ndarray:
    """The level each calibrated probability reaches (None below blue, and for NaN)."""
    p = np.asarray(probability, dtype=np.float64)
    out = np.full(len(p), None, dtype=object)
    for level in reversed(LEVELS):  # blue first: the highest threshold reached wins
        out[p >= thresholds[level]] = level
    return out


def threshold_level(probability: float | None, thresholds: Mapping[str, float]) -> str | None:
    """:func:`threshold_levels` for one probability."""
    if probability is None or not np.isfinite(probability):
        return None
    return next((level for level in LEVELS if probability >= thresholds[level]), None)


# --------------------------------------------------------------------------------------- the published level


def raised_by_of(published: object, rules_level: object, model_level: object) -> str | None:
    """Which side reaches ``published``: ``rules``, ``model``, ``both`` (None when nothing is published)."""
    target = level_rank(published)
    if target == _NONE:
        return None
    rules = level_rank(rules_level) <= target
    model = level_rank(model_level) <= target
    return "both" if rules and model else "rules" if rules else "model" if model else None


def publish_level(
    rules_level: str | None, model_level: str | None, evidence: bool = True
) -> tuple[str | None, str | None]:
    """The published level and who raised it: the higher of the rules' and the model's level.

    ``evidence`` is False when the household has no call in the last
    :data:`EVIDENCE_DAYS` days: the model's level is then dropped and the
    rules' level stands (a model warning needs something a station can check).
    """
    model = model_level if evidence else None
    rank = min(level_rank(rules_level), level_rank(model))
    published = LEVELS[rank] if rank < _NONE else None
    return published, raised_by_of(published, rules_level, model)


def dropped_model_level(model_level: str) -> str:
    """The reason given when the evidence rule drops the model's level (batch and online alike)."""
    word = _LEVEL_WORDS.get(model_level, model_level)
    return f"模型评估为{word}，但近{EVIDENCE_DAYS}天无报警，未采用模型等级（以积分预警为准）"


def publish_levels(
    rules_levels: np.ndarray, model_levels: np.ndarray, evidence: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`publish_level` for many households: arrays of published levels and ``raised_by``."""
    rules = _ranks(rules_levels)
    model = _ranks(model_levels)
    if evidence is not None:
        model = np.where(np.asarray(evidence, dtype=bool), model, _NONE)
    rank = np.minimum(rules, model)
    return _names(rank), _raised_by(rank, rules, model)


def _raised_by(published: np.ndarray, rules: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Vectorised :func:`raised_by_of` over rank codes."""
    r, m = rules <= published, model <= published
    out = np.full(len(published), None, dtype=object)
    out[r & ~m] = "rules"
    out[m & ~r] = "model"
    out[r & m] = "both"
    out[published == _NONE] = None
    return out


def raised_by_after(published: np.ndarray, rules_levels: np.ndarray, model_levels: np.ndarray) -> np.ndarray:
    """``raised_by`` of levels after capacity (a capped model warning may land on the rules' level: ``both``)."""
    return _raised_by(_ranks(published), _ranks(rules_levels), _ranks(model_levels))


# --------------------------------------------------------------------------------------- capacity and order


def priority(score: np.ndarray, points: np.ndarray, household_id: np.ndarray) -> np.ndarray:
    """A strict priority (higher first): the model's raw score, then rules points, then household id.

    NaN scores (the rules rank) come after every score. Returned as floats
    ``n, n-1, ... 1`` so no two households tie.
    """
    score = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-np.inf)
    points = np.nan_to_num(np.asarray(points, dtype=np.float64), nan=-np.inf)
    ids = np.asarray(household_id).astype(str)
    order = np.lexsort((ids, -points, -score))  # last key first: score desc, points desc, id asc
    out = np.empty(len(order), dtype=np.float64)
    out[order] = np.arange(len(order), 0, -1, dtype=np.float64)
    return out


def apply_capacity(
    levels: np.ndarray,
    priority: np.ndarray,
    station: np.ndarray,
    capacity: Mapping[str, int],
    floor: np.ndarray | None = None,
) -> np.ndarray:
    """Levels after each station's capacity: the excess of a level moves one level down, cascading.

    ``floor`` is each household's rules level: a household never moves below
    it, and one already at it never moves (rules warnings are fixed and use up
    the slots first). Without ``floor`` every warning may move. ``priority``
    orders households within a station (higher first); ties keep input order.
    """
    out = _ranks(levels)
    fixed = np.full(len(out), _NONE) if floor is None else _ranks(floor)
    order = np.lexsort((np.arange(len(out)), -np.asarray(priority, dtype=np.float64), np.asarray(station)))
    stations = np.asarray(station)[order]
    starts = np.flatnonzero(np.r_[True, stations[1:] != stations[:-1]]) if len(order) else np.array([], int)
    for lo, hi in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        rows = order[lo:hi]
        for i, level in enumerate(LEVELS[:-1]):
            limit = capacity.get(level)
            if limit is None:
                continue
            at_level = rows[out[rows] == i]
            movable = at_level[fixed[at_level] > i]  # above its rules level: raised by the model
            room = max(limit - (len(at_level) - len(movable)), 0)
            out[movable[room:]] = i + 1
    return _names(out)


def rank_within_station(levels: np.ndarray, priority: np.ndarray, station: np.ndarray) -> np.ndarray:
    """1 for a station's most urgent warning, 2 for the next...; 0 for households without a level."""
    level_rank_ = _ranks(np.asarray(levels, dtype=object))
    frame = pd.DataFrame(
        {"station": np.asarray(station), "level": level_rank_, "p": -np.asarray(priority, np.float64)}
    ).reset_index()
    warned = frame[frame["level"] < _NONE].sort_values(["station", "level", "p", "index"])
    out = np.zeros(len(level_rank_), dtype=np.int64)
    out[warned["index"].to_numpy()] = warned.groupby("station", sort=False).cumcount().to_numpy() + 1
    return out


def assign_levels(
    rules_levels: np.ndarray,
    model_levels: np.ndarray,
    evidence: np.ndarray,
    priority: np.ndarray,
    station: np.ndarray,
    capacity: Mapping[str, int],
) -> pd.DataFrame:
    """The whole policy for a city: ``threshold_level`` (published before capacity), ``level``,
    ``raised_by`` and ``rank_in_station`` for each household.

    ``model_levels`` is None where the model does not speak (the rules rank,
    or the household is outside the model's population).
    """
    rules = np.asarray(rules_levels, dtype=object)
    model = np.asarray(model_levels, dtype=object)
    earned, _ = publish_levels(rules, model, evidence)
    final = apply_capacity(earned, priority, station, capacity, floor=rules)
    counted_model = np.where(np.asarray(evidence, dtype=bool), model, None)
    return pd.DataFrame(
        {
            "threshold_level": pd.Series(earned, dtype=object),  # object: None (not NaN) for "no warning"
            "level": pd.Series(final, dtype=object),
            "raised_by": pd.Series(raised_by_after(final, rules, counted_model), dtype=object),
            "rank_in_station": rank_within_station(final, priority, station),
        }
    )
