"""The API never answers 5xx to input, never echoes it, and logs only validated values (issue 11).

Every request the issue measured as a 500 (a warning id over 2^63-1, JSON
nested ~950 levels, a ``received_at`` outside pandas' range with a household)
and ~30 other bad requests, each carrying distinctive personal-looking values:
the answer is the documented 4xx, none of the values comes back, the last
resort handler is never reached and the audit log holds none of them.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import own_service_settings
from fastapi.testclient import TestClient

from conf import Settings
from serving.app import create_app

pytestmark = pytest.mark.xdist_group("trained")

CITY_KEY = "city-key-0123456789abcdef"
STATION_KEY = "station-key-0123456789ab"
ID_NUMBER = "150502198803154321"
PHONE = "13912345678"
NAME = "司马懿然"
SECRETS = (ID_NUMBER, PHONE, NAME, "秘密字段", "9223372036854775808")
NARRATIVE_LIMIT = 300


@pytest.fixture(scope="module")
def api(ranked: dict, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The service on the ranked city, with its own copy of the warnings database (these tests move warnings)."""
    root = tmp_path_factory.mktemp("api_errors")
    table = pd.read_parquet(ranked["result"].folder / "ranking.parquet")
    target = table[table["level"].notna()].sort_values("rank_in_station").iloc[0]
    keys = {CITY_KEY: {"scope": "city"}, STATION_KEY: {"scope": "station", "station": target["station_id"]}}
    settings = own_service_settings(
        ranked, root, keys, max_batch=20, max_body_bytes=20_000, max_narrative_chars=NARRATIVE_LIMIT
    )
    with TestClient(create_app(settings)) as client:
        yield {
            "client": client,
            "settings": settings,
            "household": target["household_id"],
            "date": ranked["result"].date,
            "db": settings.warnings_db_url,
        }


def _h(key: str = CITY_KEY) -> dict[str, str]:
    return {"X-API-Key": key, "Content-Type": "application/json"}


def _audit(api: dict) -> str:
    return (api["settings"].home / "logs" / "audit.jsonl").read_text(encoding="utf-8")


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# (name, method, path, body: dict/str/bytes/None, expected status); "{hh}" is a known household, "{date}" the date.
BAD_REQUESTS: list[tuple[str, str, str, Any, int]] = [
    ("warning id over 2^63-1", "POST", "/v1/warnings/9223372036854775808/status", {"status": "handled"}, 422),
    ("warning id over 2^64", "POST", f"/v1/warnings/{2**70}/status", {"status": "handled"}, 422),
    ("warning id 0", "POST", "/v1/warnings/0/status", {"status": "handled"}, 422),
    ("warning id not a number", "POST", f"/v1/warnings/{NAME}/status", {"status": "handled"}, 422),
    ("JSON nested 950 levels", "POST", "/v1/incidents/score", f'{{"narrative": "x", "id": {_deep(950)}}}', 400),
    ("JSON nested 5,000 levels", "POST", "/v1/incidents/score-batch", _deep(5_000), 400),
    ("JSON nested 20 levels, named", "POST", "/v1/incidents/score", f'{{"{NAME}": {_deep(20)}}}', 400),
    (
        "received_at 1600 with a household",
        "POST",
        "/v1/incidents/score",
        {"narrative": f"{NAME}报警", "received_at": "1600-01-01T00:00:00", "household_id": "{hh}"},
        422,
    ),
    ("received_at 9999-12-31", "POST", "/v1/incidents/score", {"narrative": "x", "received_at": "9999-12-31"}, 422),
    ("received_at 2262-04-12", "POST", "/v1/incidents/score", {"narrative": "x", "received_at": "2262-04-12"}, 422),
    (
        "received_at year 1 +14:00",
        "POST",
        "/v1/incidents/score",
        {"narrative": "x", "received_at": "0001-01-01T00:00:00+14:00"},
        422,
    ),
    ("received_at an ID number", "POST", "/v1/incidents/score", {"narrative": "x", "received_at": ID_NUMBER}, 422),
    ("narrative over the limit", "POST", "/v1/incidents/score", {"narrative": NAME * NARRATIVE_LIMIT}, 422),
    ("body over max_body_bytes", "POST", "/v1/incidents/score", {"narrative": PHONE * 2_000}, 413),
    (
        "unknown field named with personal data",
        "POST",
        "/v1/incidents/score",
        {"narrative": "x", "秘密字段": ID_NUMBER},
        422,
    ),
    ("id with personal data", "POST", "/v1/incidents/score", {"narrative": "x", "id": f"{NAME}{PHONE}"}, 422),
    ("caller key with personal data", "POST", "/v1/incidents/score", {"narrative": "x", "caller_person_id": NAME}, 422),
    ("narrative an object", "POST", "/v1/incidents/score", {"narrative": {"name": NAME, "phone": PHONE}}, 422),
    (
        "unknown household in the body",
        "POST",
        "/v1/incidents/score",
        {"narrative": "x", "household_id": ID_NUMBER},
        404,
    ),
    ("not UTF-8", "POST", "/v1/incidents/score", NAME.encode("gb18030") + PHONE.encode(), 400),
    ("malformed JSON", "POST", "/v1/incidents/score", f'{{"narrative": "{NAME}", "id": {PHONE}', 400),
    ("a 5,000-digit number", "POST", "/v1/incidents/score", '{"narrative": "x", "id": ' + "9" * 5_000 + "}", 400),
    ("empty body", "POST", "/v1/incidents/score", b"", 400),
    ("batch not a list", "POST", "/v1/incidents/score-batch", {"incidents": {"narrative": NAME}}, 422),
    ("batch over max_batch", "POST", "/v1/incidents/score-batch", {"incidents": [{"narrative": PHONE}] * 21}, 413),
    ("status unknown", "POST", "/v1/warnings/1/status", {"status": NAME}, 422),
    ("outcome unknown", "POST", "/v1/warnings/1/status", {"status": "fed_back", "outcome": PHONE}, 422),
    ("note too long", "POST", "/v1/warnings/1/status", {"status": "handled", "note": NAME * 1_000}, 422),
    ("household path an ID number", "GET", f"/v1/households/{ID_NUMBER}/risk", None, 404),
    ("household path a name", "GET", f"/v1/households/{NAME}/risk", None, 422),
    ("ranking date not a date", "GET", "/v1/rankings/2024-13-45", None, 422),
    ("ranking date an ID number", "GET", f"/v1/rankings/{ID_NUMBER}", None, 422),
    ("ranking station a name", "GET", f"/v1/rankings/{{date}}?station={NAME}{PHONE}", None, 422),
    ("ranking county a phone", "GET", f"/v1/rankings/{{date}}?county={PHONE}", None, 422),
]


