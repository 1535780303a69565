"""Evaluation metrics shared by the rules baseline and the models.

Every comparison in reports (rules against models, champion against
challenger) goes through these functions so both sides are measured alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def dispute_metrics(
    is_dispute: Sequence[bool],
    predicted: Sequence[bool],
    category: Sequence[str | None],
    predicted_category: Sequence[str | None],
) -> dict[str, float]:
    """Precision, recall and F1 of "is a dispute", and category accuracy on true disputes.

    Category accuracy counts every true dispute: one the classifier missed
    (no category) counts as wrong, so it cannot look good by abstaining.
    """
    y = np.asarray(is_dispute, dtype=bool)
    p = np.asarray(predicted, dtype=bool)
    tp = int((y & p).sum())
    precision = tp / max(int(p.sum()), 1)
    recall = tp / max(int(y.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    cat = np.asarray(category, dtype=object)[y]
    pred_cat = np.asarray(predicted_category, dtype=object)[y]
    accuracy = float(np.mean(cat == pred_cat)) if len(cat) else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "category_accuracy": round(accuracy, 4),
        "n": len(y),
        "n_disputes": int(y.sum()),
    }


def confusion_table(category: Sequence[str | None], predicted_category: Sequence[str | None]) -> pd.DataFrame:
    """Counts of true category (rows) by predicted category (columns, ``none`` when not a dispute)."""
    # positional, whatever index the inputs carry
    truth = pd.Series(np.asarray(category, dtype=object)).fillna("none").rename("true")
    pred = pd.Series(np.asarray(predicted_category, dtype=object)).fillna("none").rename("predicted")
    return pd.crosstab(truth, pred)


def top_k_chosen(scores: np.ndarray, groups: pd.DataFrame | np.ndarray, k: int) -> np.ndarray:
    """Whether each row is on its group's list: the ``k`` highest scores of the group, ties broken by row order.

    ``groups`` is a frame of key columns (station, snapshot date) or one key array.
    """
    keys = [groups[c].to_numpy() for c in groups.columns] if isinstance(groups, pd.DataFrame) else [groups]
    rank = pd.Series(np.asarray(scores, np.float64)).groupby(keys, sort=False).rank(method="first", ascending=False)
    return (rank <= k).to_numpy()


def top_k_per_group(
    labels: np.ndarray, scores: np.ndarray, groups: pd.DataFrame, k: int
) -> tuple[float, float, pd.DataFrame]:
    """Recall and precision when each group (station and snapshot date) visits its top ``k``.

    This is the operational question: a station can visit k households a week;
    of the households that went on to escalate, how many were on its list, and
    how many of the visits were to such households. Ties break by row order.
    Returns micro recall, micro precision and a per-station table.
    """
    frame = groups.reset_index(drop=True).assign(y=np.asarray(labels))
    chosen = pd.Series(top_k_chosen(scores, groups, k))
    captured = float((frame["y"] * chosen).sum())
    positives = float(frame["y"].sum())
    recall = captured / positives if positives else float("nan")
    precision = captured / max(float(chosen.sum()), 1.0)
    per_station = (
        frame.assign(chosen=chosen, hit=frame["y"] * chosen)
        .groupby(groups.columns[0])
        .agg(positives=("y", "sum"), captured=("hit", "sum"), visits=("chosen", "sum"))
    )
    return recall, precision, per_station


def ranking_metrics(
    labels: np.ndarray, scores: np.ndarray, probabilities: np.ndarray, groups: pd.DataFrame, k: int
) -> dict[str, float]:
    """ROC-AUC, PR-AUC, recall and precision at k per group, and the Brier score of the probabilities."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y = np.asarray(labels)
    one_class = y.min() == y.max()
    recall, precision, _ = top_k_per_group(y, scores, groups, k)
    return {
        "roc_auc": float("nan") if one_class else round(float(roc_auc_score(y, scores)), 4),
        "pr_auc": float("nan") if one_class else round(float(average_precision_score(y, scores)), 4),
        "recall_at_k": round(recall, 4),
        "precision_at_k": round(precision, 4),
        "brier": round(float(brier_score_loss(y, np.clip(probabilities, 0, 1))), 5),
        "positives": int(y.sum()),
        "rows": len(y),
    }


def _household_resamples(clusters: np.ndarray, n_boot: int, seed: int):  # type: ignore[no-untyped-def]
    """Row indices of ``n_boot`` resamples that draw whole clusters (households) with replacement."""
    rng = np.random.default_rng(seed)
    codes, inverse = np.unique(clusters, return_inverse=True)
    members = pd.Series(np.arange(len(inverse))).groupby(inverse).apply(np.asarray).to_list()
    for _ in range(n_boot):
        yield np.concatenate([members[i] for i in rng.integers(0, len(codes), len(codes))])


