"""`yujing whatif` as a user runs it: wall time, peak memory and load per policy, side by side in one run.

    .venv/bin/python benchmarks/bench_whatif.py                       # var/data/city, K=5, every policy
    .venv/bin/python benchmarks/bench_whatif.py --policies rules random --visits 1

Measures the README's deployment: the installed `yujing whatif` command in its own
process (peak RSS of that child, from the kernel's rusage of waited-for children),
on the city `make run` simulated, with the champion of its MLflow store for
``--policy model``. The target is under 3 minutes per run (issue 13). Each run writes
to a temporary folder, so var/runs is not touched. Prints the 1-minute load average
before and after each run: on a shared two-core machine it explains most outliers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

YUJING = Path(sys.executable).parent / "yujing"
TARGET_S = 180.0


def run(policy: str, visits: int, data: Path, seeds: int) -> dict[str, float | str]:
    """One `yujing whatif` in a child process; its wall time, peak RSS and the central result."""
    with tempfile.TemporaryDirectory() as out:
        before = os.getloadavg()[0]
        started = time.perf_counter()
        args = ["whatif", "--visits", str(visits), "--policy", policy, "--data", str(data), "--seeds", str(seeds)]
        done = subprocess.run([str(YUJING), *args, "--out", out], capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"yujing whatif --policy {policy} failed: {done.stderr.strip().splitlines()[-1:]}")
        result = json.loads((Path(out) / "whatif.json").read_text(encoding="utf-8"))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far
    central = result["scenarios"]["central"]
    return {
        "policy": policy,
        "wall_s": wall,
        "peak_mib": peak,
        "load": f"{before:.1f} → {os.getloadavg()[0]:.1f}",
        "per_100": central["per_100_visits"],
        "interval": (central["low"], central["high"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("var/data/city"))
    parser.add_argument("--policies", nargs="+", default=["model", "rules", "random"])
    parser.add_argument("--visits", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    persons = json.loads((args.data / "manifest.json").read_text(encoding="utf-8"))["row_counts"]["persons"]
    where = f"{args.data}: {persons:,} persons; K={args.visits}"
    print(f"python {platform.python_version()}, {os.cpu_count()} cores; {where}")
    print("| policy | wall s | peak MiB (largest child yet) | load 1 min | prevented per 100 visits | target |")
    print("|---|---:|---:|---|---|---|")
    for policy in args.policies:
        r = run(policy, args.visits, args.data, args.seeds)
        low, high = r["interval"]  # type: ignore[misc]  # the bootstrap interval over stations
        verdict = "ok" if float(r["wall_s"]) < TARGET_S else f"over {TARGET_S:.0f} s"
        print(
            f"| {policy} | {r['wall_s']:.1f} | {r['peak_mib']:,.0f} | {r['load']} "
            f"| {r['per_100']:.3f} [{low:.3f}, {high:.3f}] | {verdict} |"
        )


if __name__ == "__main__":
    main()
