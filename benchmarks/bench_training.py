"""Snapshot feature building (rows/s) and escalation training time and peak memory.

    .venv/bin/python benchmarks/bench_training.py                 # 100k and 1M household-snapshots
    .venv/bin/python benchmarks/bench_training.py --persons 300000 --sizes 100000

Simulates one city (default 650,000 persons, two years), builds weekly
snapshots for every household with a dispute in the year before, then trains
the escalation model on the first N snapshot rows for each size, each size in
its own process so peak RSS is that size's alone. Linking is taken from the
simulator's places to time features and training alone (linking has its own
benchmark).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PREPARE = """
import json, resource, sys, time
import numpy as np, pandas as pd
sys.path.insert(0, sys.argv[3])
from simulation.city import simulate_city, write_city
from simulation.config import SimConfig
from features.snapshots import build_snapshots, escalation_labels, snapshot_dates
from models.rules import rule_verdicts
from models.warning import points_at_snapshots
from pipelines.preparation import incident_calls
persons, out = int(sys.argv[1]), sys.argv[2]
city = simulate_city(SimConfig(persons=persons, days=730, seed=1))
inc = city.tables["incidents"]
truth = city.truth["incidents"].set_index("incident_id").loc[inc["incident_id"]]
t0 = time.perf_counter()
rules = rule_verdicts(inc["narrative"]).reset_index(drop=True)
t_rules = time.perf_counter() - t0
links = pd.DataFrame({"household_id": truth["place_household_id"].to_numpy(),
                      "person_id": truth["caller_person_id"].to_numpy()})
calls = incident_calls(inc, rules, links)
first, last = inc["received_at"].min(), inc["received_at"].max()
dates = snapshot_dates(first + pd.Timedelta(days=90), last - pd.Timedelta(days=90))
t0 = time.perf_counter()
snaps = build_snapshots(calls, city.tables, dates)
frame = snaps.frame
pts = points_at_snapshots(calls, frame["household_id"], frame["snapshot_date"])
t_feat = time.perf_counter() - t0
for k, v in pts.items():
    frame[f"points_{k}"] = v.astype(np.float32)
y = escalation_labels(frame, city.tables["cases"], city.tables["persons"], city.tables["households"], 90)
frame["label"] = y
frame.to_parquet(out)
names = snaps.feature_names + [f"points_{k}" for k in pts]
print(json.dumps({"incidents": len(inc), "rules_s": t_rules, "snapshots": len(frame), "features_s": t_feat,
                  "features": len(names), "names": names, "positives": int(y.sum()),
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

TRAIN = """
import json, resource, sys, time
import numpy as np, pandas as pd
sys.path.insert(0, sys.argv[4])
from models.backtest import final_fold
from models.escalation import train_escalation
frame = pd.read_parquet(sys.argv[1]).sort_values("snapshot_date", kind="stable")
n, names = int(sys.argv[2]), json.loads(sys.argv[3])
reps = -(-n // len(frame))
frame = pd.concat([frame] * reps, ignore_index=True).head(n) if reps > 1 else frame.head(n)
split = final_fold(frame["snapshot_date"])
X, y = frame[names].to_numpy(np.float32), frame["label"].to_numpy()
t0 = time.perf_counter()
model = train_escalation(X[split.train], y[split.train], X[split.tune], y[split.tune], names)
t = time.perf_counter() - t0
print(json.dumps({"rows": n, "train_s": t, "rounds": model.booster.current_iteration(),
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=650_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}; city {args.persons:,} persons over 730 days")
    with tempfile.TemporaryDirectory() as tmp:
        frame_path = str(Path(tmp) / "snapshots.parquet")
        prep = subprocess.run(
            [sys.executable, "-c", PREPARE, str(args.persons), frame_path, str(REPO)],
            capture_output=True,
            text=True,
            check=True,
        )
        p = json.loads(prep.stdout.strip().splitlines()[-1])
        print()
        print("| step | rows | seconds | rows/s | peak MiB |")
        print("|---|---:|---:|---:|---:|")
        rate = p["incidents"] / p["rules_s"]
        print(f"| rule verdicts per incident | {p['incidents']:,} | {p['rules_s']:.1f} | {rate:,.0f} | |")
        print(
            f"| snapshot features + rule points | {p['snapshots']:,} | {p['features_s']:.1f} | "
            f"{p['snapshots'] / p['features_s']:,.0f} | {p['peak_mib']:,.0f} (whole city in memory) |"
        )
        for size in args.sizes:
            done = subprocess.run(
                [sys.executable, "-c", TRAIN, frame_path, str(size), json.dumps(p["names"]), str(REPO)],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"| train escalation ({r['rounds']} rounds, {p['features']} features) | {r['rows']:,} | "
                f"{r['train_s']:.1f} | {r['rows'] / r['train_s']:,.0f} | {r['peak_mib']:,.0f} |"
            )
        print(f"\nsnapshots with a positive label: {p['positives']:,} of {p['snapshots']:,}")


if __name__ == "__main__":
    main()
