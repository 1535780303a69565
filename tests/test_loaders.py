"""The data contract and its loaders: nothing lost, every rejection explained."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pandera
import pytest

from features.loaders import REASON, ROW, DataContractError, load_dataset, load_table
from features.schema import TABLES, contract_markdown

ROOT = Path(__file__).resolve().parents[1]


def _fake_id(region: str = "150502", birth: str = "19850311", seq: str = "123") -> str:
    """A checksum-valid ID number made at test time (never stored in a tracked file)."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    body = region + birth + seq
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


def _incident_rows() -> list[dict[str, str]]:
    good = {
        "incident_id": "J1505202401010001",
        "received_at": "2024年1月1日 21时26分17秒",
        "caller_name": "张女士",
        "caller_phone": "135****9668",
        "caller_id_number": "1505**********2829",
        "location_text": "科尔沁区某小区4号楼1单元302室",
        "narrative": "称与丈夫发生口角，未动手。",
        "category_l1": "纠纷警情",
        "category_l2": "家庭纠纷",
        "station_id": "S001",
        "disposition": "现场调解",
    }
    return [
        good,
        {
            **good,
            "incident_id": "J2",
            "received_at": "2024-01-02 08:00:00",
            "caller_phone": "",
            "caller_id_number": "",
        },
        {**good, "incident_id": "J3", "received_at": "not a time"},  # bad time
        {**good, "incident_id": "J4", "category_l1": "不存在的类别"},  # not an allowed code
        {**good, "incident_id": "J1505202401010001"},  # duplicate key
        {**good, "incident_id": "J6", "narrative": ""},  # required text missing
        {**good, "incident_id": "J7", "caller_phone": "call me maybe"},  # not a phone shape
    ]


def _write_csv(path: Path, rows: list[dict[str, str]], encoding: str) -> None:
    pd.DataFrame(rows).to_csv(path, index=False, encoding=encoding)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk"])
def test_csv_in_chinese_encodings_quarantines_bad_rows_with_reasons(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "incidents.csv"
    _write_csv(path, _incident_rows(), encoding)

    result = load_table(path, "incidents")

    assert result.read == 7
    assert result.read == result.accepted + result.quarantined
    assert list(result.data["incident_id"]) == ["J1505202401010001", "J2"]
    assert result.data["received_at"].iloc[0] == pd.Timestamp("2024-01-01 21:26:17")
    assert result.data["narrative"].iloc[0] == "称与丈夫发生口角，未动手。"  # decoded, not mojibake
    assert pd.isna(result.data["caller_phone"].iloc[1])  # empty means missing, not ""
    reasons = dict(zip(result.quarantine[ROW], result.quarantine[REASON], strict=True))
    assert reasons[3] == "received_at: not a valid datetime"
    assert "category_l1" in reasons[4] and "isin" in reasons[4]
    assert "duplicate key" in reasons[5]
    assert "narrative" in reasons[6] and "not_nullable" in reasons[6]
    assert "caller_phone" in reasons[7] and "str_matches" in reasons[7]
    # The quarantined row itself is kept, as text, for someone to fix.
    assert result.quarantine.loc[result.quarantine[ROW] == 7, "caller_phone"].item() == "call me maybe"


def test_reasons_never_carry_values(tmp_path: Path) -> None:
    """Reasons go to logs and reports; values are personal data."""
    secret = _fake_id()
    rows = _incident_rows()
    rows[2]["caller_id_number"] = secret + "9"  # too long: fails the pattern
    rows[2]["received_at"] = "2024-01-03 10:00:00"
    path = tmp_path / "incidents.csv"
    _write_csv(path, rows, "utf-8")
    result = load_table(path, "incidents")
    reason = result.quarantine.loc[result.quarantine[ROW] == 3, REASON].item()
    assert "caller_id_number" in reason
    assert secret not in " ".join(result.quarantine[REASON])


def test_broken_csv_lines_are_quarantined_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "incidents.csv"
    _write_csv(path, _incident_rows()[:2], "utf-8")
    with path.open("a", encoding="utf-8") as handle:
        handle.write("J9,2024-01-01 00:00:00,only,three\n")
    result = load_table(path, "incidents")
    assert result.read == 3
    assert result.accepted == 2 and result.quarantined == 1
    assert result.quarantine[REASON].iloc[0] == "line has 4 fields, header has 11"


def test_missing_column_is_one_line_naming_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "incidents.csv"
    pd.DataFrame(_incident_rows()).drop(columns="narrative").to_csv(path, index=False)
    with pytest.raises(DataContractError) as info:
        load_table(path, "incidents")
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "'narrative'" in message and "fix:" in message


def test_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    broken = tmp_path / "persons.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataContractError, match=r"persons\.parquet: not a readable Parquet file"):
        load_table(broken, "persons")
    with pytest.raises(DataContractError, match=r"no such file"):
        load_table(tmp_path / "nope.csv", "persons")
    binary = tmp_path / "visits.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81\x00" * 50)
    with pytest.raises(DataContractError, match=r"visits\.csv"):
        load_table(binary, "visits")


