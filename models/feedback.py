"""Station feedback as data: what the closed loop says, counted, and the escalations it adds to the labels.

A station feeds back an outcome on a warning (``models/warning_tables.py`` ``OUTCOMES``). Only one
outcome is honest to learn from:

* ``escalated`` is an observed escalation: the dispute the household was warned for turned violent
  after the warning was pushed and before the station fed it back. It becomes a positive label of
  the household's snapshots whose horizon surely holds that time (:func:`feedback_labels`), in
  training only: evaluation and the promotion gate keep the case labels, so a gate's number means
  the same from run to run and is not tilted towards whichever engine chose who got warned.
* ``false_alarm``, ``resolved``, ``ongoing`` (and ``referred``) are neither labels nor features. Not
  negative labels: the absence of a violent case is already 0, and a station's judgement exists only
  for warned households (selection bias). Not features: feedback exists only for warned households
  and only since the loop began, so a feature would be constant over most of the training window
  and shift at deployment. They are reported (:func:`feedback_report`): counts, and the false-alarm
  rate per reason and level with Wilson intervals.

Everything here is a pure function of two frames as the warnings database holds them (warnings,
status events) and a point in time ``as_of``: what was on record later does not exist. Reading the
database is ``pipelines/feedback_data.py``; the rules are in docs/feedback.md.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from models.levels import LEVELS, RAISED_BY
from models.warning_tables import OUTCOMES, STATUSES

WARNING_COLUMNS = ("id", "date", "household_id", "level", "reasons", "created_at")
"""What the feedback needs of each stored warning (``WarningStore`` dicts or the ``warnings`` table)."""
EVENT_COLUMNS = ("warning_id", "to_status", "outcome", "at")
"""What it needs of each status event: never the note or the actor."""
LABEL_OUTCOME = "escalated"
"""The one outcome that becomes a label."""
FALSE_ALARM = "false_alarm"
UNRECORDED = "unrecorded"
"""Group of a warning whose stored reasons lack the field (warnings written by older code); ``none``: stored empty."""
_Z95 = 1.959963984540054
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_METRIC_CODE = re.compile(r"^[A-Za-z0-9_]{1,40}$")


def wilson_interval(successes: int, n: int, z: float = _Z95) -> list[float] | None:
    """95 % Wilson score interval of a proportion; None without trials.

    Wilson rather than the normal approximation: most groups hold a handful of fed-back warnings,
    and at 0 or n out of n the normal interval collapses to a point.
    """
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def factor_template(phrase: str) -> str:
    """A model reason without the household's value: ``近90天纠纷报警6次`` -> ``近90天纠纷报警N次``.

    Reasons are filled templates (models/reasons.py) whose value is the last number of the phrase
    (a window such as 90天 comes before it); grouping by the filled phrase would make one group
    per value.
    """
    numbers = list(_NUMBER.finditer(phrase))
    if not numbers:
        return phrase
    last = numbers[-1]
    return phrase[: last.start()] + "N" + phrase[last.end() :]


def _field(reasons: Mapping[str, Any], name: str) -> str:
    """A policy field of the stored reasons: ``none`` when stored empty, ``unrecorded`` when never stored."""
    if name not in reasons:
        return UNRECORDED
    return str(reasons[name]) if reasons[name] not in (None, "") else "none"


def _reasons(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, Mapping) else {}
    return {}


def _utc(values: Any) -> pd.Series:
    """Times as tz-aware UTC (SQLite hands back naive datetimes, which were written as UTC)."""
    return pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="mixed")


def loop_state(warnings: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per warning pushed by ``as_of``: its status, outcome and feedback time as they were then.

    The status is the last event's at ``as_of``, not the table's current column, so a run
    re-made later sees what the original run saw. Columns: ``warning_id``, ``date`` (the
    ranking's day, data time), ``household_id``, ``level``, ``raised_by``, ``rules_scenario``,
    ``model_factors`` (templates), ``created_at``, ``status``, ``outcome``, ``fed_back_at``.
    """
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    columns = [
        "warning_id",
        "date",
        "household_id",
        "level",
        "raised_by",
        "rules_scenario",
        "model_factors",
        "created_at",
        "status",
        "outcome",
        "fed_back_at",
    ]
    if warnings is None or warnings.empty:
        return pd.DataFrame(columns=columns)
    w = warnings.loc[:, list(WARNING_COLUMNS)].copy()
    w["created_at"] = _utc(w["created_at"]).to_numpy()
    w = w[w["created_at"] <= as_of].reset_index(drop=True)
    reasons = [_reasons(r) for r in w["reasons"]]
    state = pd.DataFrame(
        {
            "warning_id": w["id"].astype("int64").to_numpy(),
            "date": pd.to_datetime(w["date"]).to_numpy(),
            "household_id": w["household_id"].astype(str).to_numpy(),
            "level": w["level"].to_numpy(object),
            "raised_by": [_field(r, "raised_by") for r in reasons],
            "rules_scenario": [_field(r, "rules_scenario") for r in reasons],
            "model_factors": [sorted({factor_template(str(p)) for p in r.get("model") or []}) for r in reasons],
            "created_at": w["created_at"].to_numpy(),
        }
    )
    e = (events if events is not None else pd.DataFrame(columns=EVENT_COLUMNS)).loc[:, list(EVENT_COLUMNS)].copy()
    e["at"] = _utc(e["at"]).to_numpy()
    e = e[(e["at"] <= as_of) & e["warning_id"].isin(state["warning_id"])]
    e = e.assign(order=np.arange(len(e))).sort_values(["at", "order"], kind="stable")
    last = e.groupby("warning_id")["to_status"].last().reindex(state["warning_id"])
    fed = e[e["to_status"] == "fed_back"].groupby("warning_id")[["outcome", "at"]].last().reindex(state["warning_id"])
    state["status"] = last.fillna("pushed").to_numpy(object)
    state["outcome"] = fed["outcome"].to_numpy(object)
    state["fed_back_at"] = pd.to_datetime(fed["at"], utc=True).to_numpy()
    return state[columns]


