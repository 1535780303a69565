"""The registry's household keys kept per incident-cache scope (pipelines/household_keys_cache.py).

Kept keys must give the same features as keys found afresh, be read back rather than computed
again, and, when damaged or not the registry's size, be computed again with one warning line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.household_keys import KeyIndex, registry_keys
from features.snapshots import build_snapshots, household_codes
from pipelines.household_keys_cache import KIND, cached_registry_keys
from pipelines.preparation import prepare
from simulation.city import simulate_city, write_city
from simulation.config import SimConfig


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("keys_city")
    write_city(simulate_city(SimConfig(persons=6_000, days=200, seed=5)), out)
    return prepare(out)


def _features(prepared, registry=None) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    day = pd.DatetimeIndex([prepared.calls["received_at"].max().normalize()])
    return build_snapshots(prepared.calls, prepared.tables, day, all_households=True, registry=registry).frame


def _folder(scope: Path) -> Path:
    (folder,) = scope.glob(f"{KIND}-*")
    return folder


def test_kept_keys_give_the_same_features_and_are_read_back(prepared, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    fresh = registry_keys(prepared.tables, household_codes(prepared.tables["households"]))
    assert fresh.addresses_unique and (fresh.members >= 0).all() and (fresh.addresses >= 0).all()
    counts: dict = {}
    with caplog.at_level(logging.WARNING, logger="yujing.incident_cache"):
        written = cached_registry_keys(prepared.tables, tmp_path, counts)
        stamps = {p.name: p.stat().st_mtime_ns for p in _folder(tmp_path).iterdir()}
        read = cached_registry_keys(prepared.tables, tmp_path, counts)
    assert not caplog.records and counts == {}
    assert {p.name: p.stat().st_mtime_ns for p in _folder(tmp_path).iterdir()} == stamps  # read, not written again
    indexes = {
        "household_index": KeyIndex.build(prepared.tables["households"]["household_id"]),
        "person_index": KeyIndex.build(prepared.tables["persons"]["person_id"]),
    }
    for keys in (written, read):
        np.testing.assert_array_equal(keys.members, fresh.members)
        np.testing.assert_array_equal(keys.addresses, fresh.addresses)
        assert keys.addresses_unique is True
        for name, index in indexes.items():
            np.testing.assert_array_equal(getattr(keys, name).hashes, index.hashes)
            np.testing.assert_array_equal(getattr(keys, name).rows, index.rows)
    pd.testing.assert_frame_equal(_features(prepared, read), _features(prepared), check_exact=True)
    assert fresh.household_index is None and fresh.person_index is None  # one run: the lookups hash the ids
    np.testing.assert_array_equal(cached_registry_keys(prepared.tables, None, counts).members, fresh.members)


@pytest.mark.parametrize("damage", ["flip", "shorter registry"])
def test_a_damaged_or_foreign_copy_is_computed_again_with_one_warning(  # type: ignore[no-untyped-def]
    prepared, tmp_path: Path, caplog, damage: str
) -> None:
    cached_registry_keys(prepared.tables, tmp_path, {})
    tables = dict(prepared.tables)
    if damage == "flip":
        path = next(_folder(tmp_path).glob("members-*.npy"))
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x40
        path.write_bytes(bytes(data))
    else:  # kept for another registry in the same folder (which the scope's key rules out): refused by size
        tables["persons"] = tables["persons"].iloc[:-1].reset_index(drop=True)
    counts: dict = {}
    with caplog.at_level(logging.WARNING, logger="yujing.incident_cache"):
        keys = cached_registry_keys(tables, tmp_path, counts)
    assert len(caplog.records) == 1 and "computing the keys again" in caplog.records[0].getMessage()
    assert counts == {"rebuilt": ["household keys"]}
    np.testing.assert_array_equal(keys.members, registry_keys(tables, household_codes(tables["households"])).members)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="yujing.incident_cache"):
        again = cached_registry_keys(tables, tmp_path, counts)  # the rewritten copy reads cleanly
    assert not caplog.records
    np.testing.assert_array_equal(again.members, keys.members)
