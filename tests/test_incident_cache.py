"""The incident cache (pipelines/incident_cache.py): a day ranked from the cache equals a full recompute, byte for byte.

One previous-day export is derived from a small city of its own (calls, cases
and visits before its last day, ``export_date`` one day earlier), ranked by the
rules (the cache sits before any engine, and the trained city is the suite's
critical path); ranking it
fills the cache, and the next day ranked with the cache must publish the
same files as without it. Then what must invalidate does (a new lexicon, a
new registry), and a damaged cache is rebuilt with one warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from features.linking import link_incidents, link_stats
from pipelines.incident_cache import cache_size
from pipelines.ranking import RankConfig, run_ranking
from pipelines.training import load_data, prepare
from simulation.city import simulate_city, write_city
from simulation.config import SimConfig

CITY = SimConfig(persons=15_000, days=400, seed=5)
EVENTS = {"incidents": "received_at", "cases": "opened_at", "visits": "visited_at"}


def _previous_export(src: Path, dst: Path) -> str:
    """``src`` one day earlier: events before its last day, ``export_date`` that day; the registry symlinked."""
    last = pd.read_parquet(src / "incidents.parquet", columns=["received_at"])["received_at"].max().normalize()
    prev = last.strftime("%Y-%m-%d")
    dst.mkdir(parents=True)
    for path in src.glob("*.parquet"):
        name = path.name.split(".")[0]
        if name in EVENTS:
            table = pq.read_table(path)
            column = table[EVENTS[name]]
            pq.write_table(table.filter(pc.less(column, pa.scalar(last.to_pydatetime(), column.type))), dst / path.name)
        else:
            os.symlink(path, dst / path.name)
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    (dst / "manifest.json").write_text(json.dumps({**manifest, "export_date": prev}), encoding="utf-8")
    return prev


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("incremental")
    city = root / "city"
    write_city(simulate_city(CITY), city)
    prev = _previous_export(city, root / "previous")
    return {"root": root, "city": city, "previous": root / "previous", "prev_date": prev, "bundle": None}


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    """Two ``Prepared``: the same frames, dtypes, order and link statistics."""
    for name in ("incidents", "rules", "calls"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)
    pd.testing.assert_frame_equal(a.links.links, b.links.links, check_exact=True)
    assert a.rules.attrs == b.rules.attrs
    assert a.links.stats == b.links.stats


def test_next_day_from_the_cache_publishes_the_same_files(days: dict) -> None:
    root, cache = days["root"], days["root"] / "cache"
    yesterday = root / "yesterday"
    store = f"sqlite:///{yesterday / 'warnings.db'}"
    yesterday.mkdir()
    first = run_ranking(
        days["previous"], None, yesterday / "rankings", store, days["bundle"], "v1", RankConfig(), cache_dir=cache
    )
    assert first.date == days["prev_date"]
    assert first.cache["rules_hits"] == 0 and first.cache["links_hits"] == 0
    published = {}
    for name, cache_dir in (("incremental", cache), ("full", None)):
        shutil.copytree(yesterday, root / name)  # the same history: yesterday's folder and warnings
        result = run_ranking(
            days["city"],
            None,
            root / name / "rankings",
            f"sqlite:///{root / name / 'warnings.db'}",
            days["bundle"],
            "v1",
            RankConfig(),
            cache_dir=cache_dir,
        )
        published[name] = _digests(result.folder)
        if cache_dir is None:
            assert result.cache is None
        else:
            n_new = result.cache["rules_misses"]
            assert result.cache["rules_hits"] == first.cache["rules_misses"]  # every call of yesterday reused
            assert n_new == result.cache["links_misses"] > 0  # the day's new calls, and only those
            assert result.cache["bytes_on_disk"] == cache_size(cache) > 0
    assert result.date > days["prev_date"]
    assert "manifest.json" in published["full"] and "ranking.parquet" in published["full"]
    assert published["incremental"] == published["full"]


def test_linking_depends_on_no_other_incident(days: dict) -> None:
    t = {name: r.data for name, r in load_data(days["city"]).tables.items()}
    inc = t["incidents"].reset_index(drop=True)
    whole = link_incidents(inc, t["persons"], t["households"], t["addresses"])
    half = len(inc) // 3
    parts = [link_incidents(p, t["persons"], t["households"], t["addresses"]) for p in (inc[:half], inc[half:])]
    pd.testing.assert_frame_equal(pd.concat([p.links for p in parts]), whole.links, check_exact=True)
    assert link_stats(pd.concat([p.links for p in parts]), pd.concat([p.detail for p in parts])) == whole.stats


def test_new_lexicon_and_new_registry_invalidate(days: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    warm = prepare(days["city"], cache_dir=cache)
    assert warm.cache["rules_misses"] == len(warm.incidents) and warm.cache["links_hits"] == 0

    # A registry with one phone changed: every link is redone (and equals linking from scratch); verdicts too,
    # since the cache's scope is the population.
    moved = tmp_path / "moved"
    moved.mkdir()
    for path in days["city"].iterdir():
        if path.name != "persons.parquet":
            os.symlink(path, moved / path.name)
    persons = pd.read_parquet(days["city"] / "persons.parquet")
    persons.loc[0, "phone"] = "13900000000"
    persons.to_parquet(moved / "persons.parquet", index=False)
    relinked = prepare(moved, cache_dir=cache)
    assert relinked.cache["links_hits"] == 0 and relinked.cache["links_misses"] == len(relinked.incidents)
    _same(relinked, prepare(moved))

    # A library with one weight changed: a new version, every verdict scored again with it.
    import features.keywords
    import features.lexicon

    lexicon = features.lexicon.default_lexicon()
    text = features.lexicon.default_lexicon_path().read_text(encoding="utf-8-sig")
    header, first, rest = text.split("\n", 2)
    fields = first.split(",")
    fields[3] = str(round(float(fields[3]) * 0.9, 3))
    changed, problems = features.lexicon.parse_lexicon("\n".join([header, ",".join(fields), rest]))
    assert not problems and changed.version != lexicon.version
    monkeypatch.setattr(features.lexicon, "default_lexicon", lambda: changed)
    monkeypatch.setattr(features.keywords, "default_lexicon", lambda: changed)
    rescored = prepare(days["city"], cache_dir=cache)
    assert rescored.cache["rules_hits"] == 0 and rescored.cache["rules_misses"] == len(rescored.incidents)
    assert rescored.cache["links_misses"] == 0  # the links do not read the library
    _same(rescored, prepare(days["city"]))


def test_a_damaged_cache_is_rebuilt_with_one_warning(
    days: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    prepare(days["previous"], cache_dir=cache)
    grown = prepare(days["city"], cache_dir=cache)  # a second part per kind: the day's new calls
    parts = sorted(cache.rglob("part-*.parquet"), key=lambda p: p.stat().st_size)
    assert len(parts) == 4
    (parts[0].parent / ".part-killed.parquet.tmp").write_bytes(b"PAR1 half")  # a killed run's leftover: unread
    with parts[0].open("r+b") as handle:  # the smallest part: one of the day's, damaged on disk
        handle.seek(8)
        handle.write(b"\0" * 16)
    with caplog.at_level(logging.WARNING, logger="yujing.incident_cache"):
        rebuilt = prepare(days["city"], cache_dir=cache)
    warnings = [r for r in caplog.records if r.name == "yujing.incident_cache"]
    assert len(warnings) == 1 and "unreadable" in warnings[0].getMessage()
    assert len(rebuilt.cache["rebuilt"]) == 1
    _same(rebuilt, grown)
    after = prepare(days["city"], cache_dir=cache)
    assert after.cache["rules_misses"] == 0 and after.cache["links_misses"] == 0 and not after.cache["rebuilt"]
