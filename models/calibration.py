"""Probability calibration fitted on a tuning period, applied with numpy only.

Warning thresholds are set on calibrated probabilities ("30 % chance of
escalation within 90 days"), not on raw LightGBM scores whose scale moves
with every retrain. The calibration map is fitted on a tuning period the
model did not train on and is stored as plain numbers in the bundle manifest,
so serving applies it with ``np.interp`` and a logistic (numpy only) and
never imports scikit-learn.

* ``centred_isotonic`` (default): isotonic regression whose blocks are
  replaced by one point each, at the block's mean score and its observed rate,
  joined by straight lines ("centred isotonic regression", Oron & Flournoy
  2017); below the first and above the last point the map continues in logit
  space with the slope of a Platt fit on the same tuning rows. The map is
  *strictly* increasing everywhere, so distinct raw scores keep distinct
  probabilities and the ranking is the model's, not a handful of ties (plain
  isotonic left seven distinct probabilities on a 50k city, issue 10), while
  every block still averages to its observed rate, as isotonic does.
* ``isotonic``: a non-decreasing step-and-ramp map, exactly scikit-learn's
  ``IsotonicRegression(out_of_bounds="clip")`` prediction, stored as its
  breakpoints. Kept so bundles exported before issue 10 load and score as
  they did.
* ``platt``: ``sigmoid(a * logit(score) + b)``. Two parameters, so it is the
  safer choice when the tuning period has few positives; fitting on the
  logit makes ``a=1, b=0`` the identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("centred_isotonic", "isotonic", "platt")
DEFAULT_METHOD = "centred_isotonic"
_EPS = 1e-7  # keeps logit finite for scores of exactly 0 or 1
MIN_BLOCK_EVENTS = 20
"""Each centre of ``centred_isotonic`` rests on at least this many positives and this many negatives."""
_MIN_TAIL_SLOPE = 0.01
"""Floor of the tails' logit slope: a tuning period where the scores carry no signal must still give a
strictly increasing map (the ranking stays the model's order), never a flat or reversed one."""


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration map; every field is plain Python numbers so it survives JSON unchanged.

    ``isotonic``: ``x``/``y`` are the breakpoints (score -> probability, ``x``
    increasing). ``centred_isotonic``: ``x``/``y`` are the block centres (both
    strictly increasing, ``y`` strictly inside (0, 1); may be empty) and
    ``coef`` is the Platt fit ``(a, b)`` whose slope ``a`` (> 0) continues the
    map beyond the centres, and which is the whole map when there are no
    centres. ``platt``: ``coef`` is ``(a, b)``. The unused fields are empty.
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
            return
        if len(self.coef) != 2 or not all(np.isfinite(self.coef)):
            raise ValueError(f"{self.method} calibration needs coef = (a, b), both finite")
        if self.method == "centred_isotonic":
            if len(self.x) != len(self.y):
                raise ValueError("centred_isotonic calibration needs as many y values as x centres")
            if any(b <= a for a, b in zip(self.x, self.x[1:], strict=False)):
                raise ValueError("centred_isotonic x centres must be strictly increasing")
            if any(b <= a for a, b in zip(self.y, self.y[1:], strict=False)):
                raise ValueError("centred_isotonic y values must be strictly increasing")
            if self.y and (min(self.y) <= 0.0 or max(self.y) >= 1.0):
                raise ValueError("centred_isotonic y values must lie strictly inside (0, 1)")
            if self.coef[0] <= 0:
                raise ValueError("centred_isotonic tail slope coef[0] must be > 0 (the map must increase)")

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float64, same shape as ``scores``)."""
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(s, self.x, self.y)  # clips to y[0] / y[-1] outside [x[0], x[-1]]
        a, b = self.coef
        if self.method == "platt" or not self.x:
            return _sigmoid(a * _logit(s) + b)
        return _centred_apply(s, np.asarray(self.x), np.asarray(self.y), a)

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


def _centred_apply(s: np.ndarray, x: np.ndarray, y: np.ndarray, slope: float) -> np.ndarray:
    """Straight lines between the centres; beyond them ``logit p = logit y_end + slope * (logit s - logit x_end)``.

    The tails are log-odds turned into a probability with ``exp(-logaddexp(0, -z))``,
    which keeps tiny probabilities distinct where ``tanh`` would round them to 0.
    """
    out = np.interp(s, x, y)
    z = _logit(s)
    for mask, x_end, y_end in ((s < x[0], x[0], y[0]), (s > x[-1], x[-1], y[-1])):
        if mask.any():
            log_odds = _logit(np.array(y_end)) + slope * (z[mask] - _logit(np.array(x_end)))
            out[mask] = np.exp(-np.logaddexp(0.0, -log_odds))  # log-sigmoid, stable at both ends
    return out


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


def _centred_points(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic blocks as (mean score, observed rate) points, blocks with rate 0 or 1 left out.

    Adjacent blocks with equal fitted rates are one block (so the rates are
    strictly increasing), and tied scores always share a block (scikit-learn
    pools them), so the mean scores are strictly increasing too. A rate of 0
    (the lowest block with no positive) or 1 would make the map flat there or
    send its logit to infinity; those rows are left to the logit tails, which
    give them probabilities below (above) the next block's rate.
    """
    from sklearn.isotonic import IsotonicRegression  # training-side only; serving never fits

    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True).fit_transform(s, y)
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])
    starts = _supported(starts, y, MIN_BLOCK_EVENTS)
    counts = np.diff(np.r_[starts, len(s)])
    centres = np.add.reduceat(s, starts) / counts
    rates = np.add.reduceat(y, starts) / counts
    inside = (rates > 0.0) & (rates < 1.0)
    return centres[inside], rates[inside]


def _supported(starts: np.ndarray, y: np.ndarray, events: int) -> np.ndarray:
    """Block starts after pooling neighbours, from the top down, until each block holds ``events`` of each outcome.

    Isotonic regression fits the few highest scores of a tuning period with
    blocks of two or three rows (2 of 3 escalated: 67 %), and a centre on such
    a block promises a station a risk nobody measured. Pooling adjacent blocks
    of a monotone fit keeps the rates strictly increasing; what is left at the
    bottom joins the lowest full block.
    """
    ends = np.r_[starts[1:], len(y)]
    kept: list[int] = []
    positives = negatives = 0
    for start, end in zip(starts[::-1], ends[::-1], strict=True):
        block = y[start:end]
        positives += int(block.sum())
        negatives += len(block) - int(block.sum())
        if positives >= events and negatives >= events:
            kept.append(int(start))
            positives = negatives = 0
    if not kept:
        return starts[:1]
    kept[-1] = int(starts[0])  # the remainder below the lowest full block joins it
    return np.array(kept[::-1], dtype=np.int64)


def fit_calibration(scores: np.ndarray, labels: np.ndarray, method: str = DEFAULT_METHOD) -> Calibration:
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
    if method == "centred_isotonic":
        a, b = _fit_platt(_logit(s), y)
        x_c, y_c = _centred_points(s, y)
        return Calibration(
            "centred_isotonic",
            x=tuple(map(float, x_c)),
            y=tuple(map(float, y_c)),
            coef=(max(a, _MIN_TAIL_SLOPE), b),
        )
    raise ValueError(f"unknown calibration method {method!r}; expected one of {METHODS}")
