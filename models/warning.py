"""Scoring warning models (积分预警): explainable point systems over call histories.

The reports' "family-dispute incident scoring warning model" and its siblings:
every call in a rolling window earns points for being a call, for coming
faster than before, for violence, weapons, injuries, threats, alcohol,
self-harm and separation in its words, and loses points for de-escalation
(已调解, 已和解). The total is graded into red / orange / yellow / blue. The
five scenarios and all their numbers live in ``conf/warning_models.toml``.

Input is one row per call, already scored by the keyword rules
(``models.rules.rule_features``); output is one row per household or party
pair, with the worst scenario, its points, level and reasons in short Chinese
phrases. Pure functions over DataFrames: the CLI and flows only call them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from features.online import Call

LEVELS = ("red", "orange", "yellow", "blue")
"""Warning levels, most urgent first."""

CUE_GROUPS = ("violence", "weapon", "injury", "threat", "alcohol", "self_harm", "separation", "repeat")
CUE_PHRASES = {
    "violence": "动手/殴打",
    "weapon": "持械",
    "injury": "受伤",
    "threat": "扬言威胁",
    "alcohol": "酒后",
    "self_harm": "自伤自杀",
    "separation": "分居离婚",
    "repeat": "反复报警",
}
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "conf" / "warning_models.toml"


@dataclass(frozen=True)
class Scenario:
    """One point system (see conf/warning_models.toml for the meaning of each field)."""

    name: str
    label: str
    categories: tuple[str, ...]
    disputes_only: bool
    window_days: int
    free_calls: int
    per_call: float
    acceleration: float
    recent_days: int
    recency: float
    recency_days: int
    cue_cap: float
    deescalation: float
    cue_points: dict[str, float]
    thresholds: dict[str, float]

    def level_of(self, points: float) -> str | None:
        """The level one total earns (None below blue)."""
        return next((name for name in LEVELS if points >= self.thresholds[name]), None)

    def level(self, points: np.ndarray) -> np.ndarray:
        """The level each total earns (None below blue)."""
        out = np.full(len(points), None, dtype=object)
        for name in reversed(LEVELS):  # blue first, red last: the highest threshold reached wins
            out[points >= self.thresholds[name]] = name
        return out


def load_scenarios(path: str | Path | None = None) -> dict[str, Scenario]:
    """Read and check the scenarios file; errors name the file, the scenario and the field."""
    path = Path(path or DEFAULT_CONFIG)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read warning models ({exc})") from None
    scenarios: dict[str, Scenario] = {}
    for name, spec in raw.get("scenarios", {}).items():
        try:
            thresholds = {k: float(spec["thresholds"][k]) for k in LEVELS}
            cue_points = {g: float(spec["cue_points"].get(g, 0)) for g in CUE_GROUPS}
            scenario = Scenario(
                name=name,
                label=str(spec["label"]),
                categories=tuple(spec["categories"]),
                disputes_only=bool(spec["disputes_only"]),
                window_days=int(spec["window_days"]),
                free_calls=int(spec["free_calls"]),
                per_call=float(spec["per_call"]),
                acceleration=float(spec["acceleration"]),
                recent_days=int(spec["recent_days"]),
                recency=float(spec["recency"]),
                recency_days=int(spec["recency_days"]),
                cue_cap=float(spec["cue_cap"]),
                deescalation=float(spec["deescalation"]),
                cue_points=cue_points,
                thresholds=thresholds,
            )
        except KeyError as exc:
            raise ValueError(f"{path}: scenario {name!r} lacks field {exc.args[0]!r}") from None
        ordered = [thresholds[k] for k in LEVELS]
        if ordered != sorted(ordered, reverse=True):
            raise ValueError(f"{path}: scenario {name!r} thresholds must fall from red to blue, got {thresholds}")
        if not 0 < scenario.recent_days < scenario.window_days:
            raise ValueError(f"{path}: scenario {name!r} needs 0 < recent_days < window_days")
        scenarios[name] = scenario
    if not scenarios:
        raise ValueError(f"{path}: no [scenarios.*] tables")
    return scenarios


def _end_of(as_of: str | pd.Timestamp) -> pd.Timestamp:
    """A date means the end of that day (a run on the evening of D sees D's calls)."""
    stamp = pd.Timestamp(as_of)
    if isinstance(as_of, str) and len(as_of.strip()) <= 10:
        return stamp + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    return stamp


def scenario_points(
    scenario: Scenario,
    calls: np.ndarray,
    recent: np.ndarray,
    days_since_last: np.ndarray,
    cue_calls: dict[str, np.ndarray],
    deescalation_calls: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The point formula of conf/warning_models.toml, over arrays of window counts.

    Returns the points, whether each group is accelerating, whether its last
    call is fresh, and the points each cue group earned (for the reasons).
    Shared by the batch command, the snapshot baseline and the online service
    (which passes plain floats for one household: builtins are ~10x faster
    than numpy on scalars), so all grade alike.
    """
    lower, upper = (np.minimum, np.maximum) if isinstance(calls, np.ndarray) else (min, max)
    earlier = calls - recent
    # "Faster than before": the recent stretch holds more calls than its share of the window would.
    expected = earlier * scenario.recent_days / (scenario.window_days - scenario.recent_days)
    accelerating = (recent >= 2) & (recent > expected)
    fresh = days_since_last < scenario.recency_days
    points = scenario.per_call * upper(calls - scenario.free_calls, 0)
    points = points + scenario.acceleration * accelerating + scenario.recency * fresh
    cue_pts = {}
    for g in CUE_GROUPS:
        cue_pts[g] = lower(scenario.cue_cap, scenario.cue_points[g] * cue_calls[g])
        points = points + cue_pts[g]
    points = upper(points + scenario.deescalation * deescalation_calls, 0.0)
    return points, accelerating, fresh, cue_pts


def score_scenario(calls: pd.DataFrame, key: str, as_of: pd.Timestamp, scenario: Scenario) -> pd.DataFrame:
    """Points, level and reasons of one scenario, one row per group with calls that count."""
    window_start = as_of - pd.Timedelta(days=scenario.window_days)
    mask = (calls["received_at"] > window_start) & (calls["received_at"] <= as_of)
    if scenario.disputes_only:
        mask &= calls["is_dispute"]
    if scenario.categories:
        mask &= calls["category"].isin(scenario.categories)
    window = calls[mask]
    if window.empty:
        return pd.DataFrame(columns=[key, "points", "level", "reasons"])
    recent_start = as_of - pd.Timedelta(days=scenario.recent_days)
    frame = window.assign(
        recent=window["received_at"] > recent_start,
        calls=1,
        deesc=window["n_deescalation"] > 0,
        **{f"c_{g}": window[f"cue_{g}"] > 0 for g in CUE_GROUPS},
    )
    agg = frame.groupby(key, sort=True).agg(
        calls=("calls", "sum"),
        recent=("recent", "sum"),
        last=("received_at", "max"),
        deesc=("deesc", "sum"),
        **{f"c_{g}": (f"c_{g}", "sum") for g in CUE_GROUPS},
    )
    n = agg["calls"].to_numpy()
    days_since = (as_of - agg["last"]).dt.total_seconds().to_numpy() / 86400
    cues = {g: agg[f"c_{g}"].to_numpy() for g in CUE_GROUPS}
    points, accelerating, fresh, cue_pts = scenario_points(
        scenario, n, agg["recent"].to_numpy(), days_since, cues, agg["deesc"].to_numpy()
    )

    reasons: list[list[str]] = []
    for i in range(len(agg)):
        r = [f"近{scenario.window_days}天相关报警{int(n[i])}次"]
        if accelerating[i]:
            r.append(f"报警频次上升(近{scenario.recent_days}天{int(agg['recent'].iloc[i])}次)")
        if fresh[i]:
            r.append(f"距上次报警{days_since[i]:.0f}天")
        for g in CUE_GROUPS:
            count = int(agg[f"c_{g}"].iloc[i])
            if count and cue_pts[g][i] > 0:
                r.append(f"出现{CUE_PHRASES[g]}表述{count}次(+{cue_pts[g][i]:g})")
        if agg["deesc"].iloc[i]:
            r.append(f"已调解/和解{int(agg['deesc'].iloc[i])}次({scenario.deescalation * agg['deesc'].iloc[i]:g})")
        reasons.append(r)
    return pd.DataFrame(
        {
            key: agg.index.to_numpy(),
            "points": points.round(2),
            "level": scenario.level(points),
            "reasons": reasons,
        }
    )


def score_warnings(
    calls: pd.DataFrame,
    as_of: str | pd.Timestamp,
    key: str = "household_id",
    scenarios: dict[str, Scenario] | None = None,
) -> pd.DataFrame:
    """One row per group in ``calls``: the worst scenario, its points, level and reasons.

    ``calls`` needs ``key``, ``received_at``, ``is_dispute``, ``category``,
    ``cue_<group>`` for every cue group and ``n_deescalation`` (rule outputs).
    Calls after ``as_of`` are ignored. Every group present in ``calls`` gets a
    row; one with nothing that counts has 0 points and level None. The column
    ``scenarios`` holds every scenario's points and level, for audit.
    """
    scenarios = scenarios or load_scenarios()
    end = _end_of(as_of)
    received = pd.to_datetime(calls["received_at"])
    calls = calls.assign(received_at=received)
    groups = pd.Index(calls[key].dropna().unique()).sort_values()
    rank = {name: i for i, name in enumerate(LEVELS)}
    best = pd.DataFrame({key: groups, "scenario": None, "points": 0.0, "level": None, "sort": len(LEVELS)})
    best["reasons"] = [[] for _ in range(len(best))]
    best["scenarios"] = [{} for _ in range(len(best))]
    best = best.set_index(key)
    for scenario in scenarios.values():
        scored = score_scenario(calls, key, end, scenario)
        for row in scored.itertuples(index=False):
            group = getattr(row, key)
            level = row.level if isinstance(row.level, str) else None
            level_rank = rank[level] if level else len(LEVELS)
            best.at[group, "scenarios"][scenario.name] = {"points": float(row.points), "level": level}
            current = (best.at[group, "sort"], -best.at[group, "points"])
            if (level_rank, -row.points) < current:
                best.at[group, "scenario"] = scenario.name
                best.at[group, "points"] = float(row.points)
                best.at[group, "level"] = level
                best.at[group, "sort"] = level_rank
                best.at[group, "reasons"] = [f"[{scenario.label}]", *row.reasons]
    return best.drop(columns="sort").reset_index()


def points_at_snapshots(
    calls: pd.DataFrame,
    household_ids: pd.Series,
    snapshot_dates: pd.Series,
    scenarios: dict[str, Scenario] | None = None,
) -> dict[str, np.ndarray]:
    """Every scenario's points for many (household, date) pairs at once: the rules baseline on snapshots.

    Same formula as :func:`score_warnings`, with the snapshot convention of
    features/snapshots.py: calls received before the snapshot date count.
    ``calls`` needs ``household_id``, ``received_at`` and the rule columns.
    """
    from features.snapshots import DAY, WindowIndex, to_seconds  # models may use features, not the reverse

    scenarios = scenarios or load_scenarios()
    linked = calls[calls["household_id"].notna()].reset_index(drop=True)
    codes = pd.Series(np.arange(household_ids.nunique() + 1), index=[*pd.unique(household_ids), "\0"])
    entity = linked["household_id"].map(codes).fillna(-1).astype(np.int64).to_numpy()
    seconds = to_seconds(linked["received_at"])
    hh = household_ids.map(codes).astype(np.int64).to_numpy()
    end = to_seconds(snapshot_dates)
    dispute = linked["is_dispute"].astype(bool).to_numpy()
    out: dict[str, np.ndarray] = {}
    for scenario in scenarios.values():
        mask = dispute.copy() if scenario.disputes_only else np.ones(len(linked), dtype=bool)
        if scenario.categories:
            mask &= linked["category"].isin(scenario.categories).to_numpy()
        keep = mask & (entity >= 0)
        index = WindowIndex.build(entity[keep], seconds[keep])
        sub = linked[keep]
        n = index.window_sum(None, hh, end, scenario.window_days)
        recent = index.window_sum(None, hh, end, scenario.recent_days)
        last = index.last_before(seconds[keep], hh, end)
        days_since = np.where(np.isnan(last), np.inf, (end - np.nan_to_num(last)) / DAY)
        cues = {g: index.window_sum(sub[f"cue_{g}"].to_numpy() > 0, hh, end, scenario.window_days) for g in CUE_GROUPS}
        deesc = index.window_sum(sub["n_deescalation"].to_numpy() > 0, hh, end, scenario.window_days)
        points, *_ = scenario_points(scenario, n, recent, days_since, cues, deesc)
        out[scenario.name] = points
    out["max"] = np.max(np.vstack([out[s] for s in scenarios]), axis=0)
    return out


def household_points(
    calls: Sequence[Call], end_sec: int, scenarios: dict[str, Scenario] | None = None
) -> dict[str, float]:
    """Every scenario's points for one household at ``end_sec``: :func:`points_at_snapshots` for one row.

    The online service's path (features.online): plain Python over the few
    calls of one household, same windows and formula as the batch.
    """
    from features.snapshots import DAY

    scenarios = scenarios or load_scenarios()
    day = int(DAY)
    out: dict[str, float] = {}
    for scenario in scenarios.values():
        counted = [
            c
            for c in calls
            if c.received_sec < end_sec
            and (c.is_dispute or not scenario.disputes_only)
            and (not scenario.categories or c.category in scenario.categories)
        ]
        window = [c for c in counted if c.received_sec >= end_sec - scenario.window_days * day]
        recent = sum(c.received_sec >= end_sec - scenario.recent_days * day for c in window)
        last = max((c.received_sec for c in counted), default=None)
        days_since = np.inf if last is None else (end_sec - last) / day
        cues = {g: float(sum(g in c.cues for c in window)) for g in CUE_GROUPS}
        deesc = float(sum(c.n_deescalation > 0 for c in window))
        points, *_ = scenario_points(scenario, float(len(window)), float(recent), days_since, cues, deesc)  # type: ignore[arg-type]
        out[scenario.name] = float(points)
    out["max"] = max(out.values())
    return out
