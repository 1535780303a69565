"""The numbers of a report, as pure functions of DataFrames: counts, comparisons, hot spots, the loop, escalations.

Every function takes the frames of pipelines/reports/data.py and a
:class:`~pipelines.reports.periods.Period` and returns a small DataFrame or
dict that the page shows as a table and a chart and report.json keeps. Counts
of the period are compared with the calendar period before as rates per day
(a period to date is shorter). No text and no person's identity enters or
leaves: households appear by id, places by name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binom

from features.schema import CATEGORIES, VIOLENT_CHARGES
from models.levels import LEVELS, level_rank
from pipelines.reports.periods import Period

HOT_SPOT_MIN_CALLS = 5
"""A community needs at least this many dispute calls in the period to be tested as a hot spot."""
HOT_SPOT_FDR = 0.10
"""Benjamini-Hochberg false discovery rate over the communities tested."""
REPEAT_MIN_CALLS = 3
"""A household with at least this many dispute calls in the period is a repeat caller."""
HORIZON_DAYS = 90
"""An escalation counts against a published warning when the case opens within this many days of it."""
CLOSED = ("handled", "fed_back")
OPEN = ("pushed", "acknowledged")


def _day(value: dt.date) -> pd.Timestamp:
    return pd.Timestamp(value)


def in_days(times: pd.Series, first: dt.date, last: dt.date) -> np.ndarray:
    """Whether each time falls on a day from ``first`` to ``last`` (both included)."""
    at = pd.to_datetime(times)
    return ((at >= _day(first)) & (at < _day(last) + pd.Timedelta(days=1))).to_numpy(bool)


def disputes(calls: pd.DataFrame, first: dt.date, last: dt.date) -> pd.DataFrame:
    """The dispute calls (the rules' verdict, as the ranking counts them) received from ``first`` to ``last``."""
    return calls[calls["is_dispute"].to_numpy(bool) & in_days(calls["received_at"], first, last)]


def compare_counts(calls: pd.DataFrame, period: Period, by: str, keys: list[str] | None = None) -> pd.DataFrame:
    """Dispute calls per ``by`` in the period and the one before, with rates per day and their change.

    ``keys`` fixes the rows and their order (every category, every county)
    even when a key has no call; otherwise the keys seen, most calls first.
    """
    now = disputes(calls, period.first, period.last)[by].value_counts()
    before = disputes(calls, period.previous_first, period.previous_last)[by].value_counts()
    index = keys if keys is not None else list(now.add(before, fill_value=0).sort_values(ascending=False).index)
    out = pd.DataFrame({"key": index})
    out["current"] = now.reindex(index, fill_value=0).astype(int).to_numpy()
    out["previous"] = before.reindex(index, fill_value=0).astype(int).to_numpy()
    out["current_per_day"] = out["current"] / period.days
    out["previous_per_day"] = out["previous"] / period.previous_days
    with np.errstate(divide="ignore", invalid="ignore"):
        change = out["current_per_day"] / out["previous_per_day"] - 1
    out["change"] = change.where(out["previous"] > 0)
    if keys is None:
        out = out.sort_values(["current", "key"], ascending=[False, True], kind="stable")
    return out.reset_index(drop=True)


def by_category(calls: pd.DataFrame, period: Period) -> pd.DataFrame:
    """:func:`compare_counts` over the dispute categories (every one, in the lexicon's order)."""
    return compare_counts(calls, period, "category", list(CATEGORIES))


def by_county(calls: pd.DataFrame, period: Period, counties: Mapping[str, str]) -> pd.DataFrame:
    """:func:`compare_counts` over the counties (every one of the registry, by code), with their names."""
    keys = sorted(counties)
    extra = sorted(set(calls["county_code"].dropna()) - set(keys))  # calls of a station not in the registry
    out = compare_counts(calls, period, "county_code", keys + extra)
    out["name"] = [counties.get(k, k) for k in out["key"]]
    return out


def bucket_days(period: Period) -> int:
    """The length of a trend bucket: a day in a weekly report, a week otherwise."""
    return 1 if period.kind == "week" else 7


def trend(calls: pd.DataFrame, period: Period) -> pd.DataFrame:
    """Dispute calls per day (weekly report) or per 7-day bucket from the period's first day, this and last period.

    Buckets are counted from each period's own first day, so bucket 1 of the
    month is set beside bucket 1 of the month before; a last bucket may be
    shorter (its ``days`` says so).
    """
    size = bucket_days(period)
    n = -(-max(period.days, period.previous_days) // size)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"bucket": i + 1}
        for side, first, last in (
            ("current", period.first, period.last),
            ("previous", period.previous_first, period.previous_last),
        ):
            start = first + dt.timedelta(days=i * size)
            end = min(start + dt.timedelta(days=size - 1), last)
            row[f"{side}_from"] = start.isoformat() if start <= last else None
            row[side] = len(disputes(calls, start, end)) if start <= last else None
        rows.append(row)
    out = pd.DataFrame(rows, columns=["bucket", "current_from", "current", "previous_from", "previous"])
    return out.astype({"current": "Int64", "previous": "Int64"})


# --------------------------------------------------------------------------------------- hot spots


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input's order."""
    p = np.asarray(p, dtype=np.float64)
    if not len(p):
        return p
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(q)
    out[order] = np.minimum(q, 1.0)
    return out


def rate_ratio_p(current: np.ndarray, previous: np.ndarray, current_days: int, previous_days: int) -> np.ndarray:
    """One-sided exact p-value that the current rate is no higher than the previous one (Poisson rate ratio).

    Given ``n = current + previous`` calls, under equal daily rates the
    current count is Binomial(n, current_days / (current_days + previous_days));
    the p-value is P(X >= current).
    """
    current = np.asarray(current, dtype=np.int64)
    n = current + np.asarray(previous, dtype=np.int64)
    share = current_days / (current_days + previous_days)
    return binom.sf(current - 1, n, share)


def hot_spots(
    calls: pd.DataFrame,
    period: Period,
    min_calls: int = HOT_SPOT_MIN_CALLS,
    fdr: float = HOT_SPOT_FDR,
) -> pd.DataFrame:
    """Communities whose dispute calls rose against the period before: every tested one, hot spots first.

    A community (its household's address; calls without a linked household
    have none) is tested when it had at least ``min_calls`` dispute calls in
    the period: exact one-sided Poisson rate-ratio test (:func:`rate_ratio_p`)
    per community, Benjamini-Hochberg over the tested ones, and a hot spot is
    a rising rate with q <= ``fdr``.
    """
    table = compare_counts(calls[calls["community"].notna()], period, "community")
    tested = table[table["current"] >= min_calls].copy()
    tested["p_value"] = rate_ratio_p(
        tested["current"].to_numpy(), tested["previous"].to_numpy(), period.days, period.previous_days
    )
    tested["q_value"] = benjamini_hochberg(tested["p_value"].to_numpy())
    with np.errstate(divide="ignore", invalid="ignore"):
        tested["rate_ratio"] = tested["current_per_day"] / tested["previous_per_day"]
    tested["hot"] = (tested["q_value"] <= fdr) & (tested["current_per_day"] > tested["previous_per_day"])
    tested = tested.sort_values(["hot", "p_value", "key"], ascending=[False, True, True], kind="stable")
    return tested.rename(columns={"key": "community"}).reset_index(drop=True)


# --------------------------------------------------------------------------------------- repeat callers


def repeat_households(calls: pd.DataFrame, period: Period, min_calls: int = REPEAT_MIN_CALLS) -> pd.DataFrame:
    """Households with at least ``min_calls`` dispute calls in the period: id, station, counts, main category."""
    linked = disputes(calls, period.first, period.last)
    linked = linked[linked["household_id"].notna()]
    if linked.empty:
        return pd.DataFrame(columns=["household_id", "station_id", "calls", "main_category", "last_call", "violence"])
    grouped = linked.groupby("household_id")
    out = pd.DataFrame(
        {
            "calls": grouped.size(),
            "station_id": grouped["station_id"].agg(lambda s: s.mode().iloc[0]),
            "main_category": grouped["category"].agg(lambda s: s.value_counts().index[0]),
            "last_call": grouped["day"].max().dt.strftime("%Y-%m-%d"),
            "violence": grouped["cue_violence"].agg(lambda s: int((s > 0).sum())),
        }
    ).reset_index()
    out = out[out["calls"] >= min_calls].sort_values(["calls", "household_id"], ascending=[False, True])
    return out[["household_id", "station_id", "calls", "main_category", "last_call", "violence"]].reset_index(drop=True)


# --------------------------------------------------------------------------------------- the loop


def warning_summary(loop: pd.DataFrame) -> dict[str, Any]:
    """The period's warnings: per ranking date and level, per status, per county (issued, closed, open, overdue)."""
    if loop.empty:
        return {
            "total": 0,
            "closed": 0,
            "open": 0,
            "overdue": 0,
            "by_date": pd.DataFrame(columns=["date", *LEVELS]),
            "by_status": pd.DataFrame(columns=["status", "warnings"]),
            "by_county": pd.DataFrame(columns=["county_code", "issued", "closed", "open", "overdue"]),
            "by_level": pd.DataFrame(columns=["level", "issued", "closed", "overdue"]),
            "median_hours_to_acknowledge": None,
            "median_hours_to_handle": None,
        }
    from models.warning_tables import STATUSES

    closed = loop["status"].isin(CLOSED)
    opened = loop["status"].isin(OPEN)
    overdue = loop["overdue"].astype(bool)
    by_date = loop.pivot_table(index="date", columns="level", values="id", aggfunc="count", fill_value=0)
    by_date = by_date.reindex(columns=list(LEVELS), fill_value=0).reset_index()
    by_status = loop["status"].value_counts().reindex(list(STATUSES), fill_value=0)
    frame = loop.assign(closed=closed, open=opened, overdue_=overdue)
    county = frame.groupby("county_code").agg(
        issued=("id", "count"), closed=("closed", "sum"), open=("open", "sum"), overdue=("overdue_", "sum")
    )
    level = frame.groupby("level").agg(issued=("id", "count"), closed=("closed", "sum"), overdue=("overdue_", "sum"))
    level = level.reindex(list(LEVELS), fill_value=0)

    def median(column: str) -> float | None:
        values = pd.to_numeric(loop.get(column, pd.Series(dtype=float)), errors="coerce").dropna()
        return float(values.median()) if len(values) else None

    return {
        "total": len(loop),
        "closed": int(closed.sum()),
        "open": int(opened.sum()),
        "overdue": int(overdue.sum()),
        "by_date": by_date,
        "by_status": by_status.rename_axis("status").reset_index(name="warnings"),
        "by_county": county.astype(int).reset_index(),
        "by_level": level.astype(int).rename_axis("level").reset_index(),
        "median_hours_to_acknowledge": median("hours_to_acknowledge"),
        "median_hours_to_handle": median("hours_to_handle"),
    }


# --------------------------------------------------------------------------------------- escalations


def published_before(
    escalations: pd.DataFrame, history: pd.DataFrame, lookback_days: int = HORIZON_DAYS
) -> pd.DataFrame:
    """Each escalation with the published warnings of its household in the ``lookback_days`` before it.

    A ranking dated D is published the morning of D, so a warning dated on
    the day of the case counts (as the rules' own first warning does).
    Adds ``published_level`` (the worst level published in the window),
    ``first_published_at`` and ``published_lead_days``.
    """
    out = escalations.copy()
    opened = pd.to_datetime(out["opened_at"]).dt.normalize()
    level = np.full(len(out), None, dtype=object)
    first = np.full(len(out), np.datetime64("NaT"), dtype="datetime64[ns]")
    if len(history) and len(out):
        warned = history[["household_id", "date", "level"]].copy()
        warned["day"] = pd.to_datetime(warned["date"])
        pairs = (
            out[["household_id"]]
            .assign(opened=opened.to_numpy(), row=np.arange(len(out)))
            .merge(warned, on="household_id")
        )
        inside = (pairs["day"] <= pairs["opened"]) & (
            pairs["day"] >= pairs["opened"] - pd.Timedelta(days=lookback_days)
        )
        pairs = pairs[inside]
        if len(pairs):
            pairs["rank"] = pairs["level"].map(level_rank)
            worst = pairs.sort_values("rank").drop_duplicates("row")
            level[worst["row"].to_numpy()] = worst["level"].to_numpy(object)
            earliest = pairs.groupby("row")["day"].min()
            first[earliest.index.to_numpy()] = earliest.to_numpy()
    out["published_level"] = pd.Series(level, dtype=object)
    out["first_published_at"] = first
    out["published_lead_days"] = (opened - pd.to_datetime(out["first_published_at"])).dt.days.astype("float64")
    return out


def escalation_summary(table: pd.DataFrame) -> dict[str, Any]:
    """How many escalations, how many households each side warned beforehand, and the lead times."""
    from models.escalations import lead_time_bins

    rules = table["lead_days"].notna()
    published = table["published_level"].notna() if "published_level" in table else pd.Series(False, index=table.index)
    lead = pd.to_numeric(table["lead_days"], errors="coerce").dropna()
    return {
        "cases": int(table["case_id"].nunique()) if len(table) else 0,
        "households": len(table),
        "warned_by_rules": int(rules.sum()),
        "warned_by_ranking": int(published.sum()),
        "warned_by_either": int((rules | published).sum()),
        "median_lead_days": float(lead.median()) if len(lead) else None,
        "lead_bins": lead_time_bins(table["lead_days"]).rename_axis("bin").reset_index(name="households"),
        "by_charge": table["charge"].value_counts().rename_axis("charge").reset_index(name="households"),
    }


def level_outcomes(
    history: pd.DataFrame,
    cases: pd.DataFrame,
    persons: pd.DataFrame,
    households: int,
    latest_day: dt.date,
    horizon_days: int = HORIZON_DAYS,
) -> pd.DataFrame:
    """Observed escalation rate per published level: of the households a ranking warned, how many escalated.

    Only rankings dated at least ``horizon_days`` before the data's end count
    (their outcome is known). A household-date escalated when a violent case
    involving a member opened from the ranking date to ``horizon_days``
    later. The row ``none`` is every other registered household on those
    dates: the base rate a level must beat.
    """
    columns = ["level", "warnings", "escalations", "rate"]
    if history.empty:
        return pd.DataFrame(columns=columns)
    cutoff = pd.Timestamp(latest_day) + pd.Timedelta(days=1) - pd.Timedelta(days=horizon_days)
    seen = history[pd.to_datetime(history["date"]) <= cutoff]
    if seen.empty:
        return pd.DataFrame(columns=columns)
    violent = cases[cases["charge"].isin(VIOLENT_CHARGES)]
    member = violent["person_id"].map(persons.drop_duplicates("person_id").set_index("person_id")["household_id"])
    events = pd.DataFrame({"household_id": member, "at": pd.to_datetime(violent["opened_at"])}).dropna()
    dates = sorted(seen["date"].unique())
    rows = []
    escalated_all = 0
    for date in dates:
        start = pd.Timestamp(date)
        window = events[(events["at"] >= start) & (events["at"] < start + pd.Timedelta(days=horizon_days))]
        hit = set(window["household_id"])
        escalated_all += len(hit)
        day = seen[seen["date"] == date]
        rows.append(day.assign(escalated=day["household_id"].isin(hit)))
    warned = pd.concat(rows, ignore_index=True)
    out = warned.groupby("level").agg(warnings=("id", "count"), escalations=("escalated", "sum"))
    out = out.reindex([lv for lv in LEVELS if lv in out.index])
    none_n = households * len(dates) - len(warned)
    none_hits = escalated_all - int(warned["escalated"].sum())
    out.loc["none"] = [none_n, none_hits]
    out["rate"] = out["escalations"] / out["warnings"].where(out["warnings"] > 0)
    return out.rename_axis("level").reset_index()[columns]


# --------------------------------------------------------------------------------------- model health


def model_health(manifest: Mapping[str, Any] | None, training: Mapping[str, Any] | None) -> dict[str, Any]:
    """Which engine ranked (the latest ranking's manifest) and what its training run measured, when findable."""
    out: dict[str, Any] = {"ranking": None, "training": None, "levels_observed": []}
    if manifest:
        model = manifest.get("model") or {}
        out["ranking"] = {
            "date": manifest.get("date"),
            "engine": manifest.get("engine"),
            "model_version": manifest.get("model_version"),
            "why": model.get("why"),
            "code_version": manifest.get("code_version"),
            "data_fingerprint": manifest.get("data_fingerprint"),
            "warnings": (manifest.get("counts") or {}).get("by_level") or manifest.get("warnings"),
        }
    if training:
        esc = training.get("escalation") or {}
        backtest = esc.get("backtest") or {}
        pooled = backtest.get("pooled") or {}
        source = pooled if pooled else esc
        metrics = []
        for name, label in (
            ("recall_at_k", f"recall@{esc.get('k', '')}"),
            ("pr_auc", "PR-AUC"),
            ("roc_auc", "ROC-AUC"),
        ):
            model_value = (source.get("model") or {}).get(name)
            rules_value = (source.get("rules") or {}).get(name)
            interval = (source.get("model_minus_rules_ci") or {}).get(name)
            if model_value is not None or rules_value is not None:
                metrics.append({"metric": label, "model": model_value, "rules": rules_value, "interval": interval})
        promotion = training.get("promotion") or {}
        out["training"] = {
            "source": "backtest" if pooled else "test",
            "code_version": (training.get("provenance") or {}).get("code_version"),
            "data_fingerprint": (training.get("provenance") or {}).get("data_fingerprint"),
            "metrics": metrics,
            "positives": pooled.get("positives") if pooled else (esc.get("positives") or {}).get("test"),
            "promoted": training.get("promoted"),
            "sentence": promotion.get("sentence") or training.get("promotion_reason"),
        }
        out["levels_observed"] = backtest.get("levels_observed") or esc.get("levels_observed") or []
    return out
