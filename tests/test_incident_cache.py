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
from pipelines.preparation import load_data, prepare
from pipelines.ranking import RankConfig, run_ranking
from pipelines.table_cache import FOLDER as TABLES_FOLDER
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
    assert a.load_summary == b.load_summary and list(a.tables) == list(b.tables)
    for name in a.tables:  # registry tables may come from pipelines/table_cache.py: the loader's, exactly
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name], check_exact=True)
        pd.testing.assert_frame_equal(a.quarantine[name], b.quarantine[name], check_exact=True)


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
    assert first.cache["escalations_hits"] == 0 < first.cache["escalations_misses"]
    assert (first.cache["tables_hits"], first.cache["tables_misses"]) == (0, 4)  # the registry's 4 tables kept
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
            assert (result.cache["tables_hits"], result.cache["tables_misses"]) == (4, 0)  # same registry bytes
            assert result.cache["bytes_on_disk"] + result.cache["tables_bytes"] == cache_size(cache) > 0
            # the rules' levels before yesterday's violent cases are read back; only newer cases' computed
            assert result.cache["escalations_hits"] > result.cache["escalations_misses"]
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


# --- the recent calls' readings and OOD scores (pipelines/incident_readings.py) ---------------------------------


def _recent_inputs(prepared) -> tuple:  # type: ignore[no-untyped-def]
    """The day, every linked household, and the calls frame ``serving_tables`` gives ``negated_cues``."""
    from features.snapshots import to_seconds
    from pipelines.ranking import ranking_day

    day = ranking_day(prepared.incidents, None, prepared.export_date)
    linked = prepared.calls[prepared.calls["household_id"].notna()].reset_index(drop=True)
    seconds = to_seconds(linked["received_at"])
    calls = linked.loc[seconds < int(to_seconds(pd.Series([day]))[0])].assign(received_sec=seconds)
    return day, linked["household_id"].unique(), calls.reset_index(drop=True)


def _texts(prepared) -> tuple:  # type: ignore[no-untyped-def]
    """What the two users of the readings publish: the recent calls and terms, and the negated cues."""
    from pipelines.ranking_reasons import negated_cues, recent_calls

    day, households, calls = _recent_inputs(prepared)
    return recent_calls(prepared, households, day, 5, 8), negated_cues(prepared, calls, day)


def _window_calls(prepared) -> int:  # type: ignore[no-untyped-def]
    from models.levels import EVIDENCE_DAYS

    day, _, _ = _recent_inputs(prepared)
    at, linked = prepared.calls["received_at"], prepared.calls["household_id"].notna()
    return int(((at >= day - pd.Timedelta(days=EVIDENCE_DAYS)) & (at < day) & linked).sum())


def _edit_narrative(src: Path, dst: Path, incident_id: str, narrative: str) -> None:
    """``src`` with one incident's narrative corrected (the rest symlinked)."""
    dst.mkdir()
    for path in src.iterdir():
        if path.name != "incidents.parquet":
            os.symlink(path, dst / path.name)
    incidents = pd.read_parquet(src / "incidents.parquet")
    incidents.loc[incidents["incident_id"] == incident_id, "narrative"] = narrative
    incidents.to_parquet(dst / "incidents.parquet", index=False)


