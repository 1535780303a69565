"""Fault cases of ingest (issue 11, "nothing lost on ingest"), end to end on a small simulated city.

A broken quote mid-file costs one line, whose raw text lands in quarantine/
and nowhere else; an empty required table stops validate, train and rank
with one line naming the file and the fix; train and rank write quarantine/
and record the counts per table and reason.
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.loaders import LINE, RAW, REASON, ROW, DataContractError, load_dataset, load_table
from simulation.city import simulate_city, write_city
from simulation.config import SimConfig

SECRET_NAME = "欧阳测密"
SECRET_PHONE = "13987650123"
TINY = SimConfig(persons=3000, days=400, seed=11)


@pytest.fixture(scope="module")
def tiny_city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3,000-person city written once as Parquet (each test copies it and breaks its copy)."""
    root = tmp_path_factory.mktemp("tiny") / "city"
    write_city(simulate_city(TINY), root)
    return root


def _copy(city: Path, tmp_path: Path) -> Path:
    target = tmp_path / "city"
    shutil.copytree(city, target)
    return target


def _broken_incidents(root: Path, at: int = 40) -> tuple[str, int, list[str]]:
    """incidents.csv with a line whose narrative opens a quote and never closes it, inserted before row ``at``.

    Returns the broken line, its physical line number, and the ids of all the good rows.
    """
    frame = pd.read_parquet(root / "incidents.parquet")
    (root / "incidents.parquet").unlink()
    frame.to_csv(root / "incidents.csv", index=False)
    lines = (root / "incidents.csv").read_text(encoding="utf-8").split("\n")
    assert any('"' in line for line in lines[at + 1 :]), "quoted narratives follow the broken line, as in real exports"
    day = frame["received_at"].iloc[at]
    broken = (
        f"JBROKEN1,{day:%Y-%m-%d %H:%M:%S},{SECRET_NAME},{SECRET_PHONE},,某小区,"
        f'"{SECRET_NAME}报警称邻居吵闹，未闭合的引号,纠纷警情,邻里纠纷,S001,现场调解'
    )
    lines.insert(at + 1, broken)
    (root / "incidents.csv").write_text("\n".join(lines), encoding="utf-8")
    return broken, at + 2, frame["incident_id"].tolist()


def _header_only(root: Path, table: str) -> Path:
    columns = pd.read_parquet(root / f"{table}.parquet").columns
    (root / f"{table}.parquet").unlink()
    path = root / f"{table}.csv"
    path.write_text(",".join(columns) + "\n", encoding="utf-8")
    return path


def _cli(args: list[str], home: Path) -> tuple[int, str]:
    from pipelines.cli import app

    result = CliRunner().invoke(app, args, env={"YUJING_HOME": str(home)})
    return result.exit_code, result.output


# --------------------------------------------------------------------- a broken quote


def test_a_broken_quote_mid_file_costs_one_line_and_keeps_its_raw_text(tiny_city: Path, tmp_path: Path) -> None:
    root = _copy(tiny_city, tmp_path)
    broken, line, ids = _broken_incidents(root)

    result = load_table(root / "incidents.csv", "incidents")

    assert (result.read, result.accepted, result.quarantined) == (len(ids) + 1, len(ids), 1)
    assert result.data["incident_id"].tolist() == ids  # the lines after the broken one are all read
    row = result.quarantine.iloc[0]
    assert (row[ROW], row[LINE], row[RAW]) == (41, line, broken)
    assert row[REASON].startswith("quote opened on this line")
    assert SECRET_NAME not in row[REASON] and SECRET_PHONE not in row[REASON]


