"""Cost of the daily ranking from ~100k households to the province: time and memory per process.

Run from the repository root::

    .venv/bin/python benchmarks/bench_province.py --work /tmp/bench          # cities and the province, ~1 hour first
    .venv/bin/python benchmarks/bench_province.py --work /tmp/bench --small  # two small cities, ~5 minutes

Every ranking is the command a user runs, in its own process, with a fresh
output folder and SQLite warnings database and the bench bundle of
bench_ranking.py (trained once on 100,000 persons, seed 11)::

    yujing rank --no-prefect --data CITY --bundle B --out O --db D --top 0 [--cluster local]

Flat cities (seed 13) are ranked single-process and on a 2-worker local
cluster, alternating; simulated provinces (``yujing simulate --province
--scale S``) on the local cluster only (one process cannot hold a province).
Memory is sampled from ``/proc`` every 0.2 s for every process of the
command's tree (the driver, the cluster's workers), so the peak
of each process is known without trusting the job's own report; a worker is
a process the driver spawned through multiprocessing.

Writes ``<work>/province-cost.json`` and the chart ``--chart`` (default
``docs/province-cost.png``): wall time and the largest process's peak memory
against households, log-log, single-process and cluster side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_ranking as br

REPO = br.REPO
CITY_SIZES = (250_000, 1_000_000, 2_870_000)
PROVINCE_SCALES = (0.25, 1.0)
_HOUSEHOLDS = re.compile(r"([\d,]+) households scored by")


class TreeSampler(threading.Thread):
    """Samples the resident memory of a process and all its descendants; keeps each one's peak and role."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.stop = pid, every, threading.Event()
        self.peaks: dict[int, int] = {}
        self.roles: dict[int, str] = {}

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                    if proc.pid not in self.roles:
                        self.roles[proc.pid] = _role(proc, root)
                except psutil.Error:
                    continue
                self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), rss)
            time.sleep(self.every)

    def summary(self) -> dict[str, Any]:
        by_role: dict[str, list[int]] = {}
        for pid, peak in self.peaks.items():
            by_role.setdefault(self.roles.get(pid, "other"), []).append(peak)
        return {role: sorted(peaks, reverse=True) for role, peaks in by_role.items()}


def _role(proc: Any, root: Any) -> str:
    """driver (the yujing command), worker (a Dask worker process its nannies spawned) or other.

    A local cluster's nannies live in the driver process; each spawns its
    worker with multiprocessing, whose command line names ``spawn_main``.
    """
    if proc.pid == root.pid:
        return "driver"
    return "worker" if "spawn_main" in " ".join(proc.cmdline()) else "other"


