"""Probability calibration fitted on a tuning period, applied with numpy only.

Warning thresholds are set on calibrated probabilities ("30 % chance of
escalation within 90 days"), not on raw LightGBM scores whose scale moves
with every retrain. The calibration map is fitted on a tuning period the
model did not train on and is stored as plain numbers in the bundle manifest,
so serving applies it with ``np.interp`` (isotonic) or one sigmoid (Platt)
and never imports scikit-learn.

* ``isotonic`` (default): a non-decreasing step-and-ramp map, exactly
  scikit-learn's ``IsotonicRegression(out_of_bounds="clip")`` prediction,
  stored as its breakpoints. Needs a few hundred positives to be stable.
* ``platt``: ``sigmoid(a * logit(score) + b)``. Two parameters, so it is the
  safer choice when the tuning period has few positives; fitting on the
  logit makes ``a=1, b=0`` the identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("isotonic", "platt")
_EPS = 1e-7  # keeps logit finite for scores of exactly 0 or 1


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration map; every field is plain Python numbers so it survives JSON unchanged.

    ``x``/``y`` are the isotonic breakpoints (score -> probability, ``x``
    increasing); ``coef`` is ``(a, b)`` for Platt. The unused fields are empty.
    """

    method: str
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    coef: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; expected one of {METHODS}")
        if self.method == "isotonic":
            if len(self.x) == 0 or len(self.x) != len(self.y):
                raise ValueError("isotonic calibration needs as many y values as x thresholds, at least one")
            if any(b < a for a, b in zip(self.x, self.x[1:], strict=False)):
                raise ValueError("isotonic x thresholds must be increasing")
            if any(b < a for a, b in zip(self.y, self.y[1:], strict=False)):
                raise ValueError("isotonic y values must be non-decreasing")
            if min(self.y) < 0.0 or max(self.y) > 1.0:
                raise ValueError("isotonic y values must lie in [0, 1]")
        elif len(self.coef) != 2 or not all(np.isfinite(self.coef)):
            raise ValueError("platt calibration needs coef = (a, b), both finite")

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float64, same shape as ``scores``)."""
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(s, self.x, self.y)  # clips to y[0] / y[-1] outside [x[0], x[-1]]
        a, b = self.coef
        return _sigmoid(a * _logit(s) + b)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the bundle manifest."""
        return {"method": self.method, "x": list(self.x), "y": list(self.y), "coef": list(self.coef)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of ``to_dict``; validates, so a hand-edited manifest fails here and not at scoring."""
        try:
            return cls(
                method=str(data["method"]),
                x=tuple(float(v) for v in data.get("x", ())),
                y=tuple(float(v) for v in data.get("y", ())),
                coef=tuple(float(v) for v in data.get("coef", ())),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a calibration dict: {exc}") from exc


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def _fit_platt(z: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Logistic regression of ``y`` on ``z`` by Newton's method (two parameters, a tiny ridge for separable data)."""
    a, b = 1.0, 0.0
    design = np.column_stack([z, np.ones_like(z)])
    ridge = 1e-6 * np.eye(2)
    for _ in range(iterations):
        p = _sigmoid(a * z + b)
        grad = design.T @ (p - y) + ridge @ np.array([a - 1.0, b])
        w = p * (1.0 - p)
        hess = design.T @ (design * w[:, None]) + ridge
        step = np.linalg.solve(hess, grad)
        a, b = a - step[0], b - step[1]
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(a), float(b)


def fit_calibration(scores: np.ndarray, labels: np.ndarray, method: str = "isotonic") -> Calibration:
    """Fit a calibration map on a tuning period's raw scores and 0/1 outcomes."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if len(s) != len(y):
        raise ValueError(f"scores ({len(s)}) and labels ({len(y)}) differ in length")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinity")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    y = y.astype(np.float64)
    if y.min() == y.max():
        raise ValueError("labels hold one class only: calibration needs positives and negatives")
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression  # training-side only; serving never fits

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(s, y)
        return Calibration("isotonic", x=tuple(map(float, iso.X_thresholds_)), y=tuple(map(float, iso.y_thresholds_)))
    if method == "platt":
        return Calibration("platt", coef=_fit_platt(_logit(s), y))
    raise ValueError(f"unknown calibration method {method!r}; expected one of {METHODS}")