def test_recent_readings_come_from_the_cache_and_a_corrected_narrative_is_read_again(
    days: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    yesterday = prepare(days["previous"], cache_dir=cache)
    _texts(yesterday)
    assert yesterday.cache["readings_hits"] == 0 and yesterday.cache["readings_misses"] == _window_calls(yesterday) > 0

    today, full = prepare(days["city"], cache_dir=cache), prepare(days["city"])
    assert full.incident_store is None
    first = _texts(today)
    assert first == _texts(full)  # what ranking.parquet and calls.parquet publish, as a recompute gives it
    new_calls = today.calls["received_at"] >= pd.Timestamp(days["prev_date"])
    new = int((new_calls & today.calls["household_id"].notna()).sum())
    window = _window_calls(today)
    assert today.cache["readings_misses"] == new > 0  # the day's new (linked) calls only...
    assert today.cache["readings_hits"] == window - new > 0  # ...the rest of the window read yesterday
    assert today.cache["bytes_on_disk"] + today.cache["tables_bytes"] == cache_size(cache)

    # A narrative corrected in a later export: the same incident id, read again (and only it).
    _, _, calls = _recent_inputs(today)
    denied = first[1]
    since = int(calls["received_sec"].max()) - 30 * 86_400
    source = next(k for k in range(len(calls)) if denied[k])  # a call that denies a cue...
    k = next(k for k in range(len(calls)) if calls["received_sec"].iloc[k] >= since and not denied[k])  # ...one not
    text = today.incidents.set_index("incident_id").loc[calls["incident_id"].iloc[source], "narrative"]
    corrected = tmp_path / "corrected"
    _edit_narrative(days["city"], corrected, str(calls["incident_id"].iloc[k]), str(text))
    again = prepare(corrected, cache_dir=cache)
    texts = _texts(again)
    assert again.cache["readings_misses"] == 1 and again.cache["readings_hits"] == window - 1
    assert texts[1][k] == denied[source] and texts[1][:k] + texts[1][k + 1 :] == denied[:k] + denied[k + 1 :]

    # A damaged readings part: rebuilt from this run's results, one warning, the same values.
    part = max((cache.rglob("readings-*/part-*.parquet")), key=lambda p: p.stat().st_size)
    with part.open("r+b") as handle:
        handle.seek(8)
        handle.write(b"\0" * 16)
    with caplog.at_level(logging.WARNING, logger="yujing.incident_cache"):
        rebuilt = prepare(days["city"], cache_dir=cache)
        assert _texts(rebuilt) == _texts(full)
    warnings = [r for r in caplog.records if r.name == "yujing.incident_cache"]
    assert len(warnings) == 1 and "unreadable" in warnings[0].getMessage()
    assert rebuilt.cache["rebuilt"] == ["readings"] and rebuilt.cache["readings_misses"] == window


def test_ood_scores_come_from_the_cache_per_bundle(days: dict, tmp_path: Path) -> None:
    import numpy as np

    from models.text_features import IncidentFeaturizer
    from pipelines.drift import _ood_scores, _text_calls

    cache = tmp_path / "cache"
    today = prepare(days["city"], cache_dir=cache)
    day, _, _ = _recent_inputs(today)
    rules, narratives = _text_calls(today, day, 28)
    labels = np.where(rules["is_dispute"], rules["category"].astype(object), "none")
    featurizer = IncidentFeaturizer(n_tokens=50, min_df=2).fit(narratives, None, labels)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"dispute": featurizer.to_dict()}), encoding="utf-8")

    expected = featurizer.ood_scores(narratives)  # what a run without the cache computes
    assert len(expected) == len(narratives) > 20 and expected.max() > 0
    for hits in (0, len(narratives)):  # a cold cache, then a warm one: the same scores
        got = _ood_scores(today, day, 28, narratives, bundle, featurizer)
        assert got.tobytes() == expected.tobytes()
        assert today.cache["ood_hits"] == hits
    assert today.cache["ood_misses"] == len(narratives)
    # Another champion (its manifest's bytes): a new version, every score computed with its featurizer.
    other = IncidentFeaturizer(n_tokens=20, min_df=5).fit(narratives, None, labels)
    (bundle / "manifest.json").write_text(json.dumps({"dispute": other.to_dict()}), encoding="utf-8")
    got = _ood_scores(today, day, 28, narratives, bundle, other)
    assert got.tobytes() == other.ood_scores(narratives).tobytes()
    assert today.cache["ood_misses"] == 2 * len(narratives)
    (scope,) = (p for p in cache.iterdir() if p.name != TABLES_FOLDER)
    assert [p.name.split("-")[0] for p in scope.glob("ood-*")] == ["ood"]  # the older one removed