def run_measured(work: Path, args: list[str]) -> dict[str, Any]:
    """Run ``yujing ARGS`` with the bench environment; wall time, per-role peaks (bytes), its stdout."""
    exe = Path(sys.executable).with_name("yujing")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(exe), *args], cwd=REPO, env=br._env(work), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    sampler = TreeSampler(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        sys.stderr.write(out[-2000:] + err[-3000:])
        raise SystemExit(f"yujing {args[0]} failed with exit code {proc.returncode}")
    return {"wall_s": round(wall, 1), "peaks": sampler.summary(), "stdout": out}


def ensure_province(work: Path, scale: float) -> Path:
    """A simulated province at ``scale`` (cached under ``work/provinces``); its simulation cost is recorded."""
    out = work / "provinces" / f"scale{scale:g}"
    if not (out / "manifest.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        measured = run_measured(
            work, ["simulate", "--province", "--scale", f"{scale:g}", "--seed", "13", "--out", str(out)]
        )
        (out.parent / f"scale{scale:g}.simulate.json").write_text(
            json.dumps({k: v for k, v in measured.items() if k != "stdout"}, indent=2)
        )
    return out


def rank_once(work: Path, data: Path, bundle: Path, cluster: bool, tag: str) -> dict[str, Any]:
    """One ranking of ``data`` in a fresh folder and database; households, wall, peaks."""
    out = work / "cost" / tag
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    args = ["rank", "--no-prefect", "--data", str(data), "--bundle", str(bundle), "--out", str(out / "rankings")]
    args += ["--db", f"sqlite:///{out / 'warnings.db'}", "--top", "0"]
    if cluster:
        args += ["--cluster", "local"]
    load = os.getloadavg()[0]
    measured = run_measured(work, args)
    measured["load_before"] = round(load, 2)
    found = _HOUSEHOLDS.search(measured.pop("stdout"))
    measured["households"] = int(found.group(1).replace(",", "")) if found else None
    measured["engine"] = "cluster (2 workers)" if cluster else "single process"
    return measured


def kept(path: Path, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earlier rows of ``path`` for a (data, engine) not measured in this run (``--keep``), marked as earlier.

    The province at scale 1 takes 25 minutes to rank; a chart redrawn after
    measuring the smaller points can keep it instead of measuring it again.
    """
    if not path.is_file():
        return []
    measured = {(r["data"], r["engine"]) for r in results}
    earlier = json.loads(path.read_text(encoding="utf-8"))
    return [{**r, "earlier_run": True} for r in earlier if (r["data"], r["engine"]) not in measured]


def largest(peaks: dict[str, list[int]]) -> int:
    return max((p for values in peaks.values() for p in values), default=0)


def chart(results: list[dict[str, Any]], path: Path) -> Path:
    """Time and the largest process's peak memory against households, log-log, one line per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = (
        ("one city, single process", "single process", False, "o"),
        ("one city, cluster (2 workers)", "cluster (2 workers)", False, "s"),
        ("province, cluster (2 workers)", "cluster (2 workers)", True, "^"),
    )
    for label, engine, province, marker in series:
        rows = sorted(
            (
                r
                for r in results
                if r["engine"] == engine and r["households"] and r["data"].startswith("province") == province
            ),
            key=lambda r: r["households"],
        )
        if not rows:
            continue
        hh = [r["households"] for r in rows]
        ax_t.plot(hh, [r["wall_s"] for r in rows], marker=marker, label=label)
        ax_m.plot(hh, [largest(r["peaks"]) / 2**30 for r in rows], marker=marker, label=label)
    ax_m.axhline(8, color="grey", linestyle="--", linewidth=1, label="8 GiB per worker")
    for ax, title, ylabel in (
        (ax_t, "Daily ranking: wall time (shared host, see docs)", "seconds (2 cores)"),
        (ax_m, "Daily ranking: largest process's peak memory", "GiB"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("households ranked")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=br.DEFAULT_WORK)
    parser.add_argument("--small", action="store_true", help="two small cities only")
    parser.add_argument("--persons", type=int, nargs="*", help=f"flat city sizes (default {CITY_SIZES})")
    parser.add_argument("--scales", type=float, nargs="*", help=f"province scales (default {PROVINCE_SCALES})")
    parser.add_argument("--chart", type=Path, default=REPO / "docs" / "province-cost.png")
    parser.add_argument("--redraw", action="store_true", help="only draw the chart from <work>/province-cost.json")
    parser.add_argument(
        "--keep", action="store_true", help="keep earlier figures in province-cost.json for data not measured now"
    )
    args = parser.parse_args(argv)
    work = args.work.resolve()
    if args.redraw:
        print(f"chart: {chart(json.loads((work / 'province-cost.json').read_text()), args.chart)}")
        return 0
    sizes = args.persons if args.persons is not None else ([60_000, 250_000] if args.small else list(CITY_SIZES))
    scales = args.scales if args.scales is not None else ([] if args.small else list(PROVINCE_SCALES))
    bundle = br.ensure_bundle(work)
    results: list[dict[str, Any]] = []
    for persons in sizes:
        city = br.ensure_city(work, persons)
        for cluster in (False, True):  # alternating, one after the other on the same city
            r = rank_once(work, city, bundle, cluster, f"p{persons}-{'cluster' if cluster else 'single'}")
            results.append({"data": f"city {persons:,} persons", **r})
            print(f"  {results[-1]['data']}, {r['engine']}: {r['households']:,} households in {r['wall_s']} s, "
                  f"largest process {largest(r['peaks']) / 2**30:.2f} GiB", file=sys.stderr, flush=True)  # fmt: skip
    for scale in scales:
        province = ensure_province(work, scale)
        r = rank_once(work, province, bundle, True, f"province{scale:g}")
        results.append({"data": f"province at scale {scale:g}", **r})
        print(f"  {results[-1]['data']}: {r['households']:,} households in {r['wall_s']} s, "
              f"largest process {largest(r['peaks']) / 2**30:.2f} GiB", file=sys.stderr, flush=True)  # fmt: skip
    if args.keep:
        results = kept(work / "province-cost.json", results) + results
    (work / "province-cost.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| data | engine | households | wall s | driver peak GiB | worker peaks GiB |")
    print("|---|---|---:|---:|---:|---|")
    for r in results:
        workers = ", ".join(f"{p / 2**30:.2f}" for p in r["peaks"].get("worker", [])) or "—"
        data = r["data"] + (" (earlier run)" if r.get("earlier_run") else "")
        print(f"| {data} | {r['engine']} | {r['households']:,} | {r['wall_s']} | "
              f"{max(r['peaks'].get('driver', [0])) / 2**30:.2f} | {workers} |")  # fmt: skip
    print(f"chart: {chart(results, args.chart)}; figures: {work / 'province-cost.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
