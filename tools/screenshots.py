"""Screenshots of every workbench page and of a report page, so a reader of docs/ sees the workbench.

Run from the repository root::

    .venv/bin/python tools/screenshots.py                   # the README deployment on var/ -> docs/screenshots/
    .venv/bin/python tools/screenshots.py --var VAR --out DIR
    # a deployment already running (keys in the environment, never on the command line):
    export SHOT_CITY_KEY=... SHOT_COUNTY_KEY=... SHOT_STATION_KEY=...
    .venv/bin/python tools/screenshots.py --url URL

Without ``--url`` it starts ``yujing serve`` as the README does, on ``var/``'s data, rankings
and models, without writing a byte into ``var/``: the warnings database and the MLflow store
are copied to a temp folder, the keys (one for the city, the busiest station's county and that
station) live in a temp keys file, and ``yujing report --period month`` writes into a temp
reports folder. On that copy the loop is then moved once so that the pages show it at work: the
station acknowledges its first warning and feeds back its second, and one warning of another
station of the county is made overdue (its ``created_at`` set back 30 days) so that the
county's supervision page lists something. With ``--url`` nothing is changed unless ``--act``.

The files are always the same names (``NN-page.png``, listed in :data:`PAGES`), full-page
PNGs 1280 pixels wide, taken by Debian's chromium (tests/e2e/browser.py): nothing is downloaded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (str(REPO), str(REPO / "tests")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from e2e.browser import (  # noqa: E402
    YUJING,
    Server,
    Workbench,
    browser_problem,
    busiest_station,
    readme_deployment,
    save_full_page,
    start_browser,
    warnings_by_station,
    write_keys,
)

PAGES = (
    ("01-login", "the sign-in page"),
    ("02-login-refused", "a wrong key"),
    ("03-city-overview", "the city center's overview"),
    ("04-assessment", "the station assessment (league table)"),
    ("05-reports", "the list of analysis reports"),
    ("06-report-month", "a monthly analysis report"),
    ("07-county-overview", "a county's overview"),
    ("08-county-supervision", "the county's supervision (督办) page"),
    ("09-station", "a station's warnings"),
    ("10-station-after-feedback", "the same station after acknowledging one warning and feeding back another"),
    ("11-household", "a household's timeline"),
    ("12-refused", "a station opening another station's page"),
)
NOTE = "已上门调解，双方达成协议，联系电话13812345678"
"""The feedback note typed in: the page must show it masked (the phone replaced)."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Shooter:
    """Writes the pages of :data:`PAGES` into ``out`` by name (nothing else there is touched)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.names = dict(PAGES)
        self.written: list[str] = []

    def __call__(self, wb: Workbench, name: str) -> None:
        assert name in self.names, name
        save_full_page(wb.driver, self.out / f"{name}.png")
        compact_png(self.out / f"{name}.png")
        self.written.append(name)
        say(f"  {name}.png: {self.names[name]} ({wb.path()})")


def compact_png(path: Path) -> None:
    """Re-save a screenshot with a 256-colour palette (no dithering), deterministically.

    Flat pages lose nothing visible, and the files kept in the repository are about 2.4 times smaller.
    """
    from PIL import Image

    with Image.open(path) as picture:
        palette = picture.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette.save(path, "PNG", optimize=True)


def report_page(wb: Workbench) -> str | None:
    """The first HTML report listed on ``/wb/reports`` (its path), or None when there is none."""
    wb.open("/wb/reports")
    links = [a.get_dom_attribute("href") or "" for a in wb.css("a[href^='/wb/reports/']")]
    pages = sorted(h for h in links if h.endswith(".html"))
    return pages[0] if pages else None


def act(wb: Workbench, station_page: str) -> str | None:
    """The station acknowledges its first warning and feeds back its second; the fed-back one's household page."""
    from selenium.webdriver.support.ui import Select

    wb.open(station_page)
    rows = wb.css("table#warnings tr[data-warning-id]")
    ids = [r.get_attribute("data-warning-id") for r in rows]
    if not ids:
        return None
    wb.submit(wb.one(f"tr[data-warning-id='{ids[0]}'] form.ack"))
    target = ids[1] if len(ids) > 1 else ids[0]
    form = wb.one(f"tr[data-warning-id='{target}'] form.feedback")
    Select(wb.one("select[name=outcome]", form)).select_by_value("resolved")
    wb.one("input[name=note]", form).send_keys(NOTE)
    wb.submit(form)
    link = wb.css(f"tr[data-warning-id='{target}'] a[href^='/wb/households/']")
    return link[0].get_dom_attribute("href") if link else None