def test_parquet_round_trip_keeps_types(tmp_path: Path) -> None:
    rows = _incident_rows()[:2]
    csv_path = tmp_path / "incidents.csv"
    _write_csv(csv_path, rows, "utf-8")
    first = load_table(csv_path, "incidents").data
    pq = tmp_path / "incidents.parquet"
    first.to_parquet(pq, index=False)
    again = load_table(pq, "incidents")
    assert again.quarantined == 0
    pd.testing.assert_frame_equal(first, again.data)


def test_every_text_column_arrives_as_one_chunk(tmp_path: Path) -> None:
    """A file of many row groups loads as one chunk per column, so selecting a few rows copies only them."""
    rows = [{**_incident_rows()[0], "incident_id": f"J{i}", "caller_phone": ""} for i in range(40)]
    _write_csv(tmp_path / "incidents.csv", rows, "utf-8")
    first = load_table(tmp_path / "incidents.csv", "incidents").data
    first.to_parquet(tmp_path / "incidents.parquet", index=False, row_group_size=7)  # 6 row groups
    again = load_table(tmp_path / "incidents.parquet", "incidents").data
    pd.testing.assert_frame_equal(first, again)
    chunks = {c: again[c].array._pa_array.num_chunks for c in again.columns if hasattr(again[c].array, "_pa_array")}
    assert chunks and set(chunks.values()) == {1}, chunks
    assert set(chunks) >= {"incident_id", "narrative"}


def test_dates_the_pipeline_cannot_hold_quarantine_their_row_instead_of_stopping_the_load(tmp_path: Path) -> None:
    """9999-12-31 (an export's "unknown") and 1600-01-01, as text and as Parquet microseconds (issue 11)."""
    good = _incident_rows()[0]
    rows = [
        good,
        {**good, "incident_id": "J8", "received_at": "9999-12-31"},
        {**good, "incident_id": "J9", "received_at": "1600-01-01 08:00"},
    ]
    csv_path = tmp_path / "incidents.csv"
    _write_csv(csv_path, rows, "utf-8")
    from_csv = load_table(csv_path, "incidents")
    assert from_csv.read == 3 and from_csv.accepted == 1 and from_csv.quarantined == 2
    assert list(from_csv.quarantine[REASON]) == ["received_at: not a valid datetime"] * 2
    frame = pd.DataFrame(rows)
    frame["received_at"] = pd.Series(
        ["2024-01-01T21:26:17", "9999-12-31T00:00:00", "1600-01-01T08:00:00"], dtype="datetime64[us]"
    )
    pq = tmp_path / "incidents.parquet"
    frame.to_parquet(pq, index=False)
    from_parquet = load_table(pq, "incidents")
    assert (from_parquet.read, from_parquet.accepted, from_parquet.quarantined) == (3, 1, 2)
    assert from_parquet.data["received_at"].dtype == "datetime64[ns]"


def test_persons_bool_and_id_rules(tmp_path: Path) -> None:
    base = {
        "person_id": "P1",
        "id_number": _fake_id(),
        "name": "张伟",
        "sex": "M",
        "birth_date": "1985-03-11",
        "ethnicity": "蒙古族",
        "household_id": "H1",
        "relation_to_head": "户主",
        "residence_type": "registered",
        "employment": "herder",
        "phone": "13512345678",
        "mental_illness_registry": "否",
        "community_correction": "false",
        "prior_record": "1",
    }
    rows = [
        base,
        {**base, "person_id": "P2", "id_number": _fake_id()[:-3]},  # truncated ID
        {**base, "person_id": "P3", "mental_illness_registry": "maybe"},
        {**base, "person_id": "P4", "sex": "X"},
    ]
    path = tmp_path / "persons.csv"
    _write_csv(path, rows, "gb18030")
    result = load_table(path, "persons")
    assert result.accepted == 1
    assert bool(result.data["prior_record"].iloc[0]) is True
    assert bool(result.data["mental_illness_registry"].iloc[0]) is False
    reasons = " | ".join(result.quarantine[REASON])
    assert "id_number: fails str_matches" in reasons
    assert "mental_illness_registry: not a valid bool" in reasons
    assert "sex: fails isin" in reasons


