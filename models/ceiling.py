"""The truth ceiling: how well could a model rank if it saw what the simulator hides?

Escalation in the synthetic city is driven partly by things no police record
holds: each conflict's hidden severity, the parties' temper, whether a
conflict is still live (simulation/dynamics.py). A model trained on the same
snapshots *plus* those latent facts, with the same recipe and the same folds,
shows how much of the gap between the rules and perfection is reachable from
records at all. Evaluation only: these features come from ``truth/`` and
never reach a model that is exported, registered or served (the caller
trains a separate model on them; tests/test_training.py checks no fitted
model reads ``truth/``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

TRUTH_FEATURES = ("truth_conflicts", "truth_severity", "truth_temper", "truth_alcohol", "truth_mental", "truth_prior")
NOTE = (
    "a model with the same recipe that also sees each household's live conflicts and their hidden severity, "
    "temper, drinking, mental illness and prior record (simulator truth, evaluation only)"
)


def truth_available(truth_dir: Path | None) -> bool:
    """True for a simulated city: its ``truth/`` folder and the simulator's manifest beside it."""
    return (
        truth_dir is not None
        and (truth_dir / "conflicts.parquet").is_file()
        and (truth_dir.parent / "manifest.json").is_file()
    )


def truth_features(frame: pd.DataFrame, truth_dir: Path) -> np.ndarray:
    """Per snapshot row: live conflicts of the household on that day and the worst of their latent facts."""
    start = pd.Timestamp(
        json.loads((truth_dir.parent / "manifest.json").read_text(encoding="utf-8"))["config"]["start"]
    )
    conflicts = pd.read_parquet(truth_dir / "conflicts.parquet")
    sides = [
        conflicts[[side, "start_day", "end_day", "severity0", "temper", "alcohol", "mental", "prior"]].rename(
            columns={side: "household_id"}
        )
        for side in ("household_a", "household_b")
    ]
    live = pd.concat(sides, ignore_index=True).dropna(subset=["household_id"])
    rows = pd.DataFrame(
        {
            "household_id": frame["household_id"].to_numpy(),
            "day": (pd.to_datetime(frame["snapshot_date"]) - start).dt.days.to_numpy(),
            "row": np.arange(len(frame)),
        }
    ).merge(live, on="household_id")
    rows = rows[(rows["start_day"] <= rows["day"]) & (rows["day"] < rows["end_day"])]
    agg = rows.groupby("row").agg(
        n=("severity0", "size"),
        severity=("severity0", "max"),
        temper=("temper", "max"),
        alcohol=("alcohol", "max"),
        mental=("mental", "max"),
        prior=("prior", "max"),
    )
    out = np.zeros((len(frame), len(TRUTH_FEATURES)), dtype=np.float32)
    out[agg.index.to_numpy()] = agg.to_numpy(np.float32)
    return out
