"""The household escalation model: LightGBM on snapshot features, rule points among them.

Trained on the earliest snapshot dates, early-stopped and calibrated on the
next, and tested on the latest (``temporal_split``), so every number in the
report is about the future relative to what the model saw. Parameters are
modest on purpose: the model is exported to ONNX and scored for a whole city
every morning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.calibration import Calibration, fit_calibration

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 63,
    "seed": 20240411,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbose": -1,
}
MAX_ROUNDS = 400
EARLY_STOPPING = 40


@dataclass(frozen=True)
class Split:
    """Boolean masks over snapshot rows; no snapshot date belongs to two parts."""

    train: np.ndarray
    tune: np.ndarray
    test: np.ndarray
    boundaries: dict[str, str]


def temporal_split(
    dates: pd.Series, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), embargo_days: int = 0
) -> Split:
    """Split by snapshot date: earliest for training, then tuning, then testing.

    ``embargo_days`` drops dates right after each boundary, so labels that
    look ahead from the end of one period do not overlap the next period's
    first snapshots.
    """
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    unique = np.sort(pd.to_datetime(dates).unique())
    if len(unique) < 3:
        raise ValueError(f"need at least 3 snapshot dates to split, got {len(unique)}")
    cut1 = unique[min(round(len(unique) * fractions[0]), len(unique) - 2)]
    cut2 = unique[min(round(len(unique) * (fractions[0] + fractions[1])), len(unique) - 1)]
    embargo = np.timedelta64(embargo_days, "D")
    d = pd.to_datetime(dates).to_numpy()
    train = d < cut1
    tune = (d >= cut1 + embargo) & (d < cut2)
    test = d >= cut2 + embargo
    if not (train.any() and tune.any() and test.any()):
        raise ValueError("a split is empty: use more snapshot dates or a shorter embargo")
    boundaries = {
        "train_from": str(pd.Timestamp(d[train].min()).date()),
        "tune_from": str(pd.Timestamp(d[tune].min()).date()),
        "test_from": str(pd.Timestamp(d[test].min()).date()),
        "test_to": str(pd.Timestamp(d[test].max()).date()),
    }
    return Split(train, tune, test, boundaries)


@dataclass
class EscalationModel:
    """A trained booster, its feature order, and the calibration fitted on the tuning period."""

    booster: lgb.Booster
    feature_names: list[str]
    calibration: Calibration
    params: dict[str, Any] = field(default_factory=dict)

    def raw(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated probability of escalation."""
        return self.booster.predict(np.asarray(X, dtype=np.float32))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probability of escalation within the horizon."""
        return self.calibration.apply(self.raw(X))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature contributions to the log-odds (last column: the bias), LightGBM's own."""
        return self.booster.predict(np.asarray(X, dtype=np.float32), pred_contrib=True)


def train_escalation(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_tune: np.ndarray,
    y_tune: np.ndarray,
    feature_names: list[str],
    params: dict[str, Any] | None = None,
) -> EscalationModel:
    """Fit on the training period, stop early and calibrate on the tuning period."""
    merged = {**DEFAULT_PARAMS, **(params or {})}
    train = lgb.Dataset(np.asarray(X_train, np.float32), label=y_train, feature_name=feature_names, free_raw_data=False)
    tune = lgb.Dataset(np.asarray(X_tune, np.float32), label=y_tune, reference=train, free_raw_data=False)
    booster = lgb.train(
        {**merged, "metric": "average_precision"},
        train,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[tune],
        callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)],
    )
    booster.free_dataset()
    raw_tune = booster.predict(np.asarray(X_tune, np.float32), num_iteration=booster.best_iteration)
    if booster.best_iteration and booster.best_iteration < booster.current_iteration():
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    calibration = fit_calibration(raw_tune, np.asarray(y_tune), method="isotonic")
    return EscalationModel(booster, list(feature_names), calibration, merged | {"rounds": booster.current_iteration()})
