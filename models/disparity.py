"""Disparity audit: do warnings, hits and misses fall evenly on counties, ethnic groups, sexes, residence, ages?

A warning sends police to a family's door. Per group of each attribute
(features/groups.py) this measures, on the rows it is given (snapshots of
the test period, or a month's households with calls):

- ``warning_rate``: share of rows warned (on the station's top-k that date);
- ``precision``: share of warned rows that escalated within the horizon;
- ``recall``: share of escalations that were warned (1 − FNR);
- ``fpr``: share of non-escalating rows warned (the burden on families that
  did nothing);
- ``fnr``: share of escalations not warned (the protection a group did not get).

The point values are fairlearn's ``MetricFrame`` by group (a maintained
library, not hand-written group metrics). Intervals: percentile intervals
of a bootstrap that resamples whole households (a household's weekly
snapshots are the same history seen again, so rows are not independent and a
per-row Wilson interval would be too narrow), computed on per-household
counts so 200 resamples of every attribute take well under a second. Each
group is compared with a reference group, the attribute's largest (by
rows): the ratio and its interval come from the same resamples. A group
with no events (or only events) shows its Wilson interval instead, since a
bootstrap of zero hits is [0, 0]. Thresholds
(band 0.8–1.25, minimum n, level) live in ``conf/disparity.toml``.

Status of a row (one group, one metric): ``reference``; ``small`` when the
group's or the reference's denominator is under ``min_n``, or the group would
expect fewer than ``min_expected`` events at the reference's rate; ``uninformative``
when the ratio's interval spans the whole band (it cannot tell "lower",
"even" and "higher" apart); ``flagged`` when the ratio is outside the band;
``ok`` otherwise. Flagged rows sort first.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.evaluation import top_k_chosen

CONFIG = Path(__file__).resolve().parents[1] / "conf" / "disparity.toml"

METRICS: tuple[str, ...] = ("warning_rate", "precision", "recall", "fpr", "fnr")
"""Every metric with outcomes; without outcomes only the warning rate."""

METRIC_NAMES: dict[str, str] = {
    "warning_rate": "warning rate",
    "precision": "precision (warned that escalated)",
    "recall": "recall (escalations warned)",
    "fpr": "false-positive rate",
    "fnr": "false-negative rate",
}

DENOMINATOR: dict[str, str] = {
    "warning_rate": "rows",
    "precision": "warned",
    "recall": "positives",
    "fpr": "negatives",
    "fnr": "positives",
}
"""Which count each metric divides by: the ``n`` a row shows and ``min_n`` judges."""

STATUS_ORDER: dict[str, int] = {"flagged": 0, "ok": 1, "uninformative": 2, "small": 3, "reference": 4}


@dataclass(frozen=True)
class Thresholds:
    """The flagging band, the smallest denominator judged, and the interval level (``conf/disparity.toml``)."""

    ratio_low: float = 0.8
    ratio_high: float = 1.25
    min_n: int = 30
    min_expected: float = 5.0
    level: float = 0.95

    @classmethod
    def load(cls, path: Path = CONFIG) -> Thresholds:
        with path.open("rb") as handle:
            values = tomllib.load(handle)
        return cls(
            **{k: values[k] for k in ("ratio_low", "ratio_high", "min_n", "min_expected", "level") if k in values}
        )


def warned_at_top_k(scores: np.ndarray, station_id: pd.Series, snapshot_date: pd.Series, k: int) -> np.ndarray:
    """A row is warned when it is on its station's top ``k`` of its snapshot date (models.evaluation's rule)."""
    groups = pd.DataFrame(
        {"station_id": pd.Series(station_id).to_numpy(), "snapshot_date": pd.Series(snapshot_date).to_numpy()}
    )
    return top_k_chosen(np.asarray(scores, np.float64), groups, k)


def _guarded(metric: Callable[..., float], needs: str) -> Callable[..., float]:
    """A fairlearn/sklearn metric that is NaN, not 0, for a group without the rows it divides by."""

    def wrapped(y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray) -> float:
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        rows = {"positives": y_true == 1, "negatives": y_true == 0, "warned": y_pred == 1, "rows": y_true == y_true}
        present = rows[needs] & (np.asarray(sample_weight) > 0)
        return float(metric(y_true, y_pred, sample_weight=sample_weight)) if present.any() else float("nan")

    return wrapped


def _metric_functions(with_outcomes: bool) -> dict[str, Callable[..., float]]:
    from fairlearn.metrics import false_negative_rate, false_positive_rate, selection_rate
    from sklearn.metrics import precision_score, recall_score

    functions = {"warning_rate": _guarded(selection_rate, "rows")}
    if with_outcomes:
        functions |= {
            "precision": _guarded(lambda y, p, **w: precision_score(y, p, zero_division=0, **w), "warned"),
            "recall": _guarded(lambda y, p, **w: recall_score(y, p, zero_division=0, **w), "positives"),
            "fpr": _guarded(false_positive_rate, "negatives"),
            "fnr": _guarded(false_negative_rate, "positives"),
        }
    return functions


def metric_frame(labels: np.ndarray | None, warned: np.ndarray, groups: pd.Series) -> Any:
    """fairlearn's ``MetricFrame`` of every metric by group; without labels only the warning rate.

    The rows are first collapsed to their distinct (group, outcome, warned)
    cells with the count as ``sample_weight`` (at most four cells a group):
    the same numbers as row by row, but fairlearn's per-row overhead (it
    re-stacks every row of a group for every metric) no longer grows with the
    half million snapshots of a large city.
    """
    from fairlearn.metrics import MetricFrame

    warned = np.asarray(warned).astype(int)
    y = warned if labels is None else np.asarray(labels).astype(int)  # y_true unused by the warning rate
    cells = (
        pd.DataFrame({"group": np.asarray(groups, dtype=object), "y": y, "warned": warned})
        .groupby(["group", "y", "warned"], sort=False)
        .size()
        .reset_index(name="rows")
    )
    functions = _metric_functions(labels is not None)
    weight = cells["rows"].to_numpy(np.float64)
    return MetricFrame(
        metrics=functions,
        y_true=cells["y"].to_numpy(),
        y_pred=cells["warned"].to_numpy(),
        sensitive_features=pd.Series(cells["group"].to_numpy(object), name="group"),
        sample_params={name: {"sample_weight": weight} for name in functions},
    )


def _counts(labels: np.ndarray | None, warned: np.ndarray) -> pd.DataFrame:
    y = np.zeros(len(warned), bool) if labels is None else np.asarray(labels).astype(bool)
    w = np.asarray(warned).astype(bool)
    return pd.DataFrame(
        {"rows": 1, "warned": w, "positives": y, "negatives": ~y, "hits": w & y, "false_alarms": w & ~y}
    ).astype(np.float64)


def _rates(totals: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics from count totals (last axis: rows, warned, positives, negatives, hits, false_alarms)."""
    rows, warned, pos, neg, hits, fa = (totals[..., i] for i in range(6))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "warning_rate": warned / rows,
            "precision": hits / warned,
            "recall": hits / pos,
            "fpr": fa / neg,
            "fnr": (pos - hits) / pos,
        }


