"""The intervention model: what a police visit or a mediation does to a conflict's escalation hazard.

A visit on day v multiplies the conflict's daily escalation hazard on day
t >= v by

    m(t) = 1 - (1 - HR) * exp(-(t - v) / tau)

so on the day of the visit the hazard is ``HR`` times what it would have been,
and the effect fades back to none with time constant ``tau`` days (after
``tau`` days about a third of the reduction is left, after ``3 tau`` a
twentieth). A later visit restarts the clock; visits do not stack. Nothing
else about the conflict changes: calls, cues and severity go on as they
would have, which is what makes the replay's two arms share their random
numbers (``simulation/dynamics.py``).

The effect sizes are assumptions, not findings of this project. Each action
has a low, central and high scenario; ``docs/whatif.md`` gives the studies
each number leans on and why the range is as wide as it is. In short:
randomised trials of police "second responder" home visits after domestic
violence found no reduction in repeat violence on average (Davis, Weisburd &
Taylor 2008, Campbell review), so the low end is close to no effect;
restorative justice conferences and conditional cautions for domestic abuse
cut repeat harm by roughly a tenth to a quarter (Strang et al. 2013;
Strang et al. 2017, Project CARA), the central to high range; the
simulator's own mediation after a call (``SimConfig.escalation_weights
["mediated"]`` = -0.5, a hazard ratio of 0.61 remembered over 60 days) is
the high end for a mediation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ACTIONS = ("visit", "mediation")
SCENARIOS = ("low", "central", "high")


@dataclass(frozen=True)
class Effect:
    """One assumed effect: hazard ratio on the day of the action and how fast it fades."""

    action: str
    scenario: str
    hazard_ratio: float
    decay_days: float

    def __post_init__(self) -> None:
        if not 0.0 < self.hazard_ratio <= 1.0:
            raise ValueError(f"hazard_ratio must be in (0, 1], got {self.hazard_ratio}")
        if self.decay_days <= 0:
            raise ValueError(f"decay_days must be positive, got {self.decay_days}")


EFFECTS: dict[str, dict[str, Effect]] = {
    "visit": {
        # second-responder trials: no average reduction; a small one is the most the evidence allows
        "low": Effect("visit", "low", 0.95, 14.0),
        "central": Effect("visit", "central", 0.85, 30.0),
        # conditional caution with a course for domestic abuse (CARA): about a quarter less harm
        "high": Effect("visit", "high", 0.70, 60.0),
    },
    "mediation": {
        "low": Effect("mediation", "low", 0.90, 30.0),
        # restorative conferences: repeat offending about a tenth to a quarter lower
        "central": Effect("mediation", "central", 0.75, 60.0),
        # the simulator's own mediation after a call: exp(-0.5) = 0.61 over a 60-day memory
        "high": Effect("mediation", "high", 0.61, 60.0),
    },
}
"""Every assumed effect, by action and scenario (docs/whatif.md#effect-sizes for the sources)."""


def effect(action: str, scenario: str = "central") -> Effect:
    """The assumed effect of ``action`` under ``scenario``; a clear error for an unknown name."""
    if action not in EFFECTS:
        raise ValueError(f"unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
    if scenario not in EFFECTS[action]:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    return EFFECTS[action][scenario]


@dataclass(frozen=True)
class Intervention:
    """Visits to conflicts on given days under one assumed effect.

    ``conflict_row`` and ``day`` are parallel arrays: conflict r is visited on
    day d (day 0 = ``SimConfig.start``). ``seed`` draws the random numbers of
    the futures only the intervened world has (a conflict that went on because
    its escalation was prevented), so that the plain run's numbers are reused
    for everything else.
    """

    effect: Effect
    conflict_row: np.ndarray
    day: np.ndarray
    seed: int = 0

    def tracker(self, n_conflicts: int) -> VisitTracker:
        return VisitTracker(self, n_conflicts)


class VisitTracker:
    """The day loop's view of an intervention: the hazard multiplier of each conflict on the current day."""

    def __init__(self, intervention: Intervention, n_conflicts: int) -> None:
        rows = np.asarray(intervention.conflict_row, dtype=np.int64)
        days = np.asarray(intervention.day, dtype=np.int64)
        order = np.argsort(days, kind="stable")
        self._rows, self._days = rows[order], days[order]
        self._next = 0
        self._effect = intervention.effect
        self.seed = intervention.seed
        self.last_visit = np.full(n_conflicts, np.iinfo(np.int64).min // 2, dtype=np.int64)
        self._day = 0

    def advance(self, day: int) -> None:
        """Record every visit made up to and including ``day``."""
        stop = int(np.searchsorted(self._days, day, side="right"))
        if stop > self._next:
            self.last_visit[self._rows[self._next : stop]] = self._days[self._next : stop]
            self._next = stop
        self._day = day

    def multiplier(self, idx: np.ndarray) -> np.ndarray:
        """m(t) for the conflicts ``idx`` on the current day (1 where never visited)."""
        since = (self._day - self.last_visit[idx]).astype(np.float64)
        relief = (1.0 - self._effect.hazard_ratio) * np.exp(-np.maximum(since, 0.0) / self._effect.decay_days)
        return np.where(since >= 0, 1.0 - relief, 1.0)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def coin(seed: int, rows: np.ndarray, day: int) -> np.ndarray:
    """A uniform number in [0, 1) per (seed, conflict row, day), the same whoever asks and in whatever order.

    It decides whether an escalation of the plain run still happens under the
    visits (it does with probability m(t)). Because it depends on nothing but
    its key, every policy and every assumed effect meets the same coin for the
    same escalation: their comparisons are paired, and a stronger effect
    prevents every escalation a weaker one prevents on the same path.
    """
    with np.errstate(over="ignore"):
        key = _splitmix64(np.full(len(rows), np.uint64(seed % 2**63), dtype=np.uint64))
        key = _splitmix64(key ^ np.asarray(rows, dtype=np.int64).astype(np.uint64))
        key = _splitmix64(key ^ np.uint64((day + 2**20) % 2**63))
    return (key >> np.uint64(11)).astype(np.float64) / float(2**53)


def household_visits_to_conflicts(
    conflicts: pd.DataFrame, household_row: np.ndarray, day: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Visits to households (row numbers, days) as visits to every conflict of theirs active that day.

    A visit to either party's household reaches the conflict: for a dispute
    inside one household both parties are there; between neighbours, the
    officer talks to the household visited, and we assume the effect carries
    to the conflict (docs/whatif.md lists this among the assumptions).
    """
    household_row = np.asarray(household_row, dtype=np.int64)
    day = np.asarray(day, dtype=np.int64)
    if len(household_row) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    parts_rows, parts_days = [], []
    visit = pd.DataFrame({"household": household_row, "day": day, "visit": np.arange(len(day))})
    for column in ("household_a", "household_b"):
        side = pd.DataFrame(
            {
                "household": conflicts[column].to_numpy(),
                "conflict_row": conflicts["conflict_row"].to_numpy(),
                "start_day": conflicts["start_day"].to_numpy(),
                "end_day": conflicts["end_day"].to_numpy(),
            }
        )
        side = side[side["household"] >= 0]
        joined = visit.merge(side, on="household", how="inner")
        joined = joined[(joined["start_day"] <= joined["day"]) & (joined["day"] < joined["end_day"])]
        parts_rows.append(joined["conflict_row"].to_numpy())
        parts_days.append(joined["day"].to_numpy())
    pairs = pd.DataFrame({"conflict_row": np.concatenate(parts_rows), "day": np.concatenate(parts_days)})
    pairs = pairs.drop_duplicates().sort_values(["day", "conflict_row"], kind="stable")
    return pairs["conflict_row"].to_numpy(np.int64), pairs["day"].to_numpy(np.int64)


def days_since_visit(intervention: Intervention, conflict_row: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since each (conflict, day)'s latest visit on or before that day; NaN when it had none."""
    rows = np.asarray(intervention.conflict_row, dtype=np.int64)
    shift = np.int64(1) << np.int64(24)  # days fit in 24 bits with room for the burn-in
    keys = np.sort(rows * shift + (np.asarray(intervention.day, dtype=np.int64) + shift // 2))
    wanted = np.asarray(conflict_row, dtype=np.int64)
    target = wanted * shift + (np.asarray(day, dtype=np.int64) + shift // 2)
    if not len(keys):
        return np.full(len(wanted), np.nan)
    pos = np.maximum(np.searchsorted(keys, target, side="right") - 1, 0)
    found = (keys[pos] <= target) & (keys[pos] // shift == wanted)
    return np.where(found, target - keys[pos], np.nan).astype(np.float64)


def expected_prevented(intervention: Intervention, conflict_row: np.ndarray, day: np.ndarray) -> np.ndarray:
    """1 - m(t) at each given escalation of the plain run: the chance the visits prevented it.

    Their sum is the expected number of the plain run's escalations the
    visits prevent directly, without the coin's noise (it leaves out what a
    conflict that went on does later, which only the replay draws).
    """
    since = days_since_visit(intervention, conflict_row, day)
    fx = intervention.effect
    return np.where(np.isnan(since), 0.0, (1.0 - fx.hazard_ratio) * np.exp(-np.nan_to_num(since) / fx.decay_days))
