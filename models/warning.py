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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from models.levels import LEVELS, worst_scenario

if TYPE_CHECKING:
    from features.online import Call

__all__ = ["CUE_GROUPS", "CUE_PHRASES", "LEVELS", "Scenario", "load_scenarios", "score_warnings"]

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


def scenario_reasons(
    scenario: Scenario,
    calls: float,
    recent: float,
    accelerating: bool,
    fresh: bool,
    days_since: float,
    cue_calls: dict[str, float],
    cue_pts: dict[str, float],
    deescalation_calls: float,
) -> list[str]:
    """One group's reasons under one scenario, in the phrases a station reads (batch and online alike)."""
    out = [f"近{scenario.window_days}天相关报警{int(calls)}次"]
    if accelerating:
        out.append(f"报警频次上升(近{scenario.recent_days}天{int(recent)}次)")
    if fresh:
        out.append(f"距上次报警{days_since:.0f}天")
    for g in CUE_GROUPS:
        if cue_calls[g] and cue_pts[g] > 0:
            out.append(f"出现{CUE_PHRASES[g]}表述{int(cue_calls[g])}次(+{cue_pts[g]:g})")
    if deescalation_calls:
        out.append(f"已调解/和解{int(deescalation_calls)}次({scenario.deescalation * deescalation_calls:g})")
    return out


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

    recent = agg["recent"].to_numpy()
    deesc = agg["deesc"].to_numpy()
    reasons = [
        scenario_reasons(
            scenario,
            float(n[i]),
            float(recent[i]),
            bool(accelerating[i]),
            bool(fresh[i]),
            float(days_since[i]),
            {g: float(cues[g][i]) for g in CUE_GROUPS},
            {g: float(cue_pts[g][i]) for g in CUE_GROUPS},
            float(deesc[i]),
        )
        for i in range(len(agg))
    ]
    return pd.DataFrame(
        {
            key: agg.index.to_numpy(),
            "points": points.round(2),
            "level": scenario.level(points),
            "reasons": reasons,
        }
    )


def verdict_reasons(
    points: Mapping[str, float], reasons: Mapping[str, list[str]], scenarios: Mapping[str, Scenario]
) -> list[str]:
    """The rules' reasons for one household: the chosen scenario's label and phrases (batch and online alike).

    The scenario is the one :func:`models.levels.worst_scenario` picks; below
    blue everywhere, the one with most points (first in file order), marked
    未达预警, so a model-raised warning still shows what the rules counted.
    Empty when no scenario counted a call.
    """
    _, name, best = worst_scenario(points, scenarios)
    if name is None:
        name = next((s for s in scenarios if s in reasons and points[s] == best), None)
        if name is None:
            return []
        return [f"[{scenarios[name].label}] {best:g}分，未达预警", *reasons[name]]
    return [f"[{scenarios[name].label}] {best:g}分", *reasons.get(name, [])]


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
    points: dict[str, dict[str, float]] = {g: dict.fromkeys(scenarios, 0.0) for g in groups}
    reasons: dict[str, dict[str, list[str]]] = {g: {} for g in groups}
    audit: dict[str, dict[str, dict[str, object]]] = {g: {} for g in groups}
    for scenario in scenarios.values():
        scored = score_scenario(calls, key, end, scenario)
        for row in scored.itertuples(index=False):
            group = getattr(row, key)
            level = row.level if isinstance(row.level, str) else None
            points[group][scenario.name] = float(row.points)
            reasons[group][scenario.name] = list(row.reasons)
            audit[group][scenario.name] = {"points": float(row.points), "level": level}
    rows = []
    for group in groups:
        level, name, best = worst_scenario(points[group], scenarios)  # the one tie rule (models/levels.py)
        rows.append(
            {
                key: group,
                "scenario": name,
                "points": round(best, 2),
                "level": level,
                "reasons": verdict_reasons(points[group], reasons[group], scenarios),
                "scenarios": audit[group],
            }
        )
    out = pd.DataFrame(rows, columns=[key, "scenario", "points", "level", "reasons", "scenarios"])
    for column in ("scenario", "level"):  # None, not NaN, for "no level" (the JSON-lines contract says null)
        out[column] = pd.Series([row[column] for row in rows], index=out.index, dtype=object)
    return out


