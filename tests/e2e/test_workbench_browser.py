"""The closed loop in a real browser (issue 12, part 5): sign-in, scope refusal, acknowledge and feed back,
the city overview and the station's assessment moving, a county's supervision, the report pages.

Debian's chromium drives the real ``yujing serve`` (tests/e2e/conftest.py) through the
workbench's URL and DOM contract (docs/workbench.md): ids, classes and ``data-*`` attributes,
never wording or layout. Every wait is a WebDriverWait on a condition; a screenshot of each
step goes to the test's tmp dir (``shots/<session>/NN-step.png``) for a failure's post-mortem.
Before/after figures are read from the pages themselves, so the test asserts that the pages
move, not that a number equals what the code under test computed. The last tests run the
workbench benchmark's client (benchmarks/bench_workbench.py) against the same service.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
import sys
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, select

from e2e.browser import REPO, Workbench, http_get
from e2e.conftest import Deployment

if TYPE_CHECKING:
    from selenium.webdriver.remote.webelement import WebElement

pytestmark = [pytest.mark.xdist_group("trained"), pytest.mark.slow]

Sessions = Callable[[str], Workbench]
PHONE = "13812345678"
NOTE = f"已上门调解，联系电话{PHONE}，双方同意不再争执"
REFUSED = "无权访问"
LOCAL = ZoneInfo("Asia/Shanghai")
"""The zone a ``datetime-local`` field is read in: stations and the center work on Beijing time."""


def first_number(text: str) -> float:
    """The first number in a cell ('12.5%' -> 12.5, '3' -> 3.0); a dash or an empty cell is 0."""
    found = re.search(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    return float(found.group()) if found else 0.0


def warning_rows(wb: Workbench) -> dict[int, str]:
    """``{warning id: data-status}`` of the page's ``table#warnings``, in page order."""
    wb.wait_css("table#warnings")
    return {
        int(row.get_attribute("data-warning-id")): str(row.get_attribute("data-status"))
        for row in wb.css("table#warnings tr[data-warning-id]")
    }


def row_of(wb: Workbench, table: str, warning_id: int) -> WebElement:
    """The ``tr[data-warning-id]`` of one warning in ``table`` (asserting it is there)."""
    return wb.one(f"{table} tr[data-warning-id='{warning_id}']")


def league_row(wb: Workbench, station: str) -> tuple[float, float]:
    """(fed-back share, acknowledged) of the station's row in the page's ``table#league``."""
    row = wb.one(f"table#league tr[data-station='{station}']")
    return first_number(wb.one("td.fed-back-share", row).text), first_number(wb.one("td.acknowledged", row).text)


def county_counts(wb: Workbench, county: str) -> tuple[float, float]:
    """(open, fed back) of the county's row in the city overview's ``table#by-county``."""
    row = wb.one(f"table#by-county tr[data-county='{county}']")
    return first_number(wb.one("td.open", row).text), first_number(wb.one("td.fed-back", row).text)


def assert_refused(wb: Workbench, path: str) -> None:
    """Opening ``path`` shows the 403 page (``<h1>无权访问</h1>``) and nothing of what was asked for."""
    wb.open(path)
    assert wb.heading() == REFUSED, f"{path} was not refused: {wb.path()} shows {wb.heading()!r}"
    assert not wb.css("table#warnings") and not wb.css("ul.timeline"), path


def assert_nothing_from_outside(wb: Workbench) -> None:
    """Everything the page loaded came from the service itself: no CDN (an intranet has none)."""
    loaded = wb.driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    outside = [url for url in loaded if not url.startswith(wb.base)]
    assert not outside, outside


def submit_row_form(wb: Workbench, table: str, warning_id: int, form: str) -> None:
    """Submit one row's form and wait for the redirect back with its flash message."""
    wb.submit(wb.one(f"form.{form}", row_of(wb, table, warning_id)))
    wb.wait_css("div.flash")


