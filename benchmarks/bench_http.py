"""HTTP scoring throughput beside ``/healthz`` on the same server: the deployment the README starts, 8 connections.

Run from the repository root::

    .venv/bin/python benchmarks/bench_http.py            # 10 s per run, 3 runs per route, + score-batch
    .venv/bin/python benchmarks/bench_http.py --small    # training city, 5 s per run (benchmarks/run_all.py)
    # against a server you started yourself (e.g. the README's, on var/), CPU counted when --pid is given:
    .venv/bin/python benchmarks/bench_http.py --url http://127.0.0.1:8000 --key KEY --home var [--pid PID]

The server is started as the README starts it: ``yujing serve --host
127.0.0.1 --port P`` with ``YUJING_API_KEYS`` and nothing else on the command
line, so the worker count is ``yujing serve``'s default (``--workers N``
overrides it). Models and history are bench_serving.py's (cached under
``--work``, never the repository's ``var/``): one bundle trained once on a
100,000-person city (``YUJING_SERVE_BUNDLE``), a 250,000-person city
(``--small``: the training city) and its published ranking.

Routes, each run ``--repeat`` times in rotating order so that load from
elsewhere on the machine hits them alike (medians reported, every run's
requests/s listed): ``GET /healthz`` (the floor: HTTP, middleware, audit
line, no scoring), ``POST /v1/incidents/score?explain=false`` and with the
model's reasons (``explain=true``, the default) on 3,000 real narratives with
their real households, the README's curl body (no household: classification
only) and, without ``--small``, ``score-batch`` of ``--batch`` incidents.

The client is wrk (one thread, benchmarks/http_score.lua and http_get.lua)
when installed, else benchmarks/http_load.py (pure Python, ~10x more client
CPU: figures are then lower bounds). Both are closed-loop: each connection
sends its next request when the previous answer arrives. Reported: requests/s,
incidents/s, latency p50/p99 of a request, errors (non-2xx and socket), server
CPU per request and cores busy (the server's processes, psutil), the client's
cores, and the 1-minute load average before and after (the machine is shared).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import http_load  # noqa: E402
from bench_ranking import (  # noqa: E402
    CITY_SEED,
    DEFAULT_WORK,
    TRAIN_PERSONS,
    TRAIN_SEED,
    _env,
    ensure_bundle,
    ensure_city,
    ensure_ranking,
)
from bench_scoring import print_table  # noqa: E402
from bench_serving import machine  # noqa: E402

KEY = "bench-key-0123456789abcdef"
README_BODY = {"narrative": "报警称：丈夫酒后动手打人，扬言要杀了她", "received_at": "2024-12-31T09:00:00"}
TARGET_RPS, TARGET_P99_MS = 1_000, 20.0


@dataclass(frozen=True)
class Plan:
    """One route to load: label, method, path, body file (None for GET), incidents per request."""

    label: str
    method: str
    path: str
    bodies: Path | None
    per_request: int


def write_bodies(city: Path, rankings: Path, out: Path, n: int, batch: int, seed: int) -> tuple[Path, Path, Path]:
    """Single-incident, batch and README body files (one JSON body per line) from real incidents and households."""
    date = sorted(p.name for p in rankings.glob("????-??-??"))[-1]
    known = set(pd.read_parquet(rankings / date / "context.parquet", columns=["household_id"])["household_id"])
    inc = pd.read_parquet(city / "incidents.parquet", columns=["incident_id", "narrative"])
    truth = pd.read_parquet(city / "truth" / "incidents.parquet", columns=["incident_id", "place_household_id"])
    frame = inc.merge(truth, on="incident_id")
    frame = frame[frame["place_household_id"].isin(known)]
    frame = frame.sample(n=min(n, len(frame)), random_state=seed).reset_index(drop=True)
    incidents = [
        {"narrative": r.narrative, "received_at": f"{date}T20:00:00", "household_id": str(r.place_household_id)}
        for r in frame.itertuples()
    ]
    out.mkdir(parents=True, exist_ok=True)
    single, many, readme = out / "bodies-single.jsonl", out / f"bodies-batch{batch}.jsonl", out / "bodies-readme.jsonl"
    single.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in incidents), encoding="utf-8")
    lines = []
    for k in range(min(len(incidents), 500)):  # every start offset gives a different batch
        chunk = [incidents[(k + j) % len(incidents)] for j in range(batch)]
        lines.append(json.dumps({"incidents": chunk}, ensure_ascii=False) + "\n")
    many.write_text("".join(lines), encoding="utf-8")
    readme.write_text(json.dumps(README_BODY, ensure_ascii=False) + "\n", encoding="utf-8")
    return single, many, readme


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (uvicorn's supervisor, its workers)."""
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) so far of ``pid`` and its descendants; 0 when not known."""
    total = 0.0
    for p in tree(pid) if pid else []:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


class Server:
    """``yujing serve`` as the README starts it, in a child process stopped by its pid."""

    def __init__(self, work: Path, bundle: Path, rankings: Path, workers: int | None) -> None:
        self.port = free_port()
        env = _env(work)
        env.update(
            {
                "YUJING_API_KEYS": str(work / "keys.json"),
                "YUJING_RANKINGS_DIR": str(rankings),
                "YUJING_SERVE_BUNDLE": str(bundle),  # what --bundle sets; the command line stays the README's
            }
        )
        exe = Path(sys.executable).with_name("yujing")
        self.cmd = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if workers is not None:
            self.cmd += ["--workers", str(workers)]
        self.log = open(work / f"serve-{self.port}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 600.0) -> None:
        """``/healthz`` ok on the bundle, then every worker idle (loaded) for a second."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    health = json.loads(r.read())
            except (OSError, ValueError):  # not listening yet, or 503 from /healthz while loading
                time.sleep(0.5)
                continue
            if health.get("status") == "loading":  # the service answers before its models are in
                time.sleep(0.5)
                continue
            if health.get("status") != "ok" or not str(health["models"]["escalation"]).startswith("bundle"):
                self.stop()
                raise SystemExit(f"server is degraded or not on the bundle: {health}")
            while time.time() < deadline:  # workers still loading burn CPU; loaded ones are idle
                before = cpu_seconds(self.proc.pid)
                time.sleep(1.0)
                if cpu_seconds(self.proc.pid) - before < 0.1:
                    return
            break
        self.stop()
        raise SystemExit("server did not become ready in time")

    def workers(self) -> int:
        """Worker processes serving (uvicorn's multiprocessing children, or the server itself)."""
        spawned = [p for p in tree(self.proc.pid)[1:] if "spawn_main" in " ".join(p.cmdline())]
        return len(spawned) or 1

    def stop(self) -> None:
        children = [p.pid for p in tree(self.proc.pid)[1:]]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in children:  # workers the supervisor did not take down with it
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        self.log.close()