def test_dataset_needs_every_table(tmp_path: Path) -> None:
    with pytest.raises(DataContractError, match="no such folder"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(DataContractError, match=r"no addresses\.parquet or addresses\.csv"):
        load_dataset(tmp_path)


def test_contract_doc_is_generated_from_the_schema() -> None:
    doc = (ROOT / "docs" / "data-contract.md").read_text(encoding="utf-8")
    assert contract_markdown() in doc, "regenerate with: python -m features.schema"
    for table in TABLES.values():
        for column in table.columns:
            assert re.search(rf"`{column}`", doc), column


def test_a_call_after_the_export_date_or_before_plausible_time_is_quarantined(tmp_path: Path) -> None:
    """One call dated 2099 once made the daily ranking 2099 and empty (issue 11): the export date bounds every load."""
    from features.loaders import DateWindow

    good = _incident_rows()[0]
    rows = [
        good,
        {**good, "incident_id": "J8", "received_at": "2099-01-01 08:00"},
        {**good, "incident_id": "J9", "received_at": "1900-01-01 08:00"},
        {**good, "incident_id": "J10", "received_at": "2024-01-05 23:59"},  # the export day itself is kept
    ]
    _write_csv(tmp_path / "incidents.csv", rows, "utf-8")
    window = DateWindow.for_folder(tmp_path, "2000-01-01", "2024-01-05")
    result = load_table(tmp_path / "incidents.csv", "incidents", window=window)
    assert (result.read, result.accepted, result.quarantined) == (4, 2, 2)
    assert list(result.quarantine[REASON]) == [
        "received_at: after the export date 2024-01-05",
        "received_at: before 2000-01-01, not plausible",
    ]
    (tmp_path / "manifest.json").write_text('{"export_date": "2023-12-31"}', encoding="utf-8")
    stated = DateWindow.for_folder(tmp_path, "2000-01-01", "2024-01-05")  # the export's own word wins
    assert stated.export_date == pd.Timestamp("2023-12-31")
    assert load_table(tmp_path / "incidents.csv", "incidents", window=stated).accepted == 0
    with pytest.raises(DataContractError, match="export_date"):
        DateWindow.for_folder(tmp_path / "nowhere", "2000-01-01", "05/01/2024 10:00")


def test_a_valid_table_keyed_by_two_columns_needs_no_pandera_and_a_repeated_key_falls_back_to_it() -> None:
    """Cases (keyed by case and person) pass the fast check when valid; a repeat or a bad value goes to pandera."""
    from features.coercion import coerce, surely_valid
    from features.schema import CASES

    raw = pd.DataFrame(
        {
            "case_id": ["C1", "C1", "C2"],
            "opened_at": ["2024-03-01 10:00:00", "2024-03-01 10:00:00", "2024-04-02 08:30:00"],
            "case_type": ["criminal", "criminal", "administrative"],
            "charge": ["故意伤害", "故意伤害", "殴打他人"],
            "station_id": ["S001", "S001", "S002"],
            "person_id": ["P1", "P2", "P1"],
            "role": ["suspect", "victim", "suspect"],
            "source_incident_id": ["J1", "J1", None],
        }
    )

    def typed(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({name: coerce(frame[name], col)[0] for name, col in CASES.columns.items()})

    valid = typed(raw)
    assert surely_valid(valid, CASES)
    CASES.schema().validate(valid, lazy=True)  # what the fast check stands for
    repeated = typed(raw.assign(person_id=["P1", "P1", "P1"]))
    assert not surely_valid(repeated, CASES)
    with pytest.raises(pandera.errors.SchemaErrors):
        CASES.schema().validate(repeated, lazy=True)
    assert not surely_valid(typed(raw.assign(role=["suspect", "witness", "victim"])), CASES)
