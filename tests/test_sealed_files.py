"""pipelines.sealed_files: what is written reads back whole, and any damage is refused, never passed on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import sealed_files
from pipelines.sealed_files import INDEX, SealBroken, read_sealed, write_sealed

FILES = {"data.arrow": bytes(range(256)) * 300, "empty.bin": b"", "meta.pickle": b"\x80\x05N."}


def _stored(folder: Path, name: str) -> Path:
    index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
    return folder / index["files"][name]["file"]


@pytest.mark.parametrize("mapped", [False, True])
def test_files_and_meta_read_back_as_written(tmp_path: Path, mapped: bool) -> None:
    write_sealed(tmp_path / "f", FILES, {"rows": 3})
    files, meta = read_sealed(tmp_path / "f", mapped=mapped)
    assert {name: bytes(data) for name, data in files.items()} == FILES and meta == {"rows": 3}
    assert read_sealed(tmp_path / "nothing") is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-1],  # torn at the end
        lambda data: data + b"\0",  # a stray byte
        lambda data: data[:1000] + bytes([data[1000] ^ 0x01]) + data[1001:],  # one flipped bit
        lambda data: data[:500] + data[504:508] + data[500:504] + data[508:],  # two words swapped
    ],
)
@pytest.mark.parametrize("mapped", [False, True])
def test_a_damaged_file_is_refused(tmp_path: Path, damage, mapped: bool) -> None:
    write_sealed(tmp_path / "f", FILES)
    path = _stored(tmp_path / "f", "data.arrow")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(SealBroken, match="does not match its checksum"):
        read_sealed(tmp_path / "f", mapped=mapped)


@pytest.mark.parametrize("mapped", [False, True])
def test_a_file_of_many_pieces_reads_back_and_pieces_swapped_are_refused(
    tmp_path: Path, mapped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sealed_files, "PIECE", 1000)  # FILES' 76,800 bytes: 77 pieces, checked two at a time
    write_sealed(tmp_path / "f", FILES)
    index = json.loads((tmp_path / "f" / INDEX).read_text(encoding="utf-8"))
    assert len(index["files"]["data.arrow"]["crc32"]) == 77
    files, _ = read_sealed(tmp_path / "f", mapped=mapped)
    assert bytes(files["data.arrow"]) == FILES["data.arrow"]
    path = _stored(tmp_path / "f", "data.arrow")
    data = path.read_bytes()
    path.write_bytes(data[1000:2000] + data[:1000] + data[2000:])  # the first two pieces swapped
    with pytest.raises(SealBroken, match="does not match its checksum"):
        read_sealed(tmp_path / "f", mapped=mapped)


def test_an_index_without_this_format_s_checksums_is_refused(tmp_path: Path) -> None:
    """An index written by the sha256 format before it (or edited by hand) is a miss, not a pass."""
    write_sealed(tmp_path / "f", FILES)
    index = json.loads((tmp_path / "f" / INDEX).read_text(encoding="utf-8"))
    for entry in index["files"].values():
        entry.pop("crc32")
        entry["sha256"] = "0" * 64
    (tmp_path / "f" / INDEX).write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(SealBroken):
        read_sealed(tmp_path / "f")


def test_an_index_of_one_crc_per_file_is_refused(tmp_path: Path) -> None:
    """The eighth round's index held one CRC-32 per file, as text: read as damage, the folder is written anew."""
    write_sealed(tmp_path / "f", FILES)
    index = json.loads((tmp_path / "f" / INDEX).read_text(encoding="utf-8"))
    for entry in index["files"].values():
        entry["crc32"] = entry["crc32"][0]
    (tmp_path / "f" / INDEX).write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(SealBroken, match="does not match its checksum"):
        read_sealed(tmp_path / "f")


def test_a_missing_file_is_refused_without_naming_its_content(tmp_path: Path) -> None:
    write_sealed(tmp_path / "f", FILES)
    _stored(tmp_path / "f", "meta.pickle").unlink()
    with pytest.raises(SealBroken, match=r"^meta.pickle unreadable \(FileNotFoundError\)$"):
        read_sealed(tmp_path / "f")