def wrk_client(url: str, plan: Plan, connections: int, seconds: float, key: str) -> dict:
    """One wrk run (one thread: it drives thousands of requests/s and leaves the cores to the server)."""
    common = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout=30s", "--latency"]
    if plan.bodies is None:
        cmd = [*common, "-s", str(HERE / "http_get.lua"), url + plan.path]
    else:
        cmd = [*common, "-s", str(HERE / "http_score.lua"), url, "--", str(plan.bodies), plan.path, key]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed: {done.stderr[-2000:]}")
    return json.loads(next(ln for ln in reversed(done.stdout.splitlines()) if ln.startswith("{")))


def python_client(url: str, plan: Plan, connections: int, seconds: float, key: str) -> dict:
    """One run of the pure-Python client (benchmarks/http_load.py)."""
    bodies = [] if plan.bodies is None else [ln.encode() for ln in plan.bodies.read_text("utf-8").splitlines() if ln]
    requests = http_load.format_requests(url, plan.method, plan.path, bodies, {"X-API-Key": key})
    return http_load.run(url, requests, connections, seconds)


def measure(
    client: Callable[..., dict], url: str, plan: Plan, connections: int, seconds: float, key: str, pid: int | None
) -> dict:
    """One measured run with the server's CPU (its process tree) and the client's around it."""
    cpu0, mine0 = cpu_seconds(pid), os.times()
    r = client(url, plan, connections, seconds, key)
    cpu1, mine1 = cpu_seconds(pid), os.times()
    secs = r["duration_us"] / 1e6
    client_cpu = sum(
        getattr(mine1, f) - getattr(mine0, f) for f in ("user", "system", "children_user", "children_system")
    )
    errors = sum(r[k] for k in ("status_errors", "timeouts", "read_errors", "write_errors", "connect_errors"))
    return {
        "rps": r["requests"] / secs,
        "p50": r["p50_us"] / 1e3,
        "p99": r["p99_us"] / 1e3,
        "errors": errors,
        "server_ms": (cpu1 - cpu0) * 1e3 / max(r["requests"], 1) if pid else None,
        "server_cores": (cpu1 - cpu0) / secs if pid else None,
        "client_cores": client_cpu / secs,
        "load": os.getloadavg()[0],
    }