@pytest.mark.parametrize(("name", "method", "path", "body", "status"), BAD_REQUESTS, ids=[r[0] for r in BAD_REQUESTS])
def test_bad_requests_get_their_4xx_and_never_their_input_back(
    api: dict, caplog: pytest.LogCaptureFixture, name: str, method: str, path: str, body: Any, status: int
) -> None:
    path = path.replace("{date}", api["date"])
    if isinstance(body, dict):
        body = json.dumps(body, ensure_ascii=False).replace("{hh}", api["household"])
    content = body.encode("utf-8") if isinstance(body, str) else body
    with caplog.at_level("ERROR", logger="yujing.serving"):
        response = api["client"].request(method, path, content=content, headers=_h())
    assert response.status_code == status, (name, response.text[:300])
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert detail and isinstance(detail, str | list)
    for secret in SECRETS:
        assert secret not in response.text, (name, secret)
    assert "unhandled" not in caplog.text  # the last resort was not needed


def test_the_audit_log_holds_no_value_that_failed_its_check(api: dict) -> None:
    client = api["client"]
    client.get(f"/v1/households/{ID_NUMBER}/risk", headers=_h())
    client.get(f"/v1/rankings/{api['date']}?station=S{PHONE}", headers=_h())
    client.post("/v1/incidents/score", json={"narrative": NAME, "household_id": ID_NUMBER}, headers=_h())
    client.get(f"/v1/households/{api['household']}/risk", headers=_h())
    log = _audit(api)
    for secret in (*SECRETS, f"S{PHONE}"):
        assert secret not in log
    entries = [json.loads(line) for line in log.splitlines()]
    probe = [e for e in entries if e["route"] == "/v1/households/{household_id}/risk" and e["status"] == 404]
    assert probe and probe[-1]["read"]["households"][0].startswith("#")  # a hash: probes can be counted, not read
    read = [e for e in entries if e["route"] == "/v1/households/{household_id}/risk" and e["status"] == 200]
    assert read[-1]["read"]["households"] == [api["household"]]
    assert all(e["method"] in ("GET", "POST") for e in entries)


