"""Partitioned datasets (issue 14): a table as a folder of city/county Parquet files, read lazily per city.

The session's small city is split into two fake cities by county (1505 keeps
its first counties; 0150, a code with a leading zero, gets the others), each
table written with :func:`features.partitions.write_partitioned`. Loading it
must give the flat city's rows; loading one city must open that city's files
only, and its fingerprint must not move when another city's files do.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.fingerprint import dataset_fingerprint
from features.loaders import DataContractError, find_table_file, load_dataset, load_table
from features.partitions import (
    PARTITION_KEYS,
    Partition,
    cities,
    partition_files,
    read_partitioned,
    table_path,
    write_partitioned,
)
from features.schema import TABLES
from simulation.city import City

A, B = "1505", "0150"
"""The two fake cities: B's code starts with 0, so a partition value read as a number would lose it."""


def _county_of_rows(flat: Path) -> dict[str, pd.Series]:
    """Each table's county code per row, following the contract's own links (station, address, household)."""
    frames = {name: pd.read_parquet(flat / f"{name}.parquet") for name in TABLES}
    addresses = frames["addresses"]
    by_address = addresses.set_index("address_id")["county_code"]
    by_station = addresses.drop_duplicates("station_id").set_index("station_id")["county_code"]
    by_household = frames["households"]["address_id"].map(by_address)
    by_household.index = frames["households"]["household_id"]
    by_person = frames["persons"]["household_id"].map(by_household)
    by_person.index = frames["persons"]["person_id"]
    return {
        "addresses": addresses["county_code"],
        "households": frames["households"]["address_id"].map(by_address),
        "persons": frames["persons"]["household_id"].map(by_household),
        "relations": frames["relations"]["person_id_a"].map(by_person),
        "incidents": frames["incidents"]["station_id"].map(by_station),
        "cases": frames["cases"]["station_id"].map(by_station),
        "visits": frames["visits"]["station_id"].map(by_station),
    }


