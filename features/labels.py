"""Training labels that come from the exported tables, never from the simulator's truth.

A real center has no ground truth for "was this call a dispute": it has the
category codes its call takers chose (纠纷警情 / 家庭纠纷 ...). Those codes are
the dispute classifier's labels: noisy (a dispute coded 打架斗殴 or 其他求助 is
a missed label; a taxi-fare quarrel coded 其他纠纷 a wrong one), and honest
about what the center can learn from. Evaluation measures the result against
truth where truth exists (the simulator) and says how noisy the codes were.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

L2_CATEGORY = {
    "家庭纠纷": "family",
    "家庭暴力": "family",
    "邻里纠纷": "neighbor",
    "经济纠纷": "debt",
    "土地纠纷": "land",
    "劳资纠纷": "labor",
    "医疗纠纷": "medical_school",
    "物业纠纷": "property",
    "其他纠纷": "other",
}
"""Level-2 police codes that mean a household or neighbourhood dispute, and its category."""


def dispute_labels_from_codes(incidents: pd.DataFrame) -> pd.DataFrame:
    """``is_dispute`` and ``category`` per incident from the police category codes.

    A call counts as a dispute when its level-2 code is one of
    :data:`L2_CATEGORY` (under 纠纷警情, or 家庭暴力 under 治安警情).
    """
    category = incidents["category_l2"].map(L2_CATEGORY)
    return pd.DataFrame(
        {"is_dispute": category.notna().to_numpy(), "category": category.to_numpy(dtype=object)},
        index=incidents.index,
    )


def label_noise(coded: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """How far the code-derived labels are from the truth (simulator only): for the docs and report."""
    y, c = truth["is_dispute"].to_numpy(bool), coded["is_dispute"].to_numpy(bool)
    both = y & c
    return {
        "coded_share": round(float(c.mean()), 4),
        "coded_precision": round(float(both.sum() / max(c.sum(), 1)), 4),
        "coded_recall": round(float(both.sum() / max(y.sum(), 1)), 4),
        "category_agreement": round(
            float(np.mean(coded["category"].to_numpy(object)[both] == truth["category"].to_numpy(object)[both])), 4
        ),
    }