def feedback_labels(
    snapshots: pd.DataFrame, labels: np.ndarray, state: pd.DataFrame, horizon_days: int
) -> tuple[np.ndarray, dict[str, int]]:
    """The labels with every fed-back escalation added where it surely falls in a snapshot's horizon.

    A warning of day D fed back ``escalated`` after an elapsed time e (the loop's own clock,
    ``fed_back_at - created_at``) saw an escalation in [D, D + e + 1 day) in data time; the extra
    day covers the hour of the day the ranking ran. A snapshot of day S (label: a violent case in
    [S, S + horizon)) of the same household is labelled 1 only when its horizon holds that whole
    interval: S <= D and S + horizon >= D + e + 1 day. A later snapshot could postdate the
    escalation (a label from the past), an earlier one might end before it. The label is then
    known by D + e + 1 day <= S + horizon, inside the snapshot's own horizon, so the backtest's
    rule (train on snapshots whose horizon ended before the test period) still holds.

    Returns the new labels (a copy) and counts: ``escalated`` (fed back), ``placed`` (at least one
    snapshot covers it), ``too_late`` (fed back more than ``horizon`` - 1 days after the push: no horizon
    holds the interval), ``not_covered`` (no snapshot of the household covers it: the data ends
    before, or the household is not in it), ``snapshots`` covering, ``already_labelled`` (a
    violent case had labelled them), ``added`` (0 -> 1) and ``households`` with an added label.
    """
    out = np.asarray(labels).copy()
    esc = state[state["outcome"] == LABEL_OUTCOME]
    counts = dict.fromkeys(
        ("escalated", "placed", "too_late", "not_covered", "snapshots", "already_labelled", "added", "households"),
        0,
    )
    counts["escalated"] = len(esc)
    if esc.empty:
        return out, counts
    horizon = pd.Timedelta(days=horizon_days)
    elapsed = (pd.to_datetime(esc["fed_back_at"], utc=True) - pd.to_datetime(esc["created_at"], utc=True)).clip(
        lower=pd.Timedelta(0)
    )
    windows = pd.DataFrame(
        {
            "warning_id": esc["warning_id"].to_numpy(),
            "household_id": esc["household_id"].to_numpy(),
            "last": pd.to_datetime(esc["date"]).to_numpy(),
            "first": (pd.to_datetime(esc["date"]) + elapsed.to_numpy() + pd.Timedelta(days=1) - horizon).to_numpy(),
        }
    )
    too_late = windows["first"] > windows["last"]
    counts["too_late"] = int(too_late.sum())
    snaps = pd.DataFrame(
        {
            "row": np.arange(len(snapshots)),
            "household_id": snapshots["household_id"].astype(str).to_numpy(),
            "snapshot_date": pd.to_datetime(snapshots["snapshot_date"]).to_numpy(),
        }
    )
    snaps = snaps[snaps["household_id"].isin(windows["household_id"])]
    hits = snaps.merge(windows[~too_late], on="household_id")
    hits = hits[(hits["snapshot_date"] >= hits["first"]) & (hits["snapshot_date"] <= hits["last"])]
    rows = np.unique(hits["row"].to_numpy(np.int64))
    counts["placed"] = int(hits["warning_id"].nunique())
    counts["not_covered"] = counts["escalated"] - counts["too_late"] - counts["placed"]
    counts["snapshots"] = len(rows)
    counts["already_labelled"] = int((out[rows] > 0).sum())
    flipped = rows[out[rows] == 0]
    counts["added"] = len(flipped)
    counts["households"] = int(pd.unique(snaps.set_index("row").loc[flipped, "household_id"]).size)
    out[flipped] = 1
    return out, counts


