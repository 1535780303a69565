"""CheckList-style behavioural tests of the dispute engines (rules, and fused model+rules).

The targets below are the project's, written to the definition of a dispute
call (see ``cases.py``); they are not tuned to today's rules. Assertion
messages name frames and case ids only, never narrative text.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from .cases import AMBIGUOUS, CASES, CATEGORIES, DISPUTE, NOT_DISPUTE, Case
from .engines import fused_predictor, rules_cues, rules_predict
from .harness import Predict, Result, metrics
from .perturb import ESCALATION_CUES, dir_pairs, inv_bases, inv_cases

# ---------------------------------------------------------------------------------------------- targets
RULES_MIN_RECALL = 0.90
"""Share of call disputes the rules must flag."""
RULES_MAX_FPR = 0.05
"""Share of call non-disputes the rules may flag."""
RULES_MIN_FAMILY_RECALL = 0.95
"""Share of family disputes (DV above all) the rules must flag *as family*."""
RULES_MIN_MEDIATION_CATEGORY_ACCURACY = 0.80
"""Share of mediation case descriptions given the right category."""
MFT_MAX_FRAME_FAILURE = 0.25
"""No frame may fail on more than this share of its cases: a systematic blind spot, whatever the totals."""
FUSED_NOT_BELOW_RULES = ("recall", "family_recall", "category_accuracy")
"""The fused engine must be at least as good as the rules on each of these."""
FUSED_FPR_SLACK = 0.0
"""The fused engine's false-positive rate may exceed the rules' by at most this."""
INV_MAX_CHANGES = 0
"""Perturbations that say nothing about the call may change no verdict."""

# ---------------------------------------------------------------------------------------------- test-set size
MIN_TOTAL = 300
MIN_PER_CATEGORY = 12
MIN_FAMILY = 40
MIN_PER_NEGATIVE_FRAME = 8
MIN_NEGATIVES = 120
MIN_MEDIATION = 50
MIN_MEDIATION_TRAPS = 10
MIN_INV_BASES = 40
MIN_DIR_PAIRS = 20


def _failures(result: Result, frames: set[str] | None = None) -> str:
    lines = [f"{f}: {m}" for f, m in result.frame_failures().items() if frames is None or f in frames]
    return "\n  " + "\n  ".join(lines) if lines else " (none)"


def _frames(label: str, source: str = "call") -> set[str]:
    return {c.frame for c in CASES if c.label == label and c.source == source}


def _family_frames() -> set[str]:
    return {c.frame for c in CASES if c.family and c.source == "call"}


# ---------------------------------------------------------------------------------------------- the case set


def test_case_set_size_and_coverage() -> None:
    calls = [c for c in CASES if c.source == "call"]
    per_cat = Counter(c.category for c in calls if c.label == DISPUTE)
    per_neg_frame = Counter(c.frame for c in calls if c.label == NOT_DISPUTE)
    med = [c for c in CASES if c.source == "mediation"]
    assert len(CASES) >= MIN_TOTAL
    assert all(per_cat[k] >= MIN_PER_CATEGORY for k in CATEGORIES), per_cat
    assert per_cat["family"] >= MIN_FAMILY, per_cat
    assert all(n >= MIN_PER_NEGATIVE_FRAME for n in per_neg_frame.values()), per_neg_frame
    assert sum(per_neg_frame.values()) >= MIN_NEGATIVES
    assert len(med) >= MIN_MEDIATION
    assert {c.category for c in med} == set(CATEGORIES)
    assert sum(c.frame == "mediation_trap" and c.category != "family" for c in med) >= MIN_MEDIATION_TRAPS
    assert len(inv_bases()) >= MIN_INV_BASES
    kinds = Counter(p.kind for p in dir_pairs())
    assert kinds["calm"] >= MIN_DIR_PAIRS and kinds["weapon"] + kinds["threat"] >= MIN_DIR_PAIRS, kinds


def test_case_labels_are_consistent() -> None:
    for c in CASES:
        assert c.label in (DISPUTE, NOT_DISPUTE, AMBIGUOUS), c.id
        assert (c.category is not None) == (c.label == DISPUTE), c.id
        assert c.category is None or c.category in CATEGORIES, c.id
        assert c.source in ("call", "mediation"), c.id
        assert c.body and c.body in c.text, c.id
        if c.source == "mediation":
            assert 50 <= len(c.text) <= 200, (c.id, len(c.text))


def test_base_cases_carry_no_unmasked_phone_or_id() -> None:
    """Only masked contacts in the base set (full made-up numbers appear only in INV perturbations)."""
    full_number = re.compile(r"(?<!\d)(?:1\d{10}|\d{17}[\dXx])(?!\d)")
    leaks = [c.id for c in CASES if full_number.search(c.text)]
    assert not leaks, f"unmasked numbers in {leaks}"


# ---------------------------------------------------------------------------------------------- rules: MFT


@pytest.fixture(scope="module")
def rules_result() -> Result:
    return metrics(CASES, rules_predict)


def test_rules_dispute_recall(rules_result: Result) -> None:
    r = rules_result
    recall = r.recall
    assert recall >= RULES_MIN_RECALL, (
        f"rules recall {recall:.3f} < {RULES_MIN_RECALL} on {r.n['call_disputes']} call disputes; by frame:"
        + _failures(r, _frames(DISPUTE))
    )


def test_rules_false_positive_rate(rules_result: Result) -> None:
    r = rules_result
    fpr = r.fpr
    assert fpr <= RULES_MAX_FPR, (
        f"rules FPR {fpr:.3f} > {RULES_MAX_FPR} on {r.n['call_not_disputes']} non-disputes; false alarms by frame:"
        + _failures(r, _frames(NOT_DISPUTE))
    )


def test_rules_family_recall(rules_result: Result) -> None:
    r = rules_result
    family_frames = _family_frames()
    family_recall = r.family_recall
    assert family_recall >= RULES_MIN_FAMILY_RECALL, (
        f"rules family recall {family_recall:.3f} < {RULES_MIN_FAMILY_RECALL} on {r.n['call_family']} cases:"
        + _failures(r, family_frames)
    )


def test_rules_mediation_category_accuracy(rules_result: Result) -> None:
    r = rules_result
    accuracy = r.mediation_category_accuracy
    assert accuracy >= RULES_MIN_MEDIATION_CATEGORY_ACCURACY, (
        f"rules mediation category accuracy {accuracy:.3f} < "
        f"{RULES_MIN_MEDIATION_CATEGORY_ACCURACY}:" + _failures(r, _frames(DISPUTE, "mediation"))
    )


def test_rules_mft_no_frame_blind_spot(rules_result: Result) -> None:
    r = rules_result
    bad = {
        f: msg
        for f, msg in r.frame_failures().items()
        if len(r.errors_by_frame[f]) > MFT_MAX_FRAME_FAILURE * r.frame_sizes[f]
    }
    assert not bad, (
        f"{len(bad)} frames failing on more than {MFT_MAX_FRAME_FAILURE:.0%} of their cases:\n  "
        + "\n  ".join(f"{f}: {m}" for f, m in bad.items())
    )


# ---------------------------------------------------------------------------------------------- INV / DIR


def _inv_changes(predict: Predict) -> tuple[int, list[str]]:
    variants = inv_cases()
    by_id: dict[str, Case] = {c.id: c for c in CASES}
    bases = sorted({v.base_id for v in variants})
    base_verdict = dict(zip(bases, predict([by_id[b].text for b in bases]), strict=True))
    changed = []
    for v, got in zip(variants, predict([v.text for v in variants]), strict=True):
        want = base_verdict[v.base_id]
        if (bool(got[0]), got[1]) != (bool(want[0]), want[1]):
            changed.append(f"{v.id}: {want} -> {tuple(got)}")
    return len(variants), changed


def test_rules_inv_verdict_unchanged() -> None:
    n, changed = _inv_changes(rules_predict)
    assert len(changed) <= INV_MAX_CHANGES, f"{len(changed)}/{n} perturbations changed the verdict:\n  " + "\n  ".join(
        changed
    )


def test_rules_dir_calm_clause_adds_no_escalation() -> None:
    bad = []
    for p in (p for p in dir_pairs() if p.kind == "calm"):
        before, after = rules_cues(p.base), rules_cues(p.variant)
        added = sorted(set(after) & set(ESCALATION_CUES) - set(before))
        if added or len(after) > len(before):
            bad.append(f"{p.id}: cues {before} -> {after}")
    assert not bad, f"{len(bad)} calm clauses raised escalation cues:\n  " + "\n  ".join(bad)


def test_rules_dir_calm_clause_keeps_dispute() -> None:
    """A dispute that ended without blows, or was settled, is still a dispute call of the same type."""
    pairs = [p for p in dir_pairs() if p.kind == "calm"]
    before = rules_predict([p.base for p in pairs])
    after = rules_predict([p.variant for p in pairs])
    bad = [f"{p.id}: {b} -> {a}" for p, b, a in zip(pairs, before, after, strict=True) if b != a]
    assert not bad, f"{len(bad)}/{len(pairs)} calm clauses changed the verdict:\n  " + "\n  ".join(bad)


def test_rules_dir_weapon_and_threat_clauses_add_their_cue() -> None:
    bad = []
    for p in (p for p in dir_pairs() if p.kind != "calm"):
        after = rules_cues(p.variant)
        if p.kind not in after:
            bad.append(f"{p.id}: expected {p.kind!r}, cues {after}")
    assert not bad, f"{len(bad)} escalating clauses missed their cue:\n  " + "\n  ".join(bad)


# ---------------------------------------------------------------------------------------------- fused engine


@pytest.fixture(scope="module")
def fused_predict(trained: dict) -> Predict:
    return fused_predictor(trained["bundle"])


@pytest.fixture(scope="module")
def fused_result(fused_predict: Predict) -> Result:
    return metrics(CASES, fused_predict)


@pytest.mark.slow
@pytest.mark.xdist_group("trained")
@pytest.mark.parametrize("metric", FUSED_NOT_BELOW_RULES)
def test_fused_not_below_rules(metric: str, fused_result: Result, rules_result: Result) -> None:
    fused, rules = getattr(fused_result, metric), getattr(rules_result, metric)
    frames = _family_frames() if metric == "family_recall" else _frames(DISPUTE)
    assert fused >= rules, f"fused {metric} {fused:.3f} < rules {rules:.3f}; fused errors by frame:" + _failures(
        fused_result, frames
    )


@pytest.mark.slow
@pytest.mark.xdist_group("trained")
def test_fused_false_positive_rate_not_above_rules(fused_result: Result, rules_result: Result) -> None:
    fused, rules = fused_result.fpr, rules_result.fpr
    assert fused <= rules + FUSED_FPR_SLACK, (
        f"fused FPR {fused:.3f} > rules {rules:.3f} + {FUSED_FPR_SLACK}; fused false alarms:"
        + _failures(fused_result, _frames(NOT_DISPUTE))
    )


@pytest.mark.slow
@pytest.mark.xdist_group("trained")
def test_fused_inv_verdict_unchanged(fused_predict: Predict) -> None:
    n, changed = _inv_changes(fused_predict)
    assert len(changed) <= INV_MAX_CHANGES, f"{len(changed)}/{n} perturbations changed the verdict:\n  " + "\n  ".join(
        changed
    )
