"""API keys: `yujing keys add` shows a key once and stores its hash; both file formats open the service."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from serving.auth import FORMAT, KeyFileError, KeyRing, key_id


def _keys(path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["keys", *args, "--file", str(path)])
    return result.exit_code, result.stdout, result.stderr


def test_add_prints_the_key_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "var" / "keys.json"
    code, out, err = _keys(path, "add", "--scope", "county", "--county", "150502", "--name", "county dashboard")
    assert code == 0, err
    key = out.strip()
    assert key.startswith("yj_") and len(key) == 46 and "\n" not in key  # 32 random bytes, URL-safe
    text = path.read_text(encoding="utf-8")
    assert key not in text and key[3:] not in text
    stored = json.loads(text)
    assert stored["format"] == FORMAT and len(stored["keys"]) == 1
    entry = stored["keys"][0]
    assert entry["id"] == key_id(key) and entry["scope"] == "county" and entry["county"] == "150502"
    assert entry["name"] == "county dashboard" and entry["created"] and entry["revoked"] is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"added key {entry['id']} for county 150502" in err
    principal = KeyRing.from_file(path).lookup(key)
    assert principal is not None and principal.scope == "county" and principal.county == "150502"
    assert principal.key_id == entry["id"]
    assert principal.sees("S9", "150502") and not principal.sees("S9", "150521")
    assert KeyRing.from_file(path).lookup(key + "x") is None and KeyRing.from_file(path).lookup(None) is None


def test_two_keys_differ_list_shows_no_key_and_revoke_closes_one(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = _keys(path, "add", "--scope", "city")[1].strip()
    second = _keys(path, "add", "--scope", "station", "--station", "S001", "--name", "desk")[1].strip()
    assert first != second and len(KeyRing.from_file(path)) == 2
    code, listing, _ = _keys(path, "list")
    assert code == 0 and first not in listing and second not in listing
    rows = listing.splitlines()
    assert rows[0].split() == ["id", "scope", "sees", "created", "status", "name"] and len(rows) == 3
    assert rows[1].startswith(key_id(first)) and " city " in rows[1] and " all " in rows[1]
    assert rows[2].startswith(key_id(second)) and "S001" in rows[2] and rows[2].endswith("desk")
    code, out, _ = _keys(path, "revoke", key_id(first))
    assert code == 0 and f"revoked key {key_id(first)} (city)" in out
    ring = KeyRing.from_file(path)
    assert ring.lookup(first) is None and ring.lookup(second).station == "S001" and len(ring) == 1
    assert "revoked" in _keys(path, "list")[1].splitlines()[1]
    assert _keys(path, "revoke", key_id(first))[0] == 2  # already revoked
    code, _, err = _keys(path, "revoke", "0000000000")
    assert code == 2 and "no key '0000000000'" in err


def test_a_plain_file_still_works_and_add_converts_it_keeping_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    plain = {
        "a-plain-key-of-24-chars": {"scope": "city"},
        "station-key-0123456789": {"scope": "station", "station": "S2"},
    }
    path.write_text(json.dumps(plain), encoding="utf-8")
    ring = KeyRing.from_file(path)
    assert len(ring) == 2 and ring.lookup("a-plain-key-of-24-chars").scope == "city"
    assert ring.lookup("station-key-0123456789").key_id == key_id("station-key-0123456789")
    code, out, err = _keys(path, "add", "--scope", "city")
    assert code == 0 and "converted 2 plain key(s)" in err
    text = path.read_text(encoding="utf-8")
    assert "a-plain-key-of-24-chars" not in text and "station-key-0123456789" not in text
    ring = KeyRing.from_file(path)
    assert len(ring) == 3 and ring.lookup("a-plain-key-of-24-chars").scope == "city"
    assert ring.lookup("station-key-0123456789").station == "S2" and ring.lookup(out.strip()).scope == "city"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scope", "county"], "--county: a county key needs --county with the county's 6-digit code"),
        (["--scope", "county", "--county", "15050"], "6-digit code"),
        (["--scope", "station"], "--station: a station key needs --station"),
        (["--scope", "city", "--county", "150502"], "a city key sees everything"),
    ],
)
def test_add_refuses_a_scope_without_its_place(tmp_path: Path, args: list[str], message: str) -> None:
    path = tmp_path / "keys.json"
    code, out, err = _keys(path, "add", *args)
    assert code == 2 and message in err and out == "" and not path.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"format": "yujing-keys/2", "keys": [{"sha256": "abc", "scope": "city"}]}', "'sha256' must be 64"),
        ('{"format": "yujing-keys/2", "keys": [{"sha256": "' + "a" * 64 + '", "scope": "town"}]}', "'scope' must be"),
        ('{"format": "yujing-keys/3", "keys": []}', 'needs "format": "yujing-keys/2"'),
        ('{"short": {"scope": "city"}}', "at least 16 characters"),
        ("[1]", "expected a JSON object"),
    ],
)
def test_a_bad_keys_file_is_named_and_never_rewritten(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(KeyFileError, match=message):
        KeyRing.from_file(path)
    code, _, err = _keys(path, "add", "--scope", "city")
    assert code == 2 and err.startswith(f"error: {path}") and message.split("'")[0] in err
    assert path.read_text(encoding="utf-8") == content


def test_the_settings_find_the_keys_file_keys_add_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conf import Settings, get_settings

    monkeypatch.delenv("YUJING_API_KEYS", raising=False)
    assert Settings(home=tmp_path).api_keys_file is None  # no file: no keys, every request 401
    monkeypatch.setenv("YUJING_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["keys", "add", "--scope", "city"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.stderr
    assert Settings(home=tmp_path).api_keys_file == tmp_path / "keys.json"
    assert KeyRing.from_file(tmp_path / "keys.json").lookup(result.stdout.strip()).scope == "city"
