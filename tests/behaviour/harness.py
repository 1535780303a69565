"""Metrics of an engine on the behavioural cases, and the Markdown table for the docs.

An engine is a ``predict(texts) -> list[(is_dispute, category | None)]``.
Pure functions: nothing here loads a model or reads a file.

Definitions (``ambiguous`` cases are left out of every number):

* ``recall``: share of call disputes predicted as disputes.
* ``fpr``: share of call non-disputes predicted as disputes.
* ``family_recall``: share of call ``family`` disputes predicted as disputes of
  category ``family``.
* ``category_accuracy``: share of call disputes predicted as disputes *with
  the right category* (a missed dispute counts as wrong, so an engine cannot
  gain by detecting fewer).
* ``mediation_recall`` / ``mediation_category_accuracy``: the same two on the
  mediation case descriptions (all disputes).
* ``fp_by_frame``: false positives per non-dispute frame; ``errors_by_frame``:
  the ids each frame gets wrong, with what went wrong (``fp``, ``miss``, or
  ``->cat`` for a wrong category).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .cases import AMBIGUOUS, DISPUTE, NOT_DISPUTE, Case

Verdict = tuple[bool, str | None]
Predict = Callable[[list[str]], Sequence[Verdict]]

METRICS: tuple[tuple[str, str], ...] = (
    ("recall", "dispute recall (calls)"),
    ("fpr", "false-positive rate (calls)"),
    ("family_recall", "family recall (calls)"),
    ("category_accuracy", "category accuracy (call disputes)"),
    ("mediation_recall", "dispute recall (mediation)"),
    ("mediation_category_accuracy", "category accuracy (mediation)"),
)


@dataclass
class Result:
    n: dict[str, int]
    recall: float
    fpr: float
    family_recall: float
    category_accuracy: float
    mediation_recall: float
    mediation_category_accuracy: float
    fp_by_frame: dict[str, int] = field(default_factory=dict)
    errors_by_frame: dict[str, list[str]] = field(default_factory=dict)
    frame_sizes: dict[str, int] = field(default_factory=dict)

    def frame_failures(self) -> dict[str, str]:
        """``frame -> "k/n wrong: id kind, ..."``: the message text of an MFT failure (ids only)."""
        return {
            f: f"{len(errs)}/{self.frame_sizes[f]} wrong: " + ", ".join(errs)
            for f, errs in sorted(self.errors_by_frame.items())
        }


def _share(hits: int, total: int) -> float:
    return hits / total if total else float("nan")


def error_kind(case: Case, verdict: Verdict) -> str | None:
    """What the engine got wrong on one case (``None`` when right)."""
    is_dispute, category = verdict
    if case.label == NOT_DISPUTE:
        return "fp" if is_dispute else None
    if not is_dispute:
        return "miss"
    return None if category == case.category else f"->{category}"


def evaluate(cases: Sequence[Case], verdicts: Sequence[Verdict]) -> Result:
    """:class:`Result` from cases and the verdicts already computed for them (same order)."""
    if len(cases) != len(verdicts):
        raise ValueError(f"{len(cases)} cases but {len(verdicts)} verdicts")
    pairs = [(c, (bool(v[0]), v[1])) for c, v in zip(cases, verdicts, strict=True) if c.label != AMBIGUOUS]
    calls = [(c, v) for c, v in pairs if c.source == "call"]
    med = [(c, v) for c, v in pairs if c.source == "mediation"]
    disputes = [(c, v) for c, v in calls if c.label == DISPUTE]
    negatives = [(c, v) for c, v in calls if c.label == NOT_DISPUTE]
    family = [(c, v) for c, v in disputes if c.family]
    med_disputes = [(c, v) for c, v in med if c.label == DISPUTE]

    errors: dict[str, list[str]] = {}
    for c, v in pairs:
        kind = error_kind(c, v)
        if kind is not None:
            errors.setdefault(c.frame, []).append(f"{c.id} {kind}")
    fp = Counter(c.frame for c, v in negatives if v[0])
    return Result(
        n={
            "call_disputes": len(disputes),
            "call_not_disputes": len(negatives),
            "call_family": len(family),
            "mediation": len(med_disputes),
        },
        recall=_share(sum(v[0] for _, v in disputes), len(disputes)),
        fpr=_share(sum(v[0] for _, v in negatives), len(negatives)),
        family_recall=_share(sum(v[0] and v[1] == "family" for _, v in family), len(family)),
        category_accuracy=_share(sum(v[0] and v[1] == c.category for c, v in disputes), len(disputes)),
        mediation_recall=_share(sum(v[0] for _, v in med_disputes), len(med_disputes)),
        mediation_category_accuracy=_share(
            sum(v[0] and v[1] == c.category for c, v in med_disputes), len(med_disputes)
        ),
        fp_by_frame={f: fp.get(f, 0) for f in sorted({c.frame for c, _ in negatives})},
        errors_by_frame=errors,
        frame_sizes=dict(Counter(c.frame for c, _ in pairs)),
    )


def metrics(cases: Sequence[Case], predict: Predict) -> Result:
    """Run ``predict`` on the non-ambiguous cases and measure it."""
    kept = [c for c in cases if c.label != AMBIGUOUS]
    return evaluate(kept, list(predict([c.text for c in kept])))


def _fmt(x: float) -> str:
    return "n/a" if x != x else f"{x:.3f}"


def table(results_by_engine: Mapping[str, Result]) -> str:
    """Markdown: the headline metrics, engines side by side, then false positives per frame."""
    engines = list(results_by_engine)
    first = next(iter(results_by_engine.values()))
    lines = [
        "| metric | " + " | ".join(engines) + " |",
        "|---|" + "---:|" * len(engines),
    ]
    for key, label in METRICS:
        lines.append(f"| {label} | " + " | ".join(_fmt(getattr(r, key)) for r in results_by_engine.values()) + " |")
    n = first.n
    lines.append("")
    lines.append(
        f"Cases: {n['call_disputes']} call disputes ({n['call_family']} family), "
        f"{n['call_not_disputes']} call non-disputes, {n['mediation']} mediation descriptions; ambiguous excluded."
    )
    lines += ["", "| frame | n | " + " | ".join(engines) + " |", "|---|---:|" + "---:|" * len(engines)]
    frames = sorted(first.frame_sizes)
    for f in frames:
        wrong = [len(r.errors_by_frame.get(f, [])) for r in results_by_engine.values()]
        lines.append(f"| {f} | {first.frame_sizes[f]} | " + " | ".join(str(w) for w in wrong) + " |")
    lines.append("")
    lines.append("Frame rows count the cases each engine gets wrong (non-disputes: false alarms; disputes: misses or")
    lines.append("wrong category).")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - the entry point lives in report.py
    from .report import main

    main()
