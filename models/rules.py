"""Per-incident rule scorer: dispute or not, which of the 8 types, which escalation cues.

This is the keyword-library baseline the learned models are compared with, and
the explanation a station sees next to a warning, so every number comes from a
rule a person can redo by hand from ``matched_terms`` and ``structure``. The
definition it follows is docs/dispute-definition.md.

**Is it a dispute** (:func:`decide`) — structure first, not single words:

1. A **conflict frame** is needed: a disagreement (纠纷, 吵架, 协商不成), an act of one
   party against another (殴打, 威胁, 纠缠 — and every un-negated violence or threat
   cue), or a claim on another party (欠钱不还, 讨薪, 要求赔偿). ``未发生争执`` is no
   frame. A noise complaint alone (``某烧烤店噪音扰民``) has none: not a dispute.
2. **Exclusion frames** — stranger crime (theft, fraud, robbery, sexual assault),
   help requests, missing persons, business nuisance, crashes, fires, lost property,
   tips, consultations — make it not a dispute unless the relationship is explicit:
   for crimes only a family member or partner as the other side (``被前夫强奸``);
   for the others any named other side (``与服务员发生口角``), or a disagreement
   between the parties (``两车剐蹭，双方因赔偿发生争执``).
3. Otherwise a dispute needs a disagreement (its words name two sides: ``发生纠纷``),
   a **known other side** (``被丈夫殴打``, ``与邻居``, ``双方``, ``对方``), or a named
   subject (a category term of weight >= 0.5: ``有人上门讨债``). An act against the
   caller by nobody identified (``被人打了``, ``有人打架``) is not: that is a
   public-order call, whatever it turns into.

**Which category** — by who is in conflict with whom, and about what, weighed:
``evidence_c = sum(-ln(1 - w_t))`` over the distinct category terms of ``c``
(the library's weights), **plus** the weight of each relation word standing as the
other side (``被丈夫…`` adds family 0.8); weak terms (< 0.5) inside a relation
word that is *not* the other side count for nothing (``其女儿被人猥亵``,
``申请人的儿子驾车与…相撞``). ``score_c = 1 - exp(-evidence_c)``. Among the 7
specific types the one with the most evidence wins when its score reaches
:data:`CATEGORY_MIN` (ties go to the earlier code in :data:`CATEGORIES`), else the
category is ``other`` (the residual: 琐事口角, consumer, traffic compensation).

``dispute_score`` is the best category score, raised to :data:`DISPUTE_THRESHOLD`
when the structure says dispute and held below it when it says not, so
``is_dispute`` iff ``dispute_score >= DISPUTE_THRESHOLD`` still holds.

**Cues**: ``cues`` are the cue groups found at least once un-negated;
``negated_cues`` those cancelled by a negation and not found elsewhere (see
:mod:`features.keywords` for the negation scope).

The 110 header (time, caller, phone, ID, location) is skipped: scoring reads
the content after the first ``报警：``/``报警称：``/``来电称：``/``报称：``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from features.frames import Structure, StructureReader, get_reader
from features.keywords import KeywordMatcher, MatchSummary, cue_groups_of, get_matcher
from features.lexicon import CATEGORIES, CUE_GROUPS
from features.text import normalize, parse_header

DISPUTE_THRESHOLD = 0.5
"""``is_dispute`` iff ``dispute_score`` reaches this."""
CATEGORY_MIN = 0.25
"""A specific category (not ``other``) is chosen only when its score reaches this."""
SUBJECT_MIN = 0.5
"""A specific category scoring this much names the dispute's subject (``讨债``, ``草场``)."""
NAMED_DISPUTE_MIN = 0.9
"""A specific category scoring this much names a dispute by itself (``欠我钱``, ``医闹``, ``拆迁补偿``):
it stands for the conflict frame (exclusions still apply: ``噪音扰民`` from a KTV is not one)."""
CONFLICT_CUES: tuple[str, ...] = ("violence", "threat")
"""Un-negated cues of these groups are acts of conflict (``家暴``, ``扬言要杀``)."""
CRIME_EXCLUSIONS: tuple[str, ...] = ("excl_theft", "excl_fraud", "excl_robbery", "excl_sexual")
"""Exclusions that only a family member or partner as the other side overrides."""
FINAL_EXCLUSIONS: tuple[str, ...] = ("excl_consult",)
"""Exclusions nothing overrides: a consultation (``咨询家暴可以去哪里求助``) reports no conflict happening."""
SPECIFIC_CATEGORIES: tuple[str, ...] = tuple(c for c in CATEGORIES if c != "other")
LONG_TEXT = 150
"""Content longer than this is a story (a mediation register, a judgment), not one 110 call: an exclusion
frame in it (a theft, a crash, a consultation) may be a detail, so a named dispute or a named other side
overrides every exclusion there."""
BELOW_THRESHOLD = 0.49
"""``dispute_score`` ceiling when the structure says "not a dispute"."""

