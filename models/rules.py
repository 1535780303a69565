"""Per-incident rule scorer: dispute or not, which of the 8 types, which escalation cues.

This is the keyword-library baseline the learned models are compared with, and
the explanation a station sees next to a warning, so every number comes from a
formula a person can redo by hand from ``matched_terms``:

* **Category score.** For each category ``c``:
  ``score_c = 1 - prod(1 - w_t)`` over the *distinct* category terms ``t`` of
  ``c`` found in the content (weights capped at 0.999). One strong term
  (``家暴`` 0.95) decides alone; weak context words (``儿子`` 0.3) add up slowly.
* **Conflict cues.** A fight or a threat is itself evidence of a dispute even
  when no category word names one (``被人打了``): each of the cue groups in
  :data:`CONFLICT_CUES` found un-negated adds one pseudo-term of weight
  :data:`CONFLICT_CUE_WEIGHT` to ``other``.
* **Dispute.** ``dispute_score = max_c score_c``; ``is_dispute`` iff
  ``dispute_score >= DISPUTE_THRESHOLD`` (0.5): one term of weight >= 0.5, or
  two context words of ~0.3, or one conflict cue.
* **Category.** ``other`` is the residual type (琐事口角, consumer, traffic
  compensation, online). Among the 7 specific types the one with the most
  evidence wins (ties go to the earlier code in :data:`CATEGORIES`); it is the
  category when its score reaches :data:`CATEGORY_MIN` (0.25), else the
  category is ``other``. So ``与丈夫吵架`` is family (``丈夫`` 0.45 names the
  setting, ``吵架`` makes it a dispute) while ``在学校门口与人发生口角`` stays
  ``other`` (``学校`` 0.15 is too weak to choose a type).
* **Cues.** ``cues`` are the cue groups found at least once un-negated;
  ``negated_cues`` those cancelled by a negation and not found elsewhere
  (see :mod:`features.keywords` for the negation scope).

The 110 header (time, caller, phone, ID, location) is skipped: scoring reads
the content after the first ``报警：``/``报警称：``/``来电称：``/``报称：``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.keywords import KeywordMatcher, MatchSummary, cue_groups_of, get_matcher
from features.lexicon import CATEGORIES, CUE_GROUPS
from features.text import normalize, parse_header

DISPUTE_THRESHOLD = 0.5
"""``is_dispute`` iff the best category score reaches this."""
CATEGORY_MIN = 0.25
"""A specific category (not ``other``) is chosen only when its score reaches this."""
CONFLICT_CUES: tuple[str, ...] = ("violence", "threat")
CONFLICT_CUE_WEIGHT = 0.5
SPECIFIC_CATEGORIES: tuple[str, ...] = tuple(c for c in CATEGORIES if c != "other")

_OTHER = CATEGORIES.index("other")
_SPECIFIC_IDX = tuple(CATEGORIES.index(c) for c in SPECIFIC_CATEGORIES)
_CONFLICT_BITS = tuple(1 << CUE_GROUPS.index(g) for g in CONFLICT_CUES)
_CONFLICT_EVIDENCE = -math.log1p(-CONFLICT_CUE_WEIGHT)
# NFKC turns the full-width colon into ":", so both forms are accepted.
_HEADER_END = re.compile(r"报警称[:：]|来电称[:：]|报称[:：]|报警[:：]")


@dataclass(frozen=True)
class RuleResult:
    """The rule verdict for one incident text, with everything needed to explain it.

    ``matched_terms`` offsets index ``features.text.normalize(text)``.
    """

    is_dispute: bool
    dispute_score: float
    category: str | None
    category_scores: dict[str, float]
    cues: list[str]
    negations: list[str]
    negated_cues: list[str] = field(default_factory=list)
    matched_terms: list[dict[str, Any]] = field(default_factory=list)
    lexicon_version: str = ""


def content_start(norm: str) -> int:
    """Offset in normalised text where the narrative's content starts.

    The 110 header (time, caller, phone, ID) and the location are not
    evidence: an address with 小区 or 物业 in it says nothing about the dispute.
    ``parse_header`` returns the content as the tail of the normalised text;
    when it finds no header layout, everything after the first 报警/来电
    marker is content.
    """
    header = parse_header(norm)
    if header.has_header:
        return len(norm) - len(header.content)
    m = _HEADER_END.search(norm)
    return m.end() if m else 0


def _scores(summary: MatchSummary) -> tuple[list[float], float, str | None]:
    """Category scores, dispute score and category from a match summary (the whole formula)."""
    evidence = list(summary.category_evidence)
    for bit in _CONFLICT_BITS:
        if summary.cue_mask & bit:
            evidence[_OTHER] += _CONFLICT_EVIDENCE
    scores = [-math.expm1(-e) for e in evidence]
    dispute = max(scores)
    if dispute < DISPUTE_THRESHOLD:
        return scores, dispute, None
    best = max(_SPECIFIC_IDX, key=evidence.__getitem__)  # first maximum wins ties
    category = CATEGORIES[best] if scores[best] >= CATEGORY_MIN else "other"
    return scores, dispute, category


def score_text(text: str, matcher: KeywordMatcher | None = None) -> RuleResult:
    """Score one incident text (raw: it is normalised here)."""
    m = matcher if matcher is not None else get_matcher()
    norm = normalize(text)
    lo = content_start(norm)
    summary = m.summary_normalized(norm, lo)
    scores, dispute, category = _scores(summary)
    matches = m.match_normalized(norm, lo)
    negations: list[str] = []
    for x in matches:
        if x.kind == "negation" and x.term not in negations:
            negations.append(x.term)
    return RuleResult(
        is_dispute=category is not None,
        dispute_score=dispute,
        category=category,
        category_scores=dict(zip(CATEGORIES, scores, strict=True)),
        cues=sorted(cue_groups_of(summary.cue_mask)),
        negations=negations,
        negated_cues=sorted(cue_groups_of(summary.negated_mask & ~summary.cue_mask)),
        matched_terms=[
            {
                "term": x.term,
                "kind": x.kind,
                "group": x.group,
                "weight": x.weight,
                "start": x.start,
                "end": x.end,
                "negated": x.negated,
            }
            for x in matches
        ],
        lexicon_version=m.version,
    )


def score_many(texts: Sequence[str], matcher: KeywordMatcher | None = None) -> list[RuleResult]:
    """:func:`score_text` for each text, sharing one matcher."""
    m = matcher if matcher is not None else get_matcher()
    return [score_text(t, m) for t in texts]


def rule_feature_names() -> list[str]:
    """Column order of :func:`rule_features` (stable, so models can pin it)."""
    return (
        ["dispute_score"]
        + [f"cat_{c}" for c in CATEGORIES]
        + [f"cue_{g}" for g in CUE_GROUPS]
        + ["n_negation", "n_deescalation"]
    )


def rule_features(texts: Sequence[str], matcher: KeywordMatcher | None = None) -> pd.DataFrame:
    """One row per text: dispute score, category scores, cue flags, negation counts.

    Uses the matcher's summary fast path (no per-match objects), so it is the
    call to use over millions of incidents. Values equal those of
    :func:`score_text` for the same text. ``df.attrs["lexicon_version"]``
    records the library the features came from.
    """
    return _rule_table(texts, matcher)[0]


def _rule_table(texts: Sequence[str], matcher: KeywordMatcher | None) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`rule_features` and each text's category verdict (None: not a dispute).

    The verdicts are returned beside the frame, not in ``df.attrs``: pandas
    deep-copies ``attrs`` into every frame derived from it, which for a city's
    600k incidents cost seconds per copy.
    """
    m = matcher if matcher is not None else get_matcher()
    rows: list[tuple[float, ...]] = []
    verdicts: list[str | None] = []
    for text in texts:
        norm = normalize(text)
        summary = m.summary_normalized(norm, content_start(norm))
        scores, dispute, category = _scores(summary)
        verdicts.append(category)
        rows.append((dispute, *scores, summary.cue_mask, summary.n_negation, summary.n_deescalation))
    n_cat = len(CATEGORIES)
    arr = np.array(rows, dtype=np.float64).reshape(len(rows), n_cat + 4)
    masks = arr[:, n_cat + 1].astype(np.int64)
    flags = ((masks[:, None] >> np.arange(len(CUE_GROUPS))) & 1).astype(np.int8)
    columns: dict[str, Any] = {"dispute_score": arr[:, 0]}
    columns.update({f"cat_{c}": arr[:, 1 + j] for j, c in enumerate(CATEGORIES)})
    columns.update({f"cue_{g}": flags[:, j] for j, g in enumerate(CUE_GROUPS)})
    columns["n_negation"] = arr[:, n_cat + 2].astype(np.int32)
    columns["n_deescalation"] = arr[:, n_cat + 3].astype(np.int32)
    df = pd.DataFrame(columns, index=texts.index if isinstance(texts, pd.Series) else None)
    df.attrs["lexicon_version"] = m.version
    return df, np.array(verdicts, dtype=object)


def rule_verdicts(texts: Sequence[str], matcher: KeywordMatcher | None = None) -> pd.DataFrame:
    """:func:`rule_features` plus the verdict columns ``is_dispute`` and ``category``.

    The table the pipeline keeps per incident; models take only the
    :func:`rule_feature_names` columns from it.
    """
    df, category = _rule_table(texts, matcher)
    df["category"] = category
    df["is_dispute"] = pd.notna(category)
    return df
