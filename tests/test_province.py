"""The synthetic province: seeds by city code, province-unique relabelled keys, deterministic partitioned bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.fingerprint import dataset_fingerprint
from features.loaders import load_dataset
from features.partitions import Partition, cities, read_partitioned
from features.schema import TABLES
from pipelines.cli import app
from simulation.city import simulate_city
from simulation.config import SimConfig
from simulation.identity import id_checksum
from simulation.province import ProvinceError, plan, simulate_province
from simulation.province_geo import BY_CODE, CITIES, city_seed, relabel

SCALE = 0.008  # 1529 阿拉善盟 2,096 persons, 1503 乌海市 4,456
CODES = ["1529", "1503"]

KEYS = {  # (table, column): the letters before the city code
    ("addresses", "address_id"): "A",
    ("households", "household_id"): "H",
    ("households", "address_id"): "A",
    ("households", "head_person_id"): "P",
    ("persons", "person_id"): "P",
    ("persons", "household_id"): "H",
    ("relations", "person_id_a"): "P",
    ("relations", "person_id_b"): "P",
    ("incidents", "incident_id"): "J",
    ("cases", "case_id"): "AJS",
    ("cases", "person_id"): "P",
    ("cases", "source_incident_id"): "J",
    ("visits", "visit_id"): "V",
    ("visits", "household_id"): "H",
    **{(t, "station_id"): "S" for t in ("addresses", "incidents", "cases", "visits")},
}
TRUTH_KEYS = {
    ("conflicts", "conflict_id"): "C",
    ("conflicts", "person_a"): "P",
    ("conflicts", "person_b"): "P",
    ("conflicts", "household_a"): "H",
    ("conflicts", "household_b"): "H",
    ("incidents", "incident_id"): "J",
    ("incidents", "duplicate_of"): "J",
    ("incidents", "conflict_id"): "C",
    ("incidents", "caller_person_id"): "P",
    ("incidents", "place_household_id"): "H",
    ("escalations", "case_id"): "AJS",
    ("escalations", "conflict_id"): "C",
    ("persons_latent", "person_id"): "P",
}


def test_census_cities_and_seeds() -> None:
    assert len(CITIES) == 12 and sum(c.persons for c in CITIES) == 24_049_000
    assert BY_CODE["1505"].name == "通辽市" and BY_CODE["1529"].name == "阿拉善盟"
    seeds = {c.code: city_seed(11, c.code) for c in CITIES}
    assert len(set(seeds.values())) == 12  # one stream per city
    assert seeds == {c.code: city_seed(11, c.code) for c in reversed(CITIES)}  # order does not matter
    assert city_seed(12, "1505") != seeds["1505"]
    plans = plan(11, 0.01)
    assert [p.code for p in plans][:3] == ["1504", "1501", "1505"]  # biggest first
    assert plans[0].persons == 40_360 and plans[0].seed == seeds["1504"]


def test_plan_errors_name_the_fix() -> None:
    with pytest.raises(ProvinceError, match=r"unknown city code 1599.*1505 通辽市"):
        plan(1, 0.01, ["1505", "1599"])
    with pytest.raises(ProvinceError, match=r"1529 阿拉善盟 would have 26 persons.*--scale 0\.00038"):
        plan(1, 0.0001, ["1529"])
    with pytest.raises(ProvinceError, match="outside"):
        plan(1, 1.5)


@pytest.fixture(scope="module")
def city() -> tuple:  # type: ignore[type-arg]
    sim = simulate_city(SimConfig(persons=3_000, seed=5))
    return sim, relabel(sim.tables, sim.truth, "1504", "赤峰市")


def test_relabel_keys_start_with_the_city_and_still_join(city: tuple) -> None:  # type: ignore[type-arg]
    sim, (tables, truth) = city
    for frames, keys in ((tables, KEYS), (truth, TRUTH_KEYS)):
        for (table, column), letters in keys.items():
            values = frames[table][column].dropna().astype(str)
            assert len(values) > 0, (table, column)
            assert values.str.startswith(letters + "1504").all(), (table, column, values.iloc[0])
    for name, table in TABLES.items():
        table.schema().validate(tables[name])  # ids and codes still pass the contract
        assert len(tables[name]) == len(sim.tables[name])
    assert tables["persons"]["person_id"].iloc[0] == "P1504-00000001"
    assert tables["addresses"]["county_code"].str.fullmatch(r"1504\d\d").all()
    # every reference still points at a row
    assert tables["households"]["address_id"].isin(tables["addresses"]["address_id"]).all()
    assert tables["persons"]["household_id"].isin(tables["households"]["household_id"]).all()
    assert tables["households"]["head_person_id"].isin(tables["persons"]["person_id"]).all()
    people = tables["persons"]["person_id"]
    for column in ("person_id_a", "person_id_b"):
        assert tables["relations"][column].isin(people).all()
    assert tables["cases"]["person_id"].isin(people).all()
    assert tables["cases"]["source_incident_id"].dropna().isin(tables["incidents"]["incident_id"]).all()
    assert truth["incidents"]["incident_id"].equals(tables["incidents"]["incident_id"])
    assert truth["escalations"]["case_id"].isin(tables["cases"]["case_id"]).all()


def test_relabel_keeps_id_numbers_valid_and_text_consistent(city: tuple) -> None:  # type: ignore[type-arg]
    sim, (tables, truth) = city
    ids = tables["persons"]["id_number"].to_numpy(dtype=str)
    assert (id_checksum(np.char.ljust(ids, 17).astype("U17")) == np.array([s[17] for s in ids])).all()
    county = (
        tables["persons"].merge(tables["households"], on="household_id").merge(tables["addresses"], on="address_id")
    )
    assert (county["id_number"].str[:6] == county["county_code"]).all()  # region = the county lived in
    assert tables["persons"]["id_number"].is_unique
    old = sim.tables["persons"]["id_number"]
    assert (tables["persons"]["id_number"].str[6:17] == old.str[6:17]).all()  # birth date and sequence kept
    incidents = tables["incidents"]
    shown = incidents["caller_id_number"].notna()
    assert shown.sum() > 100 and incidents.loc[shown, "caller_id_number"].str.startswith("1504").all()
    # a starred ID keeps its stars and shows the relabelled ID's last 4 (check character included)
    caller_ids = tables["persons"].set_index("person_id")["id_number"].loc[truth["incidents"]["caller_person_id"]]
    for shown_id, full in zip(incidents.loc[shown, "caller_id_number"], caller_ids.to_numpy()[shown], strict=True):
        assert all(s in ("*", f) for s, f in zip(shown_id, full, strict=True))
    assert all(
        s in n for s, n in zip(incidents.loc[shown, "caller_id_number"], incidents.loc[shown, "narrative"], strict=True)
    )
    for column in ("narrative", "location_text"):
        assert not incidents[column].fillna("").str.contains("通辽").any()
    assert tables["addresses"]["address_text"].str.startswith("赤峰市").all()
    assert (
        incidents["narrative"].str.contains("赤峰市").sum()
        == sim.tables["incidents"]["narrative"].str.contains("通辽市").sum()
    )
    same = relabel(sim.tables, sim.truth, "1505", "通辽市")[0]  # the template city keeps its text
    assert same["incidents"]["narrative"].equals(sim.tables["incidents"]["narrative"])


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_province_on_the_cluster_is_deterministic_and_loads_per_city(dask_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    manifest = simulate_province(dask_client, tmp_path / "a", 3, SCALE, CODES, days=120, progress=lines.append)
    simulate_province(None, tmp_path / "b", 3, SCALE, CODES[::-1], days=120)  # one process, one city after another
    simulate_province(None, tmp_path / "c", 3, SCALE, ["1529"], days=120)  # a subset
    a = _files(tmp_path / "a")
    assert a == _files(tmp_path / "b")  # same bytes: 2 workers in parallel or 1 process, any order
    alone = {k: v for k, v in _files(tmp_path / "c").items() if k != "manifest.json"}
    assert alone and alone == {k: v for k, v in a.items() if "city=1529" in k}  # a city is the same alone
    assert len(lines) == 2 and "about" in lines[-1] and "2/2 cities" in lines[-1]

    root = tmp_path / "a"
    assert cities(root) == ["1503", "1529"]
    assert json.loads((root / "manifest.json").read_text()) == manifest
    assert manifest["export_date"] == "2023-05-01" and manifest["scale"] == SCALE and manifest["seed"] == 3
    assert manifest["persons"] == 2_096 + 4_456
    assert "city=1503/county=150302/part-0.parquet" in "\n".join(a)
    assert "truth/persons_latent/city=1529/county=152981/part-0.parquet" in a
    persons = []
    for code in ("1503", "1529"):
        entry = manifest["cities"][code]
        assert entry["seed"] == city_seed(3, code) and entry["name"] == BY_CODE[code].name
        dataset = load_dataset(root, partition=Partition(city=code))
        assert entry["fingerprint"] == dataset_fingerprint(root, Partition(city=code))
        for name, result in dataset.tables.items():
            assert result.quarantined == 0 and len(result.data) == entry["row_counts"][name], (code, name)
        for (table, column), letters in KEYS.items():
            assert dataset[table][column].dropna().str.startswith(letters + code).all()
        persons.append(dataset["persons"])
        county = read_partitioned(root / "addresses", Partition(city=code, county=code + "02"))
        assert len(county) > 0 and (county["county_code"] == code + "02").all()
    everyone = pd.concat(persons)
    assert everyone["person_id"].is_unique and everyone["id_number"].is_unique  # province-unique
    assert manifest["row_counts"]["persons"] == len(everyone)
    assert manifest["fingerprint"] == dataset_fingerprint(root)
    with pytest.raises(ProvinceError, match="holds cities 1503 of an earlier run"):
        simulate_province(None, root, 3, SCALE, ["1529"], days=120)  # 1503 would be left stale beside it
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(ProvinceError, match=r"holds notes\.txt, not a simulated province"):
        simulate_province(None, tmp_path / "d", 3, SCALE, ["1529"], days=120)


def test_cli_names_the_known_cities() -> None:
    run = CliRunner().invoke(app, ["simulate", "--province", "--cities", "1505,9999"])
    assert run.exit_code == 2, run.output
    assert "unknown city code 9999" in run.output and "1525 锡林郭勒盟" in run.output
    assert "Traceback" not in run.output
    run = CliRunner().invoke(app, ["simulate", "--province", "--persons", "5000"])
    assert run.exit_code == 2 and "--scale instead" in run.output
    run = CliRunner().invoke(app, ["simulate", "--cities", "1505"])
    assert run.exit_code == 2 and "fix: add --province" in run.output
