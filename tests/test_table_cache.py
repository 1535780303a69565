"""Validated registry tables kept between runs (pipelines/table_cache.py).

A kept table must read back as the loader gives it (rows, types, quarantine, counts), be
reused only while its files' bytes are the same and the date window flags none of its rows,
and, when damaged, be validated again with one warning line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from features.loaders import DateWindow, LoadResult, load_dataset
from pipelines.incident_cache import CacheStats
from pipelines.table_cache import FOLDER, KEPT, table_loader
from simulation.city import simulate_city, write_city
from simulation.config import SimConfig


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small city whose persons table has one row the loader quarantines (an ID number too short)."""
    out = tmp_path_factory.mktemp("table_cache_city")
    write_city(simulate_city(SimConfig(persons=3_000, days=120, seed=9)), out)
    persons = pd.read_parquet(out / "persons.parquet")
    persons.loc[7, "id_number"] = "12345"
    persons.to_parquet(out / "persons.parquet", index=False)
    return out


def _window(export_date: str) -> DateWindow:
    return DateWindow(pd.Timestamp("2015-01-01"), pd.Timestamp(export_date))


def _same(a: LoadResult, b: LoadResult) -> None:
    pd.testing.assert_frame_equal(a.data, b.data, check_exact=True)
    pd.testing.assert_frame_equal(a.quarantine, b.quarantine, check_exact=True)
    assert (a.table, a.source, a.read, a.counts(), a.dates) == (b.table, b.source, b.read, b.counts(), b.dates)


def test_a_kept_table_reads_back_as_the_loader_gives_it(city: Path, tmp_path: Path) -> None:
    window = _window("2030-01-01")
    fresh = load_dataset(city, window=window)
    assert fresh.tables["persons"].quarantined == 1
    stats = CacheStats()
    stored = load_dataset(city, window=window, load=table_loader(tmp_path, stats))
    assert (stats.tables_hits, stats.tables_misses) == (0, len(KEPT))
    assert sorted(p.name.split("-")[0] for p in (tmp_path / FOLDER / "all").iterdir()) == sorted(KEPT)
    later = _window("2030-01-02")  # another export date that flags no registry row: still the same validation
    read = load_dataset(city, window=later, load=table_loader(tmp_path, stats))
    assert (stats.tables_hits, stats.tables_misses) == (len(KEPT), len(KEPT))
    for name in fresh.tables:
        _same(stored.tables[name], fresh.tables[name])
        _same(read.tables[name], load_dataset(city, window=later).tables[name])
    assert stats.rebuilt == []


def test_a_window_that_flags_a_row_validates_afresh(city: Path, tmp_path: Path) -> None:
    stats = CacheStats()
    load_dataset(city, tables=["persons"], window=_window("2030-01-01"), load=table_loader(tmp_path, stats))
    births = pd.read_parquet(city / "persons.parquet", columns=["birth_date"])["birth_date"]
    early = _window((births.max() - pd.Timedelta(days=1)).strftime("%Y-%m-%d"))  # the youngest born "after" it
    got = load_dataset(city, tables=["persons"], window=early, load=table_loader(tmp_path, stats)).tables["persons"]
    want = load_dataset(city, tables=["persons"], window=early).tables["persons"]
    _same(got, want)
    assert got.quarantined > 1 and any("after the export date" in r for r in got.reasons())
    assert (stats.tables_hits, stats.tables_misses) == (0, 2)  # not reused; and not stored over the good copy
    again = load_dataset(city, tables=["persons"], window=_window("2030-01-01"), load=table_loader(tmp_path, stats))
    assert stats.tables_hits == 1 and again.tables["persons"].quarantined == 1


def test_new_bytes_replace_the_kept_copy_and_a_damaged_one_is_validated_again(
    city: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    window = _window("2030-01-01")
    stats = CacheStats()
    load_dataset(city, tables=["households"], window=window, load=table_loader(tmp_path / "c", stats))
    kept = tmp_path / "c" / FOLDER / "all"
    (first,) = kept.iterdir()
    data = next(p for p in first.iterdir() if p.suffix == ".arrow")
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="yujing.incident_cache"):
        got = load_dataset(city, tables=["households"], window=window, load=table_loader(tmp_path / "c", stats))
    assert len(caplog.records) == 1 and "unreadable" in caplog.records[0].getMessage()
    assert stats.rebuilt == ["table households"] and stats.tables_misses == 2
    _same(got.tables["households"], load_dataset(city, tables=["households"], window=window).tables["households"])

    moved = tmp_path / "moved"
    moved.mkdir()
    households = pd.read_parquet(city / "households.parquet")
    households.loc[0, "community"] = "新建小区"
    households.to_parquet(moved / "households.parquet", index=False)
    load_dataset(moved, tables=["households"], window=window, load=table_loader(tmp_path / "c", stats))
    (second,) = kept.iterdir()  # one copy per table: the older bytes' copy is gone
    assert second.name != first.name and stats.tables_misses == 3