def _percentiles(samples: dict[str, list[float]], level: float) -> dict[str, list[float]]:
    """Two-sided percentile interval of each metric's resampled values."""
    alpha = (1 - level) / 2
    return {
        name: [round(float(np.nanquantile(v, alpha)), 4), round(float(np.nanquantile(v, 1 - alpha)), 4)]
        for name, v in samples.items()
    }


def bootstrap_intervals(
    labels: np.ndarray,
    scores: np.ndarray,
    probabilities: np.ndarray,
    groups: pd.DataFrame,
    clusters: np.ndarray,
    k: int,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile intervals of :func:`ranking_metrics`, resampling whole households.

    Snapshots of one household are strongly correlated (the same history seen
    week after week), so the unit of resampling is the household, not the row.
    """
    samples: dict[str, list[float]] = {}
    for rows in _household_resamples(clusters, n_boot, seed):
        metrics = ranking_metrics(
            labels[rows], scores[rows], probabilities[rows], groups.iloc[rows].reset_index(drop=True), k
        )
        for name, value in metrics.items():
            if name not in ("positives", "rows"):
                samples.setdefault(name, []).append(value)
    return _percentiles(samples, level)


def _calibration_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int) -> pd.DataFrame:
    """Rows grouped into quantile bins of the predicted probability: mean prediction, observed rate, count.

    Quantile bins, not fixed-width ones: with a base rate under 1 %, ten
    equal-width bins put almost every row in the first bin and say nothing
    about the top of the list, which is where the warnings are. Bin edges are
    the ``bins``-quantiles of the predictions; equal predictions always share a
    bin (so the table does not depend on row order), which means fewer bins
    when the predictions take fewer distinct values. Empty bins are left out.
    """
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if len(y) != len(p):
        raise ValueError(f"labels ({len(y)}) and probabilities ({len(p)}) differ in length")
    if len(p) == 0:
        raise ValueError("no rows to measure calibration on")
    if not np.all(np.isfinite(p)):
        raise ValueError("probabilities contain NaN or infinity; calibration needs a probability for every row")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, bins + 1)))
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    frame = pd.DataFrame({"bin": index, "y": y, "p": p})
    return frame.groupby("bin", sort=True).agg(predicted=("p", "mean"), observed=("y", "mean"), n=("y", "size"))


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the row-weighted mean |mean prediction - observed rate| over quantile bins.

    Bins as :func:`calibration_curve` (quantiles of the predictions, ties kept
    together), so the number and the reliability plot describe the same bins.
    0 is perfect; it is in probability units, so compare it with the base rate.
    """
    table = _calibration_bins(labels, probabilities, bins)
    return float((table["n"] * (table["predicted"] - table["observed"]).abs()).sum() / table["n"].sum())


def calibration_curve(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Reliability table: mean predicted against observed rate and the row count of each quantile bin."""
    table = _calibration_bins(labels, probabilities, bins)
    return {k: [round(float(x), 5) for x in table[k]] for k in ("predicted", "observed", "n")}


def calibration_summary(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> dict[str, object]:
    """``{"ece": ..., "reliability": calibration_curve(...)}``: what a run reports about its probabilities."""
    return {
        "ece": round(expected_calibration_error(labels, probabilities, bins), 5),
        "bins": bins,
        "reliability": calibration_curve(labels, probabilities, bins),
    }


def pr_curve(labels: np.ndarray, scores: np.ndarray, points: int = 101) -> dict[str, list[float]]:
    """Precision-recall curve thinned to about ``points`` points (for plots and the registry)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(labels, scores)
    idx = np.unique(np.linspace(0, len(precision) - 1, points).astype(int))
    return {
        "precision": [round(float(x), 5) for x in precision[idx]],
        "recall": [round(float(x), 5) for x in recall[idx]],
    }


def paired_difference_intervals(
    labels: np.ndarray,
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray],
    groups: pd.DataFrame,
    clusters: np.ndarray,
    k: int,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Intervals of metric(a) - metric(b) with both sides scored on the same resampled households.

    Two overlapping marginal intervals do not mean "no difference": the model
    and the rules are judged on the same households, so their errors move
    together. The paired interval is the one that answers "does a beat b".
    ``a`` and ``b`` are (scores, probabilities).
    """
    diffs: dict[str, list[float]] = {}
    for rows in _household_resamples(clusters, n_boot, seed):
        g = groups.iloc[rows].reset_index(drop=True)
        ma = ranking_metrics(labels[rows], a[0][rows], a[1][rows], g, k)
        mb = ranking_metrics(labels[rows], b[0][rows], b[1][rows], g, k)
        for name in ("roc_auc", "pr_auc", "recall_at_k", "precision_at_k", "brier"):
            diffs.setdefault(name, []).append(ma[name] - mb[name])
    return _percentiles(diffs, level)
