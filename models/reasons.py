"""Reasons for a household's escalation score, in short Chinese phrases.

A warning sends police to a family's door, so every score carries the few
factors that raised it most, taken from LightGBM's own per-feature
contributions (``pred_contrib``) at training time, and at serving time from
the ONNX model itself by occlusion (:func:`occlusion_contributions`): never a
separate explainer that could disagree with the model. Each feature has a phrase template filled with the
household's value, e.g. ``近90天纠纷报警6次`` or ``出现持械表述``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import numpy as np

from features.schema import CATEGORY_NAMES
from models.warning import CUE_PHRASES

_FIXED = {
    "acceleration": "报警频次上升",
    "days_since_last_dispute": "距上次纠纷报警{v:.0f}天",
    "days_since_first_dispute": "纠纷已持续{v:.0f}天",
    "days_since_last_call": "距上次报警{v:.0f}天",
    "max_dispute_score_90d": "近90天纠纷特征明显",
    "deescalation_90d": "近90天已调解{v:.0f}次",
    "third_party_calls_365d": "近一年他人代为报警{v:.0f}次",
    "distinct_callers_365d": "近一年{v:.0f}名不同报警人",
    "members": "家庭成员{v:.0f}人",
    "mental_illness_members": "家庭成员在严重精神障碍管理名单",
    "community_correction_members": "家庭成员在社区矫正",
    "prior_record_members": "家庭成员有前科",
    "unemployed_members": "家庭成员无业{v:.0f}人",
    "floating_household": "流动人口户",
    "cases_365d": "近一年涉案{v:.0f}起",
    "violent_cases_365d": "近一年涉暴力案件{v:.0f}起",
    "violent_cases_ever": "曾涉暴力案件{v:.0f}起",
    "suspect_cases_ever": "家庭成员曾为案件嫌疑人",
    "mediations_90d": "近90天调解{v:.0f}次",
    "unresolved_visits_90d": "近90天走访调解未化解{v:.0f}次",
    "screening_found_365d": "排查发现矛盾{v:.0f}次",
    "visits_365d": "近一年走访{v:.0f}次",
    "relation_ex_partner": "涉前任(前夫/前妻)关系",
    "relation_partner": "涉同居关系",
    "relation_neighbor": "登记有邻里关系",
    "relation_creditor_debtor": "涉债权债务关系",
    "relation_employer_worker": "涉劳资关系",
    "relation_land_neighbor": "涉地界相邻关系",
    "excitation": "近期纠纷报警密集",
    "days_since_last_violence": "距上次动手/殴打报警{v:.0f}天",
    "gap_last_disputes": "最近两次纠纷报警间隔{v:.0f}天",
}
_MEMORY = re.compile(r"^(\w+)_memory$")
_SHARE = re.compile(r"^(\w+)_share_365d$")
_WINDOW = re.compile(r"^(calls|disputes)_(\d+)d$")
_CAT = re.compile(r"^cat_(\w+)_(\d+)d$")
_CUE = re.compile(r"^cue_(\w+)_(\d+)d$")
_POINTS = re.compile(r"^points_(\w+)$")


def phrase(feature: str, value: float) -> str:
    """The phrase for one feature at one value."""
    if m := _WINDOW.match(feature):
        kind = "报警" if m[1] == "calls" else "纠纷报警"
        return f"近{m[2]}天{kind}{value:.0f}次"
    if m := _CAT.match(feature):
        return f"近{m[2]}天{CATEGORY_NAMES.get(m[1], m[1])}纠纷{value:.0f}次"
    if m := _CUE.match(feature):
        return f"近{m[2]}天出现{CUE_PHRASES.get(m[1], m[1])}表述{value:.0f}次"
    if m := _POINTS.match(feature):
        return f"积分预警({m[1]}){value:.0f}分"
    if m := _MEMORY.match(feature):
        return f"近期出现{CUE_PHRASES.get(m[1], m[1])}表述"
    if m := _SHARE.match(feature):
        return f"近一年纠纷报警中{value:.0%}出现{CUE_PHRASES.get(m[1], m[1])}表述"
    template = _FIXED.get(feature)
    return template.format(v=value) if template else f"{feature}={value:g}"


STATIC_TRAITS = re.compile(r"^(members|floating_household|\w+_members|relation_\w+)$")
"""Who a household is rather than what happened: never enough on its own for a station to knock."""


def is_static(feature: str) -> bool:
    """True for a registry trait (家庭成员N人, 流动人口户, a member on a list, a registered relation)."""
    return bool(STATIC_TRAITS.match(feature))


def top_reasons(contributions: np.ndarray, X: np.ndarray, feature_names: list[str], n: int = 3) -> list[list[str]]:
    """The factors that raised each row's score (positive contributions only), events before traits.

    ``contributions`` is ``booster.predict(X, pred_contrib=True)``: one column per
    feature plus the bias last. A factor that lowered the score is never given as
    a reason for a warning. Dynamic factors (calls, cues, cases, visits, points)
    come first, by contribution, then static traits (:func:`is_static`), up to
    ``n`` in all: a station acts on what happened, and a trait is only context.
    """
    contrib = np.asarray(contributions)[:, : len(feature_names)].copy()
    # "0 calls" is not a reason to visit a family, even when its absence moved the score: only
    # features with a value (or the "days since" kind, where any value speaks) can be given.
    speaks = np.array([name.startswith(_QUIET_IS_LONG) or name == "acceleration" for name in feature_names])
    contrib[(np.asarray(X) == 0) & ~speaks] = 0.0
    static = np.array([is_static(name) for name in feature_names])
    out: list[list[str]] = []
    for row in range(contrib.shape[0]):
        ranked = np.argsort(-contrib[row], kind="stable")
        positive = [j for j in ranked if contrib[row, j] > 0]
        chosen = ([j for j in positive if not static[j]] + [j for j in positive if static[j]])[:n]
        out.append([phrase(feature_names[j], float(X[row, j])) for j in chosen])
    return out


def call_phrase(
    when: str, is_dispute: bool, category: str | None, cues: Iterable[str], negated: Iterable[str] = ()
) -> str:
    """One recent call as a station reads it: date, category, cues found, cues negated.

    E.g. ``2024-03-28 婚姻家庭纠纷：动手/殴打、分居离婚；否定：持械``. Built from
    the rules' output of the call (models/rules.py), the same in batch and online.
    """
    kind = f"{CATEGORY_NAMES.get(category, category)}纠纷" if is_dispute and category else "非纠纷报警"
    found = "、".join(CUE_PHRASES.get(g, g) for g in sorted(cues, key=_cue_order))
    denied = "、".join(CUE_PHRASES.get(g, g) for g in sorted(negated, key=_cue_order))
    text = f"{when} {kind}"
    if found:
        text += f"：{found}"
    if denied:
        text += f"；否定：{denied}"
    return text


def _cue_order(group: str) -> int:
    order = list(CUE_PHRASES)
    return order.index(group) if group in order else len(order)


QUIET_DAYS = 730.0
"""What a ``days_since_*`` feature reads for a household with no such event (features.snapshots.MAX_DAYS)."""
_QUIET_IS_LONG = ("days_since", "gap_last_disputes")
"""Features whose quiet value is :data:`QUIET_DAYS`, not 0 (any value they take speaks)."""
_NEVER_A_REASON = frozenset({"members"})


def quiet_reference(feature_names: list[str]) -> np.ndarray:
    """The feature values of a household with nothing on record: the baseline a reason is measured from.

    Counts are 0, ``days_since_*`` are the cap, ``acceleration`` is 1 (its
    value with no calls). NaN marks a feature never given as a reason.
    """
    ref = np.zeros(len(feature_names))
    for j, name in enumerate(feature_names):
        if name.startswith(_QUIET_IS_LONG):
            ref[j] = QUIET_DAYS
        elif name == "acceleration":
            ref[j] = 1.0
        elif name in _NEVER_A_REASON:
            ref[j] = np.nan
    return ref


OCCLUSION_BLOCK = 65_536
"""Model rows scored per block by :func:`occlusion_contributions` (a row and its variants stay in one block)."""


def occlusion_contributions(
    predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, feature_names: list[str]
) -> np.ndarray:
    """Per-feature contributions to the log-odds, measured on the served model itself.

    For each row and feature: log-odds of the row minus log-odds of the row
    with that feature set to its quiet value (:func:`quiet_reference`), i.e.
    how much this fact raised the score. ``predict`` maps float32 rows to raw
    probabilities (the ONNX scorer), so reasons come from the very model that
    ranked, with no LightGBM at serving time. Cost: one batch of
    ``rows * (features + 1)`` predictions. Output has the shape of
    ``pred_contrib`` (a last column, zero, for the bias) so :func:`top_reasons`
    takes either.
    """
    X = np.asarray(X, dtype=np.float32)
    n, k = X.shape
    ref = quiet_reference(feature_names)
    # A feature already at its quiet value in every row contributes nothing: no need to score it.
    movable = ~np.isnan(ref) & np.any(ref.astype(np.float32) != X, axis=0)
    cols = np.flatnonzero(movable)
    if n == 0:
        return np.zeros((0, k + 1))
    # Rows go through in blocks of ~64k variants, in one reused buffer: all of a city's 6k warnings at once
    # were a 250 MB array, and on a VM fresh pages cost more than the predictions (each row's are its own).
    per_block = max(1, OCCLUSION_BLOCK // (len(cols) + 1))
    buffer = np.empty((min(n, per_block), len(cols) + 1, k), dtype=np.float32)
    out = np.zeros((n, k + 1))
    for start in range(0, n, per_block):
        rows = X[start : start + per_block]
        variants = buffer[: len(rows)]  # [rows, 1 + movable, k]
        variants[:] = rows[:, None, :]
        for i, j in enumerate(cols, start=1):
            variants[:, i, j] = ref[j]
        p = np.clip(np.asarray(predict(variants.reshape(-1, k)), np.float64), 1e-7, 1 - 1e-7)
        logit = np.log(p / (1 - p)).reshape(len(rows), len(cols) + 1)
        out[start : start + len(rows), cols] = logit[:, :1] - logit[:, 1:]
    return out
