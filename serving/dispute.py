"""The dispute classifier as it runs from an ONNX bundle (no LightGBM at scoring time).

The bundle carries the ONNX graph, the thresholds, and the featurizer's state
in its provenance, so the features here are built exactly as in training and
the probabilities come from onnxruntime. Everything else (OOD score, category
choice, fusion with the rules) is the training code's own, reused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.dispute import CLASSES, DisputeModel, combine
from models.text_features import IncidentFeaturizer
from serving.scorer import OnnxScorer, ScorerError

MODEL_NAME = "dispute"
CATEGORY_MODEL_NAME = "dispute_category"


@dataclass
class BundleDisputeModel(DisputeModel):
    """A :class:`DisputeModel` whose probabilities come from the bundle's ONNX graph."""

    scorer: OnnxScorer | None = None
    provenance: dict[str, Any] | None = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """The 9 class probabilities from the gate's and the category model's ONNX graphs."""
        if self.scorer is None:
            raise ScorerError("BundleDisputeModel has no scorer; load it with load_dispute_model()")
        x32 = np.asarray(x, dtype=np.float32)
        gate = self.scorer.predict(MODEL_NAME, x32)[:, 1]
        return combine(gate, self.scorer.predict(CATEGORY_MODEL_NAME, x32))


def load_dispute_model(bundle_dir: str | os.PathLike[str]) -> BundleDisputeModel:
    """The dispute model of a bundle; a clear error when the bundle has none or lacks its featurizer."""
    scorer = OnnxScorer.from_bundle(bundle_dir)
    entry = scorer.entry(MODEL_NAME)
    state = scorer.manifest.provenance.get("featurizers", {}).get(MODEL_NAME)
    if state is None:
        raise ScorerError(f"bundle {bundle_dir} has no featurizer for {MODEL_NAME!r}; re-export it with yujing train")
    featurizer = IncidentFeaturizer.from_dict(state)
    try:
        category_entry = scorer.entry(CATEGORY_MODEL_NAME)
    except ScorerError as exc:
        raise ScorerError(
            f"bundle {bundle_dir} has no {CATEGORY_MODEL_NAME!r} model (made before the monotone gate); "
            "retrain with yujing train"
        ) from exc
    if list(featurizer.feature_names) != list(entry.feature_names) or list(entry.feature_names) != list(
        category_entry.feature_names
    ):
        raise ScorerError(f"bundle {bundle_dir}: featurizer and ONNX model disagree on the feature list; re-export it")
    return BundleDisputeModel(
        booster=None,  # type: ignore[arg-type]  # the ONNX graph answers instead
        featurizer=featurizer,
        threshold=float(entry.thresholds["dispute"]),
        ood_threshold=float(entry.thresholds["ood"]),
        classes=CLASSES,
        scorer=scorer,
        provenance=dict(scorer.manifest.provenance),
    )