def station_of(db_url: str, ids: list[int]) -> dict[int, str]:
    """``{warning id: station_id}`` straight from the service's database (to check what a page lists)."""
    from models.warning_tables import warnings_table as w

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(select(w.c.id, w.c.station_id).where(w.c.id.in_(ids))).tuples().all())
    finally:
        engine.dispose()


def test_the_sign_in_page_guards_the_workbench_and_refuses_a_wrong_key(
    deployment: Deployment, sessions: Sessions
) -> None:
    status, _ = http_get(f"{deployment.base}/wb/stations/{deployment.station}")
    assert status == 303  # not signed in: sent to the sign-in page, nothing shown
    wb = sessions("login")
    wb.open(f"/wb/stations/{deployment.station}")
    assert wb.path() == "/wb/login", wb.path()
    form = wb.one("form#login-form")
    assert form.get_attribute("method").lower() == "post" and form.get_dom_attribute("action") == "/wb/login"
    key = wb.one("input#key", form)
    assert key.get_attribute("name") == "key" and key.get_attribute("type") == "password"
    assert wb.one("input[name=csrf_token]", form).get_attribute("value")
    assert wb.one("button#login-submit", form).is_displayed()
    cookie = wb.driver.get_cookie("yujing_session")  # the anonymous session the form's token belongs to
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/wb", cookie
    wb.shot("login")

    wrong = "yj_" + "0" * 43
    wb.sign_in(wrong)
    assert wb.path() == "/wb/login"
    assert wb.one("div.error").is_displayed() and wb.one("div.error").text.strip()
    assert wrong not in wb.source()  # a key is never echoed
    assert not wb.css("form#logout")  # still signed out
    wb.shot("wrong-key")


def test_a_station_acknowledges_and_feeds_back_and_the_city_and_its_assessment_see_it(
    deployment: Deployment, sessions: Sessions
) -> None:
    station, county = deployment.station, deployment.county

    # The city's overview before the station does anything.
    city = sessions("city-before")
    city.sign_in(deployment.keys["city"])
    assert city.path() == "/wb/", city.path()
    city.wait_css("svg.chart")
    open_before, fed_back_before = county_counts(city, county)
    share_city_before, _ = league_row(city, station)
    assert len(city.css("svg.chart")) >= 5  # by level, county, category, the calls' trend, warnings per date
    assert_nothing_from_outside(city)
    city.shot("overview")

    # Signed in, the station lands on its own page and sees its own warnings only.
    wb = sessions("station")
    wb.open("/wb/login")
    anonymous = wb.driver.get_cookie("yujing_session")
    wb.one("input#key").send_keys(deployment.keys["station"])
    wb.submit(wb.one("form#login-form"))
    signed = wb.driver.get_cookie("yujing_session")
    assert anonymous and signed and signed["value"] != anonymous["value"]  # a fresh session at sign-in
    assert wb.path() == f"/wb/stations/{station}", wb.path()
    assert wb.one("nav.top") and wb.one("form#logout")
    listed = warning_rows(wb)
    assert list(listed) and set(listed) == set(deployment.station_warnings), (listed, deployment.station_warnings)
    assert set(station_of(deployment.db_url, list(listed)).values()) == {station}
    assert all(status == "pushed" for status in listed.values()), listed
    page = wb.source()
    assert deployment.station_warnings[next(iter(listed))] in page
    shown = set(re.findall(r"H\d{8}", page))
    assert not shown & deployment.other_households, sorted(shown & deployment.other_households)
    share_before, acknowledged_before = league_row(wb, station)
    wb.shot("station")

    # Another station's page or household, the county's page, the reports: refused.
    for path in (
        f"/wb/stations/{deployment.other_station}",
        f"/wb/households/{deployment.other_household}",
        f"/wb/counties/{county}",
        "/wb/reports",
    ):
        assert_refused(wb, path)
    wb.shot("refused")

    # Acknowledge the first (highest-ranked) warning.
    wb.open(f"/wb/stations/{station}")
    first = next(iter(warning_rows(wb)))
    submit_row_form(wb, "table#warnings", first, "ack")
    assert wb.path().split("?")[0] == f"/wb/stations/{station}", wb.path()  # back to its page (and date)
    assert warning_rows(wb)[first] == "acknowledged"
    assert league_row(wb, station)[1] == acknowledged_before + 1
    wb.shot("acknowledged")

    # Feed back an outcome with a note holding a phone number: stored and shown masked.
    from selenium.webdriver.support.ui import Select

    form = wb.one("form.feedback", row_of(wb, "table#warnings", first))
    outcome = Select(wb.one("select[name=outcome]", form))
    assert {"resolved", "false_alarm", "escalated"} <= {o.get_attribute("value") for o in outcome.options}
    outcome.select_by_value("resolved")
    wb.one("input[name=note]", form).send_keys(NOTE)
    wb.submit(form)
    wb.wait_css("div.flash")
    assert warning_rows(wb)[first] == "fed_back"
    assert PHONE not in wb.source()
    share_after, acknowledged_after = league_row(wb, station)
    assert share_after > share_before and acknowledged_after == acknowledged_before + 1
    wb.shot("fed-back")

    # The household's timeline shows the warning and the masked note.
    household = deployment.station_warnings[first]
    wb.open(f"/wb/households/{household}")
    wb.wait_css("ul.timeline")
    assert wb.css("ul.timeline li.k-warning")
    events = " ".join(li.text for li in wb.css("ul.timeline li.k-event"))
    assert "已上门调解" in events, events
    assert PHONE not in wb.source()
    wb.shot("household")

    # The city's overview, in a fresh session, counts the fed-back warning.
    after = sessions("city-after")
    after.sign_in(deployment.keys["city"])
    after.wait_css("table#by-county")
    open_after, fed_back_after = county_counts(after, county)
    assert (open_after, fed_back_after) == (open_before - 1, fed_back_before + 1)
    share_city_after, _ = league_row(after, station)
    assert share_city_after > share_city_before
    after.open("/wb/assessment")
    assert league_row(after, station)[0] == share_city_after
    after.shot("assessment")