def _rate(false_alarms: int, fed_back: int) -> dict[str, Any]:
    return {
        "fed_back": int(fed_back),
        "false_alarms": int(false_alarms),
        "rate": round(false_alarms / fed_back, 4) if fed_back else None,
        "ci": wilson_interval(false_alarms, fed_back),
    }


def _rates_by(keys: pd.Series, false_alarm: pd.Series, order: Iterable[str] | None = None) -> dict[str, Any]:
    """Rate per group; groups in ``order`` first (those with no feedback left out), the rest by size."""
    table = pd.DataFrame({"key": keys.to_numpy(object), "fa": false_alarm.to_numpy(bool)})
    grouped = table.groupby("key")["fa"].agg(["sum", "size"])
    known = [k for k in (order or []) if k in grouped.index]
    rest = grouped.drop(index=known).reset_index().sort_values(["size", "key"], ascending=[False, True])
    return {str(k): _rate(int(grouped.at[k, "sum"]), int(grouped.at[k, "size"])) for k in [*known, *rest["key"]]}


def false_alarm_rates(state: pd.DataFrame) -> dict[str, Any]:
    """False alarms among warnings fed back with an outcome: overall, and per level and reason.

    Per reason means per side that raised the warning (``raised_by``), per scoring scenario of
    the rules, and per model factor (a warning counts once for each factor it cites). Small
    groups say little: every rate carries its Wilson interval and its count.
    """
    fed = state[state["outcome"].notna()]
    fa = fed["outcome"] == FALSE_ALARM
    factors = fed[["model_factors"]].assign(fa=fa.to_numpy()).explode("model_factors").dropna()
    return {
        "overall": _rate(int(fa.sum()), len(fed)),
        "level": _rates_by(fed["level"], fa, LEVELS),
        "raised_by": _rates_by(fed["raised_by"], fa, RAISED_BY),
        "rules_scenario": _rates_by(fed["rules_scenario"], fa),
        "model_factor": _rates_by(factors["model_factors"], factors["fa"]),
    }