def household_weights(clusters: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row its household's code, and ``n_boot`` × households draw counts (households drawn with replacement)."""
    codes, inverse = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(codes), np.full(len(codes), 1 / len(codes)), size=n_boot).astype(np.float64)
    return inverse, draws


def _bootstrap_totals(
    counts: pd.DataFrame, groups: np.ndarray, inverse: np.ndarray, draws: np.ndarray
) -> dict[str, np.ndarray]:
    """Per group, ``n_boot`` × 6 resampled count totals."""
    table = counts.assign(h=inverse, g=groups).groupby(["g", "h"], sort=False).sum()
    out = {}
    for group, part in table.groupby(level="g", sort=False):
        households = part.index.get_level_values("h").to_numpy()
        out[group] = draws[:, households] @ part.to_numpy()
    return out


def _interval(values: np.ndarray, level: float) -> list[float | None]:
    alpha = (1 - level) / 2
    finite = values[np.isfinite(values)]
    if len(finite) < max(10, len(values) // 2):
        return [None, None]
    return [round(float(np.quantile(finite, alpha)), 4), round(float(np.quantile(finite, 1 - alpha)), 4)]


def _round(value: float) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None


def _status(ratio: float, ci: list[float | None], n: float, n_ref: float, ref_value: float, t: Thresholds) -> str:
    expected = n * min(ref_value, 1 - ref_value) if np.isfinite(ref_value) else 0.0
    if min(n, n_ref) < t.min_n or expected < t.min_expected or not np.isfinite(ratio):
        return "small"
    low, high = ci
    if low is None or high is None or (low <= t.ratio_low and high >= t.ratio_high):
        return "uninformative"
    return "flagged" if ratio < t.ratio_low or ratio > t.ratio_high else "ok"


def wilson(successes: float, n: float, level: float) -> list[float | None]:
    """Wilson score interval of a proportion: what a group with no (or only) events shows instead of [0, 0].

    A percentile bootstrap of a group with zero hits draws zero hits every time;
    the Wilson interval still says how high the rate could plausibly be.
    """
    if n <= 0:
        return [None, None]
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - level) / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(float(max(centre - half, 0.0)), 4), round(float(min(centre + half, 1.0)), 4)]


