"""No full ID number, phone or name in anything a run writes, nor in any answer the service gives.

The known values are the city's own: every person's and caller's full ID
number, phone and name (tests/pii_scan.py). The scan reads everything the
shared training run and ranking wrote (MLflow store and artifacts, run
folder, ranking folders, warnings database), then a service is fed those
values in narratives, ids, dates and notes, and its answers, audit log and
database are scanned too. The input data folder itself is the one place the
values may be, and is the only folder skipped.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import own_service_settings
from fastapi.testclient import TestClient
from pii_scan import personal_values, scan, scan_texts

from serving.app import create_app

pytestmark = pytest.mark.xdist_group("trained")

KEY = "pii-scan-city-key-0123456789"


@pytest.fixture(scope="module")
def values(trained: dict) -> dict[str, str]:
    found = personal_values(trained["root"] / "city")
    kinds = pd.Series(list(found.values())).value_counts()
    assert kinds["ID number"] > 10_000 and kinds["phone"] > 10_000 and kinds["name"] > 5_000, kinds
    return found


def test_the_scanner_finds_what_it_is_looking_for(values: dict[str, str], tmp_path: Path) -> None:
    """A scanner that finds nothing proves nothing: one value of each kind hidden in each kind of file."""
    by_kind = {kind: value for value, kind in values.items()}
    text = "当事人{name}，身份证{id}，电话{phone}".format(
        name=by_kind["name"], id=by_kind["ID number"], phone=by_kind["phone"]
    )
    pd.DataFrame({"note": [text]}).to_parquet(tmp_path / "a.parquet")
    (tmp_path / "b.log").write_text(text, encoding="utf-8")
    import sqlite3

    with sqlite3.connect(tmp_path / "c.db") as db:
        db.execute("CREATE TABLE t (x TEXT)")
        db.execute("INSERT INTO t VALUES (?)", (text,))
    findings = scan([tmp_path], values)
    assert {(f.file.name, f.kind) for f in findings} == {
        (name, kind) for name in ("a.parquet", "b.log", "c.db") for kind in ("ID number", "phone", "name")
    }


def test_a_training_run_and_a_ranking_write_no_personal_value(trained: dict, ranked: dict, values: dict) -> None:
    roots = [trained["root"], Path(ranked["rankings"]).parent]
    findings = scan(roots, values, skip=[trained["root"] / "city"])
    assert not findings, "\n".join(map(str, findings[:20]))


def test_the_service_never_answers_or_records_a_personal_value(ranked: dict, values: dict, tmp_path: Path) -> None:
    persons = pd.read_parquet(ranked["city"] / "persons.parquet", columns=["id_number", "name", "phone"])
    person = persons[persons["name"].map(lambda n: values.get(n) == "name")].iloc[0]
    name, id_number, phone = person["name"], person["id_number"], person["phone"]
    settings = own_service_settings(ranked, tmp_path, {KEY: {"scope": "city"}})
    narrative = f"{name}（身份证{id_number}，电话{phone}）报警称：丈夫{name}酒后持刀打人，已受伤。"
    headers = {"X-API-Key": KEY}
    with TestClient(create_app(settings)) as client:
        date = ranked["result"].date
        wid = client.get(f"/v1/rankings/{date}", headers=headers).json()["warnings"][0]["warning"]["id"]
        calls = [
            ("post", "/v1/incidents/score", {"narrative": narrative, "received_at": "2024-12-31T09:00:00"}),
            ("post", "/v1/incidents/score", {"narrative": narrative, "household_id": id_number}),
            ("post", "/v1/incidents/score", {"narrative": narrative, "id": phone}),
            ("post", "/v1/incidents/score", {"narrative": narrative, "received_at": f"{id_number}"}),
            ("post", "/v1/incidents/score", {"narrative": narrative, "caller_person_id": name}),
            (
                "post",
                "/v1/incidents/score-batch",
                {
                    "incidents": [
                        {"narrative": narrative},
                        {"narrative": 7, "id": phone},
                        {"narrative": "x", "id": id_number},
                    ]
                },
            ),
            ("get", f"/v1/households/{id_number}/risk", None),
            ("get", f"/v1/households/{phone}/risk?date={id_number}", None),
            ("get", f"/v1/rankings/{id_number}", None),
            ("get", f"/v1/rankings/{date}?station={phone}", None),
            ("post", f"/v1/warnings/{wid}/status", {"status": "acknowledged", "note": f"已联系{name}，电话{phone}"}),
            ("post", f"/v1/warnings/{wid}/status", {"status": "handled", "note": f"身份证{id_number}，{name}已调解"}),
            ("post", f"/v1/warnings/{wid}/status", {"status": phone}),
            ("post", f"/v1/warnings/{id_number}/status", {"status": "handled"}),
        ]
        for method, url, body in calls:
            response = client.request(method.upper(), url, json=body, headers=headers)
            assert response.status_code < 500, (method, calls.index((method, url, body)), response.status_code)
            assert scan_texts([response.text], values) == [], (method, calls.index((method, url, body)))
        assert scan_texts([client.get("/healthz").text], values) == []
    findings = scan([tmp_path], values, skip=[tmp_path / "keys.json"])
    assert not findings, "\n".join(map(str, findings[:20]))


def test_a_dirty_export_leaves_personal_values_only_in_the_owner_only_quarantine(
    ranked: dict, values: dict, tmp_path: Path
) -> None:
    """The fault cases (a broken quote, a 9999 date, a call dated 2099) go to quarantine/, and nowhere else."""
    from pipelines.ranking import RankConfig, run_ranking

    city = tmp_path / "city"
    shutil.copytree(ranked["city"], city, ignore=shutil.ignore_patterns("incidents.parquet", "truth"))
    incidents = pd.read_parquet(ranked["city"] / "incidents.parquet")
    person = next(v for v, kind in values.items() if kind == "name")
    phone = next(v for v, kind in values.items() if kind == "phone")
    id_number = next(v for v, kind in values.items() if kind == "ID number")
    lines = incidents.to_csv(index=False).splitlines()
    middle = len(lines) // 2
    broken = f'I99999990,2024-12-01 10:00:00,{person},{phone},{id_number},"明仁街道,{person}报警称丈夫打人,,,S001,'
    far = f"I99999991,9999-12-31 00:00:00,{person},{phone},{id_number},明仁街道,{person}报警称丈夫打人,,,S001,"
    future = f"I99999992,2099-01-01 08:00:00,{person},{phone},{id_number},明仁街道,{person}报警称丈夫打人,,,S001,"
    lines[middle:middle] = [broken, far, future]
    (city / "incidents.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    store = f"sqlite:///{tmp_path / 'warnings.db'}"
    result = run_ranking(city, None, tmp_path / "rankings", store, ranked["bundle"], "test v1", RankConfig())

    quarantine = result.folder / "quarantine"
    assert (quarantine.stat().st_mode & 0o777) == 0o700
    rejected = pd.read_parquet(quarantine / "incidents.parquet")
    assert len(rejected) == 3  # nothing else swallowed by the broken quote: every other call was read
    assert len(pd.read_parquet(result.folder / "ranking.parquet")) > 0 and result.date < "2099"
    assert scan([quarantine], values), "the quarantine keeps the raw rows for the data owner"
    findings = scan([tmp_path / "rankings", tmp_path / "warnings.db"], values, skip=[quarantine])
    assert not findings, "\n".join(map(str, findings[:20]))
