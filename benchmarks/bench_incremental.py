"""The daily ranking after one new day: incremental (incident cache warm from yesterday) vs full recompute.

Run from the repository root::

    .venv/bin/python benchmarks/bench_incremental.py --data /tmp/y/b14/tongliao \\
        --bundle /tmp/y/b14/work/runs/p100000_s11/bundle          # the full city (2.87M persons)
    .venv/bin/python benchmarks/bench_incremental.py --small     # a 100,000-person city (bench_ranking's cache)

"After one new day" means: the export of day D (``--data``; D is its
``export_date``) and the export one day earlier, derived from it under
``--work`` (incidents, cases and visits before D-1, ``export_date`` D-1; the
registry tables are symlinked). Per round: ``yujing rank --no-prefect`` ranks
D-1 with an empty incident cache (yesterday's run, which fills the cache);
then, from copies of yesterday's rankings folder and warnings database, D is
ranked twice, once with the cache (``incremental``) and once with
``--no-cache`` (``full``), alternating which goes first. Each run is a fresh
process as a user starts it; it reports wall time, peak RSS (``wait4``'s
``ru_maxrss`` of that child alone) and per-step times (the run's own
``stage-times.json``). The two published folders of D must be identical: the
sha256 of every file (manifest.json included) is compared, and a difference
fails the benchmark.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
EVENTS = {"incidents": "received_at", "cases": "opened_at", "visits": "visited_at"}


def derive_previous(src: Path, dst: Path) -> str:
    """The export one day before ``src``'s under ``dst`` (events before D-1; registry symlinked); returns D-1."""
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    prev = (pd.Timestamp(manifest["export_date"]) - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    if (dst / "manifest.json").is_file():
        return prev
    dst.mkdir(parents=True, exist_ok=True)
    cut = pd.Timestamp(prev).to_pydatetime()
    for path in sorted(src.iterdir()):
        name = path.name.split(".")[0]
        if name in EVENTS:
            table = pq.read_table(path)
            column = table[EVENTS[name]]
            pq.write_table(table.filter(pc.less(column, pa.scalar(cut, column.type))), dst / path.name)
        elif path.suffix == ".parquet" and not (dst / path.name).exists():
            os.symlink(path.resolve(), dst / path.name)
    (dst / "manifest.json").write_text(
        json.dumps({**manifest, "export_date": prev}, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    return prev


def rank(data: Path, bundle: Path, home: Path, out: Path, db: Path, cache: bool) -> dict:
    """One ``yujing rank --no-prefect`` in a fresh process: wall s, peak RSS MiB, per-step s, cache line."""
    env = dict(os.environ, YUJING_HOME=str(home), PYTHONPATH=str(REPO))
    env.pop("YUJING_CONFIG", None)
    exe = Path(sys.executable).with_name("yujing")
    args = ["rank", "--no-prefect", "--data", str(data), "--bundle", str(bundle), "--out", str(out)]
    args += ["--db", f"sqlite:///{db}", "--top", "0", *([] if cache else ["--no-cache"])]
    started = time.perf_counter()
    child = subprocess.Popen([str(exe), *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = child.communicate()
    wall = time.perf_counter() - started
    if child.returncode != 0:
        sys.stderr.write(stdout.decode()[-2000:] + stderr.decode()[-3000:])
        raise SystemExit(f"yujing rank failed ({child.returncode})")
    history = json.loads((home / "logs" / "stage-times.json").read_text(encoding="utf-8"))
    steps = next(iter(history.values()))
    line = next((x for x in stdout.decode().splitlines() if x.startswith("incident cache:")), "")
    return {
        "wall_s": round(wall, 1),
        "peak_mib": int(getattr(child, "peak_kib", 0) / 1024),
        "cpu_s": round(getattr(child, "cpu_s", 0.0), 1),
        "steps": steps,
        "cache": line,
    }


def _popen_wait4() -> None:
    """Make Popen reap children with wait4, keeping each child's own ru_maxrss (not the max over all children)."""

    def _try_wait(self: subprocess.Popen, wait_flags: int) -> tuple[int, int]:
        pid, status, usage = os.wait4(self.pid, wait_flags)
        if pid:
            self.peak_kib = usage.ru_maxrss
            self.cpu_s = usage.ru_utime + usage.ru_stime
        return pid, status

    subprocess.Popen._try_wait = _try_wait  # type: ignore[attr-defined]


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="the export of day D (default: bench_ranking's 2.87M city)")
    parser.add_argument("--bundle", type=Path, help="ONNX bundle (default: bench_ranking's)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/yujing-bench-incremental"))
    parser.add_argument("--small", action="store_true", help="a 100,000-person city instead of the full one")
    parser.add_argument("--rounds", type=int, default=1, help="rounds (the order alternates)")
    args = parser.parse_args()
    _popen_wait4()
    if args.data is None or args.bundle is None:
        from bench_ranking import DEFAULT_WORK, ensure_bundle, ensure_city

        args.bundle = args.bundle or ensure_bundle(DEFAULT_WORK)
        args.data = args.data or ensure_city(DEFAULT_WORK, 100_000 if args.small else 2_870_000)
    work = args.work / args.data.name
    prev_data = work / "previous"
    prev = derive_previous(args.data, prev_data)
    print(f"data {args.data} (D = day after {prev}), previous day's export {prev_data}", flush=True)
    rows = []
    for r in range(args.rounds):
        base = work / f"round{r}"
        shutil.rmtree(base, ignore_errors=True)
        yesterday = rank(prev_data, args.bundle, base / "home", base / "rankings", base / "warnings.db", True)
        rows.append({"round": r, "run": f"previous day {prev} (cache filled)", **yesterday})
        order = ("incremental", "full") if r % 2 == 0 else ("full", "incremental")
        published = {}
        for name in order:
            home = base / name
            shutil.copytree(base / "rankings", home / "rankings", symlinks=True)
            shutil.copy2(base / "warnings.db", home / "warnings.db")
            if name == "incremental":
                shutil.copytree(base / "home" / "cache", home / "cache")
            os.sync()  # the copies' write-back (a GiB with the kept tables) is not the measured run's
            result = rank(args.data, args.bundle, home, home / "rankings", home / "warnings.db", name == "incremental")
            rows.append({"round": r, "run": name, **result})
            folders = sorted(p for p in (home / "rankings").glob("????-??-??") if p.name > prev)
            published[name] = digests(folders[-1])
        same = published["incremental"] == published["full"]
        differ = sorted(k for k in published["full"] if published["incremental"].get(k) != published["full"][k])
        print(f"round {r}: {len(published['full'])} published files, identical: {same} {differ[:5]}", flush=True)
        if not same:
            raise SystemExit("incremental and full rankings differ")
    cache_bytes = sum(p.stat().st_size for p in (work / "round0" / "incremental" / "cache").rglob("*") if p.is_file())
    steps = sorted(
        {s for row in rows for s in row["steps"]},
        key=lambda s: min(list(row["steps"]).index(s) if s in row["steps"] else 99 for row in rows),
    )
    print("\n| round | run | wall s | CPU s | peak RSS MiB | " + " | ".join(steps) + " |")
    print("|---|---|---:|---:|---:|" + "---:|" * len(steps))
    for row in rows:
        cells = " | ".join(f"{row['steps'].get(s, 0):.1f}" for s in steps)
        print(f"| {row['round']} | {row['run']} | {row['wall_s']} | {row['cpu_s']} | {row['peak_mib']:,} | {cells} |")
    for row in rows:
        if row["cache"]:
            print(f"round {row['round']} {row['run']}: {row['cache']}")
    inc = [row["wall_s"] for row in rows if row["run"] == "incremental"]
    full = [row["wall_s"] for row in rows if row["run"] == "full"]
    inc_cpu = sum(row["cpu_s"] for row in rows if row["run"] == "incremental")
    full_cpu = sum(row["cpu_s"] for row in rows if row["run"] == "full")
    print(f"incremental / full CPU: {inc_cpu / full_cpu:.3f} ({inc_cpu:.1f} s / {full_cpu:.1f} s)")
    print(
        f"\nincremental / full wall: {sum(inc) / sum(full):.3f} ({sum(inc):.1f} s / {sum(full):.1f} s); "
        f"cache on disk after the incremental run: {cache_bytes / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    main()
