"""The period report's disparity section: did the period's warnings, and the warnings before its escalations,
fall evenly on counties, ethnic groups, sexes, residence and age bands?

Two tables from models/disparity.py (fairlearn's per-group numbers, household
bootstrap intervals, ratios to the largest group, the same flags and
thresholds as the training report's audit, docs/fairness.md):

- **warnings**: the households with at least one linked call in the period;
  a household is warned when a published ranking of the period
  (``ranked_dates``) holds an active warning for it. Rate = warned ÷ households
  with calls, per group at the period's last day.
- **escalations** (where outcomes exist): the period's escalations (case ×
  household, pipelines/reports/period.py ``escalations``); warned = a
  published warning in the 90 days before the case (``published_level``).
  Rate = escalations warned beforehand ÷ escalations, per group at the case's
  day: the recall a group got, its complement the misses.

A household is one row (its group taken on the day above), so the bootstrap
resamples rows; a month's escalations are few, so most groups show as
*small* there and the table says so rather than flag noise.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from features.groups import groups_at
from models.disparity import Thresholds, disparity_table, summary

SEED = 0
N_BOOT = 200


def _table(tables: dict[str, pd.DataFrame], rows: pd.DataFrame, t: Thresholds) -> dict[str, Any] | None:
    """``rows``: household_id, day, warned. The group table (flagged first) and its summary; None without rows."""
    if rows.empty:
        return None
    groups = groups_at(tables, rows["household_id"], rows["day"])
    found = disparity_table(
        groups, rows["warned"].to_numpy(bool), rows["household_id"].to_numpy(), None, N_BOOT, SEED, t
    )
    shown = [r | {"hits": round((r["value"] or 0) * r["n"])} for r in found if r["status"] != "reference"]
    references = {r["attribute"]: r for r in found if r["status"] == "reference"}
    return {
        "households": len(rows),
        "warned": int(rows["warned"].sum()),
        "rows": shown,
        "references": [r | {"hits": round((r["value"] or 0) * r["n"])} for r in references.values()],
        "summary": summary(found),
    }


def period_disparity(
    tables: dict[str, pd.DataFrame],
    calls: pd.DataFrame,
    history: pd.DataFrame,
    escalations: pd.DataFrame,
    first: dt.date,
    last: dt.date,
    ranked: tuple[dt.date, dt.date],
) -> dict[str, Any]:
    """Both tables for the period ``first`` .. ``last`` whose rankings are dated ``ranked`` (module docstring)."""
    t = Thresholds.load()
    received = pd.to_datetime(calls["received_at"])
    inside = (received >= pd.Timestamp(first)) & (received < pd.Timestamp(last) + pd.Timedelta(days=1))
    called = pd.Series(calls.loc[inside & calls["household_id"].notna(), "household_id"].astype(str).unique())
    dates = pd.to_datetime(history["date"]) if len(history) else pd.Series([], dtype="datetime64[ns]")
    period_warnings = history[(dates >= pd.Timestamp(ranked[0])) & (dates <= pd.Timestamp(ranked[1]))]
    warned_ids = set(period_warnings["household_id"].astype(str))
    warnings = pd.DataFrame(
        {"household_id": called, "day": pd.Timestamp(last), "warned": called.isin(warned_ids).to_numpy(bool)}
    )
    if len(escalations):
        esc = pd.DataFrame(
            {
                "household_id": escalations["household_id"].astype(str).to_numpy(),
                "day": pd.to_datetime(escalations["opened_at"]).dt.normalize().to_numpy(),
                "warned": escalations["published_level"].notna().to_numpy(bool)
                if "published_level" in escalations
                else np.zeros(len(escalations), bool),
            }
        )
    else:
        esc = pd.DataFrame(columns=["household_id", "day", "warned"])
    return {
        "thresholds": t.__dict__,
        "warnings": _table(tables, warnings, t),
        "escalations": _table(tables, esc, t),
        "warnings_in_database": len(period_warnings),
    }
