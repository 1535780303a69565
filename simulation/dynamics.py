"""How conflicts unfold day by day: self-exciting calls, cues, mediation, escalation.

Each active conflict carries a hidden severity that drifts, and an excitation
that jumps with every call and decays over about ten days (a discrete-time
Hawkes process), so calls come in bursts. Each call reveals cues (violence,
weapon, injury, threat, alcohol, self-harm) with chances that grow with
severity and the parties' latent traits. Escalation to a violent case is a
daily hazard driven by what the police can partly see (call frequency and
recency, cue history, separation, registry flags) and what they cannot
(severity, alcohol misuse, temper). Mediation after a call lowers severity.

The loop runs over days, vectorised over conflicts: ~900 iterations of array
operations, whatever the size of the city.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulation.config import CATEGORIES, SimConfig
from simulation.intervention import Intervention, coin

CUES = ("violence", "weapon", "injury", "threat", "alcohol", "self_harm", "separation")

_VIOLENCE_OFFSET = {
    "debt": -0.5,
    "family": 0.3,
    "neighbor": -0.2,
    "land": 0.0,
    "labor": -0.6,
    "medical_school": -1.2,
    "property": -1.5,
    "other": 0.3,
}
_SPRING_FESTIVAL = {
    2021: "2021-02-12",
    2022: "2022-02-01",
    2023: "2023-01-22",
    2024: "2024-02-10",
    2025: "2025-01-29",
    2026: "2026-02-17",
    2027: "2027-02-06",
    2028: "2028-01-26",
    2029: "2029-02-13",
    2030: "2030-02-03",
}


@dataclass(frozen=True)
class Dynamics:
    """What the day loop produced, in conflict rows and day numbers (day 0 = config.start)."""

    calls: pd.DataFrame
    escalations: pd.DataFrame
    mediations: pd.DataFrame
    prevented: pd.DataFrame | None = None
    """With an intervention: the plain run's escalations that a visit prevented (conflict_row, day)."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def seasonality(config: SimConfig) -> np.ndarray:
    """Relative call rate per category (rows) and day (columns), mean 1 per row.

    Land and grassland disputes peak in spring (grazing and sowing), wage
    disputes in the weeks before Spring Festival, debts at year end, family
    disputes at weekends and holidays, neighbour disputes in summer.
    """
    days = pd.date_range(
        pd.Timestamp(config.start) - pd.Timedelta(days=config.burn_in_days),
        periods=config.days + config.burn_in_days,
        freq="D",
    )
    month = days.month.to_numpy()
    weekend = days.day_of_week.to_numpy() >= 5
    festival = np.zeros(len(days), dtype=bool)
    before_festival = np.zeros(len(days), dtype=bool)
    for year in range(days[0].year, days[-1].year + 2):
        sf = pd.Timestamp(_SPRING_FESTIVAL.get(year, f"{year}-02-01"))
        festival |= (days >= sf - pd.Timedelta(days=3)) & (days <= sf + pd.Timedelta(days=7))
        before_festival |= (days >= sf - pd.Timedelta(days=40)) & (days < sf)
    national_day = (month == 10) & (days.day.to_numpy() <= 7)
    holiday = festival | national_day | ((month == 5) & (days.day.to_numpy() <= 5))
    rows = {
        "debt": 1 + 0.5 * np.isin(month, (12, 1)) + 0.4 * before_festival,
        "family": 1 + 0.25 * weekend + 0.5 * holiday,
        "neighbor": 1 + 0.3 * np.isin(month, (6, 7, 8)) + 0.2 * weekend,
        "land": np.select(
            [np.isin(month, (3, 4, 5)), month == 6, np.isin(month, (11, 12, 1, 2))], [2.5, 1.5, 0.5], 1.0
        ),
        "labor": 1 + 2.0 * before_festival + 0.8 * (month == 12),
        "medical_school": 1 - 0.4 * np.isin(month, (7, 8)),
        "property": 1 + 0.3 * np.isin(month, (4, 5, 9, 10)),
        "other": 1 + 0.3 * weekend + 0.3 * holiday,
    }
    matrix = np.vstack([rows[c].astype(float) for c in CATEGORIES])
    return matrix / matrix.mean(axis=1, keepdims=True)


