"""The rolling-origin backtest: folds see only the past, both sides are measured alike, intervals are paired."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from features.snapshots import WindowIndex, decayed_sum, snapshot_dates
from models import backtest as bt
from models.evaluation import top_k_per_group


def _frame(n_households: int = 400, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray, dict[str, np.ndarray]]:
    """Weekly snapshots of households in 20 stations, a label that a feature predicts, and rule points."""
    rng = np.random.default_rng(seed)
    dates = snapshot_dates(pd.Timestamp("2023-04-01"), pd.Timestamp("2024-09-28"))
    hh = np.repeat(np.arange(n_households), len(dates))
    frame = pd.DataFrame(
        {
            "household_id": [f"H{i:04d}" for i in hh],
            "snapshot_date": np.tile(dates, n_households),
            "station_id": [f"S{i % 20:02d}" for i in hh],
        }
    )
    risk = rng.normal(size=len(frame))
    labels = (rng.random(len(frame)) < 1 / (1 + np.exp(-(risk * 2.0 - 4.0)))).astype(np.int8)
    noise = rng.normal(size=len(frame))
    points = {"max": np.maximum(risk + 2 * noise, 0), "escalation": np.zeros(len(frame))}
    frame["risk"] = risk.astype(np.float32)
    return frame, labels, points


class _Recorder:
    """A trainer that remembers what each fold gave it and scores by the feature itself."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, X_train, y_train, X_tune, y_tune):  # type: ignore[no-untyped-def]
        self.calls.append((len(X_train), len(X_tune)))

        class Model:
            def raw(self, X: np.ndarray) -> np.ndarray:
                return 1 / (1 + np.exp(-X[:, 0]))

            def predict(self, X: np.ndarray) -> np.ndarray:
                return self.raw(X) / 10

        return Model()


def test_every_fold_is_measured_on_its_own_period_and_pooled_on_all() -> None:
    frame, labels, points = _frame()
    folds = bt.rolling_origin_folds(frame["snapshot_date"], 4, 0.4, horizon_days=90)
    trainer = _Recorder()
    result = bt.run_backtest(frame[["risk"]].to_numpy(), labels, frame, points, folds, trainer, 5, 50, 0)
    assert [n for n, _ in trainer.calls] == [int(f.train.sum()) for f in folds]  # each fold: only its own past
    report = result.report
    assert [f["fold"] for f in report["folds"]] == [1, 2, 3, 4]
    assert sum(f["rows"] for f in report["folds"]) == report["pooled"]["rows"] == len(result.rows)
    assert sum(f["positives"] for f in report["folds"]) == report["pooled"]["positives"] == labels[result.rows].sum()
    assert set(report["pooled"]["model"]) == set(bt.METRICS)
    # the feature is the risk itself and the rules see it through noise: the model must win, and say so surely
    low, _ = report["pooled"]["model_minus_rules_ci"]["recall_at_k"]
    assert report["pooled"]["model"]["recall_at_k"] > report["pooled"]["rules"]["recall_at_k"] and low > 0
    assert np.array_equal(result.rows[result.last_fold()], np.flatnonzero(folds[-1].test))


def test_weighted_metrics_equal_the_plain_ones_at_unit_weights() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.05).astype(float)
    scores = rng.random(3000) + y * 0.3
    groups = np.repeat(np.arange(100), 30)
    ap, recall, precision = bt._weighted(y, bt._prepare(scores, groups, 5), np.ones(len(y)))
    assert ap == pytest.approx(average_precision_score(y, scores), abs=1e-9)
    plain_recall, plain_precision, _ = top_k_per_group(y, scores, pd.DataFrame({"g": groups}), 5)
    assert recall == pytest.approx(plain_recall) and precision == pytest.approx(plain_precision)


def test_paired_interval_is_zero_for_the_same_scores_and_positive_for_a_clear_winner() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(6000) < 0.05).astype(float)
    groups = np.repeat(np.arange(200), 30)
    clusters = np.arange(6000) // 3
    same = rng.random(6000)
    assert bt.paired_intervals(y, same, same, groups, clusters, 5, 100, 0) == {m: [0.0, 0.0] for m in bt.DIFF_METRICS}
    better = same + 2 * y
    interval = bt.paired_intervals(y, better, same, groups, clusters, 5, 100, 0)
    assert all(interval[m][0] > 0 for m in bt.DIFF_METRICS)
    worse = bt.paired_intervals(y, same, better, groups, clusters, 5, 100, 0)
    assert all(worse[m][1] < 0 for m in bt.DIFF_METRICS)


def test_levels_observed_counts_every_row_once_and_names_who_raised_it() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    probability = rng.random(n) * 0.2
    y = (rng.random(n) < probability).astype(int)
    points = {s: rng.integers(0, 30, n).astype(float) for s in ("family", "neighbor", "debt_property", "repeat_caller")}
    points["escalation"] = np.zeros(n)
    points["max"] = np.max(np.vstack(list(points.values())), axis=0)
    thresholds = {"red": 0.15, "orange": 0.1, "yellow": 0.05, "blue": 0.02}
    table = bt.levels_observed(y, probability, points, thresholds, np.ones(n, dtype=bool))
    assert [row["level"] for row in table] == ["red", "orange", "yellow", "blue", "none"]
    assert sum(row["snapshots"] for row in table) == n and sum(row["escalations"] for row in table) == y.sum()
    for row in table:
        if row["level"] != "none":
            assert sum(row["raised_by"].values()) == row["snapshots"]
    # without evidence the model's level is dropped: only the rules raise
    quiet = bt.levels_observed(y, probability, points, thresholds, np.zeros(n, dtype=bool))
    assert all(row["raised_by"]["model"] == 0 and row["raised_by"]["both"] == 0 for row in quiet)


def test_decayed_sum_is_the_sum_of_exponential_weights() -> None:
    rng = np.random.default_rng(4)
    entity = rng.integers(0, 30, 500)
    seconds = rng.integers(0, 400 * 86_400, 500).astype(np.int64)
    index = WindowIndex.build(entity, seconds)
    hh = np.arange(30)
    end = np.full(30, 300 * 86_400, dtype=np.int64)
    got = decayed_sum(index, seconds, None, hh, end, 10.0)
    for h in range(30):
        age = (end[h] - seconds[entity == h]) / 86_400
        age = age[(age > 0) & (age <= 60)]
        assert got[h] == pytest.approx(np.exp(-age / 10).sum(), rel=1e-9, abs=1e-12)
