"""The two engines under test, as ``predict(texts) -> [(is_dispute, category)]`` functions.

* rules: :func:`models.rules.score_text` (the keyword-library baseline).
* fused: the rules' answer fused with a trained bundle's dispute model, exactly as
  the batch and online paths do it (:func:`models.classify.with_model`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .harness import Predict, Verdict


def rules_predict(texts: Sequence[str]) -> list[Verdict]:
    from models.rules import score_text

    out = []
    for t in texts:
        r = score_text(t)
        out.append((bool(r.is_dispute), r.category))
    return out


def rules_cues(text: str) -> list[str]:
    """The cue groups the rules find un-negated in ``text``."""
    from models.rules import score_text

    return list(score_text(text).cues)


def fused_predictor(bundle_dir: str | os.PathLike[str]) -> Predict:
    """``predict`` for the fused ``model+rules`` engine of a bundle folder."""
    from models.classify import rules_answer, with_model
    from models.rules import score_text
    from serving.dispute import load_dispute_model

    model = load_dispute_model(bundle_dir)

    def predict(texts: Sequence[str]) -> list[Verdict]:
        answers, records = [], []
        for i, t in enumerate(texts):
            r = score_text(t)
            answers.append(rules_answer(i, r, r.lexicon_version))
            records.append({"id": i, "narrative": t, "received_at": None})
        fused = with_model(answers, records, model)
        return [(bool(a["is_dispute"]), a["category"]) for a in fused]

    return predict