def test_a_county_supervises_an_overdue_warning_of_its_station(deployment: Deployment, sessions: Sessions) -> None:
    county, target = deployment.county, deployment.overdue_warning
    wb = sessions("county")
    wb.sign_in(deployment.keys["county"])
    assert wb.path() == f"/wb/counties/{county}", wb.path()
    supervision = wb.one(f"a[href='/wb/counties/{county}/supervision']").get_dom_attribute("href")
    wb.shot("county")
    assert_refused(wb, f"/wb/stations/{deployment.foreign_station}")

    wb.open(supervision)
    overdue = [int(r.get_attribute("data-warning-id")) for r in wb.css("table#overdue tr[data-warning-id]")]
    assert target in overdue, overdue
    assert set(station_of(deployment.db_url, overdue).values()) <= deployment.county_stations
    wb.shot("supervision")

    deadline = (dt.datetime.now(LOCAL) + dt.timedelta(days=3)).replace(second=0, microsecond=0)
    form = wb.one("form.supervise", row_of(wb, "table#overdue", target))
    wb.one("input[name=comment]", form).send_keys(f"请三日内办结并反馈，联系电话{PHONE}")
    field = wb.one("input[name=new_deadline]", form)
    assert field.get_attribute("type") == "datetime-local"
    wb.driver.execute_script("arguments[0].value = arguments[1]", field, f"{deadline:%Y-%m-%dT%H:%M}")
    wb.submit(form)
    wb.wait_css("div.flash")
    assert wb.path().split("?")[0] == f"/wb/counties/{county}/supervision", wb.path()
    assert PHONE not in wb.source()
    still = [int(r.get_attribute("data-warning-id")) for r in wb.css("table#overdue tr[data-warning-id]")]
    assert target not in still  # its deadline is now three days ahead: no longer overdue
    wb.shot("supervised")

    from models.warning_tables import warning_supervisions

    engine = create_engine(deployment.db_url)
    try:
        with engine.connect() as conn:
            stored = (
                conn.execute(select(warning_supervisions).where(warning_supervisions.c.warning_id == target))
                .mappings()
                .all()
            )
    finally:
        engine.dispose()
    assert len(stored) == 1 and PHONE not in (stored[0]["comment"] or "")
    new_deadline = stored[0]["new_deadline"]
    new_deadline = new_deadline if new_deadline.tzinfo else new_deadline.replace(tzinfo=dt.UTC)
    assert new_deadline == deadline

    # The station's page (the county sees its stations) shows the new deadline, no longer overdue.
    wb.open(f"/wb/stations/{deployment.other_station}")
    row = row_of(wb, "table#warnings", target)
    assert "overdue" not in (row.get_attribute("class") or "").split()
    assert f"{deadline:%Y-%m-%d %H:%M}" in row.text, row.text