def test_a_batch_answers_item_by_item(api: dict) -> None:
    good = {"narrative": "丈夫酒后打人", "received_at": "2024-12-31T09:00:00", "household_id": api["household"]}
    incidents = [
        good | {"id": "ok-1"},
        good | {"id": "old", "received_at": "1600-01-01T00:00:00"},
        {"id": "long", "narrative": "吵" * (NARRATIVE_LIMIT + 1)},
        f"{NAME}{PHONE}",
        {"id": f"{NAME}", "narrative": "x", "extra": 1},
        good | {"id": "unknown", "household_id": "H99999999"},
        good | {"id": "ok-2"},
    ]
    response = api["client"].post("/v1/incidents/score-batch", json={"incidents": incidents}, headers=_h())
    assert response.status_code == 200
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(7))
    assert [r.get("status", 200) for r in results] == [200, 422, 422, 422, 422, 404, 200]
    assert [r["id"] for r in results] == ["ok-1", "old", "long", None, None, "unknown", "ok-2"]
    assert (body["scored"], body["failed"]) == (2, 5)
    assert results[1]["errors"][0]["loc"] == ["received_at"]
    assert results[2]["errors"][0]["type"] == "string_too_long"
    assert results[0]["household"]["household_id"] == api["household"]
    for secret in SECRETS:
        assert secret not in response.text


def test_a_station_key_gets_403_per_foreign_item(api: dict) -> None:
    history = pd.read_parquet(
        next(Path(api["settings"].rankings_dir).glob("*/context.parquet")), columns=["household_id", "station_id"]
    )
    own = history.loc[history["household_id"] == api["household"], "station_id"].iloc[0]
    foreign = history.loc[history["station_id"] != own, "household_id"].iloc[0]
    incidents = [
        {"narrative": "吵架", "household_id": api["household"]},
        {"narrative": "吵架", "household_id": foreign},
    ]
    body = (
        api["client"].post("/v1/incidents/score-batch", json={"incidents": incidents}, headers=_h(STATION_KEY)).json()
    )
    assert [r.get("status", 200) for r in body["results"]] == [200, 403]


def test_an_over_long_narrative_is_refused_before_any_scoring(api: dict) -> None:
    started = time.perf_counter()
    response = api["client"].post("/v1/incidents/score", json={"narrative": "打" * 19_000}, headers=_h())
    assert response.status_code == 413  # over max_body_bytes: refused on the declared length, body unread
    response = api["client"].post("/v1/incidents/score", json={"narrative": "打" * 6_000}, headers=_h())
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "narrative"]
    assert time.perf_counter() - started < 1.0


def test_an_unhandled_exception_is_a_generic_500_and_the_service_goes_on(
    api: dict, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import serving.routers.incidents as incidents

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"failed on {ID_NUMBER}")

    monkeypatch.setattr(incidents, "score_incident", broken)
    with caplog.at_level("ERROR", logger="yujing.serving"):
        response = api["client"].post("/v1/incidents/score", json={"narrative": "x"}, headers=_h())
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error; the server log names it"}
    assert "unhandled RuntimeError at" in caplog.text and ID_NUMBER not in caplog.text
    monkeypatch.undo()
    assert api["client"].post("/v1/incidents/score", json={"narrative": "x"}, headers=_h()).status_code == 200
    assert ID_NUMBER not in _audit(api)


def test_healthz_is_public_and_names_no_path(api: dict) -> None:
    response = api["client"].get("/healthz")
    assert response.status_code == 200 and set(response.json()) == {"status", "degraded", "models"}
    settings = api["settings"]
    for path in (settings.home, settings.rankings_dir, settings.serve_bundle, Path.cwd()):
        assert str(Path(path).resolve()) not in response.text
    assert "/" not in json.dumps(response.json()["models"])


