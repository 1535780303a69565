"""The classify answer for incidents: the rules' verdict, or the fused ``model+rules`` one.

One definition shared by the batch command (``yujing classify``,
pipelines/batch.py) and the online endpoint (serving/app.py), so a narrative
gets the same answer by file and by HTTP. Nothing of the narrative is echoed
back: the answer holds verdicts, scores, cue groups and lexicon terms.
"""

from __future__ import annotations

from typing import Any

from models.rules import RuleResult, score_text


def classify_record(record: dict[str, Any], lexicon_version: str) -> dict[str, Any]:
    """The classify contract's answer for one incident from the rules alone."""
    return rules_answer(record["id"], score_text(record["narrative"]), lexicon_version)


def rules_answer(record_id: Any, result: RuleResult, lexicon_version: str) -> dict[str, Any]:
    """The classify fields of one rule verdict."""
    return {
        "id": record_id,
        "is_dispute": result.is_dispute,
        "dispute_score": round(result.dispute_score, 6),
        "category": result.category,
        "category_scores": {k: round(v, 6) for k, v in result.category_scores.items()},
        "cues": result.cues,
        "negated_cues": result.negated_cues,
        "matched_terms": result.matched_terms,
        "engine": "rules",
        "lexicon_version": lexicon_version,
    }


def with_model(answers: list[dict[str, Any]], records: list[dict[str, Any]], model: Any) -> list[dict[str, Any]]:
    """Replace the rules' verdict by the fused ``model+rules`` one; cues and matched terms stay the rules'.

    On text unlike the training calls (``ood``) the fusion keeps the rules'
    answer whole (models.dispute.fuse); ``source`` says which side answered.
    """
    import pandas as pd

    from models.dispute import fuse

    predicted = model.predict([r["narrative"] for r in records], [r.get("received_at") for r in records])
    rules = pd.DataFrame(
        {
            "is_dispute": [a["is_dispute"] for a in answers],
            "dispute_score": [a["dispute_score"] for a in answers],
            "category": pd.Series([a["category"] for a in answers], dtype=object),
        }
    )
    fused = fuse(predicted.reset_index(drop=True), rules)
    version = (model.provenance or {}).get("data_fingerprint")
    out = []
    for i, answer in enumerate(answers):
        from_model = fused["source"].iloc[i] == "model"
        category = fused["category"].iloc[i]
        scores = (
            {c: round(float(predicted[f"p_{c}"].iloc[i]), 6) for c in answer["category_scores"]}
            if from_model
            else answer["category_scores"]
        )
        out.append(
            answer
            | {
                "is_dispute": bool(fused["is_dispute"].iloc[i]),
                "dispute_score": round(float(fused["dispute_score"].iloc[i]), 6),
                "category": category if isinstance(category, str) else None,
                "category_scores": scores,
                "engine": "model+rules",
                "source": str(fused["source"].iloc[i]),
                "model_data_fingerprint": version,
            }
        )
    return out


def fused_answer(answer: dict[str, Any], predicted: dict[str, Any], model_version: str | None) -> dict[str, Any]:
    """:func:`with_model` for one incident without DataFrames (the online path; same rule as ``fuse``).

    ``predicted`` is ``DisputeModel.predict_one``. A test checks this gives
    what :func:`with_model` gives for the same narratives.
    """
    if predicted["ood"]:
        is_dispute, score, category, source = (
            answer["is_dispute"],
            answer["dispute_score"],
            answer["category"],
            "rules",
        )
        scores = answer["category_scores"]
    else:
        is_dispute, score, category, source = (
            bool(predicted["is_dispute"]),
            float(predicted["dispute_score"]),
            predicted["category"],
            "model",
        )
        scores = {c: round(float(predicted[f"p_{c}"]), 6) for c in answer["category_scores"]}
    return answer | {
        "is_dispute": bool(is_dispute),
        "dispute_score": round(float(score), 6),
        "category": category if is_dispute and isinstance(category, str) else None,
        "category_scores": scores,
        "engine": "model+rules",
        "source": source,
        "model_data_fingerprint": model_version,
    }
