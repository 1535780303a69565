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
    """The classify fields of one rule verdict (``structure``: why, in lexicon terms only)."""
    return {
        "id": record_id,
        "is_dispute": result.is_dispute,
        "dispute_score": round(result.dispute_score, 6),
        "category": result.category,
        "category_scores": {k: round(v, 6) for k, v in result.category_scores.items()},
        "cues": result.cues,
        "negated_cues": result.negated_cues,
        "matched_terms": result.matched_terms,
        "structure": result.structure,
        "engine": "rules",
        "lexicon_version": lexicon_version,
    }


def with_model(answers: list[dict[str, Any]], records: list[dict[str, Any]], model: Any) -> list[dict[str, Any]]:
    """The fused ``model+rules`` verdict for each answer; cues, matched terms and structure stay the rules'.

    The fusion rule is :func:`models.dispute.fuse_one` (the model only adds to the rules);
    ``source`` says which side decided.
    """
    predicted = model.predict([r["narrative"] for r in records], [r.get("received_at") for r in records])
    version = (getattr(model, "provenance", None) or {}).get("data_fingerprint")
    rows = predicted.to_dict("records")
    return [fused_answer(answer, row, version) for answer, row in zip(answers, rows, strict=True)]


def fused_answer(answer: dict[str, Any], predicted: dict[str, Any], model_version: str | None) -> dict[str, Any]:
    """One incident's ``model+rules`` answer from its rules answer and ``DisputeModel.predict_one`` output.

    Batch (:func:`with_model`) and online (serving/incident.py) both come through here,
    so a narrative gets the same answer by file and by HTTP.
    """
    from models.dispute import fuse_one

    is_dispute, score, category, source = fuse_one(
        bool(answer["is_dispute"]),
        float(answer["dispute_score"]),
        answer["category"],
        bool(answer["structure"]["strong"]),
        float(predicted["dispute_score"]),
        predicted["top_category"],
        bool(predicted["ood"]),
        float(predicted["category_confidence"]),
    )
    scores = (
        answer["category_scores"]
        if source == "rules"
        else {c: round(float(predicted[f"p_{c}"]), 6) for c in answer["category_scores"]}
    )
    return answer | {
        "is_dispute": bool(is_dispute),
        "dispute_score": round(float(score), 6),
        "category": category if is_dispute and isinstance(category, str) else None,
        "category_scores": scores,
        "engine": "model+rules",
        "source": source,
        "model_data_fingerprint": model_version,
    }