def test_readyz_is_503_while_loading_and_200_when_loaded(api: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import serving.app

    release = threading.Event()
    real = serving.app.build_state

    def slow(settings: Settings) -> Any:
        release.wait(60)
        return real(settings)

    monkeypatch.setattr(serving.app, "build_state", slow)
    app = serving.app.create_app(api["settings"], background=True)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 503 and client.get("/readyz").json() == {"status": "loading"}
        assert client.get("/healthz").json() == {"status": "loading", "degraded": None, "models": None}
        assert client.get("/v1/models", headers=_h()).status_code == 503
        assert client.post("/v1/incidents/score", json={"narrative": "x"}, headers=_h()).status_code == 503
        release.set()
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.post("/v1/incidents/score", json={"narrative": "x"}, headers=_h()).status_code == 200

    def broken(settings: Settings) -> Any:
        raise OSError(f"cannot read {ID_NUMBER}")

    monkeypatch.setattr(serving.app, "build_state", broken)
    with TestClient(serving.app.create_app(api["settings"], background=True)) as client:
        deadline = time.monotonic() + 10
        while client.get("/readyz").json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        failed = client.get("/readyz")
        assert failed.status_code == 503 and failed.json() == {"status": "failed"}


def test_swagger_ui_and_redoc_are_served_from_the_package(api: dict) -> None:
    client = api["client"]
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200 and "/openapi.json" in html.text
        assert "http://" not in html.text and "https://" not in html.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        response = client.get(f"/docs-assets/{asset}")
        assert response.status_code == 200 and len(response.content) > 1_000
        assert f"/docs-assets/{asset}" in client.get("/docs").text + client.get("/redoc").text


def test_openapi_has_request_bodies_typed_answers_and_the_key_scheme(api: dict) -> None:
    spec = api["client"].get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": spec["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    operations = [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]
    assert len(operations) == 8
    for path, method, op in operations:
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert "$ref" in ok, (path, method)
        if method == "post":
            assert "$ref" in op["requestBody"]["content"]["application/json"]["schema"], path
            assert op["requestBody"]["required"] is True
        public = path in ("/healthz", "/readyz")
        assert ("security" in op) is not public, path
        if not public:
            assert op["security"] == [{"ApiKey": []}]
        if "422" in op["responses"]:
            schema = op["responses"]["422"]["content"]["application/json"]["schema"]
            assert schema["$ref"].endswith("ValidationErrorOut"), path
    incident = spec["components"]["schemas"]["IncidentIn"]
    assert incident["properties"]["narrative"]["maxLength"] == NARRATIVE_LIMIT
    assert spec["components"]["schemas"]["BatchIn"]["properties"]["incidents"]["maxItems"] == 20


def test_station_notes_are_stored_without_ids_phones_or_names(api: dict) -> None:
    from models.warning_store import WarningStore

    client = api["client"]
    warnings = client.get(f"/v1/rankings/{api['date']}", headers=_h()).json()["warnings"]
    wid = warnings[-1]["warning"]["id"]
    note = f"已走访户主王建国，当事人{NAME}称电话{PHONE}，身份证{ID_NUMBER}，已与王翠兰谈话"
    moved = client.post(f"/v1/warnings/{wid}/status", json={"status": "acknowledged", "note": note}, headers=_h())
    assert moved.status_code == 200 and moved.json()["status"] == "acknowledged"
    store = WarningStore(api["db"])
    try:
        stored = store.history(wid)[-1]["note"]
    finally:
        store.dispose()
    for secret in ("王建国", NAME, PHONE, ID_NUMBER, "王翠兰"):
        assert secret not in stored
    assert stored.count("<NAME>") == 3 and "<PHONE>" in stored and "<ID>" in stored
    assert stored.startswith("已走访户主<NAME>")


def test_parse_json_and_depth_check() -> None:
    from serving.routers._common import MAX_JSON_DEPTH, BadBody, json_depth_exceeds, parse_json

    assert not json_depth_exceeds(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[["}')  # brackets inside a string do not count
    assert not json_depth_exceeds(("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH).encode())
    assert json_depth_exceeds(("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)).encode())
    assert not json_depth_exceeds(b"[" + b"[1]," * 500 + b"[2]]")  # many brackets, shallow
    assert parse_json(b'{"narrative": "\\"]]]"}') == {"narrative": '"]]]'}
    for raw in (b"  ", b"\xff", b"{", ("[" * 100_000).encode(), b"1" * 5_000):
        with pytest.raises(BadBody):
            parse_json(raw)


def test_incident_time_is_bounded() -> None:
    from datetime import datetime, timedelta

    from serving.incident import IncidentTimeError, incident_time

    now = datetime(2025, 1, 1, 12, 0)
    assert str(incident_time("2024-12-31T09:00:00", now)) == "2024-12-31 09:00:00"
    assert str(incident_time(datetime(2024, 12, 31, 1, tzinfo=UTC), now)) == "2024-12-31 09:00:00"
    assert incident_time(None, now) == pd.Timestamp(now)
    assert incident_time(now + timedelta(hours=23), now) == pd.Timestamp(now + timedelta(hours=23))
    for bad in ("1600-01-01", "1999-12-31T23:59:59", "2262-04-12", "9999-12-31", now + timedelta(days=2), "x"):
        with pytest.raises(IncidentTimeError):
            incident_time(bad, now)


def test_the_api_takes_every_outcome_the_store_takes() -> None:
    """One list of outcomes: the status route's schema accepts exactly the store's (referred included)."""
    import typing

    from models.warning_tables import OUTCOMES
    from serving import schemas

    fields = [m for m in vars(schemas).values() if isinstance(m, type) and "outcome" in getattr(m, "model_fields", {})]
    assert fields, "no request model carries an outcome"
    checked: list[str] = []
    for model in fields:
        allowed = {a for arg in typing.get_args(model.model_fields["outcome"].annotation) for a in typing.get_args(arg)}
        if allowed:  # a request model restricts the values; a response model carries the stored text
            checked.append(model.__name__)
            assert allowed == set(OUTCOMES), model.__name__
    assert checked, "no request model restricts the outcome"
