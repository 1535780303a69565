"""The statistics docs/simulator.md reports for a written city.

    .venv/bin/python -m simulation.stats var/data/city

Reads the exported tables and truth/ (evaluation is allowed to), prints the
figures the targets are stated in: call mix, category shares, repeat calls,
escalation base rate, narrative diversity, linkage noise.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

from features.schema import VIOLENT_CHARGES
from simulation.grammar.demo import content_of
from simulation.grammar.lexicon import DISPUTE_KEYWORDS

STOCK_WORDS = "|".join(DISPUTE_KEYWORDS)


def describe_city(root: str | Path) -> dict[str, object]:
    """Headline statistics of the city in ``root`` (a folder written by ``yujing simulate``)."""
    root = Path(root)
    tables = {p.stem: pd.read_parquet(p) for p in root.glob("*.parquet")}
    truth = {p.stem: pd.read_parquet(p) for p in (root / "truth").glob("*.parquet")}
    incidents = tables["incidents"].merge(truth["incidents"], on="incident_id")
    disputes = incidents[incidents["is_dispute"]]
    content = content_of(incidents["narrative"], incidents["location_text"])
    per_conflict = disputes.groupby("conflict_id").size()

    calls = disputes[~disputes["escalation_call"]]
    end = incidents["received_at"].max() - pd.Timedelta(days=90)
    first = calls[calls["received_at"] < end].groupby("place_household_id")["received_at"].min()
    persons = tables["persons"][["person_id", "household_id"]]
    violent = tables["cases"][tables["cases"]["charge"].isin(VIOLENT_CHARGES)].merge(persons, on="person_id")
    joined = violent.merge(first.rename("first_call"), left_on="household_id", right_index=True)
    within = (joined["opened_at"] - joined["first_call"]).dt.days.between(0, 90)

    dispute_content = content[incidents["is_dispute"]]
    grams = {t[i : i + 4] for t in dispute_content for i in range(len(t) - 3)}
    return {
        "persons": len(tables["persons"]),
        "households": len(tables["households"]),
        "incidents": len(incidents),
        "dispute_share_of_calls": round(float(incidents["is_dispute"].mean()), 3),
        "conflict_category_share": truth["conflicts"]["category"].value_counts(normalize=True).round(3).to_dict(),
        "call_category_share": disputes["category"].value_counts(normalize=True).round(3).to_dict(),
        "non_dispute_mix": incidents.loc[~incidents["is_dispute"], "call_type"]
        .value_counts(normalize=True)
        .round(3)
        .to_dict(),
        "calls_per_calling_conflict": {
            "1": round(float((per_conflict == 1).mean()), 3),
            "2": round(float((per_conflict == 2).mean()), 3),
            "3-5": round(float(per_conflict.between(3, 5).mean()), 3),
            "6+": round(float((per_conflict >= 6).mean()), 3),
            "max": int(per_conflict.max()),
        },
        "households_with_dispute_call": len(first),
        "escalation_within_90d_of_first_call": round(
            joined.loc[within, "household_id"].nunique() / max(len(first), 1), 4
        ),
        "escalations": len(truth["escalations"]),
        "distinct_narrative_share": round(float(incidents["narrative"].nunique() / len(incidents)), 3),
        "distinct_dispute_content_share": round(float(dispute_content.nunique() / max(len(dispute_content), 1)), 3),
        "dispute_content_char_4grams": len(grams),
        "top_dispute_template_share": round(float(disputes["template_id"].value_counts(normalize=True).iloc[0]), 4),
        "disputes_without_stock_words": round(float(1 - dispute_content.str.contains(STOCK_WORDS).mean()), 3),
        "non_disputes_with_stock_words": round(
            float(content[~incidents["is_dispute"]].str.contains(STOCK_WORDS).mean()), 3
        ),
        "caller_id_missing": round(float(tables["incidents"]["caller_id_number"].isna().mean()), 3),
        "caller_phone_masked": round(
            float(tables["incidents"]["caller_phone"].str.contains(r"\*", na=False).mean()), 3
        ),
        "dispute_caller_not_a_party": round(float((disputes["caller_role"] != "party").mean()), 3),
    }


_FULL_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_FULL_ID = re.compile(r"(?<!\d)(\d{4})\d{10}(\d{3}[\dX])(?![\dX])")


def sample_narratives(root: str | Path, per_kind: int = 20, seed: int = 1) -> str:
    """Markdown with ``per_kind`` narratives of each kind of call, phones and IDs masked as 110 shows them."""
    root = Path(root)
    incidents = pd.read_parquet(root / "incidents.parquet", columns=["incident_id", "narrative"])
    truth = pd.read_parquet(root / "truth" / "incidents.parquet", columns=["incident_id", "call_type", "category"])
    frame = incidents.merge(truth, on="incident_id")
    frame["kind"] = frame["category"].where(frame["call_type"] == "dispute", frame["call_type"])
    frame["kind"] = frame["kind"].where(frame["call_type"] != "dispute", "dispute / " + frame["kind"])
    lines: list[str] = []
    for kind, group in frame.groupby("kind", sort=True):
        chosen = group.sample(min(per_kind, len(group)), random_state=seed)["narrative"]
        masked = chosen.str.replace(_FULL_ID, r"\1**********\2", regex=True)
        masked = masked.str.replace(_FULL_PHONE, r"\1****\2", regex=True)
        lines += [f"#### {kind}", "", "```text", *masked, "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else "var/data/city"
    if "--samples" in sys.argv:
        print(sample_narratives(root))
    else:
        print(json.dumps(describe_city(root), ensure_ascii=False, indent=2))
