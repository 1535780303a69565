"""The online endpoint: every route, keys and scopes, bad input, degraded mode, hot reload, audit log."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from conf import Settings
from serving.app import create_app

pytestmark = pytest.mark.xdist_group("trained")

CITY_KEY = "city-key-0123456789abcdef"
ID_NUMBER = "150502198803154321"
PHONE = "13912345678"
VIOLENT = f"2024年12月30日21时，王某某(身份证{ID_NUMBER}，电话{PHONE})报警称：丈夫酒后持刀打人，扬言要杀了她，已受伤。"


@pytest.fixture(scope="module")
def service(ranked: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("serve")
    table = pd.read_parquet(ranked["result"].folder / "ranking.parquet")
    warned = table[table["level"].notna()].sort_values("rank_in_station")
    target = warned.iloc[0]
    other = table[(table["station_id"] != target["station_id"]) & (table["county_code"] != target["county_code"])]
    keys = {
        CITY_KEY: {"scope": "city"},
        "county-key-0123456789abc": {"scope": "county", "county": target["county_code"]},
        "station-key-0123456789ab": {"scope": "station", "station": target["station_id"]},
    }
    (root / "keys.json").write_text(json.dumps(keys), encoding="utf-8")
    settings = Settings(
        home=root / "var",
        api_keys_file=root / "keys.json",
        rankings_dir=ranked["rankings"],
        warnings_db_url=ranked["store"],
        serve_bundle=ranked["bundle"],
        reload_interval_seconds=0,
        max_batch=20,
        max_body_bytes=20_000,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        yield {
            "client": client,
            "app": app,
            "settings": settings,
            "target": target,
            "other": other.iloc[0],
            "date": ranked["result"].date,
            "bundle": ranked["bundle"],
        }


def _h(key: str = CITY_KEY) -> dict[str, str]:
    return {"X-API-Key": key}


def _incident(service: dict, **extra) -> dict:  # type: ignore[no-untyped-def]
    return {
        "narrative": VIOLENT,
        "received_at": "2024-12-31T09:00:00",
        "household_id": service["target"]["household_id"],
    } | extra


def test_healthz_reports_the_models(service: dict) -> None:
    body = service["client"].get("/healthz").json()
    assert set(body) == {"status", "degraded", "models"}  # public: no problems (they name paths), no counters
    assert body["status"] == "ok" and body["degraded"] is False
    assert body["models"]["escalation"] and body["models"]["history_date"] == service["date"]
    assert service["client"].get("/readyz").json() == {"status": "ready"}
    models = service["client"].get("/v1/models", headers=_h()).json()
    assert models["problems"] == [] and models["reloads"] == 1


def test_keys_are_required(service: dict) -> None:
    client = service["client"]
    assert client.post("/v1/incidents/score", json={"narrative": "x"}).status_code == 401
    assert (
        client.post("/v1/incidents/score", json={"narrative": "x"}, headers=_h("wrong-key-000000000000")).status_code
        == 401
    )
    assert client.get("/v1/models").status_code == 401
    assert client.get(f"/v1/rankings/{service['date']}").status_code == 401


def test_an_incident_updates_its_households_risk(service: dict) -> None:
    response = service["client"].post("/v1/incidents/score", json=_incident(service, id="call-1"), headers=_h())
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "call-1" and body["is_dispute"] is True and body["category"] == "family"
    assert {"violence", "weapon", "threat", "alcohol", "injury"} <= set(body["cues"])
    household = body["household"]
    assert household["household_id"] == service["target"]["household_id"]
    assert household["in_scope"] is True and household["engine"] == "model"
    # the call is counted: the same household with a help request instead scores fewer rule points, and the
    # model (monotone in violence, weapons and threats; strictly increasing calibration) a higher risk
    benign = _incident(service, id="call-0", narrative="称家中停水，请求帮助。")
    calm = service["client"].post("/v1/incidents/score", json=benign, headers=_h()).json()["household"]
    assert household["rules"]["points"] > calm["rules"]["points"]
    assert household["probability"] > calm["probability"]
    assert household["reasons"]["model"] and household["reasons"]["rules"]
    assert household["rules"]["points"] > 0
    assert body["degraded"] is False and body["models"]["escalation"] and body["models"]["dispute"]
    text = response.text
    assert ID_NUMBER not in text and PHONE not in text and "王某某" not in text  # nothing of the narrative echoed


def test_an_incident_without_a_household_is_classified_only(service: dict) -> None:
    body = service["client"].post("/v1/incidents/score", json={"narrative": VIOLENT}, headers=_h()).json()
    assert body["household"] is None and body["is_dispute"] is True


@pytest.mark.parametrize("narrative", ["被丈夫殴打。", "丈夫酒后拿菜刀威胁要杀她，已被打伤"])
def test_domestic_violence_is_a_family_dispute_by_file_and_over_http(service: dict, narrative: str) -> None:
    """Issue 9: the two real-style calls the old champion called "not a dispute"; batch and online agree."""
    import io

    from pipelines.batch import classify_stream
    from serving.dispute import load_dispute_model

    body = service["client"].post("/v1/incidents/score", json={"narrative": narrative}, headers=_h()).json()
    assert body["is_dispute"] is True and body["category"] == "family" and body["engine"] == "model+rules"
    sink = io.StringIO()
    line = json.dumps({"id": 1, "narrative": narrative}, ensure_ascii=False).encode()
    classify_stream(io.BytesIO(line), sink, load_dispute_model(service["bundle"]))
    by_file = json.loads(sink.getvalue())
    assert (by_file["is_dispute"], by_file["category"], by_file["source"]) == (True, "family", body["source"])


def test_a_household_can_be_found_by_caller(service: dict, ranked: dict) -> None:
    persons = pd.read_parquet(ranked["city"] / "persons.parquet", columns=["person_id", "household_id"])
    person = persons[persons["household_id"] == service["target"]["household_id"]]["person_id"].iloc[0]
    incident = {"narrative": VIOLENT, "received_at": "2024-12-31T09:00:00", "caller_person_id": person}
    body = service["client"].post("/v1/incidents/score", json=incident, headers=_h()).json()
    assert body["household"]["household_id"] == service["target"]["household_id"]


def test_an_unknown_household_is_404(service: dict) -> None:
    response = service["client"].post(
        "/v1/incidents/score", json=_incident(service, household_id="H99999999"), headers=_h()
    )
    assert response.status_code == 404


def test_batch_scores_in_order_with_errors_inline(service: dict) -> None:
    incidents = [
        _incident(service, id="a"),
        _incident(service, id="b", household_id="H99999999"),
        {"narrative": "邻居噪音扰民", "id": "c"},
    ]
    body = service["client"].post("/v1/incidents/score-batch", json={"incidents": incidents}, headers=_h()).json()
    assert [r["id"] for r in body["results"]] == ["a", "b", "c"]
    assert [r["index"] for r in body["results"]] == [0, 1, 2]
    assert (body["scored"], body["failed"]) == (2, 1)
    assert body["results"][1]["status"] == 404 and "error" in body["results"][1]
    assert body["results"][0]["household"]["probability"] is not None
    too_many = {"incidents": [{"narrative": "吵架"}] * 21}
    assert service["client"].post("/v1/incidents/score-batch", json=too_many, headers=_h()).status_code == 413


def test_station_keys_see_only_their_station(service: dict) -> None:
    client, target, other = service["client"], service["target"], service["other"]
    station = _h("station-key-0123456789ab")
    assert client.post("/v1/incidents/score", json=_incident(service), headers=station).status_code == 200
    elsewhere = _incident(service, household_id=other["household_id"])
    assert client.post("/v1/incidents/score", json=elsewhere, headers=station).status_code == 403
    assert client.get(f"/v1/households/{target['household_id']}/risk", headers=station).status_code == 200
    assert client.get(f"/v1/households/{other['household_id']}/risk", headers=station).status_code == 403
    own = client.get(f"/v1/rankings/{service['date']}", headers=station).json()
    assert own["count"] > 0 and {w["station_id"] for w in own["warnings"]} == {target["station_id"]}
    assert (
        client.get(f"/v1/rankings/{service['date']}?station={other['station_id']}", headers=station).status_code == 403
    )


def test_county_keys_see_their_county(service: dict) -> None:
    client, target, other = service["client"], service["target"], service["other"]
    county = _h("county-key-0123456789abc")
    body = client.get(f"/v1/rankings/{service['date']}", headers=county).json()
    assert body["count"] > 0 and {w["county_code"] for w in body["warnings"]} == {target["county_code"]}
    assert client.get(f"/v1/households/{other['household_id']}/risk", headers=county).status_code == 403


def test_rankings_and_household_risk_for_the_city(service: dict, ranked: dict) -> None:
    client = service["client"]
    body = client.get(f"/v1/rankings/{service['date']}", headers=_h()).json()
    assert body["count"] == sum(ranked["result"].warnings.values())
    first = body["warnings"][0]
    assert first["warning"]["status"] == "pushed" and first["model_reasons"] and first["rules_reasons"]
    assert client.get("/v1/rankings/2019-01-01", headers=_h()).status_code == 404
    assert client.get("/v1/rankings/not-a-date", headers=_h()).status_code == 422
    assert client.get("/v1/rankings/2024-13-45", headers=_h()).status_code == 422
    risk = client.get(f"/v1/households/{service['target']['household_id']}/risk", headers=_h()).json()
    assert risk["as_of"] == service["date"] and risk["warning"]["level"] == service["target"]["level"]
    assert client.get("/v1/households/H99999999/risk", headers=_h()).status_code == 404
    models = client.get("/v1/models", headers=_h()).json()
    assert models["escalation"]["data_fingerprint"] and models["degraded"] is False


def test_stations_move_their_warnings_along_the_closed_loop(service: dict) -> None:
    client = service["client"]
    station = _h("station-key-0123456789ab")
    own = client.get(f"/v1/rankings/{service['date']}", headers=station).json()["warnings"][0]
    wid = own["warning"]["id"]
    note = f"已上门走访，当事人电话{PHONE}"
    moved = client.post(f"/v1/warnings/{wid}/status", json={"status": "acknowledged", "note": note}, headers=station)
    assert moved.status_code == 200 and moved.json()["status"] == "acknowledged"
    assert PHONE not in moved.text
    back = client.post(f"/v1/warnings/{wid}/status", json={"status": "pushed"}, headers=station)
    assert back.status_code == 409
    city = client.get(f"/v1/rankings/{service['date']}", headers=_h()).json()["warnings"]
    foreign = next(w for w in city if w["station_id"] != own["station_id"])
    assert (
        client.post(
            f"/v1/warnings/{foreign['warning']['id']}/status", json={"status": "acknowledged"}, headers=station
        ).status_code
        == 403
    )


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"", 400, "empty"),
        (b"\xff\xfe\x00narrative", 400, "UTF-8"),
        (b'{"narrative": "abc"', 400, "JSON"),
        (b"[1, 2]", 422, ""),
        (json.dumps({"narrative": ""}).encode(), 422, "narrative"),
        (json.dumps({"narrative": "x", "received_at": f"{ID_NUMBER}"}).encode(), 422, "received_at"),
        (json.dumps({"narrative": "x", "id": f"王某某{PHONE}"}).encode(), 422, "id"),
        (json.dumps({"narrative": "x", "extra": ID_NUMBER}).encode(), 422, "extra"),
        (json.dumps({"narrative": "x" * 30_000}).encode(), 413, "larger"),
    ],
)
def test_bad_input_gets_a_clear_4xx_without_echoing_it(service: dict, body: bytes, status: int, says: str) -> None:
    response = service["client"].post(
        "/v1/incidents/score", content=body, headers=_h() | {"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert says in response.text
    assert ID_NUMBER not in response.text and PHONE not in response.text and "王某某" not in response.text


def test_the_audit_log_says_who_read_what_without_personal_data(service: dict) -> None:
    client = service["client"]
    client.post("/v1/incidents/score", json=_incident(service), headers=_h("station-key-0123456789ab"))
    assert client.post("/v1/incidents/score", json=_incident(service)).status_code == 401
    log = (service["settings"].home / "logs" / "audit.jsonl").read_text(encoding="utf-8")
    entries = [json.loads(line) for line in log.splitlines()]
    scored = [e for e in entries if e["route"] == "/v1/incidents/score" and e["status"] == 200]
    assert scored and scored[-1]["who"]["scope"] == "station"
    assert scored[-1]["read"]["households"] == [service["target"]["household_id"]]
    assert any(e["status"] == 401 and e["who"] is None for e in entries)
    for secret in (ID_NUMBER, PHONE, "王某某", "酒后持刀", CITY_KEY):
        assert secret not in log


def test_openapi_documents_every_route(service: dict) -> None:
    paths = service["client"].get("/openapi.json").json()["paths"]
    for path in (
        "/v1/incidents/score",
        "/v1/incidents/score-batch",
        "/v1/households/{household_id}/risk",
        "/v1/rankings/{date}",
        "/v1/models",
        "/healthz",
    ):
        assert path in paths


def test_degraded_mode_answers_from_the_rules(service: dict, tmp_path: Path) -> None:
    broken = tmp_path / "bundle"
    shutil.copytree(service["bundle"], broken)
    (broken / "escalation.onnx").write_bytes(b"corrupt")
    settings = service["settings"].model_copy(update={"serve_bundle": broken, "home": tmp_path / "var"})
    with TestClient(create_app(settings)) as client:
        health = client.get("/healthz").json()
        assert health["degraded"] is True and health["status"] == "degraded"
        assert client.get("/v1/models", headers=_h()).json()["problems"]
        body = client.post("/v1/incidents/score", json=_incident(service), headers=_h()).json()
        assert body["degraded"] is True and body["engine"] == "rules"
        assert body["household"]["engine"] == "rules" and body["household"]["probability"] is None
        assert body["household"]["level"] in ("red", "orange", "yellow", "blue")
    missing = settings.model_copy(update={"serve_bundle": tmp_path / "nowhere"})
    with TestClient(create_app(missing)) as client:
        assert client.get("/healthz").json()["degraded"] is True
        assert client.post("/v1/incidents/score", json={"narrative": VIOLENT}, headers=_h()).json()["is_dispute"]


def test_a_new_champion_is_picked_up_without_dropping_requests(service: dict, tmp_path: Path) -> None:
    live = tmp_path / "live"
    shutil.copytree(service["bundle"], live)
    settings = service["settings"].model_copy(update={"serve_bundle": live, "home": tmp_path / "var"})
    app = create_app(settings)
    with TestClient(app) as client:
        before = client.get("/healthz").json()["models"]["escalation"]
        statuses: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                statuses.append(client.post("/v1/incidents/score", json=_incident(service), headers=_h()).status_code)

        worker = threading.Thread(target=hammer)
        worker.start()
        # A "new champion": the same models re-exported with another provenance changes the bundle's hashes.
        manifest = json.loads((live / "manifest.json").read_text(encoding="utf-8"))
        staged = tmp_path / "staged"
        shutil.copytree(live, staged)
        onnx_path = staged / manifest["models"]["escalation"]["file"]
        import onnx

        model = onnx.load(onnx_path)
        model.doc_string = "retrained"
        onnx.save(model, onnx_path)
        import hashlib

        manifest["models"]["escalation"]["sha256"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
        manifest["models"]["escalation"]["bytes"] = onnx_path.stat().st_size
        (staged / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        old = tmp_path / "old"
        live.rename(old)
        staged.rename(live)
        assert app.state.service.reload() is True
        after = client.get("/healthz").json()
        stop.set()
        worker.join()
        assert after["models"]["escalation"] != before and after["degraded"] is False
        assert statuses and set(statuses) == {200}
        assert app.state.service.reload() is False  # nothing new: no second swap


def test_yujing_serve_answers_over_http(service: dict, tmp_path: Path) -> None:
    """The real server process: uvicorn on a free loopback port, stopped by its pid."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = service["settings"]
    env = dict(
        os.environ,
        YUJING_HOME=str(tmp_path / "var"),
        YUJING_API_KEYS=str(settings.api_keys_file),
        YUJING_RANKINGS_DIR=str(settings.rankings_dir),
        YUJING_WARNINGS_DB_URL=settings.warnings_db_url,
    )
    yujing = Path(sys.executable).parent / "yujing"
    cmd = [str(yujing), "serve", "--port", str(port), "--bundle", str(service["bundle"])]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"{url}/healthz", timeout=2).json()
                break
            except httpx.HTTPError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:] if server.stderr else ""
                time.sleep(0.5)
        else:
            pytest.fail("yujing serve did not answer within 120 s")
        assert health["status"] == "ok", health
        assert httpx.get(f"{url}/readyz", timeout=2).json() == {"status": "ready"}
        answer = httpx.post(f"{url}/v1/incidents/score", json=_incident(service), headers=_h(), timeout=10)
        assert answer.status_code == 200 and answer.json()["household"]["engine"] == "model"
        assert httpx.post(f"{url}/v1/incidents/score", json=_incident(service), timeout=10).status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_service_takes_the_latest_completed_ranking_not_a_future_or_half_written_one(tmp_path: Path) -> None:
    """A 2099 folder (from a future-dated export) or one without its manifest never becomes the history (issue 11)."""
    import datetime

    from serving.history import REQUIRED
    from serving.state import latest_ranking

    def publish(day: str, stated: str | None) -> None:
        folder = tmp_path / day
        folder.mkdir()
        for name in REQUIRED:
            (folder / name).write_text("{}" if name == "manifest.json" else "", encoding="utf-8")
        if stated:
            (folder / "manifest.json").write_text(json.dumps({"date": stated}), encoding="utf-8")

    publish("2024-12-30", "2024-12-30")
    publish("2024-12-31", None)  # files there, manifest without its date: not a completed ranking
    publish("2099-01-02", "2099-01-02")
    today = datetime.date(2025, 1, 1)
    assert latest_ranking(tmp_path, today) == (tmp_path / "2024-12-30").resolve()
    (tmp_path / "2024-12-31" / "manifest.json").write_text(json.dumps({"date": "2024-12-31"}), encoding="utf-8")
    assert latest_ranking(tmp_path, today) == (tmp_path / "2024-12-31").resolve()
