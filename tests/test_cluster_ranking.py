"""The daily ranking on a Dask cluster publishes what the single-process job publishes (pipelines/cluster_ranking.py).

One city ranked on the session's local cluster gives the same files byte for byte and the
same warnings rows as ``run_ranking``; in a two-city province each city's rows are those of
the city ranked alone; a worker's data error reaches the caller as the contract's own error.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cluster_ranking import client_submit, run_cluster_ranking
from pipelines.outputs import PARTS_PREFIX
from pipelines.ranking import RankConfig, run_ranking

WARNING_COLUMNS = "date, household_id, station_id, county_code, level, probability, rank_in_station, category, engine, "
WARNING_COLUMNS += "model_version, reasons, status, active"


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _warnings(store_url: str) -> list[tuple]:  # type: ignore[type-arg]
    with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
        return db.execute(f"SELECT id, {WARNING_COLUMNS} FROM warnings ORDER BY id").fetchall()


def _on_cluster(client, data: Path, root: Path, bundle: Path | None = None, version: str | None = None):  # type: ignore[no-untyped-def]
    from pipelines.cluster import worker_peaks

    store = f"sqlite:///{root / 'cluster.db'}"
    result = run_cluster_ranking(
        data, None, root / "cluster", store, bundle, version, RankConfig(), client_submit(client),
        peaks=lambda: worker_peaks(client),
    )  # fmt: skip
    return result, store


@pytest.fixture(scope="module")
def tiny_city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat two-year city of 6,000 persons (one unit of work)."""
    from simulation.city import simulate_city, write_city
    from simulation.config import SimConfig

    out = tmp_path_factory.mktemp("tiny") / "city"
    write_city(simulate_city(SimConfig(persons=6_000, days=730, seed=5)), out)
    return out


def test_flat_city_on_the_cluster_publishes_the_single_process_bytes(
    tiny_city: Path, dask_client: object, tmp_path: Path
) -> None:
    single_store = f"sqlite:///{tmp_path / 'single.db'}"
    single = run_ranking(tiny_city, None, tmp_path / "single", single_store, None, None, RankConfig())
    cluster, cluster_store = _on_cluster(dask_client, tiny_city, tmp_path)

    files = _hashes(single.folder)
    assert len(files) > 6 and "ranking.parquet" in files and "manifest.json" in files
    assert _hashes(cluster.folder) == files  # every file, the manifest (and so its ranking_id) included
    rows = _warnings(single_store)
    assert rows and _warnings(cluster_store) == rows
    assert (cluster.households, cluster.warnings, cluster.engine) == (single.households, single.warnings, "rules")
    pd.testing.assert_frame_equal(cluster.top, single.top)
    assert "partitions" not in json.loads((cluster.folder / "manifest.json").read_text(encoding="utf-8"))
    peaks = cluster.worker_peaks or {}
    workers = [k for k in peaks if k != "driver"]
    assert len(workers) == 2 and peaks["driver"] > 0
    assert all(50 * 2**20 < peaks[w] < 4 * 2**30 for w in workers)  # a real process, under the fixture's limit
    assert not list((tmp_path / "cluster").glob(f"{PARTS_PREFIX}*"))  # the workers' parts are gone


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two cities of a small simulated province, and a dataset holding one of them alone (the same files)."""
    from simulation.province import simulate_province

    root = tmp_path_factory.mktemp("province")
    both = root / "both"
    simulate_province(None, both, seed=5, scale=0.002, codes=["1505", "1504"])
    alone = root / "alone"
    alone.mkdir()
    shutil.copy(both / "manifest.json", alone / "manifest.json")
    for table in [p for p in both.iterdir() if p.is_dir()]:
        for city in table.rglob("city=1505"):
            shutil.copytree(city, alone / city.relative_to(both))
    return {"both": both, "alone": alone}


def test_each_city_of_a_province_ranks_as_it_does_alone(
    province: dict[str, Path], dask_client: object, tmp_path: Path
) -> None:
    single_store = f"sqlite:///{tmp_path / 'single.db'}"
    alone = run_ranking(province["alone"], None, tmp_path / "single", single_store, None, None, RankConfig())
    both, both_store = _on_cluster(dask_client, province["both"], tmp_path)

    ranking = pd.read_parquet(both.folder / "ranking.parquet")
    assert ranking["household_id"].str[:5].drop_duplicates().tolist() == ["H1504", "H1505"]  # city-code order
    mine = ranking[ranking["household_id"].str.startswith("H1505")].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, pd.read_parquet(alone.folder / "ranking.parquet"))
    for table in ("features", "context", "calls"):
        part = pd.read_parquet(both.folder / f"{table}.parquet")
        part = part[part["household_id"].str.startswith("H1505")].reset_index(drop=True)
        pd.testing.assert_frame_equal(part, pd.read_parquet(alone.folder / f"{table}.parquet"))
    rows = [r[1:] for r in _warnings(both_store) if r[2].startswith("H1505")]
    assert rows and rows == [r[1:] for r in _warnings(single_store)]

    manifest = json.loads((both.folder / "manifest.json").read_text(encoding="utf-8"))
    cities = manifest["partitions"]
    assert list(cities) == ["1504", "1505"]
    assert cities["1505"]["households"] == alone.households == len(mine)
    assert manifest["households"] == sum(c["households"] for c in cities.values()) == len(ranking) == both.households
    assert manifest["counts"]["rows"] == len(ranking)
    assert manifest["counts"]["warnings"] == int(ranking["level"].notna().sum()) == sum(both.warnings.values())
    assert cities["1505"]["warnings"] == alone.warnings
    warned = pd.read_csv(both.folder / "warnings.csv", encoding="utf-8-sig", dtype=str)
    assert len(warned) == manifest["counts"]["warnings"]
    center = (both.folder / "index.html").read_text(encoding="utf-8")
    assert f"{len(ranking):,}" in center or str(len(ranking)) in center  # the page counts every household


def test_a_bad_city_fails_with_the_contract_error_and_publishes_nothing(
    tiny_city: Path, dask_client: object, tmp_path: Path
) -> None:
    from features.loaders import DataContractError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_city, broken)
    households = pd.read_parquet(broken / "households.parquet").drop(columns=["address_id"])
    households.to_parquet(broken / "households.parquet", index=False)
    with pytest.raises(DataContractError, match=r"households.*address_id"):
        _on_cluster(dask_client, broken, tmp_path)
    out = tmp_path / "cluster"
    assert not [p.name for p in out.iterdir() if not p.name.startswith(".publish")]  # no folder, no parts


@pytest.mark.xdist_group("trained")
def test_the_champion_scores_on_the_workers_as_in_one_process(
    ranked: dict, dask_client: object, tmp_path: Path
) -> None:
    """ONNX per worker: the trained city on the cluster gives the ranked fixture's files byte for byte."""
    result = ranked["result"]
    cluster, cluster_store = _on_cluster(dask_client, ranked["city"], tmp_path, ranked["bundle"], "test v1")
    assert cluster.engine == "model" == result.engine
    assert _hashes(cluster.folder) == _hashes(ranked["rankings"] / result.date)
    assert len(_warnings(cluster_store)) == sum(result.warnings.values())
