"""The linker's registry kept per incident-cache scope (pipelines/registry_cache.py).

A stored registry must link exactly like one normalised afresh, be read back
rather than rebuilt, and, when its bytes are damaged, be rebuilt from the
run's tables with one warning line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from features.linking import link_incidents
from pipelines.incident_cache import CacheStats
from pipelines.preparation import load_data
from pipelines.registry_cache import cached_registry
from simulation.city import simulate_city, write_city
from simulation.config import SimConfig


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("registry_city")
    write_city(simulate_city(SimConfig(persons=6_000, days=200, seed=3)), out)
    return {name: r.data for name, r in load_data(out).tables.items()}


def _links(tables: dict[str, pd.DataFrame], registry: object = None) -> pd.DataFrame:
    registry_tables = (tables["persons"], tables["households"], tables["addresses"])
    result = link_incidents(tables["incidents"].reset_index(drop=True), *registry_tables, registry=registry)
    return pd.concat([result.links, result.detail], axis=1)


def _files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_stored_registry_links_the_same_and_a_damaged_one_is_rebuilt_with_one_warning(
    tables: dict[str, pd.DataFrame], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry_tables = (tables["persons"], tables["households"], tables["addresses"])
    fresh = _links(tables)
    stats = CacheStats()
    with caplog.at_level(logging.WARNING, logger="yujing.incident_cache"):
        built = cached_registry(*registry_tables, tmp_path, "v1", stats)
        folder = tmp_path / "registry-v1"
        stored = _files(folder)
        assert "index.json" in stored and sum(name.endswith(".arrow") for name in stored) == 2
        read = cached_registry(*registry_tables, tmp_path, "v1", stats)
        assert _files(folder) == stored  # read back, not written again
    assert not caplog.records and stats.rebuilt == []
    for registry in (built, read):
        pd.testing.assert_frame_equal(_links(tables, registry), fresh, check_exact=True)

    persons_file = folder / next(n for n in stored if n.startswith("persons-"))
    data = bytearray(persons_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    persons_file.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="yujing.incident_cache"):
        rebuilt = cached_registry(*registry_tables, tmp_path, "v1", stats)
    assert len(caplog.records) == 1 and "rebuilding it from this run" in caplog.records[0].getMessage()
    assert stats.rebuilt == ["registry"]
    pd.testing.assert_frame_equal(_links(tables, rebuilt), fresh, check_exact=True)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="yujing.incident_cache"):
        again = cached_registry(*registry_tables, tmp_path, "v1", stats)  # the rewritten copy reads cleanly
    assert not caplog.records and stats.rebuilt == ["registry"]
    pd.testing.assert_frame_equal(_links(tables, again), fresh, check_exact=True)

    cached_registry(*registry_tables, tmp_path, "v2", stats)  # a new linker version replaces the old copy
    assert [p.name for p in tmp_path.glob("registry-*")] == ["registry-v2"]
