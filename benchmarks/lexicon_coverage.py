"""Coverage of the keyword library on real legal text (the tables in docs/lexicon.md).

Run from the repository root::

    .venv/bin/python benchmarks/lexicon_coverage.py            # reads ../shared/realtext
    .venv/bin/python benchmarks/lexicon_coverage.py --realtext DIR

Real text is evaluation material only: it is read from outside the repository
(``$YUJING_REALTEXT`` or ``<repo>/../shared/realtext``) and never copied in.

Tables printed (markdown):

1. CAIL2019 documents (sentences joined): share hitting at least one term of
   each category, the true domain's own category marked. divorce -> family,
   labor -> labor, loan -> debt.
2. Confusion: true domain x ``score_text(doc).category``.
3. CAIL2018 facts by accusation: share with each cue group (un-negated), the
   dispute rate and the categories the rules assign. Violent charges that often
   start as civil disputes (故意伤害, 寻衅滋事, 故意杀人) next to control charges.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a plain script from any directory
    sys.path.insert(0, str(REPO))

from features.keywords import KeywordMatcher, get_matcher  # noqa: E402
from features.lexicon import CATEGORIES, CUE_GROUPS  # noqa: E402
from models.rules import score_text  # noqa: E402

DOMAIN_CATEGORY: dict[str, str] = {"divorce": "family", "labor": "labor", "loan": "debt"}
VIOLENT_CHARGES: tuple[str, ...] = ("故意伤害", "寻衅滋事", "故意杀人")
CONTROL_CHARGES: tuple[str, ...] = ("盗窃", "诈骗", "危险驾驶", "交通肇事", "[走私、贩卖、运输、制造]毒品")


def realtext_dir(explicit: str | Path | None = None) -> Path:
    """Where the real text lives: argument, ``$YUJING_REALTEXT``, or ``<repo>/../shared/realtext``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("YUJING_REALTEXT")
    return Path(env) if env else REPO.parent / "shared" / "realtext"


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def load_cail2019(root: Path) -> dict[str, list[str]]:
    """Documents per domain, each the concatenation of its sentences."""
    out: dict[str, list[str]] = {}
    for domain in DOMAIN_CATEGORY:
        path = root / f"cail2019_{domain}.jsonl"
        out[domain] = ["".join(s["sentence"] for s in d["sentences"]) for d in _jsonl(path)]
    return out


def load_cail2018(root: Path) -> list[tuple[str, list[str]]]:
    """(fact, accusations) pairs."""
    return [(d["fact"], list(d["accusation"])) for d in _jsonl(root / "cail2018_facts.jsonl")]


DECISIVE_WEIGHT = 0.5
"""Terms at or above this weight make a narrative a dispute on their own (see docs/lexicon.md)."""


def category_hits(
    docs: dict[str, list[str]], matcher: KeywordMatcher, min_weight: float = 0.0
) -> dict[str, dict[str, float]]:
    """domain -> category -> share of documents with at least one term of that category.

    ``min_weight`` restricts the count to terms of at least that weight, separating
    decisive vocabulary from weak context words (``公司``, ``房屋``) that any legal text has.
    """
    out: dict[str, dict[str, float]] = {}
    for domain, texts in docs.items():
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update({m.group for m in matcher.match(text) if m.kind == "category" and m.weight >= min_weight})
        out[domain] = {c: counts[c] / len(texts) for c in CATEGORIES}
    return out


def confusion(docs: dict[str, list[str]], matcher: KeywordMatcher) -> dict[str, Counter[str]]:
    """domain -> Counter of ``score_text`` categories (``none`` when not a dispute)."""
    return {domain: Counter(score_text(t, matcher).category or "none" for t in texts) for domain, texts in docs.items()}


def own_share(table: dict[str, Counter[str]]) -> dict[str, float]:
    """Share of each domain's documents assigned their own category."""
    return {d: row[DOMAIN_CATEGORY[d]] / max(1, sum(row.values())) for d, row in table.items()}


@dataclass(frozen=True)
class ChargeRates:
    """Rule output over the facts of one charge."""

    n: int
    dispute: float
    cues: dict[str, float]
    categories: Counter[str]


def cue_rates(
    facts: Sequence[tuple[str, list[str]]], charges: Sequence[str], matcher: KeywordMatcher
) -> dict[str, ChargeRates]:
    """charge -> rates over facts with exactly that one charge (multi-charge facts are left out)."""
    out: dict[str, ChargeRates] = {}
    for charge in charges:
        texts = [f for f, acc in facts if acc == [charge]]
        if not texts:
            continue
        cue_counts: Counter[str] = Counter()
        cats: Counter[str] = Counter()
        disputes = 0
        for t in texts:
            r = score_text(t, matcher)
            cue_counts.update(r.cues)
            disputes += r.is_dispute
            cats[r.category or "none"] += 1
        n = len(texts)
        out[charge] = ChargeRates(n, disputes / n, {g: cue_counts[g] / n for g in CUE_GROUPS}, cats)
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render(root: Path, matcher: KeywordMatcher) -> str:
    docs = load_cail2019(root)
    lines = [f"lexicon {matcher.version}, {len(matcher.lexicon)} entries; realtext `{root.name}/`", ""]

    for title, min_w in (
        ("any term", 0.0),
        (f"a decisive term (weight >= {DECISIVE_WEIGHT})", DECISIVE_WEIGHT),
    ):
        hits = category_hits(docs, matcher, min_w)
        lines += [f"### Documents hitting {title} of each category", ""]
        lines += ["| domain (n) | " + " | ".join(CATEGORIES) + " |", "|---" * (len(CATEGORIES) + 1) + "|"]
        for d, row in hits.items():
            cells = [f"**{_pct(row[c])}**" if c == DOMAIN_CATEGORY[d] else _pct(row[c]) for c in CATEGORIES]
            lines.append(f"| {d} ({len(docs[d])}) | " + " | ".join(cells) + " |")
        lines.append("")

    table = confusion(docs, matcher)
    cols = [*CATEGORIES, "none"]
    lines += ["### Confusion: true domain x `score_text(doc).category`", ""]
    lines += ["| domain | " + " | ".join(cols) + " | own |", "|---" * (len(cols) + 2) + "|"]
    shares = own_share(table)
    for d, row in table.items():
        cells = [f"**{row[c]}**" if c == DOMAIN_CATEGORY[d] else str(row[c]) for c in cols]
        lines.append(f"| {d} | " + " | ".join(cells) + f" | {_pct(shares[d])} |")

    facts = load_cail2018(root)
    rates = cue_rates(facts, VIOLENT_CHARGES + CONTROL_CHARGES, matcher)
    lines += ["", "### CAIL2018 facts (single charge): cue groups found un-negated", ""]
    lines += ["| charge (n) | " + " | ".join(CUE_GROUPS) + " | dispute | top categories |"]
    lines += ["|---" * (len(CUE_GROUPS) + 3) + "|"]
    for charge, row in rates.items():
        top = ", ".join(f"{c} {k}" for c, k in row.categories.most_common(3))
        cells = " | ".join(_pct(row.cues[g]) for g in CUE_GROUPS)
        lines.append(f"| {charge} ({row.n}) | {cells} | {_pct(row.dispute)} | {top} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--realtext", help="directory with the CAIL jsonl files (default ../shared/realtext)")
    args = ap.parse_args(argv)
    root = realtext_dir(args.realtext)
    if not (root / "cail2019_divorce.jsonl").is_file():
        print(f"real text not found in {root}; nothing to measure", file=sys.stderr)
        return 2
    print(render(root, get_matcher()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
