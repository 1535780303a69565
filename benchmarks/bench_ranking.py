"""Daily ranking: wall time, peak memory and per-step times for ~100k and ~1.15M households.

Run from the repository root::

    .venv/bin/python benchmarks/bench_ranking.py            # ~100k and ~1.15M households, ~10 minutes the first time
    .venv/bin/python benchmarks/bench_ranking.py --small    # ~40k households only, ~2 minutes the first time
    .venv/bin/python benchmarks/bench_ranking.py --profile  # also cProfile the largest ranking (top functions)

One bundle is trained once (``yujing train --no-prefect`` on a 100,000-person
city, seed 11) and ranks every city through ``--bundle``: the feature schema
is the code's, not the city's. Ranked cities (seed 13): 250,000 persons
(~100k households) and 2,870,000 persons (the full city, ~1.15M households;
simulating it takes ~1.5 minutes and ~4 GiB). Cities, the bundle and the
rankings are cached under ``--work`` (default ``$TMPDIR/yujing-bench``, never
inside the repository), so a second run only ranks.

Each ranking runs ``pipelines.ranking.run_ranking`` (what ``yujing rank
--no-prefect`` runs) in a fresh Python process, with a fresh output folder
and a fresh SQLite warnings database, and reports:

- wall time of the process (imports included) and of ``run_ranking`` alone;
- CPU time (user + system) of the process, to show how much of the two cores
  it used;
- peak RSS of the process (``getrusage``'s ``ru_maxrss``), and the peak so
  far at the end of each step, so the step that set the peak is visible;
- ``RankResult.timings`` per step.

The other scripts (bench_serving.py, bench_http.py) reuse :func:`ensure_city`,
:func:`ensure_bundle` and :func:`ensure_ranking` from here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
YUJING = [sys.executable, "-m", "pipelines.cli"]
TRAIN_PERSONS, TRAIN_SEED, CITY_SEED = 100_000, 11, 13
DEFAULT_WORK = Path(tempfile.gettempdir()) / "yujing-bench"


def _env(work: Path) -> dict[str, str]:
    """The environment of every child: all default paths under ``work/var``, never the repository's var/."""
    env = dict(os.environ)
    env["YUJING_HOME"] = str(work / "var")
    env.pop("YUJING_CONFIG", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _yujing(work: Path, *args: str) -> None:
    """Run ``yujing ARGS`` (the venv's entry point) with the bench environment; raise on failure."""
    exe = Path(sys.executable).with_name("yujing")
    cmd = [str(exe), *args] if exe.exists() else [*YUJING, *args]
    print(f"  $ yujing {' '.join(args)}", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, cwd=REPO, env=_env(work), capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"yujing {args[0]} failed with exit code {done.returncode}")


def ensure_city(work: Path, persons: int, seed: int = CITY_SEED) -> Path:
    """A simulated city of ``persons`` persons (cached under ``work/cities``)."""
    out = work / "cities" / f"p{persons}_s{seed}"
    if not (out / "manifest.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        _yujing(work, "simulate", "--persons", str(persons), "--seed", str(seed), "--out", str(out))
    return out


def ensure_bundle(work: Path, persons: int = TRAIN_PERSONS, seed: int = TRAIN_SEED) -> Path:
    """The ONNX bundle trained once on a small city (cached under ``work/runs``)."""
    run = work / "runs" / f"p{persons}_s{seed}"
    if not (run / "bundle" / "manifest.json").is_file():
        city = ensure_city(work, persons, seed)
        shutil.rmtree(run, ignore_errors=True)
        _yujing(work, "train", "--data", str(city), "--out", str(run), "--no-prefect")
    return run / "bundle"


def ensure_ranking(work: Path, city: Path, bundle: Path) -> Path:
    """A published ranking of ``city`` with ``bundle`` (the online service's history); its rankings folder."""
    out = work / "rankings" / city.name
    if not any(p.is_dir() and (p / "calls.parquet").is_file() for p in out.glob("????-??-??")):
        shutil.rmtree(out, ignore_errors=True)
        db = f"sqlite:///{work / 'rankings' / (city.name + '.warnings.db')}"
        _yujing(
            work,
            "rank",
            "--data",
            str(city),
            "--bundle",
            str(bundle),
            "--out",
            str(out),
            "--db",
            db,
            "--no-prefect",
            "--top",
            "0",
        )
    return out


CHILD = r"""
import json, resource, sys, time
t_start = time.perf_counter()
from pathlib import Path
data, out_root, db, bundle, profile = sys.argv[1:6]
from pipelines.ranking import RankConfig, run_ranking

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

steps, last = [], [None, time.perf_counter()]
def progress(name):
    now = time.perf_counter()
    if last[0] is not None:
        steps.append({"step": last[0], "peak_mib_so_far": peak_mib()})
    last[0], last[1] = name, now

t_imports = time.perf_counter() - t_start
args = (Path(data), None, Path(out_root), db, Path(bundle), None, RankConfig())
t0 = time.perf_counter()
if profile:
    import cProfile, pstats
    prof = cProfile.Profile()
    result = prof.runcall(run_ranking, *args, progress=progress)
    prof.dump_stats(profile)
else:
    result = run_ranking(*args, progress=progress)
run_s = time.perf_counter() - t0
steps.append({"step": last[0], "peak_mib_so_far": peak_mib()})
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "households": result.households, "in_scope": result.in_scope, "warnings": result.warnings,
    "timings": result.timings, "steps": steps, "run_s": run_s, "imports_s": t_imports,
    "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mib": peak_mib(),
}))
"""


def rank_once(work: Path, city: Path, bundle: Path, profile: Path | None = None) -> dict:
    """One ranking of ``city`` in a fresh process with fresh outputs; the child's JSON plus the wall time."""
    scratch = Path(tempfile.mkdtemp(prefix="rank-", dir=work))
    try:
        cmd = [
            sys.executable,
            "-c",
            CHILD,
            str(city),
            str(scratch / "out"),
            f"sqlite:///{scratch / 'warnings.db'}",
            str(bundle),
            str(profile or ""),
        ]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, env=_env(work), capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            sys.stderr.write(done.stderr[-4000:])
            raise SystemExit(f"ranking {city.name} failed with exit code {done.returncode}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["wall_s"] = wall
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def print_profile(path: Path, top: int = 40) -> None:
    """The project's functions by cumulative time, then any module's by own time, from a cProfile dump."""
    import io
    import pstats

    stats = pstats.Stats(str(path))
    ours = []
    for (file, line, func), (_cc, calls, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rel = Path(file).resolve()
        if REPO in rel.parents and ".venv" not in rel.parts:
            ours.append((ct, tt, calls, f"{rel.relative_to(REPO)}:{line}({func})"))
    ours.sort(reverse=True)
    print(f"cProfile, the project's functions by cumulative time (top {top}):\n\n```")
    print(f"{'calls':>9} {'cumulative s':>12} {'own s':>7}  function")
    for ct, tt, calls, where in ours[:top]:
        print(f"{calls:>9} {ct:>12.1f} {tt:>7.1f}  {where}")
    print("```\n")
    buf = io.StringIO()
    pstats.Stats(str(path), stream=buf).strip_dirs().sort_stats("tottime").print_stats(25)
    text = buf.getvalue()
    own = text[text.find("   ncalls") :].rstrip()
    print(f"cProfile, any module's functions by own time (top 25):\n\n```\n{own}\n```\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache of cities, bundle and scratch")
    parser.add_argument("--persons", type=int, nargs="+", help="city sizes to rank (default 250000 2870000)")
    parser.add_argument("--small", action="store_true", help="rank one 100,000-person city (~40k households)")
    parser.add_argument("--reps", type=int, default=1, help="rankings per city (the fastest is shown)")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest city's ranking too")
    args = parser.parse_args(argv)
    sizes = args.persons or ([100_000] if args.small else [250_000, 2_870_000])
    work = args.work.resolve()
    if REPO in work.parents or work == REPO:
        raise SystemExit(f"--work {work} is inside the repository; pick a scratch folder")
    work.mkdir(parents=True, exist_ok=True)

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cpus ({cpu}); work folder {work}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    bundle = ensure_bundle(work)
    cities = {p: ensure_city(work, p, TRAIN_SEED if p == TRAIN_PERSONS else CITY_SEED) for p in sizes}

    results = {}
    for persons, city in cities.items():
        runs = [rank_once(work, city, bundle) for _ in range(args.reps)]
        results[persons] = min(runs, key=lambda r: r["wall_s"])
        r = results[persons]
        print(f"  ranked {persons:,} persons: {r['households']:,} households in {r['wall_s']:.1f} s", file=sys.stderr)

    print(f"\nDaily ranking with bundle {bundle} (`run_ranking`, fresh process, outputs and SQLite database):\n")
    print(
        "| city persons | households | in scope | wall s (process) | run_ranking s | imports s | CPU s | "
        "peak RSS MiB | warnings r/o/y/b |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for persons, r in results.items():
        w = r["warnings"]
        print(
            f"| {persons:,} | {r['households']:,} | {r['in_scope']:,} | {r['wall_s']:.1f} | {r['run_s']:.1f} | "
            f"{r['imports_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_mib']:,.0f} | "
            f"{w['red']}/{w['orange']}/{w['yellow']}/{w['blue']} |"
        )
    print("\nPer step (`RankResult.timings`, seconds; peak RSS so far at the end of the step, MiB):\n")
    header = "| step | " + " | ".join(f"{results[p]['households']:,} hh s | peak MiB" for p in results) + " |"
    print(header)
    print("|---|" + "---:|---:|" * len(results))
    steps = list(next(iter(results.values()))["timings"])
    for step in steps:
        cells = []
        for r in results.values():
            peak = next((s["peak_mib_so_far"] for s in r["steps"] if s["step"] == step), float("nan"))
            cells.append(f"{r['timings'].get(step, float('nan')):.1f} | {peak:,.0f}")
        print(f"| {step} | " + " | ".join(cells) + " |")
    print()

    if args.profile:
        persons = max(cities)
        prof = work / f"rank-p{persons}.prof"
        r = rank_once(work, cities[persons], bundle, profile=prof)
        print(
            f"Profiled ranking of {persons:,} persons ({r['households']:,} households): "
            f"run_ranking {r['run_s']:.1f} s under cProfile\n"
        )
        print_profile(prof)
    print(json.dumps({"load_average_end": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