def no_feedback(reason: str) -> dict[str, Any]:
    """The report when there is nothing to count: a fresh machine trains before any ranking exists."""
    return {"available": False, "reason": reason, "warnings": 0, "labels": {"added": 0}}


def feedback_report(state: pd.DataFrame, label_counts: Mapping[str, int], as_of: pd.Timestamp) -> dict[str, Any]:
    """What the loop says as of ``as_of``: warnings per status, outcomes, false-alarm rates, labels added.

    ``status`` counts each warning at its status then (they add up to ``warnings``);
    ``reached`` counts those that got at least that far (a station may skip acknowledging).
    Numbers and codes only: no note, no household.
    """
    if state.empty:
        return no_feedback("the warnings database holds no warning yet")
    status = state["status"].to_numpy(object)
    index = np.array([STATUSES.index(s) for s in status])
    outcomes = state["outcome"].dropna()
    known = list(OUTCOMES) + sorted(set(outcomes) - set(OUTCOMES))
    return {
        "available": True,
        "as_of": pd.Timestamp(as_of).isoformat(),
        "warnings": len(state),
        "first_date": f"{state['date'].min():%Y-%m-%d}",
        "last_date": f"{state['date'].max():%Y-%m-%d}",
        "status": {s: int((status == s).sum()) for s in STATUSES},
        "reached": {s: int((index >= i).sum()) for i, s in enumerate(STATUSES)},
        "fed_back": int(outcomes.size),
        "outcomes": {o: int((outcomes == o).sum()) for o in known},
        "false_alarm": false_alarm_rates(state),
        "labels": dict(label_counts),
        "label_use": "training only: evaluation and the promotion gate keep the case labels",
    }


def apply_feedback(
    snapshots: pd.DataFrame,
    labels: np.ndarray,
    warnings: pd.DataFrame | None,
    events: pd.DataFrame | None,
    horizon_days: int,
    as_of: pd.Timestamp,
    missing: str | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Training labels with the fed-back escalations added, and the report; ``missing`` says why there is no data."""
    if missing is not None or warnings is None or warnings.empty:
        return np.asarray(labels).copy(), no_feedback(missing or "the warnings database holds no warning yet")
    state = loop_state(warnings, events if events is not None else pd.DataFrame(columns=EVENT_COLUMNS), as_of)
    train_labels, counts = feedback_labels(snapshots, labels, state, horizon_days)
    return train_labels, feedback_report(state, counts, as_of)


def feedback_metrics(report: Mapping[str, Any] | None) -> dict[str, float]:
    """The report's numbers as MLflow metrics (``feedback.*``): counts, rates and their intervals, codes only.

    Model factors are Chinese phrases, not metric names: they stay in report.json and report.md.
    """
    if not report:
        return {}
    out: dict[str, float] = {
        "feedback.warnings": float(report.get("warnings", 0)),
        "feedback.labels_added": float(report.get("labels", {}).get("added", 0)),
    }
    if not report.get("available"):
        return out
    out["feedback.fed_back"] = float(report["fed_back"])
    for name in ("status", "reached", "outcomes"):
        for code, n in report[name].items():
            out[f"feedback.{name}.{code}"] = float(n)
    for name, n in report["labels"].items():
        out[f"feedback.labels.{name}"] = float(n)

    def rate(prefix: str, row: Mapping[str, Any]) -> None:
        if row.get("rate") is None:
            return
        out[prefix] = float(row["rate"])
        out[f"{prefix}.ci_low"], out[f"{prefix}.ci_high"] = (float(v) for v in row["ci"])
        out[f"{prefix}.n"] = float(row["fed_back"])

    rates = report["false_alarm"]
    rate("feedback.false_alarm_rate", rates["overall"])
    for by in ("level", "raised_by", "rules_scenario"):
        for code, row in rates[by].items():
            if _METRIC_CODE.match(code):
                rate(f"feedback.false_alarm_rate.{by}.{code}", row)
    return out
