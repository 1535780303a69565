"""The workbench (/wb): sign-in, session and CSRF, scopes, the loop's actions, masking, escaping, pages, headers.

Everything runs through FastAPI's TestClient against ``create_app`` on the ranked test city,
with its own copy of the warnings database and its own keys (tests/conftest.py
``own_service_settings``). Pages are checked through the DOM contract of docs/workbench.md
(ids, classes, data attributes), read with a small stdlib HTML parser.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import own_service_settings
from fastapi.testclient import TestClient

from serving.app import create_app

pytestmark = pytest.mark.xdist_group("trained")

CITY_KEY = "wb-city-key-0123456789abcdef"
COUNTY_KEY = "wb-county-key-0123456789abcd"
STATION_KEY = "wb-station-key-0123456789abc"
OTHER_KEY = "wb-other-station-key-0123456"
ID_NUMBER = "150502198803154321"
PHONE = "13912345678"
NAME = "王建国"
HOSTILE = '<script>alert("x")</script>'

# ---------------------------------------------------------------------------------------------- a tiny DOM

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent, self.children, self.parts = tag, attrs, parent, [], []

    @property
    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text for p in self.parts).strip()

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self) -> Any:
        for child in self.children:
            yield child
            yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag)
            and (cls is None or cls in n.classes)
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag} class={cls} {attrs}>"
        return found[0]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.at = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.at)
        self.at.children.append(node)
        self.at.parts.append(node)
        if tag not in VOID:
            self.at = node

    def handle_endtag(self, tag: str) -> None:
        node = self.at
        while node.parent is not None and node.tag != tag:
            node = node.parent
        if node.parent is not None:
            self.at = node.parent

    def handle_data(self, data: str) -> None:
        self.at.parts.append(data)


def dom(html: str) -> Node:
    parser = _Parser()
    parser.feed(html)
    return parser.root


# ---------------------------------------------------------------------------------------------- the service


@pytest.fixture(scope="module")
def wb(ranked: dict, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The service with the workbench, its own database copy and keys for the city, a county and two stations."""
    root = tmp_path_factory.mktemp("workbench")
    table = pd.read_parquet(ranked["result"].folder / "ranking.parquet")
    warned = table[table["level"].notna()]
    busiest = warned["station_id"].value_counts().index[0]
    station = warned[warned["station_id"] == busiest].iloc[0]
    other = warned[(warned["station_id"] != busiest) & (warned["county_code"] != station["county_code"])].iloc[0]
    keys = {
        CITY_KEY: {"scope": "city", "name": "市局值班"},
        COUNTY_KEY: {"scope": "county", "county": station["county_code"], "name": "县局督办"},
        STATION_KEY: {"scope": "station", "station": busiest, "name": "所长"},
        OTHER_KEY: {"scope": "station", "station": other["station_id"]},
    }
    settings = own_service_settings(ranked, root, keys, workbench_page_size=2, reports_dir=root / "reports")
    overdue = _month_old(settings.warnings_db_url, busiest)
    app = create_app(settings)
    with TestClient(app, base_url="http://testserver") as client:
        yield {
            "app": app,
            "client": client,
            "settings": settings,
            "root": root,
            "ranked": ranked,
            "station": busiest,
            "county": station["county_code"],
            "other": other,
            "date": ranked["result"].date,
            "db": settings.warnings_db_url,
            "overdue": overdue,
        }


