"""Every benchmark, one after another, each printing its own table.

    .venv/bin/python benchmarks/run_all.py          # text, matching, simulator, linking, training, scoring, serving,
                                                    # HTTP (needs wrk), ranking (small variants)
    .venv/bin/python benchmarks/run_all.py --full   # full-size variants (2.87 M city, 1M snapshots, 1.15M households)

Speed and memory targets live here, not in unit tests: these machines are
shared and noisy, so each benchmark compares alternatives side by side in
one run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="include the full-city simulation")
    args = parser.parse_args()
    runs = [
        ["bench_text.py"],
        ["bench_matching.py"],
        ["bench_simulate.py", "--sizes", "100000", *(["2870000"] if args.full else [])],
        ["bench_linking.py"],
        ["bench_training.py", *([] if args.full else ["--persons", "300000", "--sizes", "100000"])],
        ["bench_scoring.py"],
        ["bench_serving.py", *([] if args.full else ["--small"])],
        ["bench_http.py", *([] if args.full else ["--small"])],
        ["bench_ranking.py", *([] if args.full else ["--small"])],
        ["bench_cluster_training.py", "--persons", "300000" if args.full else "40000"],
        ["bench_incremental.py", *([] if args.full else ["--small"])],
        ["bench_workbench.py"],
        ["bench_whatif.py"],
    ]
    for script, *extra in runs:
        print(f"\n## {script} {' '.join(extra)}\n", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *extra], check=True)


if __name__ == "__main__":
    main()
