"""The browser harness: the real ``yujing serve`` in a subprocess and Debian's chromium driven by its chromedriver.

Shared by the browser tests (tests/e2e/), the screenshot command (tools/screenshots.py) and the
workbench benchmark (benchmarks/bench_workbench.py), so that all three start the service the way
the README does and drive the same browser the same way.

Nothing here may download anything: the driver is ``/usr/bin/chromedriver`` given to Selenium
explicitly (Selenium Manager is then never run, and ``SE_OFFLINE=true`` forbids it to fetch
should anything call it), and the browser is ``/usr/bin/chromium`` with every background
network feature off. Both come from Debian (``.ci/run`` installs them with apt-get). Selenium is
imported inside the functions: the benchmark needs only :class:`Server`.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
YUJING = Path(sys.executable).parent / "yujing"
"""The venv's ``yujing`` entry point: what the README runs."""
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root in a container, where chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers have a 64 MB /dev/shm; chromium then crashes on big pages
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--lang=zh-CN",
    "--hide-scrollbars",  # screenshots the same whatever the page's length
    "--force-device-scale-factor=1",
)
WAIT_SECONDS = 20.0
"""Longest wait for a page or an element: generous for a loaded 2-core CI machine, never a sleep."""


def browser_problem() -> str | None:
    """Why the browser tests cannot run here (chromium or chromedriver missing), or None when they can."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not (p.is_file() and os.access(p, os.X_OK))]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} not installed; fix: run .ci/run, or "
        "`apt-get install chromium chromium-driver fonts-wqy-zenhei` (Debian's packages; nothing is downloaded)"
    )


def start_browser(profile: Path, width: int = 1280, height: int = 900) -> WebDriver:
    """A headless chromium with its own profile folder, driven by Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager, should anything call it, must not fetch a driver
    profile.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT_SECONDS * 3)
    return driver


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def service_env(**settings: str) -> dict[str, str]:
    """This process's environment without any ``YUJING_*`` setting, plus ``settings`` (``YUJING_HOME=...``).

    A developer's own ``YUJING_*`` variables must not leak into a test's service.
    """
    environ = {k: v for k, v in os.environ.items() if not k.startswith("YUJING_")}
    environ.update(settings)
    return environ


def write_keys(path: Path, specs: Mapping[str, Mapping[str, str | None]]) -> dict[str, str]:
    """A hashed keys file (as ``yujing keys add`` writes it) with one new key per ``{name: {scope, county, station}}``.

    Returns ``{name: key}``: the keys themselves live only in the caller's memory.
    """
    from serving.auth import make_entry, new_key, save_entries

    keys = {name: new_key() for name in specs}
    entries = [
        make_entry(keys[name], str(spec["scope"]), spec.get("county"), spec.get("station"), f"e2e {name}")
        for name, spec in specs.items()
    ]
    save_entries(path, entries)
    return keys


