"""HTTP scoring throughput and latency: wrk against ``yujing serve`` on loopback, 1, 8 and 64 connections.

Run from the repository root (needs ``wrk``: ``apt-get install -y wrk``)::

    .venv/bin/python benchmarks/bench_http.py            # every configuration, 20 s each; ~10 minutes
    .venv/bin/python benchmarks/bench_http.py --small    # fewer configurations, 5 s each, training city

Set-up is bench_serving.py's (cached under ``--work``): the bundle trained
once on a 100,000-person city, a 250,000-person city (~100k households) and
its published ranking. The bench writes an API key file, one JSON body per
line (real narratives from ``incidents.parquet`` with their real household,
``received_at`` the evening of the ranking date; batches of ``--batch``
incidents for ``score-batch``), starts ``yujing serve --bundle B --workers W``
on 127.0.0.1 with ``YUJING_HOME`` in the work folder, waits for ``/healthz``
to answer ``ok`` (not degraded), runs wrk with benchmarks/http_score.lua
(POST, ``X-API-Key``, bodies rotated per request) for a warm-up and then for
``--seconds``, and stops the server by its pid (SIGTERM, then its worker
processes by pid if any is left).

Reported per run: requests/s, incidents/s (requests x incidents per request),
latency p50/p90/p99/max of a request (wrk measures closed-loop: each
connection sends its next request when the previous answer arrives), non-2xx
and socket errors, and the CPU seconds the server processes and wrk used per
second of the run. wrk runs on the same 2 cores as the server, so every
figure is for server + load generator sharing the machine.

Server variants (the project's code is never changed; a variant only adds a
folder to the server's PYTHONPATH):

- ``installed``: ``yujing serve`` as the project's environment has it
  (uvicorn on asyncio with the pure-Python h11 parser: no uvloop/httptools).
- ``nodelay``: a ``sitecustomize.py`` (written to the work folder) that makes
  asyncio set TCP_NODELAY on sockets accepted from a listener created without
  ``proto=IPPROTO_TCP``. uvicorn's ``--workers N>1`` binds its listener so
  (uvicorn issue Kludex/uvicorn#3149), Nagle's algorithm stays on and each
  keep-alive response waits ~40 ms for the client's delayed ACK; this variant
  shows what the multi-worker server does once that is fixed.
- ``nodelay+uvloop`` (with ``--extra-site DIR``, DIR holding ``uvloop`` and
  ``httptools``: ``pip install --target DIR uvloop httptools``): uvicorn's
  ``standard`` extras on top, without touching the project's environment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

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
LUA = HERE / "http_score.lua"
NODELAY_SITECUSTOMIZE = """\
# Benchmark-only (benchmarks/bench_http.py): asyncio sets TCP_NODELAY only when the accepted
# socket reports proto == IPPROTO_TCP; uvicorn's multi-worker listener is created with proto 0.
import asyncio.base_events as _be
import socket as _socket


def _set_nodelay(sock):
    if sock.family in {_socket.AF_INET, _socket.AF_INET6} and sock.type == _socket.SOCK_STREAM:
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)


