"""The strictly monotone calibration (centred isotonic) and the calibration error the reports carry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.calibration import Calibration, fit_calibration
from models.evaluation import calibration_curve, calibration_summary, expected_calibration_error


def _city_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores shaped like the escalation model's: ~1 % positives, miscalibrated, rounded (so ties exist).

    The true risk is logistic in a latent factor; the raw score sees it with
    noise and the wrong scale and offset, as a booster trained on another
    period does.
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-(1.3 * z - 5.5)))).astype(np.int32)
    raw = 1 / (1 + np.exp(-(z + rng.normal(scale=0.3, size=n) - 3.5)))
    return np.round(raw, 4), labels


@pytest.fixture(scope="module")
def tuned() -> dict[str, object]:
    scores, labels = _city_like(200_000, 11)
    tune, held = slice(0, 100_000), slice(100_000, None)
    return {
        "centred": fit_calibration(scores[tune], labels[tune]),
        "isotonic": fit_calibration(scores[tune], labels[tune], method="isotonic"),
        "tune_scores": scores[tune],
        "scores": scores[held],
        "labels": labels[held],
    }


def test_the_default_is_strictly_increasing_in_range_and_beyond(tuned: dict) -> None:
    cal, iso = tuned["centred"], tuned["isotonic"]
    assert cal.method == "centred_isotonic"
    scores = tuned["scores"]
    distinct = np.unique(scores)
    p = cal.apply(distinct)
    # distinct raw scores -> distinct probabilities (plain isotonic collapses them to a few dozen values)
    assert np.all(np.diff(p) > 0)
    assert len(np.unique(cal.apply(scores))) == len(distinct) > 1_000
    assert len(np.unique(iso.apply(scores))) < 100
    # beyond the tuning scores' range too: the top households are the ones that must not tie
    low, high = tuned["tune_scores"].min(), tuned["tune_scores"].max()
    grid = np.linspace(1e-6, 1 - 1e-6, 200_001)
    out = cal.apply(grid)
    assert grid[0] < low and grid[-1] > high
    assert np.all(np.diff(out) > 0)
    assert out.min() > 0.0 and out.max() < 1.0
    ends = cal.apply(np.array([0.0, 1.0]))  # raw 0 and 1: logits are clipped, the map stays inside (0, 1)
    assert 0.0 < ends[0] <= out[0] and out[-1] <= ends[1] < 1.0


def test_it_is_calibrated_on_held_out_rows_as_well_as_isotonic(tuned: dict) -> None:
    y, scores = tuned["labels"], tuned["scores"]
    p_cal, p_iso = tuned["centred"].apply(scores), tuned["isotonic"].apply(scores)
    ece_cal, ece_iso = expected_calibration_error(y, p_cal), expected_calibration_error(y, p_iso)
    base = y.mean()
    raw_ece = expected_calibration_error(y, scores)
    assert raw_ece > 5 * ece_cal  # the raw scores really were miscalibrated
    assert ece_cal <= ece_iso + 0.1 * base  # within a tenth of the base rate of isotonic's error
    brier_cal, brier_iso = np.mean((p_cal - y) ** 2), np.mean((p_iso - y) ** 2)
    assert brier_cal <= brier_iso * 1.01
    assert abs(p_cal.mean() - base) < 0.1 * base  # the city's expected count of escalations is right
    # isotonic says 0 % to some rows; a held-out positive among them makes its log-loss infinite, ours is finite
    assert np.isfinite(-np.log(p_cal[y == 1])).all()


def test_manifest_round_trip_and_old_isotonic_bundles_apply_as_before(tuned: dict) -> None:
    cal = tuned["centred"]
    plain = json.loads(json.dumps(cal.to_dict()))
    assert set(plain) == {"method", "x", "y", "coef"} and all(isinstance(v, float) for v in plain["x"] + plain["coef"])
    back = Calibration.from_dict(plain)
    assert back == cal
    probe = np.random.default_rng(4).random(5_000)
    assert np.array_equal(back.apply(probe), cal.apply(probe))
    # a manifest written before issue 10: isotonic breakpoints, applied by interpolation and clipping
    old = Calibration.from_dict({"method": "isotonic", "x": [0.1, 0.5], "y": [0.0, 0.4], "coef": []})
    np.testing.assert_allclose(old.apply(np.array([0.0, 0.3, 0.5, 0.9])), [0.0, 0.2, 0.4, 0.4])


def test_a_hand_edited_map_that_is_not_strictly_increasing_is_refused() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Calibration("centred_isotonic", x=(0.1, 0.1), y=(0.01, 0.02), coef=(1.0, 0.0))
    with pytest.raises(ValueError, match="strictly increasing"):
        Calibration("centred_isotonic", x=(0.1, 0.2), y=(0.02, 0.02), coef=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"inside \(0, 1\)"):
        Calibration("centred_isotonic", x=(0.1, 0.2), y=(0.0, 0.02), coef=(1.0, 0.0))
    with pytest.raises(ValueError, match="slope"):
        Calibration("centred_isotonic", x=(0.1,), y=(0.02,), coef=(0.0, 0.0))


def test_scores_without_signal_still_give_a_strictly_increasing_map() -> None:
    """No centres survive (one block at the base rate is dropped only if 0/1): the Platt tails carry the order."""
    rng = np.random.default_rng(5)
    scores, labels = rng.random(20_000), (rng.random(20_000) < 0.02).astype(int)
    cal = fit_calibration(scores, labels)
    out = cal.apply(np.linspace(0.01, 0.99, 1_001))
    assert np.all(np.diff(out) > 0)
    assert abs(out.mean() - 0.02) < 0.01


def test_ece_by_hand() -> None:
    # two quantile bins: [0.1, 0.1, 0.1, 0.1] observed 1/4, [0.5, 0.5, 0.5, 0.5] observed 1/4
    p = np.array([0.1] * 4 + [0.5] * 4)
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0])
    curve = calibration_curve(y, p, bins=2)
    assert curve == {"predicted": [0.1, 0.5], "observed": [0.25, 0.25], "n": [4.0, 4.0]}
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(0.5 * 0.15 + 0.5 * 0.25)
    # ties never split: ten bins asked, two distinct values, two bins, and the row order does not matter
    order = np.random.default_rng(0).permutation(8)
    assert expected_calibration_error(y[order], p[order], bins=10) == pytest.approx(0.2)
    perfect = np.repeat([0.0, 1.0], 50)
    assert expected_calibration_error(perfect.astype(int), perfect) == 0.0
    summary = calibration_summary(y, p, bins=2)
    assert summary["ece"] == pytest.approx(0.2) and sum(summary["reliability"]["n"]) == 8


def test_ece_refuses_what_it_cannot_measure() -> None:
    with pytest.raises(ValueError, match="NaN"):
        expected_calibration_error(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="differ in length"):
        expected_calibration_error(np.array([0, 1]), np.array([0.1]))


def test_a_few_high_scores_do_not_make_a_centre_of_their_own() -> None:
    """Two escalations among the three highest tuning scores must not promise 67 % to the next such household."""
    rng = np.random.default_rng(5)
    scores = rng.random(20_000) * 0.2
    labels = (rng.random(20_000) < 0.005 + 0.1 * scores).astype(int)
    scores = np.r_[scores, 0.5, 0.51, 0.52]
    labels = np.r_[labels, 1, 1, 0]
    plain = fit_calibration(scores, labels, method="isotonic")
    assert plain.apply(np.array([0.52]))[0] > 0.6  # what a block of three rows says
    cal = fit_calibration(scores, labels)
    assert max(cal.y) < 0.15
    top = scores >= np.quantile(scores, 0.99)
    assert cal.apply(np.array([0.52]))[0] < 0.5
    assert abs(cal.apply(scores[top]).mean() - labels[top].mean()) < 0.02  # the top percent as observed
