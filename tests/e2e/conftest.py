"""Fixtures of the browser tests: the real ``yujing serve`` on the ranked test city, keys per scope, chromium.

The service runs as a subprocess of the venv's ``yujing`` entry point, on a free port, with its
own copy of the ranked city's warnings database (the tests move warnings) and a hashed keys file
holding one key for the city, one county and one station of that county. Its settings come from
``own_service_settings`` (tests/conftest.py), passed as ``YUJING_*`` variables as a deployment's
would be. One warning of another station of the county is made overdue before the service
starts (see :func:`make_overdue`): with the default deadlines nothing in a ranking made minutes
ago is.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import own_service_settings
from sqlalchemy import create_engine, update

from e2e.browser import (
    YUJING,
    Server,
    Workbench,
    browser_problem,
    busiest_station,
    service_env,
    start_browser,
    warnings_by_station,
    write_keys,
)

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

OVERDUE_BY = dt.timedelta(days=30)
"""How far back the prepared warning's ``created_at`` is set: past every level's default deadline (360 h at most)."""


@dataclass(frozen=True)
class Deployment:
    """The served test city and what the tests need to know about it (ids from its warnings database)."""

    base: str
    root: Path
    """The deployment's folder (its settings' files, the service's log ``serve.log``)."""
    keys: dict[str, str] = field(repr=False)  # never in a failure's output
    env: dict[str, str] = field(repr=False)
    db_url: str
    reports_dir: Path
    date: str
    station: str
    county: str
    other_station: str
    other_household: str
    station_warnings: dict[int, str]
    """The station's warnings on ``date``: ``{id: household_id}``."""
    other_households: frozenset[str]
    """Households warned on ``date`` at every other station."""
    county_stations: frozenset[str]
    foreign_station: str
    """A station of another county (a county key must not open it)."""
    overdue_warning: int
    report: subprocess.Popen = field(repr=False)
    """``yujing report --period month`` into ``reports_dir``, started beside the service (it takes most of a minute)."""


@pytest.fixture(scope="session")
def browser_ok() -> None:
    """Skip without chromium/chromedriver, naming the fix; in CI (``CI=true``, which installs both) fail instead."""
    problem = browser_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the browser tests: {problem}", pytrace=False)
    pytest.skip(problem)


def make_overdue(db_url: str, warning_id: int, now: dt.datetime) -> None:
    """Set one warning's ``created_at`` back by :data:`OVERDUE_BY`, so that its deadline has passed.

    Deadlines run on the loop's real clock from ``created_at`` (the ranking's push), so a ranking made
    minutes before the test has nothing overdue; a county's supervision page needs something to list.
    """
    from models.warning_tables import warnings_table as w

    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            done = conn.execute(update(w).where(w.c.id == warning_id).values(created_at=now - OVERDUE_BY))
            assert done.rowcount == 1, f"warning {warning_id} not in {db_url}"
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def deployment(browser_ok: None, ranked: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """``yujing serve`` on the ranked city (own warnings database, own keys), stopped by pid afterwards."""
    root = tmp_path_factory.mktemp("workbench")
    settings = own_service_settings(ranked, root, {})
    db_url = str(settings.warnings_db_url)
    date, by_station = warnings_by_station(db_url)
    county_of = {station: rows[0][2] for station, rows in by_station.items()}
    station, county = busiest_station(by_station)
    other = next(o for o in sorted(by_station) if o != station and county_of[o] == county)
    overdue = by_station[other][0][0]
    make_overdue(db_url, overdue, dt.datetime.now(dt.UTC))
    keys = write_keys(
        Path(settings.api_keys_file),
        {
            "city": {"scope": "city"},
            "county": {"scope": "county", "county": county},
            "station": {"scope": "station", "station": station},
        },
    )
    env = service_env(
        YUJING_HOME=str(settings.home),
        YUJING_API_KEYS=str(settings.api_keys_file),
        YUJING_RANKINGS_DIR=str(settings.rankings_dir),
        YUJING_WARNINGS_DB_URL=db_url,
        YUJING_SERVE_BUNDLE=str(settings.serve_bundle),
        YUJING_RELOAD_INTERVAL_SECONDS="0",
        YUJING_REPORTS_DIR=str(settings.reports_dir),
        YUJING_DATA_DIR=str(Path(ranked["city"]).parent),
        MLFLOW_TRACKING_URI=str(ranked["uri"]),
    )
    with (root / "report.log").open("wb") as sink:
        report = subprocess.Popen(
            [str(YUJING), "report", "--period", "month"], cwd=root, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    server = Server(env, cwd=root, log=root / "serve.log")
    try:
        server.wait_ready()
        yield Deployment(
            base=server.base,
            root=root,
            keys=keys,
            env=env,
            db_url=db_url,
            reports_dir=Path(settings.reports_dir),
            date=date,
            station=station,
            county=county,
            other_station=other,
            other_household=by_station[other][0][1],
            station_warnings={wid: hid for wid, hid, _c in by_station[station]},
            other_households=frozenset(r[1] for s, rows in by_station.items() if s != station for r in rows),
            county_stations=frozenset(s for s, c in county_of.items() if c == county),
            foreign_station=next(s for s in sorted(by_station) if county_of[s] != county),
            overdue_warning=overdue,
            report=report,
        )
    finally:
        server.stop()
        if report.poll() is None:
            report.terminate()
            report.wait(timeout=30)


@pytest.fixture
def sessions(deployment: Deployment, tmp_path: Path) -> Iterator[Callable[[str], Workbench]]:
    """A factory of fresh browser sessions (own profile each), screenshots into the test's tmp dir; all quit after."""
    drivers: list[WebDriver] = []

    def new(name: str) -> Workbench:
        driver = start_browser(tmp_path / f"profile-{name}-{len(drivers)}")
        drivers.append(driver)
        return Workbench(driver, deployment.base, tmp_path / "shots" / name)

    try:
        yield new
    finally:
        for driver in drivers:
            driver.quit()