def points_at_snapshots(
    calls: pd.DataFrame,
    household_ids: pd.Series,
    snapshot_dates: pd.Series,
    scenarios: dict[str, Scenario] | None = None,
    codes: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Every scenario's points for many (household, date) pairs at once: the rules baseline on snapshots.

    Same formula as :func:`score_warnings`, with the snapshot convention of
    features/snapshots.py: calls received before the snapshot date count.
    ``calls`` needs ``household_id``, ``received_at`` and the rule columns.

    A household is coded by the position of its first row (one hash join in
    Arrow), and the windows are counted only for rows whose household has a
    call: the others all score what a household without calls scores
    (``features.snapshots.rows_with_events``). ``codes``: the household code
    of each call and of each row when the caller has them (``Snapshots.codes``
    of the same rows), any coding where one household has one code, >= 0, and
    a call of a household not among the rows has -1.
    """
    from features.household_keys import arrow_strings, positions_in  # models may use features, not the reverse
    from features.snapshots import DAY, WindowIndex, rows_with_events, to_seconds

    scenarios = scenarios or load_scenarios()
    has_household = calls["household_id"].notna().to_numpy()
    linked = calls[has_household].reset_index(drop=True)
    if codes is None:
        ids = arrow_strings(household_ids)
        hh = positions_in(ids, ids)
        entity = positions_in(linked["household_id"], ids)
        n_codes = len(household_ids)
    else:
        entity, hh = np.asarray(codes[0])[has_household], np.asarray(codes[1])
        n_codes = int(max(hh.max(initial=-1), entity.max(initial=-1))) + 1
    seconds = to_seconds(linked["received_at"])
    end = to_seconds(snapshot_dates)
    dispute = linked["is_dispute"].astype(bool).to_numpy()
    cue = {g: linked[f"cue_{g}"].to_numpy() > 0 for g in CUE_GROUPS}
    deescalated = linked["n_deescalation"].to_numpy() > 0
    kept = []
    for scenario in scenarios.values():
        mask = dispute.copy() if scenario.disputes_only else np.ones(len(linked), dtype=bool)
        if scenario.categories:
            mask &= linked["category"].isin(scenario.categories).to_numpy()
        keep = mask & (entity >= 0)
        kept.append((scenario, keep, WindowIndex.build(entity[keep], seconds[keep])))

    def points(hh: np.ndarray, end: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for scenario, keep, index in kept:
            days = scenario.window_days
            n = index.window_sum(None, hh, end, days)
            recent = index.window_sum(None, hh, end, scenario.recent_days)
            last = index.last_before(seconds[keep], hh, end)
            days_since = np.where(np.isnan(last), np.inf, (end - np.nan_to_num(last)) / DAY)
            cues = {g: index.window_sum(cue[g][keep], hh, end, days) for g in CUE_GROUPS}
            deesc = index.window_sum(deescalated[keep], hh, end, days)
            out[scenario.name], *_ = scenario_points(scenario, n, recent, days_since, cues, deesc)
        out["max"] = np.max(np.vstack([out[s] for s in scenarios]), axis=0)
        return out

    return rows_with_events(points, entity, n_codes, hh, end)


def household_points(
    calls: Sequence[Call], end_sec: int, scenarios: dict[str, Scenario] | None = None
) -> dict[str, float]:
    """Every scenario's points for one household at ``end_sec``: :func:`points_at_snapshots` for one row.

    The online service's path (features.online): plain Python over the few
    calls of one household, same windows and formula as the batch.
    """
    return household_scores(calls, end_sec, scenarios)[0]


def household_scores(
    calls: Sequence[Call], end_sec: int, scenarios: dict[str, Scenario] | None = None
) -> tuple[dict[str, float], dict[str, list[str]]]:
    """:func:`household_points` and each scenario's reasons (the phrases of :func:`score_warnings`)."""
    from features.snapshots import DAY

    scenarios = scenarios or load_scenarios()
    day = int(DAY)
    out: dict[str, float] = {}
    reasons: dict[str, list[str]] = {}
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
        points, accelerating, fresh, cue_pts = scenario_points(
            scenario,
            float(len(window)),  # type: ignore[arg-type]
            float(recent),  # type: ignore[arg-type]
            days_since,  # type: ignore[arg-type]
            cues,  # type: ignore[arg-type]
            deesc,  # type: ignore[arg-type]
        )
        out[scenario.name] = float(points)
        if window:
            reasons[scenario.name] = scenario_reasons(
                scenario,
                float(len(window)),
                float(recent),
                bool(accelerating),
                bool(fresh),
                float(days_since),
                cues,
                {g: float(v) for g, v in cue_pts.items()},
                deesc,
            )
    out["max"] = max(out.values())
    return out, reasons
