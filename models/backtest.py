"""Rolling-origin backtest: is the model better than the rules where the stations act, fold after fold?

One train/test split says little about a model that will be retrained every
month on a city that changes. The backtest replays that life: the last part
of the snapshot dates is cut into ``n_folds`` consecutive test periods, and
each fold's model is trained only on snapshots whose labels were complete
before its test period began (a snapshot of day D needs D + horizon to be
known), early-stopped and calibrated on the last of those dates. The rules
are scored on the very same test rows, so every comparison is paired.

Per fold and pooled over all folds: ROC-AUC, PR-AUC, recall and precision in
each station's top k of each week, Brier score and calibration error, and
the paired household-bootstrap interval of model − rules. The bootstrap keeps
each station-week's list as it was chosen (that is what the station visited)
and resamples households, the unit whose snapshots are correlated week after
week; a resample weights every row of a drawn household by how often it was
drawn. That makes one resample a few vector operations, so 200 resamples of
half a million rows take seconds (recomputing every list, as
``models.evaluation.paired_difference_intervals`` does, takes minutes).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.calibration import fit_calibration
from models.evaluation import expected_calibration_error, ranking_metrics, top_k_chosen

METRICS = ("roc_auc", "pr_auc", "recall_at_k", "precision_at_k", "brier", "ece")
"""What each fold reports for each side (contract of the report and the promotion gate)."""
DIFF_METRICS = ("pr_auc", "recall_at_k", "precision_at_k")
"""Metrics with a paired model − rules interval (the ranking metrics a station feels)."""


@dataclass(frozen=True)
class Fold:
    """Boolean masks over snapshot rows for one fold, and its dates."""

    number: int
    train: np.ndarray
    tune: np.ndarray
    test: np.ndarray
    boundaries: dict[str, str]


def rolling_origin_folds(
    dates: pd.Series,
    n_folds: int,
    test_share: float,
    horizon_days: int,
    tune_share: float = 0.25,
) -> list[Fold]:
    """``n_folds`` consecutive test periods over the last ``test_share`` of the snapshot dates.

    Fold i trains on snapshot dates D with D + ``horizon_days`` <= its first
    test date (labels known when the fold's model would have been trained),
    tunes on the last ``tune_share`` of those dates, and tests on its period.
    Raises ValueError, naming the fix, when the dates cannot hold the folds.
    """
    d = pd.to_datetime(pd.Series(dates)).to_numpy()
    unique = np.sort(np.unique(d))
    n_test = max(round(len(unique) * test_share), n_folds)
    if n_folds < 1 or n_test >= len(unique):
        raise ValueError(f"{len(unique)} snapshot dates cannot hold {n_folds} test folds; fix: fewer folds")
    edges = np.linspace(len(unique) - n_test, len(unique), n_folds + 1).round().astype(int)
    horizon = np.timedelta64(horizon_days, "D")
    folds = []
    for i in range(n_folds):
        test_dates = unique[edges[i] : edges[i + 1]]
        known = unique[unique + horizon <= test_dates[0]]
        if len(known) < 4:
            raise ValueError(
                f"fold {i + 1} (testing from {pd.Timestamp(test_dates[0]):%Y-%m-%d}) has {len(known)} snapshot dates "
                f"with complete {horizon_days}-day labels before it; fix: export a longer history or use fewer folds"
            )
        n_tune = max(1, round(len(known) * tune_share))
        tune_from = known[-n_tune]
        train = d < tune_from
        tune = (d >= tune_from) & (d <= known[-1])
        test = (d >= test_dates[0]) & (d <= test_dates[-1])
        folds.append(
            Fold(
                number=i + 1,
                train=train,
                tune=tune,
                test=test,
                boundaries={
                    "train_from": f"{pd.Timestamp(known[0]):%Y-%m-%d}",
                    "tune_from": f"{pd.Timestamp(tune_from):%Y-%m-%d}",
                    "train_to": f"{pd.Timestamp(known[-1]):%Y-%m-%d}",
                    "test_from": f"{pd.Timestamp(test_dates[0]):%Y-%m-%d}",
                    "test_to": f"{pd.Timestamp(test_dates[-1]):%Y-%m-%d}",
                },
            )
        )
    return folds


def final_fold(dates: pd.Series, tune_share: float = 0.25) -> Fold:
    """The served model's split: every labelled snapshot date, the last ``tune_share`` of them for tuning.

    The backtest measured how this recipe does on periods it had not seen;
    the model that ranks tomorrow is then trained on everything up to today.
    ``test`` is empty: its measure is the backtest's.
    """
    d = pd.to_datetime(pd.Series(dates)).to_numpy()
    unique = np.sort(np.unique(d))
    tune_from = unique[-max(1, round(len(unique) * tune_share))]
    return Fold(
        number=0,
        train=d < tune_from,
        tune=d >= tune_from,
        test=np.zeros(len(d), dtype=bool),
        boundaries={
            "train_from": f"{pd.Timestamp(unique[0]):%Y-%m-%d}",
            "tune_from": f"{pd.Timestamp(tune_from):%Y-%m-%d}",
            "train_to": f"{pd.Timestamp(unique[-1]):%Y-%m-%d}",
        },
    )


def rule_scores(points: Mapping[str, np.ndarray]) -> np.ndarray:
    """How the rules rank households: the worst scenario's points, the escalation scenario's breaking ties."""
    return np.asarray(points["max"], np.float64) + 1e-3 * np.asarray(points["escalation"], np.float64)


# --------------------------------------------------------------------------- fast paired bootstrap


@dataclass(frozen=True)
class _Ranked:
    """One side's scores prepared for weighted resampling: its top-k picks and its order by score."""

    chosen: np.ndarray
    order: np.ndarray


def _prepare(scores: np.ndarray, groups: np.ndarray, k: int) -> _Ranked:
    return _Ranked(top_k_chosen(scores, groups, k), np.argsort(-np.asarray(scores, np.float64), kind="stable"))


def _weighted(y: np.ndarray, side: _Ranked, w: np.ndarray) -> tuple[float, float, float]:
    """PR-AUC (average precision), recall at k and precision at k with row weights ``w``."""
    yw = (y * w)[side.order]
    positives = yw.sum()
    if positives <= 0:
        return float("nan"), float("nan"), float("nan")
    precision = np.cumsum(yw) / np.maximum(np.cumsum(w[side.order]), 1e-12)
    ap = float((precision * yw).sum() / positives)
    hit = float((y * w * side.chosen).sum())
    return ap, hit / positives, hit / max(float((w * side.chosen).sum()), 1e-12)


def paired_intervals(
    labels: np.ndarray,
    model_scores: np.ndarray,
    rule_scores_: np.ndarray,
    groups: np.ndarray,
    clusters: np.ndarray,
    k: int,
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile intervals of model − rules for PR-AUC, recall@k and precision@k, resampling households."""
    y = np.asarray(labels, np.float64)
    model, rules = _prepare(model_scores, groups, k), _prepare(rule_scores_, groups, k)
    _, cluster = np.unique(clusters, return_inverse=True)
    n_clusters = int(cluster.max()) + 1 if len(cluster) else 0
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[float]] = {m: [] for m in DIFF_METRICS}
    for _ in range(n_boot):
        drawn = np.bincount(rng.integers(0, n_clusters, n_clusters), minlength=n_clusters).astype(np.float64)
        w = drawn[cluster]
        a, b = _weighted(y, model, w), _weighted(y, rules, w)
        for name, va, vb in zip(DIFF_METRICS, a, b, strict=True):
            diffs[name].append(va - vb)
    alpha = (1 - level) / 2
    return {
        name: [round(float(np.nanquantile(v, alpha)), 4), round(float(np.nanquantile(v, 1 - alpha)), 4)]
        for name, v in diffs.items()
    }


# --------------------------------------------------------------------------- the backtest


def side_metrics(labels: np.ndarray, scores: np.ndarray, probability: np.ndarray, groups: pd.DataFrame, k: int) -> dict:
    """Every metric of :data:`METRICS` for one side on one set of rows."""
    out = ranking_metrics(labels, scores, probability, groups, k)
    out["ece"] = round(expected_calibration_error(labels, probability), 5)
    return {m: out[m] for m in METRICS}


@dataclass
class Backtest:
    """Pooled test rows of every fold with both sides' scores, and the report dict."""

    rows: np.ndarray
    fold: np.ndarray
    model_score: np.ndarray
    model_probability: np.ndarray
    rule_score: np.ndarray
    rule_probability: np.ndarray
    report: dict[str, Any]

    def last_fold(self) -> np.ndarray:
        """Positions (into the pooled arrays) of the last fold's test rows: the most recent held-out period."""
        return np.flatnonzero(self.fold == self.fold.max())


Trainer = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Any]
"""(X_train, y_train, X_tune, y_tune) -> a model with ``raw(X)`` and ``predict(X)`` (calibrated)."""


def run_backtest(
    X: np.ndarray,
    labels: np.ndarray,
    frame: pd.DataFrame,
    points: Mapping[str, np.ndarray],
    folds: list[Fold],
    train: Trainer,
    k: int,
    n_boot: int,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> Backtest:
    """Train and score every fold, measure both sides per fold and pooled.

    ``frame`` needs ``station_id``, ``snapshot_date`` and ``household_id``;
    ``points`` is ``models.warning.points_at_snapshots`` for the same rows.
    """
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    rules_all = rule_scores(points)
    groups_all = frame["station_id"].astype(str) + "|" + frame["snapshot_date"].astype(str)
    households = frame["household_id"].to_numpy()
    rows, fold_of, m_score, m_prob, r_prob = [], [], [], [], []
    report_folds = []
    for fold in folds:
        done = fold.number - 1
        eta = f", about {(time.perf_counter() - started) / done * (len(folds) - done):.0f} s left" if done else ""
        say(
            f"  backtest fold {fold.number}/{len(folds)}: train on snapshots to {fold.boundaries['train_to']}, "
            f"test {fold.boundaries['test_from']}..{fold.boundaries['test_to']}{eta}"
        )
        model = train(X[fold.train], labels[fold.train], X[fold.tune], labels[fold.tune])
        test = np.flatnonzero(fold.test)
        score, prob = model.raw(X[test]), model.predict(X[test])
        rule_cal = fit_calibration(rules_all[fold.tune], labels[fold.tune], method="isotonic")
        rprob = rule_cal.apply(rules_all[test])
        report_folds.append(
            {
                "fold": fold.number,
                **fold.boundaries,
                **_compare(
                    labels[test],
                    score,
                    prob,
                    rules_all[test],
                    rprob,
                    frame.iloc[test],
                    groups_all.iloc[test],
                    households[test],
                    k,
                    n_boot,
                    seed,
                ),
            }
        )
        rows.append(test)
        fold_of.append(np.full(len(test), fold.number))
        m_score.append(score)
        m_prob.append(prob)
        r_prob.append(rprob)
    pooled_rows = np.concatenate(rows)
    score, prob, rprob = np.concatenate(m_score), np.concatenate(m_prob), np.concatenate(r_prob)
    pooled = _compare(
        labels[pooled_rows],
        score,
        prob,
        rules_all[pooled_rows],
        rprob,
        frame.iloc[pooled_rows],
        groups_all.iloc[pooled_rows],
        households[pooled_rows],
        k,
        n_boot,
        seed,
    )
    report = {"k": k, "metric_names": list(METRICS), "folds": report_folds, "pooled": pooled}
    return Backtest(pooled_rows, np.concatenate(fold_of), score, prob, rules_all[pooled_rows], rprob, report)


def _compare(
    y: np.ndarray,
    score: np.ndarray,
    prob: np.ndarray,
    rule_score: np.ndarray,
    rule_prob: np.ndarray,
    frame: pd.DataFrame,
    groups: pd.Series,
    households: np.ndarray,
    k: int,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    group_frame = frame[["station_id", "snapshot_date"]].reset_index(drop=True)
    return {
        "rows": len(y),
        "positives": int(y.sum()),
        "households": int(pd.unique(households).size),
        "model": side_metrics(y, score, prob, group_frame, k),
        "rules": side_metrics(y, rule_score, rule_prob, group_frame, k),
        "model_minus_rules_ci": paired_intervals(y, score, rule_score, groups.to_numpy(), households, k, n_boot, seed),
    }


def levels_observed(
    labels: np.ndarray,
    probability: np.ndarray,
    points: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    evidence: np.ndarray,
) -> list[dict[str, Any]]:
    """Observed escalation rate level by level, as the published levels would have been on held-out rows.

    Each row gets the level the one policy (models/levels.py) publishes from
    the model's calibrated probability, the rules' points and the evidence
    rule (``evidence``: a call on record recently); the table says,
    per level, how many snapshots got it, how many escalated, the rate, and
    which side raised them. A level system a station can trust has rates that
    fall from red to blue.
    """
    from models.levels import LEVELS, publish_levels, threshold_levels, worst_scenarios
    from models.warning import load_scenarios

    rules_level, _, _ = worst_scenarios(points, load_scenarios())
    model_level = threshold_levels(probability, thresholds)
    published, raised_by = publish_levels(rules_level, model_level, evidence)
    published = np.asarray(published, dtype=object)
    raised_by = np.asarray(raised_by, dtype=object)
    y = np.asarray(labels)
    out = []
    for level in (*LEVELS, None):
        mask = published == level if level else np.array([not isinstance(v, str) for v in published], dtype=bool)
        n, hits = int(mask.sum()), int(y[mask].sum())
        out.append(
            {
                "level": level or "none",
                "snapshots": n,
                "escalations": hits,
                "rate": round(hits / n, 5) if n else None,
                "raised_by": {side: int((raised_by[mask] == side).sum()) for side in ("rules", "model", "both")},
            }
        )
    return out