def _month_old(url: str, station: str) -> int:
    """Make the station's last-ranked warning one pushed 30 days ago (past every level's deadline); its id."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        (wid,) = conn.execute(
            "SELECT id FROM warnings WHERE station_id = ? ORDER BY rank_in_station DESC LIMIT 1", (station,)
        ).fetchone()
        long_ago = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.%f")
        conn.execute("UPDATE warnings SET created_at = ? WHERE id = ?", (long_ago, wid))
    return int(wid)


def _client(wb: dict, key: str | None = None) -> TestClient:
    """A fresh browser (own cookie jar) on the app, signed in with ``key`` when given."""
    client = TestClient(wb["app"], base_url="http://testserver")
    if key is not None:
        answer = client.post("/wb/login", data={"key": key, "csrf_token": _token(client.get("/wb/login").text)})
        assert answer.status_code == 200, answer.status_code  # followed the 303 to the home page
    return client


def _token(html: str) -> str:
    return dom(html).find("input", name="csrf_token").attrs["value"]


def _store(wb: dict) -> Any:
    from models.warning_store import WarningStore

    return WarningStore(wb["db"])


def _warnings_of(wb: dict, station: str) -> list[dict[str, Any]]:
    store = _store(wb)
    try:
        return store.warnings_for(wb["date"], station_id=station)
    finally:
        store.dispose()


def _cookie_payload(value: str) -> dict[str, Any]:
    """The (signed, not encrypted) payload of an itsdangerous cookie."""
    body = value.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


# ---------------------------------------------------------------------------------------------- signing in


def test_the_login_form_and_a_wrong_key(wb: dict) -> None:
    client = _client(wb)
    form = dom(client.get("/wb/login").text).find("form", id="login-form")
    assert form.attrs["method"] == "post" and form.attrs["action"] == "/wb/login"
    key = form.find("input", id="key").attrs
    assert (key["name"], key["type"]) == ("key", "password")
    assert form.find("input", name="csrf_token").attrs["type"] == "hidden" and form.find("button", id="login-submit")
    wrong = "wrong-key-" + PHONE
    answer = client.post("/wb/login", data={"key": wrong, "csrf_token": _token(client.get("/wb/login").text)})
    assert answer.status_code == 401
    assert dom(answer.text).find("div", cls="error").text == "密钥无效或已停用。"
    assert wrong not in answer.text and PHONE not in answer.text


def test_signing_in_goes_home_with_a_cookie_that_holds_no_key(wb: dict) -> None:
    homes = {
        CITY_KEY: "/wb/",
        COUNTY_KEY: f"/wb/counties/{wb['county']}",
        STATION_KEY: f"/wb/stations/{wb['station']}",
    }
    for key, home in homes.items():
        client = _client(wb)
        answer = client.post(
            "/wb/login",
            data={"key": key, "csrf_token": _token(client.get("/wb/login").text)},
            follow_redirects=False,
        )
        assert answer.status_code == 303 and answer.headers["location"] == home
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("yujing_session=") and "HttpOnly" in cookie and "Path=/wb" in cookie
        assert "samesite=strict" in cookie.lower() and "Max-Age=43200" in cookie
        value = cookie.split(";")[0].split("=", 1)[1]
        assert key not in value
        assert set(_cookie_payload(value)) == {"n", "k", "s"}
        page = client.get(home)
        assert page.status_code == 200 and dom(page.text).find("nav", cls="top").find("form", id="logout")


def test_without_a_session_every_page_goes_to_the_login(wb: dict) -> None:
    client = _client(wb)
    for url in ("/wb/", f"/wb/stations/{wb['station']}", "/wb/assessment", "/wb/reports"):
        answer = client.get(url, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/wb/login"


def test_a_tampered_or_foreign_cookie_signs_nobody_in(wb: dict) -> None:
    from itsdangerous import URLSafeTimedSerializer

    from serving.workbench.session import SALT

    client = _client(wb, STATION_KEY)
    value = client.cookies.get("yujing_session")
    url = f"/wb/stations/{wb['station']}"
    payload = _cookie_payload(value)
    forged = {**payload, "s": "city"}
    secret = Path(wb["settings"].session_secret_file).read_bytes().strip()
    cases = {
        "changed signature": value[:-2] + ("AA" if not value.endswith("AA") else "BB"),
        "payload edited, signature kept": base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
        + value[value.index(".") :],
        "signed with another secret": URLSafeTimedSerializer(b"x" * 64, salt=SALT).dumps(forged),
        # signed with the real secret, but the key id is a station's: the scope must come from the keys file
        "scope claimed beyond the key": URLSafeTimedSerializer(secret, salt=SALT).dumps(forged),
    }
    for what, cookie in cases.items():
        browser = TestClient(wb["app"], base_url="http://testserver")
        browser.cookies.set("yujing_session", cookie, domain="testserver.local", path="/wb")
        answer = browser.get("/wb/", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/wb/login", what
    assert client.get(url).status_code == 200  # the genuine cookie still works


def test_a_session_expires(wb: dict) -> None:
    from serving.auth import key_id
    from serving.workbench.session import SessionCodec, new_session

    codec = SessionCodec(Path(wb["settings"].session_secret_file).read_bytes().strip(), 1)
    value = codec.dumps(new_session(key_id(CITY_KEY), "city"))
    assert codec.loads(value) is not None
    time.sleep(2.1)
    assert codec.loads(value) is None


def test_revoking_a_key_ends_its_sessions_on_the_next_request(wb: dict, tmp_path: Path) -> None:
    client = _client(wb, OTHER_KEY)
    home = f"/wb/stations/{wb['other']['station_id']}"
    assert client.get(home).status_code == 200
    keys_file = Path(wb["settings"].api_keys_file)
    kept = keys_file.read_text(encoding="utf-8")
    try:
        keys = json.loads(kept)
        del keys[OTHER_KEY]
        keys_file.write_text(json.dumps(keys), encoding="utf-8")
        answer = client.get(home, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/wb/login"
        assert 'yujing_session=""' in answer.headers["set-cookie"] or "Max-Age=0" in answer.headers["set-cookie"]
    finally:
        keys_file.write_text(kept, encoding="utf-8")
        time.sleep(0.01)


def test_logout_needs_the_token_and_ends_the_session(wb: dict) -> None:
    client = _client(wb, CITY_KEY)
    assert client.post("/wb/logout", data={}, follow_redirects=False).status_code == 403
    token = _token(client.get("/wb/").text)
    answer = client.post("/wb/logout", data={"csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/wb/login"
    assert client.get("/wb/", follow_redirects=False).status_code == 303


# ---------------------------------------------------------------------------------------------- CSRF


def test_a_post_without_the_sessions_token_or_from_another_origin_is_403(wb: dict) -> None:
    client = _client(wb, STATION_KEY)
    warning = _warnings_of(wb, wb["station"])[-1]
    url = f"/wb/warnings/{warning['id']}/status"
    token = _token(client.get(f"/wb/stations/{wb['station']}").text)
    other_token = _token(_client(wb, STATION_KEY).get(f"/wb/stations/{wb['station']}").text)
    for data, headers in (
        ({"status": "acknowledged"}, {}),
        ({"status": "acknowledged", "csrf_token": "0" * 40}, {}),
        ({"status": "acknowledged", "csrf_token": other_token}, {}),  # another session's token
        ({"status": "acknowledged", "csrf_token": token}, {"Origin": "http://evil.example"}),
        ({"status": "acknowledged", "csrf_token": token}, {"Origin": "null"}),
        ({"status": "acknowledged", "csrf_token": token}, {"Referer": "http://evil.example/page"}),
    ):
        answer = client.post(url, data=data, headers=headers, follow_redirects=False)
        assert answer.status_code == 403, (data.keys(), headers)
        assert dom(answer.text).find("h1").text == "请求无效"
    assert _store(wb).get(warning["id"])["status"] == "pushed"  # nothing moved
    same = client.post(
        url,
        data={"status": "acknowledged", "csrf_token": token},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert same.status_code == 303
    fresh = _client(wb)  # the login form is protected too
    assert fresh.post("/wb/login", data={"key": CITY_KEY}, follow_redirects=False).status_code == 403


# ---------------------------------------------------------------------------------------------- scopes


def test_a_station_sees_only_its_own_station_and_households(wb: dict) -> None:
    client = _client(wb, STATION_KEY)
    other = wb["other"]
    own = dom(client.get(f"/wb/stations/{wb['station']}").text)
    assert own.find("table", id="warnings")
    for url in (
        f"/wb/stations/{other['station_id']}",
        f"/wb/households/{other['household_id']}",
        "/wb/",
        f"/wb/counties/{wb['county']}",
        f"/wb/counties/{wb['county']}/supervision",
        "/wb/reports",
        "/wb/stations/S-NOT-THERE",
    ):
        answer = client.get(url)
        assert answer.status_code == 403, url
        assert dom(answer.text).find("h1").text == "无权访问"
    own_household = _warnings_of(wb, wb["station"])[0]["household_id"]
    assert client.get(f"/wb/households/{own_household}").status_code == 200
    rows = dom(client.get("/wb/assessment").text).find("table", id="league").find_all("tr")
    assert [r.attrs["data-station"] for r in rows if "data-station" in r.attrs] == [wb["station"]]
    # the database copy is taken from the shared ranked city, which other modules' tests may have moved already:
    # take a warning of the other station that could still be handled, and prove the refused request moves nothing
    foreign = next(
        w
        for w in _store(wb).warnings_for(wb["date"], station_id=other["station_id"])
        if w["status"] in ("pushed", "acknowledged")
    )
    token = _token(client.get(f"/wb/stations/{wb['station']}").text)
    before = foreign["status"]
    answer = client.post(f"/wb/warnings/{foreign['id']}/status", data={"status": "handled", "csrf_token": token})
    assert answer.status_code == 403 and _store(wb).get(foreign["id"])["status"] == before


def test_a_county_sees_its_county_and_not_another(wb: dict) -> None:
    client = _client(wb, COUNTY_KEY)
    page = dom(client.get(f"/wb/counties/{wb['county']}").text)
    stations = {r.attrs["data-station"] for r in page.find("table", id="by-station").find_all("tr") if r.attrs}
    assert wb["station"] in stations
    league = {r.attrs["data-station"] for r in page.find("table", id="league").find_all("tr") if r.attrs}
    assert league == stations  # its stations, no other county's
    assert client.get(f"/wb/stations/{wb['station']}").status_code == 200
    other = wb["other"]
    assert client.get(f"/wb/counties/{other['county_code']}").status_code == 403
    assert client.get(f"/wb/stations/{other['station_id']}").status_code == 403
    assert client.get(f"/wb/households/{other['household_id']}").status_code == 403
    assert client.get("/wb/").status_code == 403


# ---------------------------------------------------------------------------------------------- the loop


def _row(page: Node, warning_id: int) -> Node:
    return page.find("table", id="warnings").find("tr", data_warning_id=str(warning_id))


def _league_row(page: Node, station: str) -> Node:
    return page.find("table", id="league").find("tr", data_station=station)


def test_acknowledge_and_feed_back_move_the_warning_and_the_league(wb: dict) -> None:
    client = _client(wb, STATION_KEY)
    url = f"/wb/stations/{wb['station']}"
    warning = _warnings_of(wb, wb["station"])[0]
    wid = warning["id"]
    before = dom(client.get(url).text)
    row = _row(before, wid)
    assert row.attrs["data-status"] == "pushed" and row.attrs["data-level"] == warning["level"]
    assert row.find("form", cls="ack").attrs["action"] == f"/wb/warnings/{wid}/status"
    league_before = _league_row(before, wb["station"])
    acknowledged = int(league_before.find("td", cls="acknowledged").text)
    city = _client(wb, CITY_KEY)
    county_row = dom(city.get("/wb/").text).find("table", id="by-county").find("tr", data_county=wb["county"])
    fed_before = int(county_row.find("td", cls="fed-back").text)
    open_before = int(county_row.find("td", cls="open").text)

    token = _token(client.get(url).text)
    moved = client.post(
        f"/wb/warnings/{wid}/status", data={"status": "acknowledged", "csrf_token": token}, follow_redirects=False
    )
    assert moved.status_code == 303 and moved.headers["location"] == f"{url}?date={wb['date']}"
    page = client.get(moved.headers["location"])
    after = dom(page.text)
    assert after.find("div", cls="flash").text == f"预警 {wid} 已签收。"
    assert _row(after, wid).attrs["data-status"] == "acknowledged"
    assert int(_league_row(after, wb["station"]).find("td", cls="acknowledged").text) == acknowledged + 1
    assert not dom(client.get(url).text).find_all("div", cls="flash")  # shown once

    fed = client.post(
        f"/wb/warnings/{wid}/status",
        data={"status": "fed_back", "outcome": "resolved", "note": "已调解", "csrf_token": token},
    )
    after = dom(fed.text)
    assert after.find("div", cls="flash").text == f"预警 {wid} 已反馈（已化解）。"
    assert _row(after, wid).attrs["data-status"] == "fed_back"
    league = _league_row(after, wb["station"])
    stored = _store(wb).warnings_for(wb["date"], station_id=wb["station"])
    share = sum(w["status"] == "fed_back" for w in stored) / len(stored)  # this date is the period's only one
    assert league.find("td", cls="fed-back-share").text == f"{share * 100:.1f}%"
    event = _store(wb).history(wid)[-1]
    assert event["actor"].startswith(wb["app"].state.workbench.people.sign_in(STATION_KEY).principal.key_id)
    assert event["actor"].endswith("所长") and event["outcome"] == "resolved"

    county_row = dom(city.get("/wb/").text).find("table", id="by-county").find("tr", data_county=wb["county"])
    assert int(county_row.find("td", cls="fed-back").text) == fed_before + 1
    assert int(county_row.find("td", cls="open").text) == open_before - 1

    again = client.post(f"/wb/warnings/{wid}/status", data={"status": "acknowledged", "csrf_token": token})
    assert again.status_code == 200  # a refused move is a message on the page, not an error
    assert dom(again.text).find("div", cls="flash").classes == {"flash", "error"}
    assert dom(again.text).find("div", cls="flash").text == f"预警 {wid} 当前为“已反馈”，不能改为“已签收”。"
    missing = client.post(f"/wb/warnings/{wid}/status", data={"status": "fed_back", "csrf_token": token})
    assert dom(missing.text).find("div", cls="flash").text == f"预警 {wid}：反馈需选择处置结果。"
    assert client.post("/wb/warnings/99999999/status", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/wb/warnings/{ID_NUMBER}x/status", data={"csrf_token": token}).status_code == 404


def test_a_note_with_a_phone_an_id_and_a_name_is_stored_and_shown_masked(wb: dict) -> None:
    client = _client(wb, STATION_KEY)
    warning = _warnings_of(wb, wb["station"])[1]
    token = _token(client.get(f"/wb/stations/{wb['station']}").text)
    note = f"已走访户主{NAME}，电话{PHONE}，身份证{ID_NUMBER}"
    answer = client.post(
        f"/wb/warnings/{warning['id']}/status",
        data={"status": "handled", "note": note, "csrf_token": token},
    )
    assert answer.status_code == 200
    stored = _store(wb).history(warning["id"])[-1]["note"]
    assert stored == "已走访户主<NAME>，电话<PHONE>，身份证<ID>"
    timeline = client.get(f"/wb/households/{warning['household_id']}").text
    for secret in (NAME, PHONE, ID_NUMBER):
        assert secret not in timeline and secret not in answer.text
    events = dom(timeline).find("ul", cls="timeline").find_all("li", cls="k-event")
    assert any("备注：已走访户主<NAME>，电话<PHONE>，身份证<ID>" in e.text for e in events)
    assert "&lt;NAME&gt;" in timeline


def test_a_county_supervises_an_overdue_warning_and_a_station_may_not(wb: dict) -> None:
    wid = wb["overdue"]
    county = _client(wb, COUNTY_KEY)
    page = dom(county.get(f"/wb/counties/{wb['county']}/supervision").text)
    row = page.find("table", id="overdue").find("tr", data_warning_id=str(wid))
    form = row.find("form", cls="supervise")
    assert form.attrs["action"] == f"/wb/warnings/{wid}/supervise"
    assert form.find("input", name="new_deadline").attrs["type"] == "datetime-local"
    deadline = (datetime.now(UTC) + timedelta(days=2)).astimezone().strftime("%Y-%m-%dT%H:%M")
    comment = f"请联系{NAME}（{PHONE}）并于两日内处置"
    token = _token(county.get(f"/wb/counties/{wb['county']}/supervision").text)
    answer = county.post(
        f"/wb/warnings/{wid}/supervise",
        data={"comment": comment, "new_deadline": deadline, "csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == f"/wb/counties/{wb['county']}/supervision"
    shown = dom(county.get(answer.headers["location"]).text)
    assert shown.find("div", cls="flash").text.startswith(f"预警 {wid} 已督办")
    assert not shown.find("table", id="overdue").find_all("tr", data_warning_id=str(wid))  # new deadline: not overdue
    supervision = _store(wb).supervisions([wid])[-1]
    assert NAME not in supervision["comment"] and PHONE not in supervision["comment"]
    assert "<PHONE>" in supervision["comment"]
    past = county.post(
        f"/wb/warnings/{wid}/supervise",
        data={"comment": "再催", "new_deadline": "2020-01-01T08:00", "csrf_token": token},
    )
    assert dom(past.text).find("div", cls="flash").text == f"预警 {wid}：新期限须晚于当前时间。"
    station = _client(wb, STATION_KEY)
    token = _token(station.get(f"/wb/stations/{wb['station']}").text)
    refused = station.post(
        f"/wb/warnings/{wid}/supervise", data={"comment": "x", "new_deadline": deadline, "csrf_token": token}
    )
    assert refused.status_code == 403 and len(_store(wb).supervisions([wid])) == 1


# ---------------------------------------------------------------------------------------------- pages


def test_the_city_overview_has_its_charts_and_tables(wb: dict) -> None:
    page = dom(_client(wb, CITY_KEY).get("/wb/").text)
    charts = [n.attrs["data-chart"] for n in page.find_all("svg", cls="chart")]
    assert len(charts) == 5 and any("按等级" in c for c in charts) and any("近90天纠纷警情" in c for c in charts)
    for table in ("overdue", "escalations", "league", "by-county"):
        assert page.find("table", id=table)
    counties = page.find("table", id="by-county").find_all("tr", data_county=wb["county"])
    assert counties and counties[0].find("td", cls="open")
    stored = _store(wb).warnings_for(wb["date"])
    total = sum(
        int(r.find("td", cls="total").text) for r in page.find("table", id="by-county").find_all("tr") if r.attrs
    )
    assert total == len(stored)
    league = page.find("table", id="league").find_all("tr")
    assert sum(1 for r in league if "data-station" in r.attrs) == len(wb["app"].state.workbench.data._views.stations)
    # the latest ranking's drift check, as its manifest says it (docs/drift.md)
    manifest = json.loads((wb["ranked"]["result"].folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["drift"]["reference"]["available"]
    shown = page.find(id="drift")
    assert shown.attrs["data-drift-status"] == manifest["drift"]["status"]


def test_a_station_page_lists_its_warnings_in_rank_order_page_by_page(wb: dict) -> None:
    client = _client(wb, STATION_KEY)
    stored = sorted(_warnings_of(wb, wb["station"]), key=lambda w: w["rank_in_station"])
    assert len(stored) >= 3, "the busiest station needs three warnings to page"
    first = dom(client.get(f"/wb/stations/{wb['station']}").text)
    rows = [r for r in first.find("table", id="warnings").find_all("tr") if "data-warning-id" in r.attrs]
    assert [int(r.attrs["data-warning-id"]) for r in rows] == [w["id"] for w in stored[:2]]  # page size 2
    cells = rows[0].find_all("td")
    assert cells[0].text == str(stored[0]["id"]) and rows[0].find("span", cls="badge")
    assert first.find("a", rel="next").attrs["href"] == f"/wb/stations/{wb['station']}?date={wb['date']}&page=2"
    second = dom(client.get(f"/wb/stations/{wb['station']}?date={wb['date']}&page=2").text)
    rows = [r for r in second.find("table", id="warnings").find_all("tr") if "data-warning-id" in r.attrs]
    assert [int(r.attrs["data-warning-id"]) for r in rows] == [w["id"] for w in stored[2:4]]
    assert client.get(f"/wb/stations/{wb['station']}?date=2024-13-45").status_code == 404
    assert client.get(f"/wb/stations/{wb['station']}?date=1999-01-01").status_code == 404


def test_a_household_timeline_shows_calls_visits_cases_and_warnings_without_text(wb: dict, ranked: dict) -> None:
    client = _client(wb, CITY_KEY)
    warning = _warnings_of(wb, wb["station"])[0]
    answer = client.get(f"/wb/households/{warning['household_id']}")
    timeline = dom(answer.text).find("ul", cls="timeline")
    calls = timeline.find_all("li", cls="k-call")
    history = wb["app"].state.service.engine.history.get(warning["household_id"])
    assert len(calls) == len(history.calls) > 0
    assert [w.attrs["data-warning-id"] for w in timeline.find_all("li", cls="k-warning")] == [str(warning["id"])]
    incidents = pd.read_parquet(ranked["city"] / "incidents.parquet", columns=["narrative"])
    assert not any(n in answer.text for n in set(incidents["narrative"].head(2000)))

    folder = Path(wb["app"].state.service.engine.history.folder)
    visits = pd.read_parquet(folder / "visits.parquet")
    visited = visits["household_id"].value_counts().index[0]
    page = dom(client.get(f"/wb/households/{visited}").text).find("ul", cls="timeline")
    shown = page.find_all("li", cls="k-visit")
    assert len(shown) == int((visits["household_id"] == visited).sum())
    first = visits[visits["household_id"] == visited].sort_values("visited_at").iloc[-1]
    assert shown[0].text.endswith(f"走访：{first['visit_type']}，{first['outcome']}")
    cases = pd.read_parquet(folder / "escalations.parquet")
    hit = cases.iloc[0]
    page = dom(client.get(f"/wb/households/{hit['household_id']}").text).find("ul", cls="timeline")
    assert any(hit["case_id"] in li.text and hit["charge"] in li.text for li in page.find_all("li", cls="k-case"))

    for bad in (ID_NUMBER, "H99999999", "a%2Fb"):
        missing = client.get(f"/wb/households/{bad}")
        assert missing.status_code == 404 and ID_NUMBER not in missing.text


def test_escalations_say_whether_the_database_had_warned_beforehand(wb: dict) -> None:
    folder = Path(wb["app"].state.service.engine.history.folder)
    cases = pd.read_parquet(folder / "escalations.parquet")
    recent = cases[pd.to_datetime(cases["opened_at"]) >= pd.Timestamp(wb["date"]) - pd.Timedelta(days=90)]
    assert len(recent), "the test city needs an escalation in the last 90 days"
    case = recent.iloc[0]
    earlier = (pd.Timestamp(case["opened_at"]) - pd.Timedelta(days=10)).date().isoformat()
    store = _store(wb)
    try:
        store.replace_date(
            earlier,
            pd.DataFrame(
                [
                    {
                        "household_id": case["household_id"],
                        "station_id": case["station_id"],
                        "county_code": case["county_code"],
                        "level": "orange",
                        "probability": 0.2,
                        "rank_in_station": 1,
                        "category": "family",
                        "engine": "rules",
                        "model_version": None,
                        "reasons": {"rules": ["测试"], "model": []},
                    }
                ]
            ),
            {"test": "warned before"},
        )
    finally:
        store.dispose()
    page = dom(_client(wb, CITY_KEY).get("/wb/").text).find("table", id="escalations")
    rows = [r for r in page.find_all("tr") if "data-case" in r.attrs]
    assert len(rows) == len(recent)
    row = next(
        r for r in rows if r.attrs["data-case"] == case["case_id"] and r.attrs["data-household"] == case["household_id"]
    )
    assert row.attrs["data-warned"] == "yes"
    assert row.find_all("td")[-1].text == f"{earlier} 起 橙色预警"


def test_hostile_ids_and_reasons_are_escaped(wb: dict) -> None:
    store = _store(wb)
    day = "2030-01-02"
    try:
        store.replace_date(
            day,
            pd.DataFrame(
                [
                    {
                        "household_id": HOSTILE,
                        "station_id": wb["station"],
                        "county_code": wb["county"],
                        "level": "red",
                        "probability": 0.5,
                        "rank_in_station": 1,
                        "category": "family",
                        "engine": "rules",
                        "model_version": None,
                        "reasons": {"rules": [HOSTILE], "model": [], "calls": ["<b>x</b>"], "raised_by": "rules"},
                    }
                ]
            ),
            {"test": True},
        )
    finally:
        store.dispose()
    answer = _client(wb, STATION_KEY).get(f"/wb/stations/{wb['station']}?date={day}")
    assert answer.status_code == 200
    assert HOSTILE not in answer.text and "<b>x</b>" not in answer.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in answer.text
    link = dom(answer.text).find("table", id="warnings").find("a")
    assert link.attrs["href"] == "/wb/households/%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E"
    assert link.text == HOSTILE
    elsewhere = _client(wb, CITY_KEY).get(f"/wb/stations/{HOSTILE}")
    assert elsewhere.status_code == 404 and "alert" not in elsewhere.text


def test_assessment_periods(wb: dict) -> None:
    client = _client(wb, CITY_KEY)
    page = dom(client.get("/wb/assessment").text)
    assert page.find("h1").text.startswith("派出所考评（")
    assert page.find("table", id="league").find_all("tr", data_station=wb["station"])
    old = dom(client.get("/wb/assessment?period=2019-03-15").text)
    assert old.find("h1").text == "派出所考评（2019-03-01 至 2019-04-30）"
    assert all(
        r.find("td", cls="warnings").text == "0" for r in old.find("table", id="league").find_all("tr") if r.attrs
    )
    assert client.get("/wb/assessment?period=garbage").status_code == 404


def test_reports_are_listed_and_served_with_their_paths_checked(wb: dict) -> None:
    reports = Path(wb["settings"].reports_dir)
    (reports / "month-2024-12").mkdir(parents=True, exist_ok=True)
    (reports / "month-2024-12" / "report.html").write_text("<html><body>报告</body></html>", encoding="utf-8")
    (reports / "month-2024-12" / "report.pdf").write_bytes(b"%PDF-1.4\n")
    (reports / "month-2024-12" / "manifest.json").write_text(json.dumps({"title": "月报"}), encoding="utf-8")
    (wb["root"] / "secret.html").write_text("secret", encoding="utf-8")
    client = _client(wb, COUNTY_KEY)
    listing = dom(client.get("/wb/reports").text).find("table", id="reports").find("tr", data_report="month-2024-12")
    assert [a.attrs["href"] for a in listing.find_all("a")] == [
        "/wb/reports/month-2024-12/report.html",
        "/wb/reports/month-2024-12/report.pdf",
    ]
    html = client.get("/wb/reports/month-2024-12/report.html")
    assert html.status_code == 200 and html.text.endswith("报告</body></html>")
    pdf = client.get("/wb/reports/month-2024-12/report.pdf")
    assert pdf.headers["content-type"] == "application/pdf" and "attachment" in pdf.headers["content-disposition"]
    for bad in ("month-2024-12/manifest.json", "..%2Fsecret.html/x.html", "month-2024-12/..%2F..%2Fsecret.html"):
        assert client.get(f"/wb/reports/{bad}").status_code == 404, bad
    assert _client(wb, STATION_KEY).get("/wb/reports/month-2024-12/report.html").status_code == 403


def test_workbench_answers_carry_security_headers_and_the_api_keeps_its_own(wb: dict) -> None:
    client = _client(wb, CITY_KEY)
    for answer in (client.get("/wb/"), client.get("/wb/login"), _client(wb).get("/wb/", follow_redirects=False)):
        headers = answer.headers
        csp = headers["content-security-policy"]
        for part in (
            "default-src 'none'",
            "style-src 'unsafe-inline'",
            "img-src 'self' data:",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ):
            assert part in csp
        assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"
        assert headers["referrer-policy"] == "same-origin"
    assert "<script" not in client.get("/wb/").text
    api = client.get("/healthz")
    assert "content-security-policy" not in api.headers


def test_the_api_schema_stays_the_apis(wb: dict) -> None:
    paths = wb["client"].get("/openapi.json").json()["paths"]
    assert paths and not any(p.startswith("/wb") for p in paths)
    for client in (wb["client"], _client(wb, CITY_KEY)):
        missing = client.get("/wb/nothing-here")
        assert missing.status_code == 404 and dom(missing.text).find("h1").text == "未找到"


def test_the_loop_cache_after_changes_equals_a_fresh_load(wb: dict) -> None:
    """The incremental refresh (events and supervisions read by id, their warnings re-timed) loses nothing."""
    from types import SimpleNamespace

    from serving.routers.warnings import warning_store
    from serving.workbench.loopcache import LoopCache, reader_engine

    data = wb["app"].state.workbench.data
    views = data.views(wb["app"].state.service.engine.history)
    store = warning_store(SimpleNamespace(app=wb["app"]))  # the app's own: the cache belongs to it
    client = _client(wb, COUNTY_KEY)
    token = _token(client.get(f"/wb/stations/{wb['station']}").text)
    moved = [w for w in _warnings_of(wb, wb["station"]) if w["status"] in ("pushed", "acknowledged")][:2]
    assert moved
    before = data._loop.incremental_loads
    for w in moved:
        client.post(f"/wb/warnings/{w['id']}/status", data={"status": "handled", "csrf_token": token})
    cached = data.snapshot(store, views).loop
    assert data._loop.incremental_loads > before
    reader = reader_engine(wb["db"])
    try:
        fresh = LoopCache(store, reader, data.hours).snapshot(data.window(views.date)).loop
    finally:
        reader.dispose()
    columns = ["id", "status", "outcome", "deadline", "acknowledged_at", "handled_at", "fed_back_at", "supervised"]
    mine = cached[columns].sort_values("id").reset_index(drop=True)
    theirs = fresh[columns].sort_values("id").reset_index(drop=True)
    assert set(mine.loc[mine["id"].isin([w["id"] for w in moved]), "status"]) == {"handled"}
    plain = [frame.astype(object).where(frame.notna(), None) for frame in (mine, theirs)]
    pd.testing.assert_frame_equal(*plain)


def test_an_unreadable_keys_file_closes_sign_in(wb: dict) -> None:
    keys_file = Path(wb["settings"].api_keys_file)
    kept = keys_file.read_text(encoding="utf-8")
    client = _client(wb, CITY_KEY)
    try:
        keys_file.write_text("{not json", encoding="utf-8")
        assert client.get("/wb/", follow_redirects=False).status_code == 303  # fail closed
        fresh = _client(wb)
        answer = fresh.post("/wb/login", data={"key": CITY_KEY, "csrf_token": _token(fresh.get("/wb/login").text)})
        assert answer.status_code == 401 and "密钥文件无法读取" in dom(answer.text).find("div", cls="error").text
    finally:
        keys_file.write_text(kept, encoding="utf-8")
    assert _client(wb, CITY_KEY).get("/wb/").status_code == 200