def run_dynamics(
    config: SimConfig, conflicts: pd.DataFrame, rng: np.random.Generator, intervention: Intervention | None = None
) -> Dynamics:
    """Simulate every conflict from its start to its end (or escalation), day by day.

    With an ``intervention`` (simulation/intervention.py) visits multiply the
    escalation hazard, and the run is coupled to the plain one: every random
    number is drawn exactly as without visits, and an escalation happens only
    if the same uniform draw falls below the lowered hazard. A prevented
    escalation that would have ended its conflict lets the conflict go on; its
    future is drawn from the intervention's own stream (a second, disjoint set
    of rows stepped after the first each day), so the shared stream stays in
    step. Without an intervention the run is exactly the plain simulation.
    """
    n = len(conflicts)
    cat = pd.Categorical(conflicts["category"], categories=CATEGORIES).codes
    start = conflicts["start_day"].to_numpy()
    end = conflicts["end_day"].to_numpy()
    hidden = conflicts["hidden"].to_numpy()
    alcohol = conflicts["alcohol"].to_numpy()
    temper = conflicts["temper"].to_numpy()
    mental = conflicts["mental"].to_numpy()
    prior = conflicts["prior"].to_numpy()
    unemployed = conflicts["unemployed"].to_numpy()
    sep_day = conflicts["separation_day"].to_numpy()
    drift = conflicts["severity_drift"].to_numpy()
    spouse_like = conflicts["kind"].isin(["spouse", "ex_partner"]).to_numpy()
    base_rate = conflicts["baseline_calls"].to_numpy() / np.maximum(end - start, 1)
    decay = np.exp(-1.0 / config.excitation_decay_days)
    alpha = conflicts["branching"].to_numpy() * (1 - decay)
    violence_offset = np.array([_VIOLENCE_OFFSET[c] for c in CATEGORIES])[cat] + 0.4 * spouse_like
    cat_factor = np.array([config.escalation_category_factor[c] for c in CATEGORIES])[cat]
    w = config.escalation_weights
    season = seasonality(config)
    mem30, mem60 = np.exp(-1 / 30), np.exp(-1 / 60)

    sev = conflicts["severity0"].to_numpy().astype(float).copy()
    excitation = np.zeros(n)
    memory = {c: np.zeros(n) for c in ("violence", "weapon", "threat", "injury", "mediated")}
    done = np.zeros(n, dtype=bool)
    call_parts: list[pd.DataFrame] = []
    escalation_parts: list[tuple[np.ndarray, int]] = []
    mediation_parts: list[tuple[np.ndarray, int]] = []
    tracker = intervention.tracker(n) if intervention is not None else None
    going_on = np.zeros(n, dtype=bool)  # prevented escalations whose conflict goes on only in the intervened world
    own_rng = np.random.default_rng(intervention.seed) if intervention is not None else None
    prevented_parts: list[tuple[np.ndarray, int]] = []

    def step(idx: np.ndarray, rng: np.random.Generator, t: int, day: int, shared: bool) -> None:
        """One day of the conflicts ``idx``, drawing from ``rng`` (shared: the plain run's stream)."""
        sev[idx] += drift[idx] + rng.normal(0, 0.03, len(idx))
        lam = base_rate[idx] * season[cat[idx], t] * np.exp(0.35 * sev[idx]) + alpha[idx] * excitation[idx]
        n_calls = np.minimum(rng.poisson(lam), 3)
        n_calls[start[idx] == day] = np.maximum(n_calls[start[idx] == day], 1)
        n_calls[hidden[idx]] = 0
        excitation[idx] *= decay
        for key in ("violence", "weapon", "threat", "injury"):
            memory[key][idx] *= mem30
        memory["mediated"][idx] *= mem60

        callers = idx[n_calls > 0]
        if len(callers):
            rows = np.repeat(callers, n_calls[n_calls > 0])
            cues = _draw_cues(rng, rows, sev, violence_offset, alcohol, temper, mental, sep_day, day)
            cues["conflict_row"] = rows
            cues["day"] = day
            cues["escalation_call"] = False
            call_parts.append(pd.DataFrame(cues))
            np.add.at(excitation, rows, 1.0)
            for key in ("violence", "weapon", "threat", "injury"):
                np.add.at(memory[key], rows, cues[key])
            mediated = callers[rng.random(len(callers)) < config.mediation_after_call]
            sev[mediated] -= config.mediation_severity_relief
            memory["mediated"][mediated] += 1.0
            mediation_parts.append((mediated, day))

        since_sep = day - sep_day[idx]
        lin = (
            w["severity"] * sev[idx]
            + w["excitation"] * np.log1p(excitation[idx])
            + w["violence"] * np.minimum(memory["violence"][idx], 2.0)
            + w["weapon"] * np.minimum(memory["weapon"][idx], 1.0)
            + w["threat"] * np.minimum(memory["threat"][idx], 1.0)
            + w["injury"] * np.minimum(memory["injury"][idx], 1.0)
            + w["alcohol_misuse"] * alcohol[idx]
            + w["temper"] * temper[idx]
            + w["mental_illness"] * mental[idx]
            + w["prior_record"] * prior[idx]
            + w["unemployed"] * unemployed[idx]
            + w["separation"] * ((since_sep >= 0) & (since_sep <= 90))
            + w["mediated"] * np.minimum(memory["mediated"][idx], 1.0)
        )
        hazard = config.escalation_base_hazard * cat_factor[idx] * np.exp(lin)
        draw = rng.random(len(idx))
        escalated = idx[draw < hazard]
        if not len(escalated):
            return
        kept = np.ones(len(escalated), dtype=bool)  # the escalations that still happen under the visits
        if tracker is not None and shared:  # the plain run escalated here: with visits, with probability m(t)
            kept = coin(tracker.seed, escalated, day) < tracker.multiplier(escalated)
            if not kept.all():
                prevented_parts.append((escalated[~kept], day))
        elif tracker is not None:  # a future only the intervened world has: its own draw against the lowered hazard
            kept = (draw < hazard * tracker.multiplier(idx))[draw < hazard]
        if kept.any():
            escalation_parts.append((escalated[kept], day))
        report = rng.random(len(escalated)) < config.escalation_call_share
        reported = escalated[report]
        if len(reported):
            cues = _draw_cues(rng, reported, sev, violence_offset, alcohol, temper, mental, sep_day, day)
            cues["violence"] = np.ones(len(reported), dtype=bool)
            cues["injury"] |= rng.random(len(reported)) < 0.6
            cues["conflict_row"] = reported
            cues["day"] = day
            cues["escalation_call"] = True
            frame = pd.DataFrame(cues)
            call_parts.append(frame if kept.all() else frame[kept[report]])
        ends = rng.random(len(escalated)) < config.conflict_ends_after_escalation
        if shared:
            done[escalated[ends]] = True  # the plain run's bookkeeping, so the shared stream stays in step
            going_on[escalated[ends & ~kept]] = True
        else:
            going_on[escalated[ends & kept]] = False

    for t, day in enumerate(range(-config.burn_in_days, config.days)):
        if tracker is not None:
            tracker.advance(day)
        idx = np.flatnonzero((start <= day) & (day < end) & ~done)
        if len(idx):
            step(idx, rng, t, day, shared=True)
        if own_rng is not None:
            own = np.flatnonzero(going_on & (day < end))  # never in idx: the plain run ended them (done)
            if len(own):
                step(own, own_rng, t, day, shared=False)

    calls = pd.concat(call_parts, ignore_index=True) if call_parts else pd.DataFrame(columns=[*CUES, "conflict_row"])
    escalations = _stack(escalation_parts)
    mediations = _stack(mediation_parts)
    prevented = _stack(prevented_parts) if intervention is not None else None
    return Dynamics(calls, escalations, mediations, prevented)


