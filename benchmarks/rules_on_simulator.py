"""The keyword rules on a simulated city's latest period (the tables in docs/lexicon.md).

    .venv/bin/python benchmarks/rules_on_simulator.py var/data/city [--holdout 0.25]

The lexicon was written from real usage without looking at the simulator, so
every simulated incident is held out from it; the script still reports the
latest quarter of the window only, the period later models are tested on.
Reads truth/ (evaluation may).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from features.keywords import get_matcher  # noqa: E402
from features.lexicon import CATEGORIES  # noqa: E402
from models.evaluation import confusion_table, dispute_metrics  # noqa: E402
from models.rules import score_many  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("city", type=Path)
    parser.add_argument("--holdout", type=float, default=0.25, help="latest share of the window to report")
    args = parser.parse_args()
    incidents = pd.read_parquet(args.city / "incidents.parquet", columns=["incident_id", "received_at", "narrative"])
    truth = pd.read_parquet(args.city / "truth" / "incidents.parquet")
    frame = incidents.merge(truth, on="incident_id")
    start, end = frame["received_at"].min(), frame["received_at"].max()
    cut = end - (end - start) * args.holdout
    test = frame[frame["received_at"] > cut].reset_index(drop=True)
    results = score_many(test["narrative"].tolist())
    predicted = [r.is_dispute for r in results]
    predicted_category = [r.category for r in results]
    metrics = dispute_metrics(test["is_dispute"], predicted, test["category"], predicted_category)
    print(
        f"city {args.city}, incidents after {cut:%Y-%m-%d}: {len(test):,} ({metrics['n_disputes']:,} disputes); "
        f"lexicon {get_matcher().version}"
    )
    print()
    print("| precision | recall | F1 | category accuracy (all true disputes) |")
    print("|---:|---:|---:|---:|")
    print(
        f"| {metrics['precision']:.3f} | {metrics['recall']:.3f} | {metrics['f1']:.3f} | "
        f"{metrics['category_accuracy']:.3f} |"
    )
    print()
    disputes = test["is_dispute"].to_numpy()
    table = confusion_table(
        test.loc[disputes, "category"], [c for c, d in zip(predicted_category, disputes, strict=True) if d]
    )
    columns = [c for c in [*CATEGORIES, "none"] if c in table.columns]
    print("True category (rows) by the rules' category (columns), dispute calls only:")
    print()
    print("| true \\ rules | " + " | ".join(columns) + " | own |")
    print("|---|" + "---:|" * (len(columns) + 1))
    for category in [c for c in CATEGORIES if c in table.index]:
        row = table.loc[category]
        own = row.get(category, 0) / row.sum()
        print(f"| {category} | " + " | ".join(str(int(row.get(c, 0))) for c in columns) + f" | {own:.0%} |")
    print()
    flagged = test.loc[[p and not d for p, d in zip(predicted, disputes, strict=True)], "call_type"].value_counts()
    print("Non-dispute calls the rules flag, by type: " + ", ".join(f"{k} {v}" for k, v in flagged.head(8).items()))
    print()
    print("Cues of true dispute calls: how often the call had it (truth), how often the rules read it in the text:")
    print()
    print("| cue | true share | rules' share | rules' recall | rules' precision |")
    print("|---|---:|---:|---:|---:|")
    for cue in ("violence", "weapon", "injury", "threat", "alcohol", "separation"):
        true = test.loc[disputes, f"true_{cue}"].astype(bool).to_numpy()
        read = [cue in r.cues for r, d in zip(results, disputes, strict=True) if d]
        both = sum(t and r for t, r in zip(true, read, strict=True))
        print(
            f"| {cue} | {true.mean():.3f} | {sum(read) / len(read):.3f} | {both / max(true.sum(), 1):.3f} | "
            f"{both / max(sum(read), 1):.3f} |"
        )


if __name__ == "__main__":
    main()
