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