def test_scopes_unused_for_the_keep_days_are_removed_and_the_one_in_use_is_kept(tmp_path: Path) -> None:
    """A new registry starts a new scope; the old ones go once no run has used them for ``keep_days`` days."""
    from pipelines.incident_cache import use_scope

    now = 1_800_000_000.0
    day = 86_400
    ages = {"0123456789abcdef": 20, "fedcba9876543210": 3, "aaaaaaaaaaaaaaaa": 15}
    for name, age in ages.items():
        (tmp_path / name / "rules-x").mkdir(parents=True)
        os.utime(tmp_path / name, (now - age * day, now - age * day))
    (tmp_path / "not-a-scope").mkdir()  # someone else's folder: never touched
    os.utime(tmp_path / "not-a-scope", (now - 99 * day, now - 99 * day))
    current = tmp_path / "aaaaaaaaaaaaaaaa"  # old, but in use now: marked, kept

    removed = use_scope(tmp_path, current, keep_days=14, now=now)

    assert removed == ["0123456789abcdef"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aaaaaaaaaaaaaaaa", "fedcba9876543210", "not-a-scope"]
    assert current.stat().st_mtime == now
    assert use_scope(tmp_path, current, keep_days=2, now=now) == ["fedcba9876543210"]


def test_every_module_the_linker_imports_is_in_the_links_version() -> None:
    """A link's cache version hashes LINK_SOURCES: a linker module missing there would let an edit to it
    reuse links the old code made. The project modules ``features.linking`` imports, directly or not, are all in it."""
    import ast

    from pipelines.incident_cache import LINK_SOURCES, REPO

    def imports(module: str, seen: set[str]) -> set[str]:
        path = REPO / (module.replace(".", "/") + ".py")
        if module in seen or not path.is_file():
            return seen
        seen.add(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                imports(name, seen)
        return seen

    modules = imports("features.linking", set())
    assert {"features.linking", "features.linking_persons", "features.linking_places"} <= modules
    assert {m.replace(".", "/") + ".py" for m in modules} <= set(LINK_SOURCES)


@pytest.mark.parametrize("repeated", [False, True])
def test_cached_rows_are_found_by_id_and_hash(repeated: bool) -> None:
    """The sorted search (unique hashes) and the merge (a hash stored twice) find what a dict lookup finds."""
    import numpy as np

    from features.household_keys import arrow_strings
    from pipelines.incident_cache import _KEY_HASH, _KEY_ID, _positions

    rng = np.random.default_rng(4)
    ids = np.array([f"J{i:06d}" for i in range(2_000)], dtype=object)
    hashes = rng.integers(0, 2**63, len(ids), dtype=np.int64).astype(np.uint64)
    stored = rng.permutation(len(ids))[:1_500]
    cached = pd.DataFrame({_KEY_ID: ids[stored], _KEY_HASH: hashes[stored]})
    if repeated:  # another incident with the same hash: a collision the ids must tell apart
        cached = pd.concat([cached, pd.DataFrame({_KEY_ID: ["J999999"], _KEY_HASH: [hashes[stored[0]]]})])
        cached = cached.reset_index(drop=True)
    asked_hash = hashes.copy()
    asked_hash[::7] += np.uint64(1)  # changed inputs: a miss even though the id is stored
    ids = ids.copy()
    ids[stored[1]] = "K000001"  # a stored hash asked with another id: the ids must tell them apart
    table = {(i, h): r for r, (i, h) in enumerate(zip(cached[_KEY_ID], cached[_KEY_HASH], strict=True))}
    want = np.array([table.get((i, h), -1) for i, h in zip(ids, asked_hash, strict=True)])
    got = _positions(cached, arrow_strings(pd.Series(ids)), asked_hash)
    assert (got == want).all() and 0 < (got >= 0).sum() < len(ids)
    assert got[stored[1]] == -1 and asked_hash[stored[1]] == cached[_KEY_HASH].iloc[1]
    assert (_positions(None, arrow_strings(pd.Series(ids)), asked_hash) == -1).all()


def test_row_hashes_are_pandas_own_hashes_of_the_strings() -> None:
    """Arrow strings hashed as their UTF-8 bytes give pandas' hashes of the strings: the cache's keys do not move."""
    import numpy as np

    from pipelines.incident_cache import _utf8_objects, row_hashes

    text = ["邻里纠纷，双方争吵", "", None, "a", "家暴 😀", "x" * 600]
    frame = pd.DataFrame(
        {
            "narrative": pd.array(text, dtype=pd.StringDtype("pyarrow", na_value=np.nan)),
            "name": pd.array(text[::-1], dtype=pd.StringDtype("pyarrow")),  # pd.NA as the missing value
            "received_at": pd.date_range("2024-01-01", periods=len(text), freq="h"),
            "count": np.arange(len(text)),
            "note": pd.Series(["p", None, "q", "r", "s", "t"], dtype=object),
        }
    )
    columns = list(frame.columns)
    want = pd.util.hash_pandas_object(frame[columns], index=False, categorize=False).to_numpy(np.uint64)
    got = row_hashes(frame, columns)
    assert got.dtype == np.uint64 and got.tobytes() == want.tobytes()
    assert len(set(got.tolist())) == len(text)  # the missing and the empty narrative differ
    assert isinstance(_utf8_objects(frame["narrative"])[0], bytes)  # the loaders' strings take the bytes path
    assert _utf8_objects(frame["name"]).dtype == frame["name"].dtype  # pd.NA strings: pandas' own path
    memo: dict = {}  # column hashes shared between two sets of columns: each set still gets pandas' hashes
    for subset in (columns[:2], columns[::-1], columns[3:]):
        want = pd.util.hash_pandas_object(frame[subset], index=False, categorize=False).to_numpy(np.uint64)
        assert row_hashes(frame, subset, memo).tobytes() == want.tobytes()
    assert sorted(memo) == sorted(columns)
    frame.loc[0, "narrative"] = "邻里纠纷，双方争吵。"
    assert row_hashes(frame, columns)[0] != got[0] and (row_hashes(frame, columns)[1:] == got[1:]).all()