def test_validate_writes_the_raw_line_to_quarantine_and_prints_only_counts(tiny_city: Path, tmp_path: Path) -> None:
    root = _copy(tiny_city, tmp_path)
    broken, line, _ids = _broken_incidents(root)

    code, output = _cli(["validate", "--data", str(root)], tmp_path / "home")

    assert code == 0, output
    assert "incidents: read" in output and "quarantined 1 " in output
    assert "1 × quote opened on this line" in output
    assert SECRET_NAME not in output and SECRET_PHONE not in output
    kept = pd.read_parquet(root / "quarantine" / "incidents.parquet")
    assert kept[[LINE, RAW]].values.tolist() == [[line, broken]]
    assert stat.S_IMODE((root / "quarantine").stat().st_mode) == 0o700  # rejected rows are personal data
    assert stat.S_IMODE((root / "quarantine" / "incidents.parquet").stat().st_mode) == 0o600


def test_a_quarantine_file_of_an_earlier_load_goes_when_the_table_is_clean(tiny_city: Path, tmp_path: Path) -> None:
    from features.loaders import write_quarantine

    root = _copy(tiny_city, tmp_path)
    _broken_incidents(root)
    assert [p.name for p in write_quarantine(load_dataset(root), root / "quarantine")] == ["incidents.parquet"]
    frame = pd.read_csv(root / "incidents.csv", dtype=str, keep_default_na=False, on_bad_lines="skip")
    frame[frame["incident_id"] != "JBROKEN1"].to_csv(root / "incidents.csv", index=False)
    assert write_quarantine(load_dataset(root), root / "quarantine") == []
    assert list((root / "quarantine").iterdir()) == []


# --------------------------------------------------------------------- empty tables


@pytest.mark.parametrize("content", ["header", "zero bytes"])
def test_an_empty_required_table_fails_with_file_and_fix(tiny_city: Path, tmp_path: Path, content: str) -> None:
    root = _copy(tiny_city, tmp_path)
    path = _header_only(root, "persons")
    if content == "zero bytes":
        path.write_bytes(b"")
    with pytest.raises(DataContractError) as info:
        load_dataset(root)
    message = str(info.value)
    assert str(path) in message and "'persons'" in message and "required" in message and "fix:" in message
    assert "\n" not in message


def test_optional_tables_may_be_empty(tiny_city: Path, tmp_path: Path) -> None:
    root = _copy(tiny_city, tmp_path)
    _header_only(root, "relations")
    _header_only(root, "visits").write_bytes(b"")  # zero bytes: no header either
    dataset = load_dataset(root)
    assert dataset.tables["relations"].read == 0 and dataset.tables["visits"].read == 0
    assert list(dataset["visits"].columns) == list(pd.read_parquet(tiny_city / "visits.parquet").columns)


@pytest.mark.parametrize("command", ["validate", "train", "rank"])
def test_every_command_stops_on_a_header_only_required_table(tiny_city: Path, tmp_path: Path, command: str) -> None:
    root = _copy(tiny_city, tmp_path)
    path = _header_only(root, "households")
    args = {
        "validate": ["validate", "--data", str(root)],
        "train": ["train", "--no-prefect", "--data", str(root), "--out", str(tmp_path / "run")],
        "rank": ["rank", "--no-prefect", "--data", str(root), "--out", str(tmp_path / "r"), "--bundle", str(tmp_path)],
    }[command]
    if command == "rank":
        (tmp_path / "manifest.json").write_text("{}")  # a bundle folder to get past the argument check
    code, output = _cli(args, tmp_path / "home")
    assert code == 2, output
    assert str(path) in output and "no rows" in output and "fix:" in output
    assert "Traceback" not in output


def test_a_required_table_with_every_row_quarantined_stops_train_and_rank(tiny_city: Path, tmp_path: Path) -> None:
    from pipelines.preparation import prepare

    root = _copy(tiny_city, tmp_path)
    frame = pd.read_parquet(root / "addresses.parquet")
    frame["county_code"] = "not a code"
    frame.to_parquet(root / "addresses.parquet", index=False)
    with pytest.raises(DataContractError, match=r"all [\d,]+ rows of required table 'addresses' were quarantined"):
        prepare(root)


