"""The household escalation model: LightGBM on snapshot features, rule points among them.

Measured by a rolling-origin backtest (models/backtest.py), then trained on
every labelled snapshot for the ranking. The recipe is shaped by how little a
city gives to learn from (a few hundred escalations a year, most households
calling once or twice): small trees with a large minimum leaf, randomised
splits and half the features per tree, and **monotone constraints** on the
evidence: more calls, more violence, threats or rule points never lower the
risk, and a longer quiet spell never raises it. Those constraints are what a
station would demand of a score ("it went up because they called again") and
they stop the model chasing noise in a few positives. Features that only
describe who lives there (household size, floating household) are left out:
they ranked large quiet households above small ones in a live dispute and
could only be explained as "流动人口户" (issue 10).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

from models.calibration import Calibration, fit_calibration

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.03,
    "num_leaves": 5,
    "min_data_in_leaf": 300,
    "feature_fraction": 0.5,
    "extra_trees": True,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    "monotone_constraints_method": "advanced",
    "max_bin": 63,
    "seed": 20240411,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbose": -1,
}
MAX_ROUNDS = 400
EARLY_STOPPING = 40


_LEFT_OUT = re.compile(r"^(members|floating_household)$")
"""Traits of who lives there that say nothing about a dispute (registry flags such as mental illness stay: they
weigh on how a dispute ends)."""
_RISES_WITH = re.compile(
    r"^(calls_|disputes_|points_|excitation|\w+_memory|\w+_share_365d|max_dispute_score|acceleration|"
    r"violent_cases|cases_|unresolved_visits|third_party_calls|distinct_callers)"
)
_FALLS_WITH = re.compile(r"^(days_since_last_|gap_last_disputes)")


def model_features(names: list[str]) -> list[str]:
    """The snapshot features the escalation model is trained on, in snapshot order."""
    return [n for n in names if not _LEFT_OUT.match(n)]


def monotone_constraints(names: list[str]) -> list[int]:
    """+1 where more evidence may only raise the risk, -1 where a longer quiet may only lower it, 0 elsewhere."""
    return [1 if _RISES_WITH.match(n) else -1 if _FALLS_WITH.match(n) else 0 for n in names]


@dataclass(frozen=True)
class Split:
    """Boolean masks over snapshot rows: what the served model was trained and tuned on, and the latest test period.

    ``test`` is the backtest's last fold (models/backtest.py), measured by a
    model trained before it; the served model has seen those dates too.
    """

    train: np.ndarray
    tune: np.ndarray
    test: np.ndarray
    boundaries: dict[str, str]


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
    merged = {**DEFAULT_PARAMS, "monotone_constraints": monotone_constraints(feature_names), **(params or {})}
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
    return finish_model(booster, booster.best_iteration, X_tune, y_tune, feature_names, merged)


def finish_model(
    booster: lgb.Booster,
    best_iteration: int,
    X_tune: np.ndarray,
    y_tune: np.ndarray,
    feature_names: list[str],
    params: dict[str, Any],
) -> EscalationModel:
    """Cut the booster at its best round and calibrate it on the tuning period (any trainer's last step)."""
    raw_tune = booster.predict(np.asarray(X_tune, np.float32), num_iteration=best_iteration)
    if best_iteration and best_iteration < booster.current_iteration():
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best_iteration))
    calibration = fit_calibration(raw_tune, np.asarray(y_tune))
    return EscalationModel(booster, list(feature_names), calibration, params | {"rounds": booster.current_iteration()})