def _fake_city(county: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The fake (city, county) of each row: the three largest counties stay in A, the rest move to B."""
    kept = {"150502", "150521", "150523"}
    city = county.map(lambda c: A if c in kept else B)
    return city, county.where(city == A, B + county.str[-2:])


def _partition(flat: Path, out: Path) -> dict[str, dict[str, pd.DataFrame]]:
    """Write ``flat`` as a two-city partitioned dataset; each table's rows per fake city, in the order a read gives.

    That order is the files' (county code, as text), then the flat file's order within a county.
    """
    shutil.copy(flat / "manifest.json", out / "manifest.json")
    rows: dict[str, dict[str, pd.DataFrame]] = {}
    for name, county in _county_of_rows(flat).items():
        frame = pd.read_parquet(flat / f"{name}.parquet")
        assert county.notna().all(), name
        city, code = _fake_city(county)
        rows[name] = {}
        for each in (A, B):
            mine = (city == each).to_numpy()
            order = code[mine].reset_index(drop=True).sort_values(kind="stable").index
            rows[name][each] = frame[mine].reset_index(drop=True).loc[order].reset_index(drop=True)
            write_partitioned(frame[mine], out / name, each, code[mine])
    return rows


@pytest.fixture(scope="module")
def province(small_city: tuple[City, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """(flat city folder, its two-city partitioned copy, each table's rows per city)."""
    _, flat = small_city
    out = tmp_path_factory.mktemp("province")
    return flat, out, _partition(flat, out)


def _by_key(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame.sort_values(list(TABLES[name].key)).reset_index(drop=True)


# --------------------------------------------------------------------- layout and round trip


def test_partitioned_dataset_loads_the_same_rows_as_the_flat_one(province: tuple[Path, Path, dict]) -> None:
    flat, parted, _ = province
    assert cities(parted) == [B, A] and cities(flat) == []
    assert table_path(flat, "incidents") == flat / "incidents.parquet"
    assert find_table_file(parted, "incidents") == parted / "incidents"

    whole, split = load_dataset(flat), load_dataset(parted)

    for name in TABLES:
        a, b = whole.tables[name], split.tables[name]
        assert (b.read, b.accepted, b.quarantined) == (a.read, a.accepted, a.quarantined), name
        assert b.read == b.accepted + b.quarantined
        assert b.source == str(parted / name)
        pd.testing.assert_frame_equal(_by_key(b.data, name), _by_key(a.data, name), check_like=False)
    assert split.window == whole.window  # the root's manifest.json states the export date


def test_rows_come_in_sorted_file_order_then_file_order_without_partition_columns(
    province: tuple[Path, Path, dict],
) -> None:
    _, parted, rows = province
    files = partition_files(parted / "incidents")
    relative = [f.relative_to(parted / "incidents").as_posix() for f in files]
    assert relative == sorted(relative) and relative[0].startswith(f"city={B}/county={B}")
    assert len(files) == 9 and all(f.name == "part-0.parquet" for f in files)
    frame = read_partitioned(parted / "incidents")
    expected = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    pd.testing.assert_frame_equal(frame, expected)
    assert not set(PARTITION_KEYS) & set(frame.columns)
    # B's files sort first (city=0150 < city=1505); within a county, rows keep the flat file's order
    for name in TABLES:
        pd.testing.assert_frame_equal(read_partitioned(parted / name, Partition(B)), rows[name][B])
    pd.testing.assert_frame_equal(frame, pd.concat([rows["incidents"][B], rows["incidents"][A]], ignore_index=True))
    one_county = read_partitioned(parted / "incidents", Partition(A, "150502"), columns=["incident_id"])
    assert list(one_county.columns) == ["incident_id"]
    assert one_county["incident_id"].is_unique and 0 < len(one_county) < len(rows["incidents"][A])


def test_write_partitioned_is_deterministic_and_keeps_codes_as_text(tmp_path: Path) -> None:
    frame = pd.DataFrame({"k": ["x", "y", "z", "w"], "n": [4, 3, 2, 1]}, index=[10, 11, 12, 13])
    county = ["015001", "015002", "015001", "015002"]
    first = write_partitioned(frame, tmp_path / "a", B, county, part=3)
    second = write_partitioned(frame, tmp_path / "b", B, county, part=3)
    assert [p.relative_to(tmp_path / "a").as_posix() for p in first] == [
        "city=0150/county=015001/part-3.parquet",
        "city=0150/county=015002/part-3.parquet",
    ]
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in first]
    assert digest == [hashlib.sha256(p.read_bytes()).hexdigest() for p in second]
    assert not list((tmp_path / "a").rglob(".*"))  # no temporary file left behind
    assert read_partitioned(tmp_path / "a")["k"].tolist() == ["x", "z", "y", "w"]
    assert read_partitioned(tmp_path / "a", Partition(county="015002"))["n"].tolist() == [3, 1]
    # an empty frame still leaves a readable zero-row file with the columns
    (empty,) = write_partitioned(frame.iloc[:0], tmp_path / "a", A, county=[])
    assert empty.relative_to(tmp_path / "a").as_posix() == "city=1505/part-0.parquet"
    assert read_partitioned(tmp_path / "a", Partition(A)).columns.tolist() == ["k", "n"]
    assert read_partitioned(tmp_path / "a", Partition("9999"), columns=["k"]).columns.tolist() == ["k"]


# --------------------------------------------------------------------- one city, lazily


def test_one_city_opens_only_its_own_files(province: tuple[Path, Path, dict], tmp_path: Path) -> None:
    _, parted, rows = province
    root = tmp_path / "province"
    shutil.copytree(parted, root)
    for path in partition_files(root / "incidents", Partition(B)):
        path.write_bytes(b"PAR1 this is not a parquet file PAR1")
    (root / "persons" / f"city={B}" / "being rewritten").mkdir()  # another city's mess is not this city's

    dataset = load_dataset(root, partition=Partition(A))

    for name in TABLES:
        result = dataset.tables[name]
        assert result.read == len(rows[name][A]) == result.accepted + result.quarantined, name
        assert result.source == f"{root / name} [city={A}]"
    assert set(dataset["incidents"]["incident_id"]) == set(rows["incidents"][A]["incident_id"])
    with pytest.raises(DataContractError, match=r"folder name 'being rewritten' is not a partition"):
        load_dataset(root)
    shutil.rmtree(root / "persons" / f"city={B}" / "being rewritten")
    with pytest.raises(DataContractError, match=r"city=0150/county=\d{6}/part-0\.parquet: not a readable Parquet"):
        load_dataset(root)
    with pytest.raises(DataContractError, match="not a readable Parquet"):
        load_dataset(root, partition=Partition(B))


def test_a_city_without_rows_of_a_required_table_names_table_folder_city_and_fix(
    province: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    _, parted, _ = province
    root = tmp_path / "province"
    shutil.copytree(parted, root)
    shutil.rmtree(root / "incidents" / f"city={B}")
    shutil.rmtree(root / "visits" / f"city={B}")

    with pytest.raises(DataContractError) as caught:
        load_dataset(root, tables=["incidents"], partition=Partition(B))
    assert str(caught.value) == (
        f"{root / 'incidents'}: table 'incidents' has no rows in city={B}, and it is required; "
        f"fix: export the table's rows of city={B} into incidents/ (see docs/data-contract.md)"
    )
    visits = load_table(root / "visits", "visits", partition=Partition(B))  # optional: empty is allowed
    assert (visits.read, list(visits.data.columns)) == (0, list(TABLES["visits"].columns))


def test_fingerprint_of_a_city_ignores_other_cities(province: tuple[Path, Path, dict], tmp_path: Path) -> None:
    _, parted, _ = province
    root = tmp_path / "province"
    shutil.copytree(parted, root)
    before = {p: dataset_fingerprint(root, p) for p in (None, Partition(A), Partition(B))}
    assert len(set(before.values())) == 3
    assert dataset_fingerprint(root, Partition()) == before[None]
    assert dataset_fingerprint(parted) == before[None]  # paths inside the dataset, not where it lies

    victim = partition_files(root / "visits", Partition(B))[0]
    frame = pd.read_parquet(victim)
    write_partitioned(frame.iloc[1:], root / "visits", B, [victim.parent.name.split("=")[1]] * (len(frame) - 1))

    assert dataset_fingerprint(root, Partition(A)) == before[Partition(A)]
    assert dataset_fingerprint(root, Partition(B)) != before[Partition(B)]
    assert dataset_fingerprint(root) != before[None]


# --------------------------------------------------------------------- what is refused


def _tiny(folder: Path) -> None:
    write_partitioned(pd.DataFrame({"k": ["x"]}), folder, A, ["150502"])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda f: (f / "town=01").mkdir(),
            r"town=01: folder name 'town=01' is not a partition \(city=<4-digit code>\)",
        ),
        (
            lambda f: (f / "city=15").mkdir(),
            r"city=15: folder name 'city=15' is not a partition \(city=<4-digit code>\)",
        ),
        (
            lambda f: (f / "city=1505" / "150503").mkdir(),
            r"folder name '150503' is not a partition \(county=<6-digit code>\)",
        ),
        (lambda f: (f / "city=1505" / "county=150201").mkdir(), r"county 150201 is not in city 1505"),
        (
            lambda f: (f / "part-1.parquet").write_bytes(b""),
            r"part-1\.parquet: a file outside any city=<4-digit code> folder",
        ),
        (lambda f: (f / "city=1505" / "part-1.csv").write_text("k\n"), r"part-1\.csv: not a \.parquet file"),
        (
            lambda f: (f / "city=1505" / "county=150502" / "x=1").mkdir(),
            r"folder name 'x=1' is not a partition \(no deeper folder\)",
        ),
    ],
)
def test_a_table_folder_that_is_not_city_county_parquet_is_refused_with_the_layout(
    tmp_path: Path, make, message: str
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "incidents"
    _tiny(folder)
    make(folder)
    with pytest.raises(DataContractError, match=message) as caught:
        read_partitioned(folder)
    assert "fix: a partitioned table is <name>/city=<4-digit code>/[county=<6-digit code>/]part-<n>.parquet" in str(
        caught.value
    )


def test_an_empty_folder_a_doubled_table_and_bad_codes_are_refused(tmp_path: Path) -> None:
    (tmp_path / "incidents" / "city=1505").mkdir(parents=True)
    (tmp_path / "incidents" / "_SUCCESS").write_text("")  # Spark's marker is skipped, not data
    with pytest.raises(DataContractError, match=r"incidents: a table folder with no Parquet file; fix: "):
        cities(tmp_path)
    (tmp_path / "incidents.parquet").write_bytes(b"")
    with pytest.raises(DataContractError, match=r"table 'incidents' is both incidents\.parquet and the folder"):
        table_path(tmp_path, "incidents")
    with pytest.raises(DataContractError, match=r"city code '150' is not 4 digits"):
        Partition("150")
    with pytest.raises(DataContractError, match=r"county 150201 is not in city 1505"):
        Partition(A, "150201")


def test_a_flat_city_cannot_be_filtered_by_city(small_city: tuple[City, Path]) -> None:
    _, flat = small_city
    with pytest.raises(DataContractError, match=r"incidents\.parquet: table 'incidents' is one file, not partitioned"):
        load_table(flat / "incidents.parquet", "incidents", partition=Partition(A))
    assert load_table(flat / "relations.parquet", "relations", partition=Partition()).source == str(
        flat / "relations.parquet"
    )


# --------------------------------------------------------------------- yujing validate


def test_validate_checks_a_partitioned_province_or_one_city(province: tuple[Path, Path, dict], tmp_path: Path) -> None:
    from pipelines.cli import app

    _, parted, rows = province
    root = tmp_path / "province"
    shutil.copytree(parted, root)
    env = {"YUJING_HOME": str(tmp_path / "home")}

    whole = CliRunner().invoke(app, ["validate", "--data", str(root)], env=env)
    assert whole.exit_code == 0, whole.output
    assert f"visits: read {sum(len(r) for r in rows['visits'].values()):,} = accepted" in whole.output
    assert f"fingerprint {dataset_fingerprint(root)}; 0 rows quarantined" in whole.output

    one = CliRunner().invoke(app, ["validate", "--data", str(root), "--city", A], env=env)
    assert one.exit_code == 0, one.output
    assert f"incidents: read {len(rows['incidents'][A]):,} = accepted" in one.output
    assert f"fingerprint {dataset_fingerprint(root, Partition(A))}; 0 rows quarantined" in one.output
    assert (root / "quarantine" / f"city={A}").is_dir() and not (root / "quarantine" / "incidents.parquet").exists()

    refused = CliRunner().invoke(app, ["validate", "--data", str(root), "--city", "1599"], env=env)
    assert refused.exit_code == 2
    assert f"--city: no city=1599 in {root} (cities: 0150, 1505); fix: pick one of them" in refused.output