def summary_row(plan: Plan, runs: list[dict]) -> list[object]:
    """The table row of one route: medians over its runs, every run's requests/s."""
    med = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "client_cores")}
    server = [r["server_ms"] for r in runs if r["server_ms"] is not None]
    cores = [r["server_cores"] for r in runs if r["server_cores"] is not None]
    return [
        plan.label,
        f"{med['rps']:,.0f}",
        " / ".join(f"{r['rps']:,.0f}" for r in runs),
        f"{med['rps'] * plan.per_request:,.0f}",
        f"{med['p50']:.1f}",
        f"{med['p99']:.1f}",
        sum(r["errors"] for r in runs),
        f"{statistics.median(server):.2f}" if server else "-",
        f"{statistics.median(cores):.2f}" if cores else "-",
        f"{med['client_cores']:.2f}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache shared with bench_ranking.py")
    parser.add_argument("--persons", type=int, default=250_000, help="city whose incidents are sent")
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before the measured runs")
    parser.add_argument("--repeat", type=int, default=3, help="runs per route (medians reported)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, help="pass --workers N to yujing serve (default: its own default)")
    parser.add_argument("--batch", type=int, default=50, help="incidents per score-batch request (0: skip)")
    parser.add_argument("--incidents", type=int, default=3_000, help="distinct incidents to rotate through")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--url", help="measure this running server instead of starting one")
    parser.add_argument("--key", default=KEY, help="API key for --url")
    parser.add_argument("--home", type=Path, help="with --url: the server's YUJING_HOME (city and rankings)")
    parser.add_argument("--pid", type=int, help="with --url: the server's pid, to count its CPU")
    parser.add_argument("--small", action="store_true", help="training city, 5 s runs, no score-batch")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    if args.small:
        args.persons, args.seconds, args.warmup, args.batch = TRAIN_PERSONS, 5, 2, 0
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    if use_wrk and shutil.which("wrk") is None:
        raise SystemExit("--client wrk: wrk not found (Debian: apt-get install -y wrk)")
    client = wrk_client if use_wrk else python_client
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(machine())
    print(
        subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        if use_wrk
        else "client: benchmarks/http_load.py (pure Python; wrk not installed): figures are lower bounds"
    )

    server: Server | None = None
    if args.url:
        if args.home is None:
            raise SystemExit("--url needs --home (the server's YUJING_HOME: its data/city and outputs/rankings)")
        city, rankings = args.home / "data" / "city", args.home / "outputs" / "rankings"
        url, key, pid = args.url.rstrip("/"), args.key, args.pid
    else:
        bundle = ensure_bundle(work)
        city = ensure_city(work, args.persons, TRAIN_SEED if args.persons == TRAIN_PERSONS else CITY_SEED)
        rankings = ensure_ranking(work, city, bundle)
        (work / "keys.json").write_text(json.dumps({KEY: {"scope": "city"}}), encoding="utf-8")
    single, many, readme = write_bodies(
        city, rankings, work / "http-bodies", args.incidents, max(args.batch, 1), args.seed
    )
    plans = [
        Plan("GET /healthz", "GET", "/healthz", None, 1),
        Plan("score, explain=false", "POST", "/v1/incidents/score?explain=false", single, 1),
        Plan("score, explain=true", "POST", "/v1/incidents/score", single, 1),
        Plan("score, README's curl body", "POST", "/v1/incidents/score", readme, 1),
    ]
    if args.batch:
        plans.append(
            Plan(f"score-batch x{args.batch}", "POST", "/v1/incidents/score-batch?explain=false", many, args.batch)
        )

    load_before = os.getloadavg()
    try:
        if server is None and not args.url:
            server = Server(work, bundle, rankings, args.workers)
            url, key, pid = server.url, KEY, server.proc.pid
            print(f"server: {' '.join(server.cmd[1:])} ({server.workers()} worker(s)), city {city.name}")
        print(f"{args.connections} connections, {args.seconds:g} s per run, {args.repeat} runs per route\n")
        client(url, plans[1], args.connections, args.warmup, key)
        runs: dict[str, list[dict]] = {p.label: [] for p in plans}
        for k in range(args.repeat):
            for plan in plans[k % len(plans) :] + plans[: k % len(plans)]:  # rotate: no route always first
                r = measure(client, url, plan, args.connections, args.seconds, key, pid)
                runs[plan.label].append(r)
                print(
                    f"  {plan.label}: {r['rps']:,.0f} req/s, p99 {r['p99']:.1f} ms, load {r['load']:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        if server is not None:
            server.stop()
    load_after = os.getloadavg()
    header = [
        "route",
        "requests/s",
        "runs",
        "incidents/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "server CPU ms/request",
        "server cores",
        "client cores",
    ]
    print_table(header, [summary_row(p, runs[p.label]) for p in plans])
    score = runs["score, explain=false"]
    rps, p99 = statistics.median(r["rps"] for r in score), statistics.median(r["p99"] for r in score)
    met = rps >= TARGET_RPS and p99 <= TARGET_P99_MS
    print(
        f"target: >= {TARGET_RPS:,} single incidents/s at {args.connections} connections with p99 <= "
        f"{TARGET_P99_MS:g} ms: {'met' if met else 'NOT met'} ({rps:,.0f}/s, p99 {p99:.1f} ms)"
    )
    print(json.dumps({"load_average_before": load_before, "load_average_after": load_after}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
