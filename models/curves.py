"""The ``curves.json`` format (PR and calibration curves of a training run), checked before it is logged.

One home for the format that the training run writes, the registry logs and
the notebooks read (docs/registry.md#curvesjson); pure, no MLflow.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any


def _check_series(where: str, block: Any, keys: Iterable[str], *, unit: bool) -> int:
    if not isinstance(block, Mapping):
        raise ValueError(f"curves: {where} must be an object")
    lengths = set()
    for key in keys:
        values = block.get(key)
        if not isinstance(values, list) or not values:
            raise ValueError(f"curves: {where}.{key} must be a non-empty list of numbers")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"curves: {where}.{key} holds a value that is not a finite number")
            if unit and not 0.0 <= v <= 1.0:
                raise ValueError(f"curves: {where}.{key} holds a value outside [0, 1]")
        lengths.add(len(values))
    if len(lengths) != 1:
        raise ValueError(f"curves: {where} lists differ in length ({', '.join(keys)})")
    return lengths.pop()


def validate_curves(curves: Any) -> None:
    """Check the ``curves.json`` format (docs/registry.md) and raise ``ValueError`` naming the bad place.

    ``{task: {scorer: {"pr": {"precision": [...], "recall": [...]},
    "calibration": {"predicted": [...], "observed": [...]}}}}``; each scorer has at least one
    of ``pr`` and ``calibration``; optional ``pr.thresholds`` (any finite numbers) and
    ``calibration.n`` (rows per bin, as :func:`models.evaluation.calibration_curve` gives).
    Checked when logged so a bad file fails the training run, not the notebook weeks later.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves: top level must be a non-empty object of tasks (like 'escalation')")
    for task, scorers in curves.items():
        if not isinstance(scorers, Mapping) or not scorers:
            raise ValueError(f"curves: {task} must be a non-empty object of scorers (like 'model', 'rules')")
        for scorer, blocks in scorers.items():
            where = f"{task}.{scorer}"
            if not isinstance(blocks, Mapping) or not ({"pr", "calibration"} & set(blocks)):
                raise ValueError(f"curves: {where} needs 'pr' and/or 'calibration'")
            if "pr" in blocks:
                _check_series(f"{where}.pr", blocks["pr"], ("precision", "recall"), unit=True)
                if "thresholds" in blocks["pr"]:
                    _check_series(f"{where}.pr", blocks["pr"], ("thresholds",), unit=False)
            if "calibration" in blocks:
                n = _check_series(f"{where}.calibration", blocks["calibration"], ("predicted", "observed"), unit=True)
                if "n" in blocks["calibration"]:
                    counts = blocks["calibration"]["n"]
                    if not isinstance(counts, list) or len(counts) != n:
                        raise ValueError(f"curves: {where}.calibration.n must hold one row count per bin")
                    _check_series(f"{where}.calibration", blocks["calibration"], ("n",), unit=False)
                    if any(c < 0 for c in counts):
                        raise ValueError(f"curves: {where}.calibration.n holds a negative count")
