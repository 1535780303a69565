"""Workbench page latency on the default city: p50/p99 per page from a served ``yujing serve`` (target p99 < 200 ms).

Run from the repository root::

    .venv/bin/python benchmarks/bench_workbench.py                  # the README deployment on var/, 200 per page
    .venv/bin/python benchmarks/bench_workbench.py --requests 500 --workers 1
    # a deployment already running (keys in the environment, never on the command line):
    export BENCH_CITY_KEY=... BENCH_COUNTY_KEY=... BENCH_STATION_KEY=...
    .venv/bin/python benchmarks/bench_workbench.py --url URL

Without ``--url`` the service is started as the README starts it (``yujing serve`` with its
default worker count, one per core up to 4) on ``var/``'s data, rankings and models, without
writing into ``var/``: the warnings database and the MLflow store are copied to a temp folder,
keys for the city, the busiest station's county and that station go to a temp keys file, and
``yujing report --period month`` writes a report into a temp folder (so ``/wb/reports`` lists one).
``make run`` leaves a single ranking date in ``var/``; a deployment in steady state holds months of
them, mostly fed back, and the overview, league table and overdue list read them all, so the copy
is first given ``--history`` days of rankings (default 60, one assessment period; see
:func:`grow_history`; ``--history 1`` measures ``var/`` as it is).

The client is pure Python (http.client, one keep-alive connection per signed-in scope): it
signs in through ``/wb/login`` as a browser does (the form's CSRF token and the session
cookie), then requests every page ``--requests`` times after ``--warmup`` unmeasured ones. The
pages are interleaved, one request of each in turn, so that load from elsewhere on the shared
machine hits them alike. A request's latency is from sending it to having read the whole answer
(what a person waits for, less the browser's drawing). Reported per page: p50, p99 and max in
ms, the answer's size, non-200 answers, and whether p99 is under the target; the 1-minute load
average before and after (the machine is shared; a busy one says so).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (str(REPO), str(REPO / "tests"), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from e2e.browser import (  # noqa: E402
    YUJING,
    Server,
    busiest_station,
    readme_deployment,
    warnings_by_station,
    write_keys,
)

TARGET_P99_MS = 200.0
COOKIE = "yujing_session"
_TOKEN = re.compile(r"<input[^>]*name=\"csrf_token\"[^>]*>")
_VALUE = re.compile(r"value=\"([^\"]*)\"")
_HOUSEHOLD = re.compile(r"href=\"(/wb/households/[^\"/?#]+)\"")
_REPORT = re.compile(r"href=\"(/wb/reports/[^\"]+\.html)\"")


class BenchError(RuntimeError):
    """The deployment did not answer as the workbench contract says (sign-in, a page); names the page."""


@dataclass
class Client:
    """One keep-alive connection and one workbench session (its cookie), as one browser tab."""

    base: str
    cookie: str = ""
    connection: http.client.HTTPConnection = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request on the kept-alive connection: status, headers (lower-case names) and the whole body."""
        headers = {"Cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.connection.request(method, path, body=body, headers=headers)
        answer = self.connection.getresponse()
        data = answer.read()
        for name, value in answer.getheaders():
            if name.lower() == "set-cookie" and value.startswith(COOKIE + "="):
                self.cookie = value.split(";", 1)[0].split("=", 1)[1]
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, data

    def sign_in(self, key: str) -> str:
        """Sign in through the login form (its CSRF token, the anonymous session's cookie); the home page's path."""
        status, _, page = self.request("GET", "/wb/login")
        found = _TOKEN.search(page.decode("utf-8", "replace"))
        value = _VALUE.search(found.group()) if found else None
        if status != 200 or value is None:
            raise BenchError(f"GET /wb/login answered {status} without a csrf_token field")
        form = urlencode({"key": key, "csrf_token": value.group(1)}).encode()
        status, headers, _ = self.request("POST", "/wb/login", form)
        if status != 303 or not self.cookie:
            raise BenchError(f"POST /wb/login answered {status} (expected 303 with a session cookie): check the key")
        return urlsplit(headers.get("location", "/wb/")).path

    def close(self) -> None:
        self.connection.close()


@dataclass
class Page:
    """One page to measure: who asks for it, and every request's latency, status and size."""

    scope: str
    path: str
    client: Client
    seconds: list[float] = field(default_factory=list)
    errors: int = 0
    size: int = 0

    def hit(self, record: bool) -> None:
        started = time.perf_counter()
        status, _, body = self.client.request("GET", self.path)
        took = time.perf_counter() - started
        if record:
            self.seconds.append(took)
            self.errors += status != 200
            self.size = len(body)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation, as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def pages_of(base: str, keys: dict[str, str]) -> list[Page]:
    """Every workbench page of the contract, each asked for by the scope whose page it is."""
    anonymous, city, county, station = Client(base), Client(base), Client(base), Client(base)
    city.sign_in(keys["city"])
    county_home = county.sign_in(keys["county"])
    station_home = station.sign_in(keys["station"])
    pages = [Page("-", "/wb/login", anonymous)]
    pages += [Page("city", p, city) for p in ("/wb/", "/wb/assessment", "/wb/reports")]
    status, _, listing = city.request("GET", "/wb/reports")
    report = _REPORT.search(listing.decode("utf-8", "replace")) if status == 200 else None
    if report:
        pages.append(Page("city", report.group(1), city))
    pages += [Page("county", county_home, county), Page("county", county_home.rstrip("/") + "/supervision", county)]
    pages.append(Page("station", station_home, station))
    status, _, own = station.request("GET", station_home)
    household = _HOUSEHOLD.search(own.decode("utf-8", "replace")) if status == 200 else None
    if household:
        pages.append(Page("station", household.group(1), station))
    for page in pages:
        status, _, _ = page.client.request("GET", page.path)
        if status != 200:
            raise BenchError(f"GET {page.path} as {page.scope} answered {status}, not 200")
    return pages


def measure(pages: list[Page], requests: int, warmup: int) -> None:
    """``warmup`` then ``requests`` rounds, one request of every page per round (interleaved)."""
    for n in range(warmup + requests):
        for page in pages:
            page.hit(record=n >= warmup)


def report(pages: list[Page], load_before: float, note: str) -> bool:
    """Print the table and the verdict; whether every page met the target without errors."""
    from bench_scoring import print_table

    rows, ok = [], True
    for page in pages:
        ms = [s * 1000 for s in page.seconds]
        p99 = percentile(ms, 99)
        good = p99 < TARGET_P99_MS and page.errors == 0
        ok &= good
        rows.append(
            (
                page.path,
                page.scope,
                len(ms),
                f"{percentile(ms, 50):.1f}",
                f"{p99:.1f}",
                f"{max(ms):.1f}",
                f"{statistics.fmean(ms):.1f}",
                f"{page.size / 1024:.0f}",
                page.errors,
                "yes" if good else "NO",
            )
        )
    header = ("page", "scope", "requests", "p50 ms", "p99 ms", "max ms", "mean ms", "KB", "non-200", "p99 < 200 ms")
    print(note)
    print_table(header, rows)
    print(f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; {os.cpu_count()} cpus")
    print(f"verdict: {'every page' if ok else 'NOT every page'} answered at p99 under {TARGET_P99_MS:.0f} ms")
    return ok


def grow_history(db_url: str, days: int, seed: int = 5) -> int:
    """Give the (copied) warnings database ``days`` ranking dates: the latest date's warnings repeated on each
    earlier day, pushed that day and moved along the loop as stations do; the warnings added.

    A deployment in steady state holds at least a two-month assessment period of daily rankings, with most
    warnings acknowledged, handled and fed back: the overview, the league table and the overdue list read all
    of them. ``var/`` after ``make run`` holds a single date, which flatters every page. Seeded: the same
    history every run. Written straight into the copy (the store's own tables), never into ``var/``.
    """
    import datetime as dt
    import random

    from sqlalchemy import create_engine, func, insert, select

    from models.warning_store import WarningStore
    from models.warning_tables import OUTCOMES, ranking_runs, warning_events, warnings_table

    WarningStore(db_url).dispose()  # brings an older database's tables up to date, as the service would
    engine = create_engine(db_url)
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    added = 0
    try:
        with engine.begin() as conn:
            latest = conn.execute(select(func.max(warnings_table.c.date))).scalar_one()
            rows = [
                dict(r) for r in conn.execute(select(warnings_table).where(warnings_table.c.date == latest)).mappings()
            ]
            run = conn.execute(select(ranking_runs).where(ranking_runs.c.date == latest)).mappings().first()
            last = dt.date.fromisoformat(latest)
            for back in range(1, days):
                day = (last - dt.timedelta(days=back)).isoformat()
                created = now - dt.timedelta(days=back, hours=2)
                if run is not None:
                    conn.execute(
                        insert(ranking_runs).values({**run, "date": day, "created_at": created, "updated_at": created})
                    )
                for row in rows:
                    path = rng.choices(
                        [["acknowledged", "handled", "fed_back"], ["acknowledged", "handled"], ["acknowledged"], []],
                        weights=[7, 1, 1, 1],
                    )[0]
                    at, status, outcome, events = created, "pushed", None, [("pushed", None, None, created)]
                    for step in path:
                        at = at + dt.timedelta(hours=rng.uniform(1, 30))
                        outcome = rng.choice(OUTCOMES) if step == "fed_back" else None
                        events.append((step, status, outcome, at))
                        status = step
                    record = {k: v for k, v in row.items() if k != "id"}
                    record.update(
                        date=day, status=status, status_at=at, outcome=outcome, created_at=created, updated_at=at
                    )
                    wid = conn.execute(insert(warnings_table).values(record)).inserted_primary_key[0]
                    conn.execute(
                        insert(warning_events),
                        [
                            {
                                "warning_id": wid,
                                "from_status": before,
                                "to_status": to,
                                "actor": "bench",
                                "note": "已走访" if to == "fed_back" else None,
                                "outcome": oc,
                                "at": when,
                            }
                            for to, before, oc, when in events
                        ],
                    )
                    added += 1
    finally:
        engine.dispose()
    return added


def local_deployment(var: Path, work: Path, workers: int | None, history: int) -> tuple[Server, dict[str, str], str]:
    """The README deployment on a read-only ``var/`` (keys, a monthly report), started and ready."""
    import subprocess

    env = readme_deployment(var, work)
    grown = grow_history(env["YUJING_WARNINGS_DB_URL"], history) if history > 1 else 0
    date, by_station = warnings_by_station(env["YUJING_WARNINGS_DB_URL"])
    station, county = busiest_station(by_station)
    keys = write_keys(
        work / "keys.json",
        {
            "city": {"scope": "city"},
            "county": {"scope": "county", "county": county},
            "station": {"scope": "station", "station": station},
        },
    )
    done = subprocess.run(
        [str(YUJING), "--quiet", "report", "--period", "month"], cwd=work, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        print(f"note: yujing report failed (exit {done.returncode}); /wb/reports lists nothing", file=sys.stderr)
    server = Server(env, cwd=work, log=work / "serve.log", workers=workers)
    server.wait_ready()
    warned = sum(len(rows) for rows in by_station.values())
    note = (
        f"the README deployment on {var} (ranking {date}, {warned} warnings, {len(by_station)} stations), "
        f"`yujing serve` with {'its default' if workers is None else workers} worker(s); "
        f"history: {max(history, 1)} ranking date(s) ({grown} warnings added to the copy); "
        f"station {station}, county {county}"
    )
    return server, keys, note


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var", type=Path, default=REPO / "var", help="the README's var/ (read only)")
    parser.add_argument("--url", help="a running deployment (keys from BENCH_CITY_KEY, BENCH_COUNTY_KEY, ...)")
    parser.add_argument("--requests", type=int, default=200, help="measured requests per page")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured requests per page first")
    parser.add_argument("--workers", type=int, default=None, help="yujing serve --workers (default: its own)")
    parser.add_argument(
        "--history", type=int, default=60, help="ranking dates in the copied database (1: var/ as it is)"
    )
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    if args.url:
        names = {"city": "BENCH_CITY_KEY", "county": "BENCH_COUNTY_KEY", "station": "BENCH_STATION_KEY"}
        keys = {scope: os.environ.get(var, "") for scope, var in names.items()}
        if not all(keys.values()):
            print(f"error: --url needs the keys in {', '.join(names.values())}", file=sys.stderr)
            return 2
        pages = pages_of(args.url.rstrip("/"), keys)
        measure(pages, args.requests, args.warmup)
        return 0 if report(pages, load_before, f"the deployment at {args.url}") else 1
    if not (args.var / "warnings.db").is_file():
        print(f"error: {args.var}: no warnings.db; fix: `make run` first, or pass --var or --url", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="yujing-bench-wb-") as tmp:
        server, keys, note = local_deployment(args.var, Path(tmp), args.workers, args.history)
        with server:
            pages = pages_of(server.base, keys)
            load_before = os.getloadavg()[0]
            measure(pages, args.requests, args.warmup)
            for page in pages:
                page.client.close()
        return 0 if report(pages, load_before, note) else 1


if __name__ == "__main__":
    sys.exit(main())