def test_the_monthly_report_opens_in_the_workbench_with_its_charts(deployment: Deployment, sessions: Sessions) -> None:
    code = deployment.report.wait(timeout=600)  # started with the service (tests/e2e/conftest.py)
    log = (deployment.root / "report.log").read_text(encoding="utf-8", errors="replace")
    assert code == 0, log[-2000:]
    assert "Traceback" not in log
    wb = sessions("reports")
    wb.sign_in(deployment.keys["city"])
    wb.open("/wb/reports")
    links = [a.get_dom_attribute("href") for a in wb.css("a[href^='/wb/reports/']")]
    pages = [href for href in links if href.endswith(".html")]
    assert pages, links
    wb.shot("reports")
    wb.open(pages[0])
    charts = wb.css("svg.chart")
    assert len(charts) >= 6, len(charts)
    assert all(c.find_elements("css selector", "title") for c in charts)  # each chart says what it shows
    assert_nothing_from_outside(wb)
    wb.shot("report")


# The workbench benchmark's client (benchmarks/bench_workbench.py) against the same service, a few requests:
# cheap here (the service is up), and it keeps the benchmark from rotting when the sign-in or a URL changes.


def bench_module() -> ModuleType:
    """benchmarks/bench_workbench.py as a module."""
    path = REPO / "benchmarks" / "bench_workbench.py"
    spec = importlib.util.spec_from_file_location("bench_workbench", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_workbench"] = module  # dataclasses resolve their module at class creation
    spec.loader.exec_module(module)
    return module


def test_percentiles_interpolate_as_numpy_does() -> None:
    bench = bench_module()
    assert bench.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert bench.percentile(list(map(float, range(101))), 99) == 99.0
    assert bench.percentile([1.0, 2.0], 99) == pytest.approx(1.99)


def test_the_benchmark_signs_in_as_each_scope_and_times_every_page(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = bench_module()
    pages = bench.pages_of(deployment.base, deployment.keys)
    paths = {page.path for page in pages}
    assert {"/wb/login", "/wb/", "/wb/assessment", "/wb/reports"} <= paths
    assert {f"/wb/counties/{deployment.county}", f"/wb/counties/{deployment.county}/supervision"} <= paths
    assert f"/wb/stations/{deployment.station}" in paths
    assert any(p.startswith("/wb/households/") for p in paths)
    bench.measure(pages, requests=3, warmup=1)
    assert all(len(page.seconds) == 3 and page.errors == 0 and page.size > 0 for page in pages)
    bench.report(pages, 0.0, "test")
    table = capsys.readouterr().out
    assert "| /wb/stations/" in table and "verdict:" in table
    with pytest.raises(bench.BenchError, match="POST /wb/login answered 401"):
        bench.Client(deployment.base).sign_in("yj_" + "1" * 43)


def test_the_benchmark_refuses_to_run_without_keys_for_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = bench_module()
    for name in ("BENCH_CITY_KEY", "BENCH_COUNTY_KEY", "BENCH_STATION_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "argv", ["bench_workbench.py", "--url", "http://127.0.0.1:9"])
    assert bench.main() == 2
