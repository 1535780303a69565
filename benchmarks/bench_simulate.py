"""Simulator speed and peak memory, per city size, each size in its own process.

    .venv/bin/python benchmarks/bench_simulate.py              # 100k and the full city (2.87 M)
    .venv/bin/python benchmarks/bench_simulate.py --sizes 100000

Each size runs in a fresh interpreter so peak RSS (ru_maxrss) is that size's
alone. Prints one table row per size: wall time of simulate + write, peak
memory, rows written, and the per-stage timings.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile

CHILD = """
import json, resource, sys, tempfile, time
from simulation.city import simulate_city, write_city
from simulation.config import SimConfig
persons, days = int(sys.argv[1]), int(sys.argv[2])
t0 = time.perf_counter()
city = simulate_city(SimConfig(persons=persons, days=days))
t1 = time.perf_counter()
with tempfile.TemporaryDirectory() as out:
    manifest = write_city(city, out)
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
counts = manifest["row_counts"]
print(json.dumps({"simulate_s": t1 - t0, "write_s": t2 - t1, "peak_mib": peak, "incidents": counts["incidents"],
                  "households": counts["households"], "stages": city.timings}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 2_870_000])
    parser.add_argument("--days", type=int, default=730)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}, days={args.days}")
    print("| persons | households | incidents | simulate s | write s | peak MiB | slowest stages |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for size in args.sizes:
        with tempfile.TemporaryDirectory():
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(size), str(args.days)],
                capture_output=True,
                text=True,
                check=True,
            )
        r = json.loads(done.stdout.strip().splitlines()[-1])
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(r["stages"].items(), key=lambda kv: -kv[1])[:3])
        print(
            f"| {size:,} | {r['households']:,} | {r['incidents']:,} | {r['simulate_s']:.1f} | {r['write_s']:.1f} "
            f"| {r['peak_mib']:,.0f} | {stages} |"
        )


if __name__ == "__main__":
    main()