_be._set_nodelay = _set_nodelay
"""


def write_bodies(city: Path, rankings: Path, out: Path, n: int, batch: int, seed: int) -> tuple[Path, Path]:
    """Single-incident and batch body files (one JSON body per line) from real incidents and households."""
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
    single, many = out / "bodies-single.jsonl", out / f"bodies-batch{batch}.jsonl"
    single.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in incidents), encoding="utf-8")
    lines = []
    for k in range(len(incidents)):  # every start offset gives a different batch
        chunk = [incidents[(k + j) % len(incidents)] for j in range(batch)]
        lines.append(json.dumps({"incidents": chunk}, ensure_ascii=False) + "\n")
        if len(lines) >= 500:
            break
    many.write_text("".join(lines), encoding="utf-8")
    return single, many


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``yujing serve`` in a child process, stopped by its pid."""

    def __init__(self, work: Path, bundle: Path, rankings: Path, workers: int, sites: Sequence[Path]) -> None:
        self.port = free_port()
        env = _env(work)
        env.update(
            {
                "YUJING_API_KEYS": str(work / "keys.json"),
                "YUJING_RANKINGS_DIR": str(rankings),
                "YUJING_RELOAD_INTERVAL_SECONDS": "0",
                # Belt and braces: older `yujing serve --bundle` served the registry's champion with one worker
                # (settings cached before it exported this); /healthz is checked to name the bundle as well.
                "YUJING_SERVE_BUNDLE": str(bundle),
            }
        )
        if sites:
            env["PYTHONPATH"] = os.pathsep.join([*map(str, sites), env["PYTHONPATH"]])
        exe = Path(sys.executable).with_name("yujing")
        cmd = [
            str(exe),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--bundle",
            str(bundle),
        ]
        self.log = open(work / f"serve-{self.port}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    health = json.loads(r.read())
                if health["status"] != "ok" or not str(health["models"]["escalation"]).startswith("bundle"):
                    self.stop()
                    raise SystemExit(f"server is degraded or not on the bundle: {health}")
                procs = self.processes()
                # with --workers N every worker must be up, not just the first
                if self.workers == 1 or len(procs) >= self.workers + 1:
                    time.sleep(2.0 if self.workers > 1 else 0.5)
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        self.stop()
        raise SystemExit("server did not become healthy in time")

    def processes(self) -> list[psutil.Process]:
        try:
            parent = psutil.Process(self.proc.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> dict[int, float]:
        """CPU seconds (user + system) so far of the server and each of its worker processes, by pid."""
        out = {}
        for p in self.processes():
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return out

    def stop(self) -> None:
        children = [p.pid for p in self.processes()[1:]]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in children:  # workers the supervisor did not take down with it
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        self.log.close()


def wrk(url: str, path: str, bodies: Path, connections: int, seconds: int, timeout: int = 30) -> dict:
    """One wrk run; its done() JSON plus the CPU seconds wrk itself used."""
    threads = 1  # one epoll thread drives thousands of requests/s; a second would only take CPU from the server
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={timeout}s",
        "--latency",
        "-s",
        str(LUA),
        url,
        "--",
        str(bodies),
        path,
        KEY,
    ]
    before = os.times()
    done = subprocess.run(cmd, capture_output=True, text=True)
    after = os.times()
    if done.returncode != 0:
        raise SystemExit(f"wrk failed: {done.stderr[-2000:]}")
    line = next(ln for ln in reversed(done.stdout.splitlines()) if ln.startswith("{"))
    result = json.loads(line)
    result["wrk_cpu_s"] = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    result["threads"] = threads
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache shared with bench_ranking.py")
    parser.add_argument("--persons", type=int, default=250_000, help="city whose incidents are sent")
    parser.add_argument("--seconds", type=int, default=20, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk before each measured run")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--batch", type=int, default=50, help="incidents per score-batch request")
    parser.add_argument("--incidents", type=int, default=3_000, help="distinct incidents to rotate through")
    parser.add_argument("--extra-site", type=Path, help="folder with uvloop + httptools for a second variant")
    parser.add_argument("--small", action="store_true", help="training city, 5 s runs, fewer configurations")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    if args.small:
        args.persons, args.seconds, args.warmup, args.connections = TRAIN_PERSONS, 5, 2, [1, 8, 64]
    if shutil.which("wrk") is None:
        print("skipped: wrk not found (Debian: apt-get install -y wrk)")
        return 0
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(machine())
    print(subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()[0])
    bundle = ensure_bundle(work)
    city = ensure_city(work, args.persons, TRAIN_SEED if args.persons == TRAIN_PERSONS else CITY_SEED)
    rankings = ensure_ranking(work, city, bundle)
    (work / "keys.json").write_text(json.dumps({KEY: {"scope": "city"}}), encoding="utf-8")
    single, many = write_bodies(city, rankings, work, args.incidents, args.batch, args.seed)
    print(
        f"city {city.name}; {len(single.read_text(encoding='utf-8').splitlines())} distinct incidents; "
        f"batch bodies of {args.batch}\n"
    )

    nodelay = work / "site-nodelay"
    nodelay.mkdir(exist_ok=True)
    (nodelay / "sitecustomize.py").write_text(NODELAY_SITECUSTOMIZE, encoding="utf-8")
    variants: dict[str, list[Path]] = {"installed": [], "nodelay": [nodelay]}
    if args.extra_site is not None:
        variants["nodelay+uvloop"] = [nodelay, args.extra_site.resolve()]
    one, batch = "/v1/incidents/score?explain=false", "/v1/incidents/score-batch?explain=false"
    bx = f"score-batch x{args.batch}, explain=false"
    # (endpoint label, workers, path, bodies, incidents per request, server variant)
    plans: list[tuple[str, int, str, Path, int, str]] = [
        ("score, explain=false", 1, one, single, 1, "installed"),
        ("score, explain=false", 2, one, single, 1, "installed"),
        ("score, explain=false", 2, one, single, 1, "nodelay"),
        ("score, explain=true", 1, "/v1/incidents/score", single, 1, "installed"),
        ("score, explain=true", 2, "/v1/incidents/score", single, 1, "nodelay"),
        (bx, 1, batch, many, args.batch, "installed"),
        (bx, 2, batch, many, args.batch, "installed"),
        (bx, 2, batch, many, args.batch, "nodelay"),
    ]
    if "nodelay+uvloop" in variants:
        plans += [
            ("score, explain=false", 1, one, single, 1, "nodelay+uvloop"),
            ("score, explain=false", 2, one, single, 1, "nodelay+uvloop"),
            (bx, 2, batch, many, args.batch, "nodelay+uvloop"),
        ]
    if args.small:
        keep = {
            ("score, explain=false", 1, "installed"),
            ("score, explain=false", 2, "installed"),
            ("score, explain=false", 2, "nodelay"),
            (bx, 2, "nodelay"),
        }
        plans = [p for p in plans if (p[0], p[1], p[5]) in keep]

    rows = []
    for label, workers, path, bodies, per, variant in plans:
        server = Server(work, bundle, rankings, workers, variants[variant])
        try:
            for c in args.connections:
                wrk(server.url, path, bodies, c, args.warmup)
                cpu0 = server.cpu_seconds()
                r = wrk(server.url, path, bodies, c, args.seconds)
                cpu1 = server.cpu_seconds()
                per_process = sorted((cpu1[p] - cpu0.get(p, 0.0) for p in cpu1), reverse=True)
                server_cpu = sum(per_process)
                secs = r["duration_us"] / 1e6
                rps = r["requests"] / secs
                errors = r["status_errors"] + r["timeouts"] + r["read_errors"] + r["write_errors"] + r["connect_errors"]
                rows.append(
                    [
                        label,
                        variant,
                        workers,
                        c,
                        f"{rps:,.0f}",
                        f"{rps * per:,.0f}",
                        f"{r['p50_us'] / 1e3:.1f}",
                        f"{r['p90_us'] / 1e3:.1f}",
                        f"{r['p99_us'] / 1e3:.1f}",
                        f"{r['max_us'] / 1e3:.0f}",
                        errors,
                        f"{server_cpu / secs:.2f}"
                        + (
                            ""
                            if workers == 1
                            else " (" + "+".join(f"{v / secs:.2f}" for v in per_process[:workers]) + ")"
                        ),
                        f"{r['wrk_cpu_s'] / secs:.2f}",
                    ]
                )
                print(
                    f"  {label}, {variant}, {workers} worker(s), {c} conn: {rps:,.0f} req/s, "
                    f"{rps * per:,.0f} incidents/s, "
                    f"p99 {r['p99_us'] / 1e3:.1f} ms, {errors} errors",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            server.stop()
    print(
        f"wrk on loopback, {args.seconds} s per run after {args.warmup} s warm-up, closed loop (target >= 1,000 "
        "incidents/s on 2 cores); CPU columns are cores busy on average (2.00 = both; per worker in brackets):\n"
    )
    print_table(
        [
            "endpoint",
            "server",
            "uvicorn workers",
            "connections",
            "requests/s",
            "incidents/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "errors",
            "server CPU",
            "wrk CPU",
        ],
        rows,
    )
    print(json.dumps({"load_average_end": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