def shoot(base: str, keys: dict[str, str], out: Path, profile: Path, *, moving: bool, refused: str | None) -> list[str]:
    """Sign in as each of the three scopes and photograph its pages; the names written."""
    shot = Shooter(out)
    driver = start_browser(profile / "browser")
    try:
        wb = Workbench(driver, base)
        wb.open("/wb/login")
        shot(wb, "01-login")
        wb.sign_in("yj_this-is-not-a-key-0000000000000000000000")
        shot(wb, "02-login-refused")

        wb.sign_in(keys["station"])
        station_page = wb.path()
        shot(wb, "09-station")
        household = act(wb, station_page) if moving else None
        wb.open(station_page)
        shot(wb, "10-station-after-feedback")
        if household is None:
            links = wb.css("table#warnings a[href^='/wb/households/']")
            household = links[0].get_dom_attribute("href") if links else None
        if household:
            wb.open(household)
            shot(wb, "11-household")
        if refused:
            wb.open(refused)
            shot(wb, "12-refused")
        wb.sign_out()

        wb.sign_in(keys["county"])
        county_page = wb.path()
        shot(wb, "07-county-overview")
        wb.open(county_page.rstrip("/") + "/supervision")
        shot(wb, "08-county-supervision")
        wb.sign_out()

        wb.sign_in(keys["city"])
        shot(wb, "03-city-overview")
        wb.open("/wb/assessment")
        shot(wb, "04-assessment")
        report = report_page(wb)
        shot(wb, "05-reports")
        if report:
            wb.open(report)
            shot(wb, "06-report-month")
        else:
            say("  no report listed on /wb/reports: 06-report-month.png not written")
    finally:
        driver.quit()
    return shot.written


def make_overdue(db_url: str, warning_id: int) -> None:
    """Set one warning's ``created_at`` back 30 days in the (copied) database: the county then has one overdue."""
    from sqlalchemy import create_engine, update

    from models.warning_tables import warnings_table as w

    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(w).where(w.c.id == warning_id).values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(30))
            )
    finally:
        engine.dispose()


def local_deployment(var: Path, out: Path, work: Path) -> list[str]:
    """The README deployment on a read-only ``var/`` (see the module's docstring), photographed, then stopped."""
    env = readme_deployment(var, work)
    date, by_station = warnings_by_station(env["YUJING_WARNINGS_DB_URL"])
    station, county = busiest_station(by_station)
    other = next(s for s in sorted(by_station) if s != station and by_station[s][0][2] == county)
    make_overdue(env["YUJING_WARNINGS_DB_URL"], by_station[other][0][0])
    say(f"ranking {date}: station {station}, county {county}; work folder {work}")
    keys = write_keys(
        work / "keys.json",
        {
            "city": {"scope": "city"},
            "county": {"scope": "county", "county": county},
            "station": {"scope": "station", "station": station},
        },
    )
    report = subprocess.run(
        [str(YUJING), "--quiet", "report", "--period", "month"], cwd=work, env=env, capture_output=True, text=True
    )
    if report.returncode != 0:
        say(f"yujing report failed (exit {report.returncode}): {report.stderr.strip().splitlines()[-1:]}")
    with Server(env, cwd=work, log=work / "serve.log") as server:
        say(f"starting yujing serve on {server.base} ...")
        server.wait_ready()
        return shoot(server.base, keys, out, work, moving=True, refused=f"/wb/stations/{other}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var", type=Path, default=REPO / "var", help="the README's var/ (read only)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots", help="where the PNGs go")
    parser.add_argument("--url", help="a running deployment (keys from SHOT_CITY_KEY, SHOT_COUNTY_KEY, ...)")
    parser.add_argument("--act", action="store_true", help="with --url: acknowledge and feed back (changes its data)")
    args = parser.parse_args()
    problem = browser_problem()
    if problem:
        say(f"error: {problem}")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="yujing-shots-") as tmp:
        if args.url:
            names = {"city": "SHOT_CITY_KEY", "county": "SHOT_COUNTY_KEY", "station": "SHOT_STATION_KEY"}
            keys = {scope: os.environ.get(var, "") for scope, var in names.items()}
            missing = [names[s] for s, k in keys.items() if not k]
            if missing:
                say(f"error: --url needs the keys in {', '.join(missing)}; fix: export them (not on the command line)")
                return 2
            written = shoot(args.url.rstrip("/"), keys, args.out, Path(tmp), moving=args.act, refused="/wb/reports")
        else:
            if not (args.var / "warnings.db").is_file():
                say(f"error: {args.var}: no warnings.db; fix: `make run` first, or pass --var")
                return 2
            written = local_deployment(args.var, args.out, Path(tmp))
    say(f"{len(written)} of {len(PAGES)} screenshots in {args.out}")
    return 0 if len(written) == len(PAGES) else 1


if __name__ == "__main__":
    sys.exit(main())