_OTHER = CATEGORIES.index("other")
_FAMILY = CATEGORIES.index("family")
_SPECIFIC_IDX = tuple(CATEGORIES.index(c) for c in SPECIFIC_CATEGORIES)
_CAT_INDEX = {c: i for i, c in enumerate(CATEGORIES)}
_CONFLICT_MASK = sum(1 << CUE_GROUPS.index(g) for g in CONFLICT_CUES)
_VIOLENCE_BIT = 1 << CUE_GROUPS.index("violence")
_SUBJECT_EVIDENCE = -math.log1p(-SUBJECT_MIN)
_NAMED_EVIDENCE = -math.log1p(-NAMED_DISPUTE_MIN)
# NFKC turns the full-width colon into ":", so both forms are accepted.
_HEADER_END = re.compile(r"报警称[:：]|来电称[:：]|报称[:：]|报警[:：]")

STRUCTURE_FEATURES: tuple[str, ...] = (
    "rule_dispute",
    "frame_conflict",
    "frame_bilateral",
    "frame_counterpart",
    "frame_counterpart_family",
    "frame_stranger",
    "frame_exclusion_crime",
    "frame_exclusion_other",
)
"""The structure behind the verdict, as model features (docs/dispute-model.md: monotone constraints)."""


@dataclass(frozen=True)
class RuleResult:
    """The rule verdict for one incident text, with everything needed to explain it.

    ``matched_terms`` offsets index ``features.text.normalize(text)``; ``structure``
    lists the frame terms, the relation words with the place they stand in, the
    exclusion frames and ``reason`` (the step of :func:`decide` that answered).
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
    structure: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, float] = field(default_factory=dict)
    """:data:`STRUCTURE_FEATURES` of this verdict (the model's view of the structure)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :func:`decide` concludes from one text's matches and structure."""

    scores: list[float]
    dispute_score: float
    category: str | None
    reason: str
    strong: bool
    features: tuple[float, ...]


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


def decide(summary: MatchSummary, structure: Structure, content_chars: int = 0) -> Verdict:
    """The whole rule: dispute or not, category and scores, from the matches and the structure.

    ``summary`` must come from ``summary_normalized(..., mute=muted_ranges(structure))``
    so the weak terms of relation words that are not the other side are already out;
    ``content_chars`` is the length of the content (see :data:`LONG_TEXT`).
    """
    evidence = list(summary.category_evidence)
    best_role: dict[int, float] = {}  # category -> strongest relation word standing as the other side
    for r in structure.counterparts:
        j = _CAT_INDEX[r.category]
        best_role[j] = max(best_role.get(j, 0.0), r.weight)
    for j, w in best_role.items():
        evidence[j] += -math.log1p(-min(w, 0.999))
    scores = [-math.expm1(-e) for e in evidence]
    best = max(_SPECIFIC_IDX, key=evidence.__getitem__)  # first maximum wins ties
    family_side = _FAMILY in best_role
    named_dispute = evidence[best] >= _NAMED_EVIDENCE
    conflict = structure.conflict or bool(summary.cue_mask & _CONFLICT_MASK) or named_dispute
    exclusions = structure.exclusions
    if content_chars > LONG_TEXT and (structure.named_counterparts or named_dispute):
        exclusions = []  # a story, not one call: a theft or a crash in it may be a detail
    is_dispute, reason = _dispute_or_not(
        structure, conflict, exclusions, family_side, evidence[best] >= _SUBJECT_EVIDENCE
    )
    # strong: a dispute with a named other side or a named dispute; "not a dispute" unless the only thing
    # missing was the other side (a conflict by nobody named, no stranger named). The model may never
    # overrule a strong verdict (models.dispute.fuse_one): it may not invent a conflict the text lacks.
    if is_dispute:
        strong = bool(structure.named_counterparts) or named_dispute
        dispute = max(max(scores), DISPUTE_THRESHOLD)
        category = _category(summary, structure, scores, evidence, best, family_side, content_chars)
    else:
        strong = reason != "no_other_side" or structure.named_stranger
        dispute, category = min(max(scores), BELOW_THRESHOLD), None
    features = (
        float(is_dispute),
        float(conflict),
        float(structure.bilateral),
        float(bool(structure.counterparts)),
        float(family_side),
        float(structure.stranger),
        float(any(g in CRIME_EXCLUSIONS for g in exclusions)),
        float(any(g not in CRIME_EXCLUSIONS for g in exclusions)),
    )
    return Verdict(scores, dispute, category, reason, strong, features)


def _dispute_or_not(
    structure: Structure, conflict: bool, exclusions: list[str], family_side: bool, subject: bool
) -> tuple[bool, str]:
    """Steps 1-3 of the module docstring: ``(is_dispute, reason)``."""
    crime = [g for g in exclusions if g in CRIME_EXCLUSIONS]
    final = [g for g in exclusions if g in FINAL_EXCLUSIONS]
    soft = [g for g in exclusions if g not in CRIME_EXCLUSIONS and g not in FINAL_EXCLUSIONS]
    counterparts, acts = structure.counterparts, _acts(structure)
    if not conflict:
        return False, "no_conflict"
    if final:
        return False, f"excluded:{final[0]}"
    if crime and not (family_side and not structure.named_stranger):  # 网上认识的男朋友: an online contact
        return False, f"excluded:{crime[0]}"
    if soft and not (
        structure.named_counterparts
        or ((structure.bilateral or structure.claim) and (counterparts or structure.mentions))
        or (structure.claim and (subject or acts))  # 工钱没给, 拉扯着要赔钱: two sides at it
        or (acts and counterparts and structure.mentions)  # 楼上装修…对方就动手了
    ):
        return False, f"excluded:{soft[0]}"
    if structure.named_counterparts:
        return True, "conflict+other_side"
    if structure.bilateral:
        return True, "disagreement"
    if structure.claim and (counterparts or not structure.stranger):
        return True, "claim"  # someone owes, refuses, occupies: a claim has two sides
    if subject:
        return True, "conflict+subject"
    return False, "no_other_side"


def _category(
    summary: MatchSummary,
    structure: Structure,
    scores: list[float],
    evidence: list[float],
    best: int,
    family_side: bool,
    content_chars: int,
) -> str:
    """Which of the 8: the best specific type, unless ``other`` outweighs it or a family member acted."""
    if family_side and (summary.cue_mask & _CONFLICT_MASK or _acts(structure)) and content_chars <= LONG_TEXT:
        return "family"  # a family member acting against the caller: family, whatever the money or place
    # ``other`` is the residual type, and also a subject of its own (交通事故, 消费纠纷) that can outweigh a
    # setting word of a specific type (医疗费 in a crash); a merchant, driver or seller as the other side too
    consumer = max((r.weight for r in structure.named_counterparts if r.category == "other"), default=0.0)
    other_subject = summary.other_subject - math.log1p(-min(consumer, 0.999))
    specific = scores[best] >= CATEGORY_MIN and evidence[best] >= other_subject
    return CATEGORIES[best] if specific else "other"


def _acts(structure: Structure) -> bool:
    return any(f.group == "act" and not f.negated for f in structure.frames)


def muted_ranges(structure: Structure) -> list[tuple[int, int]]:
    """Spans whose weak category terms do not count: relation words that are not the other side.

    A victim never counts (``其女儿被人猥亵``). A family word merely mentioned does not
    either — every story has a husband or a son in it (``申请人的儿子驾车与…相撞``) —
    while a neighbour merely mentioned still sets the scene (``邻居家的狗把孩子咬了``).
    """
    return [
        (r.start, r.end)
        for r in structure.roles
        if r.position == "victim" or (r.position == "mention" and r.family_word)
    ]


def _read(norm: str, matcher: KeywordMatcher, reader: StructureReader) -> tuple[int, MatchSummary, Structure]:
    """Content start, keyword summary and structure of one normalised text.

    A named other side hitting the caller (``被老公打了``) is a violence cue even though
    no library term matched (one-character verbs cannot be terms): it is added to the
    summary's cues here, so every path reports it alike.
    """
    lo = content_start(norm)
    structure = reader.read(norm, lo)
    summary = matcher.summary_normalized(norm, lo, muted_ranges(structure))
    if structure.violent_agent and not summary.cue_mask & _VIOLENCE_BIT:
        summary = replace(summary, cue_mask=summary.cue_mask | _VIOLENCE_BIT)
    return lo, summary, structure


def structure_dict(structure: Structure, verdict: Verdict) -> dict[str, Any]:
    """The structure of one verdict as plain data (lexicon terms only, never the text)."""
    return {
        "reason": verdict.reason,
        "strong": verdict.strong,
        "conflict_terms": structure.conflict_terms,
        "negated_conflict_terms": [f.term for f in structure.frames if f.negated],
        "parties": [
            {"term": r.term, "category": r.category, "position": r.position, "weight": r.weight}
            for r in structure.roles
        ],
        "exclusions": structure.exclusions,
        "stranger": structure.stranger,
    }


def _verdict(
    text: str, matcher: KeywordMatcher, reader: StructureReader
) -> tuple[str, int, MatchSummary, Structure, Verdict]:
    """Normalised text, content start, summary, structure and verdict: the one path both
    :func:`score_text` and :func:`rule_features` take, so their numbers are equal."""
    norm = normalize(text)
    lo, summary, structure = _read(norm, matcher, reader)
    return norm, lo, summary, structure, decide(summary, structure, len(norm) - lo)


def score_text(text: str, matcher: KeywordMatcher | None = None) -> RuleResult:
    """Score one incident text (raw: it is normalised here)."""
    m = matcher if matcher is not None else get_matcher()
    norm, lo, summary, structure, verdict = _verdict(text, m, get_reader(m.lexicon))
    matches = m.match_normalized(norm, lo)
    negations: list[str] = []
    for x in matches:
        if x.kind == "negation" and x.term not in negations:
            negations.append(x.term)
    return RuleResult(
        is_dispute=verdict.category is not None,
        dispute_score=verdict.dispute_score,
        category=verdict.category,
        category_scores=dict(zip(CATEGORIES, verdict.scores, strict=True)),
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
        structure=structure_dict(structure, verdict),
        flags=dict(zip(STRUCTURE_FEATURES, verdict.features, strict=True)),
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
        + list(STRUCTURE_FEATURES)
    )


def rule_features(texts: Sequence[str], matcher: KeywordMatcher | None = None) -> pd.DataFrame:
    """One row per text: dispute score, category scores, cue flags, negation counts.

    Uses the matcher's summary fast path (no per-match objects), so it is the
    call to use over millions of incidents. Values equal those of
    :func:`score_text` for the same text. ``df.attrs["lexicon_version"]``
    records the library the features came from.
    """
    return _rule_table(texts, matcher)[0]


def _rule_table(texts: Sequence[str], matcher: KeywordMatcher | None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """:func:`rule_features`, each text's category verdict (None: not a dispute) and whether it is strong.

    The verdicts are returned beside the frame, not in ``df.attrs``: pandas
    deep-copies ``attrs`` into every frame derived from it, which for a city's
    600k incidents cost seconds per copy.
    """
    m = matcher if matcher is not None else get_matcher()
    reader = get_reader(m.lexicon)
    rows: list[tuple[float, ...]] = []
    verdicts: list[str | None] = []
    strong: list[bool] = []
    for text in texts:
        _norm, _lo, summary, _structure, v = _verdict(text, m, reader)
        verdicts.append(v.category)
        strong.append(v.strong)
        rows.append(
            (v.dispute_score, *v.scores, summary.cue_mask, summary.n_negation, summary.n_deescalation, *v.features)
        )
    n_cat = len(CATEGORIES)
    n_struct = len(STRUCTURE_FEATURES)
    arr = np.array(rows, dtype=np.float64).reshape(len(rows), n_cat + 4 + n_struct)
    masks = arr[:, n_cat + 1].astype(np.int64)
    flags = ((masks[:, None] >> np.arange(len(CUE_GROUPS))) & 1).astype(np.int8)
    columns: dict[str, Any] = {"dispute_score": arr[:, 0]}
    columns.update({f"cat_{c}": arr[:, 1 + j] for j, c in enumerate(CATEGORIES)})
    columns.update({f"cue_{g}": flags[:, j] for j, g in enumerate(CUE_GROUPS)})
    columns["n_negation"] = arr[:, n_cat + 2].astype(np.int32)
    columns["n_deescalation"] = arr[:, n_cat + 3].astype(np.int32)
    columns.update({name: arr[:, n_cat + 4 + j].astype(np.int8) for j, name in enumerate(STRUCTURE_FEATURES)})
    df = pd.DataFrame(columns, index=texts.index if isinstance(texts, pd.Series) else None)
    df.attrs["lexicon_version"] = m.version
    return df, np.array(verdicts, dtype=object), np.array(strong, dtype=bool)


def rule_verdicts(texts: Sequence[str], matcher: KeywordMatcher | None = None) -> pd.DataFrame:
    """:func:`rule_features` plus the verdict columns ``is_dispute``, ``category`` and ``strong``.

    The table the pipeline keeps per incident; models take only the
    :func:`rule_feature_names` columns from it.
    """
    df, category, strong = _rule_table(texts, matcher)
    df["category"] = category
    df["is_dispute"] = pd.notna(category)
    df["strong"] = strong
    return df