def attribute_rows(
    attribute: str,
    groups: np.ndarray,
    labels: np.ndarray | None,
    warned: np.ndarray,
    inverse: np.ndarray,
    draws: np.ndarray,
    thresholds: Thresholds,
) -> list[dict[str, Any]]:
    """One row per group and metric of one attribute, with interval, ratio to the reference and status."""
    groups = np.asarray(groups, dtype=object).astype(str)
    frame = metric_frame(labels, warned, pd.Series(groups)).by_group
    counts = _counts(labels, warned)
    totals = counts.groupby(groups, sort=False).sum()
    known = totals.drop(index="unknown", errors="ignore")
    reference = str((known if len(known) else totals)["rows"].sort_values(ascending=False, kind="stable").index[0])
    boot = {g: _rates(t) for g, t in _bootstrap_totals(counts, groups, inverse, draws).items()}
    households = pd.Series(inverse).groupby(groups).nunique()
    rows = []
    for metric in frame.columns:
        ref_value = float(frame.loc[reference, metric])
        ref_n = float(totals.loc[reference, DENOMINATOR[metric]])
        for group in totals.index:
            value = float(frame.loc[group, metric])
            n = float(totals.loc[group, DENOMINATOR[metric]])
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = value / ref_value if ref_value else float("nan")
                ratio_boot = boot[group][metric] / boot[reference][metric]
            ratio_ci = _interval(ratio_boot, thresholds.level)
            is_ref = group == reference
            rows.append(
                {
                    "attribute": attribute,
                    "group": group,
                    "metric": metric,
                    "value": _round(value),
                    "ci": wilson(value * n, n, thresholds.level)
                    if value in (0.0, 1.0)
                    else _interval(boot[group][metric], thresholds.level),
                    "n": int(n),
                    "rows": int(totals.loc[group, "rows"]),
                    "households": int(households.get(group, 0)),
                    "reference": reference,
                    "ratio": None if is_ref else _round(ratio),
                    "ratio_ci": [None, None] if is_ref else ratio_ci,
                    "status": "reference" if is_ref else _status(ratio, ratio_ci, n, ref_n, ref_value, thresholds),
                }
            )
    return rows


def sort_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flagged rows first (furthest from 1 first), then by attribute, metric and group size."""

    def key(row: dict[str, Any]) -> tuple:
        distance = abs(np.log(row["ratio"])) if row.get("ratio") else 0.0
        return (
            STATUS_ORDER[row["status"]],
            -distance if row["status"] == "flagged" else 0.0,
            row["attribute"],
            row["metric"],
            -row["rows"],
        )

    return sorted(rows, key=key)


def disparity_table(
    attributes: pd.DataFrame,
    warned: np.ndarray,
    clusters: np.ndarray,
    labels: np.ndarray | None = None,
    n_boot: int = 200,
    seed: int = 0,
    thresholds: Thresholds | None = None,
) -> list[dict[str, Any]]:
    """Every attribute (a column of ``attributes``), group and metric as rows, flagged first.

    ``warned`` and ``labels`` (escalated within the horizon; None when no
    outcome is known yet) are per row; ``clusters`` is the household of each
    row, the bootstrap's unit.
    """
    t = thresholds or Thresholds.load()
    inverse, draws = household_weights(clusters, n_boot, seed)
    rows: list[dict[str, Any]] = []
    for attribute in attributes.columns:
        rows += attribute_rows(attribute, attributes[attribute].to_numpy(), labels, warned, inverse, draws, t)
    return sort_rows(rows)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per status, and the mean |log ratio| over judged rows: one number for "how even" (0 = even)."""
    judged = [r for r in rows if r["status"] in ("flagged", "ok") and r["ratio"]]
    return {
        "flagged": sum(r["status"] == "flagged" for r in rows),
        "judged": len(judged),
        "small": sum(r["status"] == "small" for r in rows),
        "uninformative": sum(r["status"] == "uninformative" for r in rows),
        "mean_abs_log_ratio": round(float(np.mean([abs(np.log(r["ratio"])) for r in judged])), 4) if judged else None,
    }


def compare_sides(sides: dict[str, list[dict[str, Any]]]) -> str:
    """One sentence: which scorer spreads its warnings and misses more evenly over the groups."""
    stats = {name: summary(rows) for name, rows in sides.items()}
    parts = [
        f"{name}: {s['flagged']} flagged of {s['judged']} judged ratios (mean |log ratio| "
        f"{s['mean_abs_log_ratio'] if s['mean_abs_log_ratio'] is not None else '–'})"
        for name, s in stats.items()
    ]
    if set(stats) >= {"model", "rules"}:
        m, r = stats["model"], stats["rules"]
        if m["flagged"] != r["flagged"]:
            even = "model" if m["flagged"] < r["flagged"] else "rules"
            parts.append(f"the {even} is the more even by flagged ratios")
        elif m["mean_abs_log_ratio"] is not None and r["mean_abs_log_ratio"] is not None:
            even = "model" if m["mean_abs_log_ratio"] <= r["mean_abs_log_ratio"] else "rules"
            parts.append(f"equal flags; the {even} is the more even by mean |log ratio|")
    return "; ".join(parts) + "."
