"""Linking speed and peak memory per city size, with link precision / recall against the truth.

    .venv/bin/python benchmarks/bench_linking.py                  # 100k and 1M persons, two years
    .venv/bin/python benchmarks/bench_linking.py --sizes 2870000  # the full city (~620k incidents)

Each size is simulated into a temporary folder (Parquet, as ``yujing simulate`` writes it), then
linked in a fresh interpreter that first loads the four tables, so the memory figures are the
linking's alone: ``tables MiB`` is the resident size once the tables are loaded, ``peak MiB`` the
highest resident size while linking (Linux VmHWM, reset after loading; elsewhere ru_maxrss, which
includes the load). Truth is read only to score the links. These machines are shared and noisy:
read the timings as an order of magnitude.
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

SIMULATE = """
import sys
from simulation.city import simulate_city, write_city
from simulation.config import SimConfig
config = SimConfig(persons=int(sys.argv[1]), days=int(sys.argv[2]), seed=int(sys.argv[3]))
write_city(simulate_city(config), sys.argv[4])
"""

LINK = """
import gc, json, resource, sys, time
from pathlib import Path
import pandas as pd
from features.linking import link_incidents, link_quality

def rss_mib(field):
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

data = Path(sys.argv[1])
tables = {t: pd.read_parquet(data / f"{t}.parquet") for t in ("incidents", "persons", "households", "addresses")}
gc.collect()
loaded = rss_mib("VmRSS")
try:
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
except OSError:
    pass
best = None
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    result = link_incidents(tables["incidents"], tables["persons"], tables["households"], tables["addresses"])
    elapsed = time.perf_counter() - t0
    best = elapsed if best is None else min(best, elapsed)
peak = rss_mib("VmHWM")
quality = link_quality(result.links, pd.read_parquet(data / "truth" / "incidents.parquet"))
print(json.dumps({
    "incidents": len(tables["incidents"]), "persons": len(tables["persons"]),
    "addresses": len(tables["addresses"]), "seconds": best, "tables_mib": loaded, "peak_mib": peak,
    "person": quality["person"]["overall"], "household": quality["household"]["overall"],
}))
"""


def _run(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        sys.exit(f"benchmark child failed:\n{done.stderr[-2000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=0, help="timed runs per size (default: 3 below 500k, else 1)")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}, days={args.days}, seed={args.seed}")
    print(
        "| persons | addresses | incidents | link s | incidents/s | tables MiB | peak MiB "
        "| person P / R | household P / R |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for size in args.sizes:
        repeat = args.repeat or (3 if size < 500_000 else 1)
        with tempfile.TemporaryDirectory(prefix="bench_linking_") as out:
            _run(SIMULATE, str(size), str(args.days), str(args.seed), out)
            r = json.loads(_run(LINK, out, str(repeat)).strip().splitlines()[-1])
        p, h = r["person"], r["household"]
        print(
            f"| {r['persons']:,} | {r['addresses']:,} | {r['incidents']:,} | {r['seconds']:.1f} "
            f"| {r['incidents'] / r['seconds']:,.0f} | {r['tables_mib']:,.0f} | {r['peak_mib']:,.0f} "
            f"| {p['precision']:.4f} / {p['recall']:.4f} | {h['precision']:.4f} / {h['recall']:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