def _stack(parts: list[tuple[np.ndarray, int]]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame({"conflict_row": np.empty(0, dtype=np.int64), "day": np.empty(0, dtype=np.int64)})
    return pd.DataFrame(
        {
            "conflict_row": np.concatenate([p[0] for p in parts]),
            "day": np.concatenate([np.full(len(p[0]), p[1]) for p in parts]),
        }
    )


def _draw_cues(
    rng: np.random.Generator,
    rows: np.ndarray,
    sev: np.ndarray,
    violence_offset: np.ndarray,
    alcohol: np.ndarray,
    temper: np.ndarray,
    mental: np.ndarray,
    sep_day: np.ndarray,
    day: int,
) -> dict[str, np.ndarray]:
    """The true cues of each call (what happened, not what the narrative will say)."""
    k = len(rows)
    s = sev[rows]
    violence = rng.random(k) < _sigmoid(-1.5 + 0.9 * s + 0.5 * alcohol[rows] + violence_offset[rows])
    weapon = rng.random(k) < np.where(violence, _sigmoid(-2.6 + 0.6 * s + 0.4 * temper[rows]), 0.015)
    injury = violence & (rng.random(k) < _sigmoid(-0.9 + 0.5 * s + 0.8 * weapon))
    threat = rng.random(k) < _sigmoid(-2.2 + 0.8 * s + 0.4 * temper[rows])
    drunk = rng.random(k) < np.where(alcohol[rows], 0.55, 0.06)
    self_harm = rng.random(k) < _sigmoid(-4.2 + 0.6 * s + 1.2 * mental[rows])
    separation = day >= sep_day[rows]
    return {
        "violence": violence,
        "weapon": weapon,
        "injury": injury,
        "threat": threat,
        "alcohol": drunk,
        "self_harm": self_harm,
        "separation": separation,
    }