# --------------------------------------------------------------------- train and rank write quarantine/


def test_train_writes_quarantine_and_says_how_many(tiny_city: Path, tmp_path: Path) -> None:
    """run_training up to the end of its first step (the models are not what this test is about)."""
    from pipelines.training import run_training

    root = _copy(tiny_city, tmp_path)
    broken, line, _ids = _broken_incidents(root)
    said: list[str] = []

    class Stop(Exception):
        pass

    def step(function, name):  # type: ignore[no-untyped-def]
        if name != "load, validate, score and link":
            raise Stop
        return function

    out = tmp_path / "run"
    with pytest.raises(Stop):
        run_training(root, out, "sqlite:///unused.db", _config(), progress=said.append, step=step)
    kept = pd.read_parquet(out / "quarantine" / "incidents.parquet")
    assert kept[[LINE, RAW]].values.tolist() == [[line, broken]]
    assert f"quarantine: 1 rows (incidents 1) written to {out / 'quarantine'}" in said
    assert not any(SECRET_NAME in s or SECRET_PHONE in s for s in said)


def test_train_needs_cases_but_rank_does_not(tiny_city: Path, tmp_path: Path) -> None:
    from pipelines.training import run_training

    root = _copy(tiny_city, tmp_path)
    _header_only(root, "cases")
    with pytest.raises(DataContractError, match="table 'cases' has no accepted rows"):
        run_training(root, tmp_path / "run", "sqlite:///unused.db", _config())


def test_rank_writes_quarantine_into_the_published_folder_and_counts_into_its_manifest(
    tiny_city: Path, tmp_path: Path
) -> None:
    from pipelines.ranking import RankConfig, run_ranking

    root = _copy(tiny_city, tmp_path)
    broken, line, ids = _broken_incidents(root)
    said: list[str] = []
    result = run_ranking(
        root, None, tmp_path / "rankings", f"sqlite:///{tmp_path / 'w.db'}", None, None, RankConfig(), said.append
    )

    kept = pd.read_parquet(result.folder / "quarantine" / "incidents.parquet")
    assert kept[[LINE, RAW]].values.tolist() == [[line, broken]]
    assert stat.S_IMODE((result.folder / "quarantine").stat().st_mode) == 0o700
    manifest_text = (result.folder / "manifest.json").read_text(encoding="utf-8")
    load = json.loads(manifest_text)["load"]
    assert load["incidents"]["read"] == len(ids) + 1 and load["incidents"]["accepted"] == len(ids)
    assert load["incidents"]["quarantined"] == 1
    assert sum(load["incidents"]["reasons"].values()) == 1
    assert next(iter(load["incidents"]["reasons"])).startswith("quote opened on this line")
    assert load["persons"] == {"read": 3000, "accepted": 3000, "quarantined": 0, "reasons": {}}
    for text in [manifest_text, *said, (result.folder / "index.html").read_text(encoding="utf-8")]:
        assert SECRET_NAME not in text and SECRET_PHONE not in text


def _config():  # type: ignore[no-untyped-def]
    from pipelines.training import TrainConfig

    return TrainConfig(bootstrap_samples=10, parity_rows=100)


@pytest.mark.xdist_group("trained")
def test_the_trained_run_wrote_quarantine_and_counts_per_reason(trained: dict) -> None:
    """The shared trained run (a clean city): an empty quarantine/ and the load counts in report.json."""
    run = trained["root"] / "run1"
    assert (run / "quarantine").is_dir() and list((run / "quarantine").iterdir()) == []
    load = json.loads((run / "report.json").read_text(encoding="utf-8"))["load"]
    assert set(load) == {"addresses", "households", "persons", "relations", "incidents", "cases", "visits"}
    for counts in load.values():
        assert counts["read"] == counts["accepted"] + counts["quarantined"] and counts["reasons"] == {}