class Server:
    """``yujing serve`` on a free port, started as the README starts it; stopped by its pid.

    Its output goes to ``log`` (a pipe nobody reads would block it once full).
    """

    def __init__(self, env: Mapping[str, str], cwd: Path, log: Path, *, workers: int | None = 1, port: int = 0) -> None:
        """``workers=None`` leaves the count to ``yujing serve`` (one per core, at most 4), as the README does."""
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        args = [str(YUJING), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        args += [] if workers is None else ["--workers", str(workers)]
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as sink:
            self.process = subprocess.Popen(args, cwd=cwd, env=dict(env), stdout=sink, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 240.0) -> None:
        """Poll ``/readyz`` until it answers 200; fail early (with the service's last lines) if the process ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"yujing serve exited with {self.process.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"yujing serve not ready on {self.base} within {timeout:g} s: {self.tail()}")

    def tail(self, lines: int = 8) -> str:
        """The last lines the service printed (it prints no personal data: its own contract)."""
        try:
            return " | ".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"

    def stop(self) -> int | None:
        """SIGTERM to the service's pid (uvicorn stops its workers), SIGKILL after 30 s; its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class Workbench:
    """One signed-in (or not) browser session on the workbench: navigation that waits, forms, screenshots."""

    def __init__(self, driver: WebDriver, base: str, shots: Path | None = None) -> None:
        self.driver = driver
        self.base = base
        self.shots = shots
        self._shot = 0

    # ------------------------------------------------------------------ waiting

    def wait(self, condition: Any, timeout: float = WAIT_SECONDS, message: str = "") -> Any:
        """WebDriverWait on ``condition(driver)``: the answer, or a timeout naming ``message`` and the page."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout).until(condition)
        except TimeoutException:
            raise AssertionError(f"waited {timeout:g} s for {message or condition} on {self.path()}") from None

    def wait_css(self, selector: str, timeout: float = WAIT_SECONDS) -> WebElement:
        """The first element matching ``selector`` once it is in the page."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        return self.wait(ec.presence_of_element_located((By.CSS_SELECTOR, selector)), timeout, selector)

    def loaded(self) -> None:
        """Wait until the current document has finished loading."""
        self.wait(lambda d: d.execute_script("return document.readyState") == "complete", message="page load")

    # ------------------------------------------------------------------ reading

    def path(self) -> str:
        """The current URL without the scheme and host (``/wb/stations/S001``)."""
        url = self.driver.current_url
        return url[len(self.base) :] if url.startswith(self.base) else url

    def css(self, selector: str, within: WebElement | None = None) -> list[WebElement]:
        """Every element matching ``selector`` (in ``within`` when given)."""
        from selenium.webdriver.common.by import By

        return (within or self.driver).find_elements(By.CSS_SELECTOR, selector)

    def one(self, selector: str, within: WebElement | None = None) -> WebElement:
        """The single element matching ``selector``; an assertion naming it and the page when there is none."""
        found = self.css(selector, within)
        assert found, f"no {selector} on {self.path()}"
        return found[0]

    def source(self) -> str:
        """The current page's HTML, as the browser holds it."""
        return str(self.driver.page_source)

    def heading(self) -> str:
        """The text of the page's first ``<h1>``, '' without one."""
        found = self.css("h1")
        return found[0].text.strip() if found else ""

    # ------------------------------------------------------------------ acting

    def open(self, path: str) -> None:
        """Load ``base + path`` and wait until it has loaded (following redirects, as a person's browser does)."""
        self.driver.get(self.base + path)
        self.loaded()

    def submit(self, form: WebElement) -> None:
        """Submit ``form`` as its button would and wait for the answer page (the old page goes stale).

        ``requestSubmit`` runs the browser's own validation and sends the form's fields,
        button included; a 303 answer is followed like a click's.
        """
        from selenium.webdriver.support import expected_conditions as ec

        old = self.one("html")
        buttons = self.css("button, input[type=submit]", form)
        if buttons:
            self.driver.execute_script("arguments[0].requestSubmit(arguments[1])", form, buttons[0])
        else:
            self.driver.execute_script("arguments[0].requestSubmit()", form)
        self.wait(ec.staleness_of(old), message="the answer to a form")
        self.loaded()

    def sign_in(self, key: str) -> None:
        """Sign in on ``/wb/login`` with ``key``; lands on whatever page the service redirects to."""
        self.open("/wb/login")
        field = self.wait_css("form#login-form input#key")
        field.clear()
        field.send_keys(key)
        self.submit(self.one("form#login-form"))

    def sign_out(self) -> None:
        """Submit the navigation's sign-out form."""
        self.submit(self.one("form#logout"))

    # ------------------------------------------------------------------ pictures

    def shot(self, name: str, full_page: bool = True) -> Path | None:
        """A PNG of the page into ``shots`` as ``NN-name.png`` (numbered in order); nothing without ``shots``."""
        if self.shots is None:
            return None
        self._shot += 1
        target = self.shots / f"{self._shot:02d}-{name}.png"
        (save_full_page if full_page else save_viewport)(self.driver, target)
        return target


def save_viewport(driver: WebDriver, target: Path) -> None:
    """The visible window as a PNG."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(target)):
        raise RuntimeError(f"{target}: chromium did not return a screenshot")


def save_full_page(driver: WebDriver, target: Path, max_height: int = 8000) -> None:
    """The whole page (up to ``max_height`` CSS pixels) as a PNG, through the DevTools protocol.

    The width is the window's; the height the document's, so a long table is in the
    picture instead of cut at the fold.
    """
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    width = driver.execute_script("return document.documentElement.clientWidth")
    clip = {"x": 0, "y": 0, "width": width, "height": min(size["height"], max_height), "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(base64.b64decode(shot["data"]))


def copy_sqlite(url_or_path: str | Path, target: Path) -> str:
    """Copy a SQLite database file (a ``sqlite:///`` URL or a path) to ``target``; the copy's URL.

    The service then writes (feedback, supervision) only to the copy: the source stays untouched.
    """
    source = Path(str(url_or_path).removeprefix("sqlite:///"))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return f"sqlite:///{target}"


def warnings_by_station(db_url: str) -> tuple[str, dict[str, list[tuple[int, str, str]]]]:
    """The latest ranking date of a warnings database and its active warnings per station, in station rank order.

    ``{station_id: [(warning id, household_id, county_code), ...]}``: what a test or a screenshot
    needs to pick a station, its county and another station to be refused.
    """
    from sqlalchemy import create_engine, select

    from models.warning_tables import warnings_table as w

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            date = conn.execute(select(w.c.date).order_by(w.c.date.desc()).limit(1)).scalar_one()
            rows = conn.execute(
                select(w.c.id, w.c.household_id, w.c.station_id, w.c.county_code)
                .where(w.c.date == date, w.c.active.is_(True))
                .order_by(w.c.station_id, w.c.rank_in_station)
            ).all()
    finally:
        engine.dispose()
    by_station: dict[str, list[tuple[int, str, str]]] = {}
    for row in rows:
        by_station.setdefault(row.station_id, []).append((row.id, row.household_id, row.county_code))
    return str(date), by_station


def busiest_station(by_station: Mapping[str, list[tuple[int, str, str]]]) -> tuple[str, str]:
    """(station, county): the station with the most warnings (two at least) whose county has another warned station.

    Ties go to the smaller station id, so the choice is the same on every run.
    """
    county_of = {station: rows[0][2] for station, rows in by_station.items()}
    for station, rows in sorted(by_station.items(), key=lambda item: (-len(item[1]), item[0])):
        if len(rows) >= 2 and any(o != station and county_of[o] == county_of[station] for o in by_station):
            return station, county_of[station]
    raise LookupError("no county has two warned stations with two warnings at one of them")


def readme_deployment(var: Path, work: Path) -> dict[str, str]:
    """The environment of ``yujing serve`` on the README's ``var/`` without writing a byte into it.

    The deployment reads ``var/``'s data, rankings and model artifacts; what it would write goes
    to ``work``: its home (audit log, session key, champion cache), a copy of the warnings
    database (feedback lands there), a copy of the MLflow store, its keys file and its reports.
    """
    var = var.resolve()
    work.mkdir(parents=True, exist_ok=True)
    return service_env(
        YUJING_HOME=str(work / "home"),
        YUJING_DATA_DIR=str(var / "data"),
        YUJING_RANKINGS_DIR=str(var / "outputs" / "rankings"),
        YUJING_WARNINGS_DB_URL=copy_sqlite(var / "warnings.db", work / "warnings.db"),
        YUJING_API_KEYS=str(work / "keys.json"),
        YUJING_REPORTS_DIR=str(work / "reports"),
        YUJING_RELOAD_INTERVAL_SECONDS="0",
        MLFLOW_TRACKING_URI=copy_sqlite(var / "mlflow.db", work / "mlflow.db"),
    )


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """One GET without following redirects: its status and body (a 303 to the login page stays a 303)."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with opener.open(request, timeout=timeout) as answer:
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
