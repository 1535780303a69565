"""Rule verdicts and links cached per incident, so a day's ranking scores and links only the day's new calls.

A verdict (:func:`models.rules.rule_verdicts`) depends on the incident's
narrative, the keyword library and the rules' code; a link
(:func:`features.linking.link_incidents`) on the incident's caller and place
columns, the registry (persons, households, addresses) and the linker's code.
Neither depends on any other incident (checked by a test: linking a city in
two halves gives the same rows as linking it whole), so each row can be kept
and reused as long as its inputs are unchanged.

**Keys.** A cached row is found by ``incident_id`` plus a 64-bit hash of the
columns it was computed from (an incident corrected in a later export is a miss,
not a stale hit). Everything else the result depends on names the folder:
``<cache_dir>/<scope>/<kind>-<version>/`` where ``scope`` hashes the partition
and the registry (file bytes of persons, households and addresses plus the
numbers of the rows the loader accepted from them) and ``version`` hashes the source of the
modules that compute the result and the lexicon version. A new registry, library
or code therefore reads an empty folder and fills a new one; the older
versions of the same scope are removed when the new one is first written.

**Storage.** Append-only Parquet parts plus ``index.json`` naming each part
with its row count and sha256; a part is written to a temporary name and
renamed, then the index is replaced atomically (``os.replace``), so a killed
run leaves at most an unreferenced file, never a half-written part that is
read. A part whose bytes do not match the index, or an index that cannot be
parsed, makes the whole folder a miss: it is rebuilt from this run's results
with one warning line (``logging``), never a traceback. Past
:data:`MAX_PARTS` parts the folder is compacted into one.

The results are assembled in the incidents' order with the dtypes of a full
recompute, so :func:`pipelines.preparation.prepare` returns the same frames with
or without the cache (tests/test_incident_cache.py compares published files byte
for byte).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.distinct import all_distinct
from features.household_keys import arrow_strings
from features.linking import DETAIL_COLUMNS, REQUIRED_COLUMNS, LinkResult, link_incidents, link_stats
from models.rules import rule_verdicts
from pipelines.sealed_files import remove_others, replace_file

_log = logging.getLogger("yujing.incident_cache")

LAYOUT = 2
"""Bump when the folder layout or a part's columns change: every existing cache becomes a miss."""
MAX_PARTS = 16
"""Parts kept before a compaction rewrites the folder as one part (one part is added per day with new calls)."""
REPO = Path(__file__).resolve().parents[1]
RULE_SOURCES = (
    "models/rules.py",
    "features/frames.py",
    "features/keywords.py",
    "features/text.py",
    "features/lexicon.py",
)
"""The code behind a rule verdict: a change to any of these files is a new cache version."""
LINK_SOURCES = (
    "features/linking.py",
    "features/linking_text.py",
    "features/linking_persons.py",
    "features/linking_places.py",
    "features/utf8_bytes.py",
    "features/loaders.py",
    "features/arrow_frames.py",
    "features/coercion.py",
    "features/schema.py",
)
"""The code behind a link and behind the registry rows it sees (validation)."""
RULE_INPUTS = ("incident_id", "narrative")
LINK_INPUTS = REQUIRED_COLUMNS["incidents"]
REGISTRY = ("persons", "households", "addresses")
REGISTRY_STORAGE = ("pipelines/registry_cache.py", "pipelines/sealed_files.py")
"""How the linker's registry is stored: part of its version, with the linker's code."""
_KEY_ID, _KEY_HASH = "_incident_id", "_row_hash"
_STR = pd.StringDtype("pyarrow", na_value=np.nan)
LINK_STRINGS = ("incident_id", "person_id", "person_method", "household_id", "household_method", "address_id")


@dataclass
class CacheStats:
    """How one run used the cache (reported on the CLI line and in ``RankResult``, never in the manifest)."""

    rules_hits: int = 0
    rules_misses: int = 0
    links_hits: int = 0
    links_misses: int = 0
    tables_hits: int = 0
    """Registry tables read back as validated the day before (pipelines/table_cache.py)."""
    tables_misses: int = 0
    tables_bytes: int = 0
    """Bytes of the partition's kept tables (outside the scope: they do not depend on it)."""
    rebuilt: list[str] = field(default_factory=list)
    bytes_on_disk: int = 0
    """Bytes of the scope's folder."""
    scopes_removed: list[str] = field(default_factory=list)
    """Scopes (older registries) deleted because no run had used them for ``incident_cache_keep_days`` days."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules_hits": self.rules_hits,
            "rules_misses": self.rules_misses,
            "links_hits": self.links_hits,
            "links_misses": self.links_misses,
            "tables_hits": self.tables_hits,
            "tables_misses": self.tables_misses,
            "tables_bytes": self.tables_bytes,
            "rebuilt": list(self.rebuilt),
            "bytes_on_disk": self.bytes_on_disk,
            "scopes_removed": list(self.scopes_removed),
        }


def source_version(files: Sequence[str], extra: str = "") -> str:
    """16 hex characters over the named source files' bytes (and ``extra``): the code version of a result."""
    digest = hashlib.sha256(f"layout {LAYOUT}\n{extra}\n".encode())
    for name in files:
        digest.update(name.encode() + b"\0" + (REPO / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _table_files(root: Path, name: str, partition: Any) -> list[Path]:
    """The files holding table ``name``: the file itself, or the partition folder's selected files."""
    from features.partitions import partition_files, table_path

    path = table_path(root, name)
    if path is None:
        return []
    return partition_files(path, partition) if path.is_dir() else [path]


def scope_key(root: Path, dataset: Any, partition: Any = None) -> str:
    """16 hex characters naming one population: the partition and its validated registry.

    The registry's rows are what the loader accepted from the file bytes (the loader's code is in
    :data:`LINK_SOURCES`), so the key hashes the bytes and the accepted rows' numbers: a person
    quarantined one day (a birth date after the export date) and accepted the next is a new scope,
    while a new export date alone is not.
    """
    from features.fingerprint import file_sha256

    digest = hashlib.sha256(f"partition {partition!r}\n".encode())
    for name in REGISTRY:
        for path in _table_files(root, name, partition):
            digest.update(f"{name}:{path.relative_to(root)}:{file_sha256(path)}\n".encode())
        accepted = np.ascontiguousarray(dataset.tables[name].data.index.to_numpy(np.int64))
        digest.update(f"{name} accepted {len(accepted)}\n".encode() + accepted.tobytes())
    return digest.hexdigest()[:16]


_SCOPE_NAME = re.compile(r"^[0-9a-f]{16}$")


def use_scope(cache_dir: Path, scope: Path, keep_days: int, now: float | None = None) -> list[str]:
    """Mark ``scope`` used now and delete the scopes of ``cache_dir`` not used for ``keep_days`` days.

    A scope is one registry of one population; a new registry export starts a new one (~200 MB for
    a full city with its stored linker registry), so without this the folder grows with every
    registry ever ranked. "Used" is the scope folder's modification time, set here on every run;
    only folders named like a scope (16 hex characters) are considered. Returns the names removed.
    """
    now = time.time() if now is None else now
    scope.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.utime(scope, (now, now))
    removed = []
    for other in sorted(Path(cache_dir).iterdir()):
        if other == scope or not other.is_dir() or not _SCOPE_NAME.match(other.name):
            continue
        if now - other.stat().st_mtime > keep_days * 86_400:
            shutil.rmtree(other, ignore_errors=True)
            removed.append(other.name)
    return removed


def row_hashes(frame: pd.DataFrame, columns: Sequence[str], memo: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """A 64-bit hash per row over ``columns``: pandas' stable ``hash_pandas_object(frame[columns], index=False)``.

    ``categorize=False``: narratives are nearly all distinct, so factorizing them first (the default)
    only adds a hash table of 632k strings: 2.8 s instead of 0.6 s on the full city, every day.
    Arrow string columns go in as their UTF-8 bytes (:func:`_utf8_objects`): the same hashes,
    without a Python string per narrative. Each column is hashed on its own and the hashes are
    combined as pandas combines them, so ``memo`` (column -> hashes, for this one ``frame``) lets
    the rules and the links hash the narratives once between them.
    """
    memo = {} if memo is None else memo
    for c in columns:
        if c not in memo:
            column = pd.util.hash_pandas_object(_utf8_objects(frame[c]), index=False, categorize=False)
            memo[c] = column.to_numpy(np.uint64)
    return _combined([memo[c] for c in columns], len(frame))


def _combined(hashes: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Column hashes combined into row hashes exactly as pandas' ``combine_hash_arrays`` (CPython's tuple hash)."""
    out = np.full(length, 0x345678, dtype=np.uint64)
    mult = np.uint64(1000003)
    for i, h in enumerate(hashes):
        inverse_i = len(hashes) - i
        out ^= h
        out *= mult
        mult += np.uint64(82520 + inverse_i + inverse_i)
    return out + np.uint64(97531)


def _utf8_objects(column: pd.Series) -> pd.Series:
    """A ``_STR`` column (what the loaders give) as ``bytes`` objects, NaN where missing; others as they are.

    pandas hashes a ``str`` by encoding it to UTF-8 and hashing those bytes, and hashes ``bytes``
    as they are, so both give the same hash (tests/test_incident_cache.py). Decoding a city's
    632k narratives into Python strings took 0.6-2.1 s a day, most of it the kernel handing out
    fresh memory for them; their bytes take 0.15 s. A string dtype whose missing value is
    ``pd.NA`` is left to pandas, which hashes it through ``str()``.
    """
    if column.dtype != _STR:
        return column
    values = arrow_strings(column)
    objects = values.cast(pa.large_binary()).to_numpy(zero_copy_only=False)
    objects[~values.is_valid().to_numpy(zero_copy_only=False)] = np.nan
    return pd.Series(objects, index=column.index, dtype=object)


class _Store:
    """One cache folder (``<scope>/<kind>-<version>``): parts and their index."""

    def __init__(self, scope: Path, kind: str, version: str) -> None:
        self.scope, self.kind = scope, kind
        self.folder = scope / f"{kind}-{version}"
        self.index_path = self.folder / "index.json"

    def read(self, stats: CacheStats) -> pd.DataFrame | None:
        """Every cached row (later parts win on a repeated key), or None when the folder is empty or unreadable."""
        if not self.index_path.exists():
            return None
        try:
            index = json.loads(self.index_path.read_text(encoding="utf-8"))
            tables = []
            for part in index["parts"]:
                data = (self.folder / part["file"]).read_bytes()
                if hashlib.sha256(data).hexdigest() != part["sha256"]:
                    raise ValueError(f"{part['file']} does not match its checksum")
                table = pq.read_table(pa.BufferReader(data))
                if table.num_rows != part["rows"]:
                    raise ValueError(f"{part['file']} holds {table.num_rows} rows, the index says {part['rows']}")
                tables.append(table)
            if not tables:
                return None
            frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()  # all-null columns of a day
        except Exception as exc:  # any unreadable cache is a miss: rebuilt below from this run's results
            _log.warning(
                "incident cache %s unreadable (%s: %s); rebuilding it from this run",
                self.folder,
                type(exc).__name__,
                str(exc)[:120],
            )
            stats.rebuilt.append(self.kind)
            shutil.rmtree(self.folder, ignore_errors=True)
            return None
        hashes = frame[_KEY_HASH].to_numpy(np.uint64)
        if all_distinct(hashes):  # no key twice (hashes cover the id): nothing to drop
            return frame
        return frame.drop_duplicates([_KEY_ID, _KEY_HASH], keep="last")

    def append(self, rows: pd.DataFrame) -> None:
        """Add one part (atomic: temp file, rename, then the index replaced), compacting past MAX_PARTS."""
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_others(self.scope, f"{self.kind}-", self.folder)  # an older code or library version: never read again
        index = {"parts": []}
        if self.index_path.exists():
            index = json.loads(self.index_path.read_text(encoding="utf-8"))
        old = list(index["parts"])
        if len(old) + 1 > MAX_PARTS:
            parts = [pq.read_table(self.folder / p["file"]) for p in old]
            cached = pa.concat_tables(parts, promote_options="permissive").to_pandas()
            rows = pd.concat([cached, rows], ignore_index=True).drop_duplicates([_KEY_ID, _KEY_HASH], keep="last")
            index["parts"] = []
        index["parts"].append(self._write_part(rows))
        self._write_index(index)
        if not index["parts"][:-1]:
            for part in old:
                (self.folder / part["file"]).unlink(missing_ok=True)

    def _write_part(self, rows: pd.DataFrame) -> dict[str, Any]:
        name = f"part-{uuid.uuid4().hex[:16]}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), sink)
        data = sink.getvalue().to_pybytes()
        replace_file(self.folder / name, data)
        return {"file": name, "rows": len(rows), "sha256": hashlib.sha256(data).hexdigest()}

    def _write_index(self, index: dict[str, Any]) -> None:
        replace_file(self.index_path, json.dumps(index, indent=1).encode("utf-8"))


def _cached(
    store: _Store,
    incidents: pd.DataFrame,
    inputs: Sequence[str],
    compute: Callable[[pd.DataFrame], pd.DataFrame],
    stats: CacheStats,
    text: Sequence[str] = (),
    hashes: dict[str, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The cached rows of ``incidents`` (in their order) and the positions that missed, computed and stored.

    Returns ``(values, hit)`` where ``values`` holds one row per incident (hits from the cache,
    misses from ``compute``) as the columns ``compute`` returns, in whatever dtypes the cache
    stores; the caller restores the exact dtypes. The ``text`` columns come as Arrow strings
    (``_STR``, missing values null), gathered without a Python object per row. ``hashes``: the
    column hashes of ``incidents`` already computed (:func:`row_hashes`' memo), filled in here.
    """
    key_id = arrow_strings(incidents["incident_id"])  # compared and taken in Arrow, never as Python strings
    key_hash = row_hashes(incidents, inputs, hashes)
    cached = store.read(stats)
    pos = _positions(cached, key_id, key_hash)
    hit = pos >= 0
    miss = np.flatnonzero(~hit)
    fresh = compute(incidents.iloc[miss]) if len(miss) else None
    if fresh is not None:
        rows = fresh.reset_index(drop=True)
        rows.insert(0, _KEY_HASH, key_hash[miss])
        rows.insert(0, _KEY_ID, pd.array(key_id.take(miss), dtype=_STR))
        try:
            store.append(rows)
        except OSError as exc:  # a full disk or a read-only folder costs tomorrow's reuse, not today's ranking
            _log.warning("incident cache %s not written (%s); this run's results are not kept", store.folder, exc)
    columns = [c for c in (fresh.columns if fresh is not None else cached.columns) if c not in (_KEY_ID, _KEY_HASH)]
    values: dict[str, np.ndarray | pd.api.extensions.ExtensionArray] = {}
    for c in columns:
        if c in text:
            values[c] = _text_gather(
                cached[c] if hit.any() else None, pos, fresh[c] if fresh is not None else None, miss
            )
            continue
        old = cached[c].to_numpy() if hit.any() else None
        new = fresh[c].to_numpy() if fresh is not None else None
        kinds = {a.dtype for a in (old, new) if a is not None}
        # one numpy dtype of bools or numbers on both sides: gathered as it is (the caller casts anyway);
        # anything else (text, gaps, a column a day left all-null) as Python objects, as the cache stores it
        dtype = kinds.pop() if len(kinds) == 1 and next(iter(kinds)).kind in "biuf" else np.dtype(object)
        out = np.empty(len(incidents), dtype=dtype)
        if old is not None:
            out[hit] = old.astype(dtype, copy=False)[pos[hit]]
        if new is not None:
            out[miss] = new.astype(dtype, copy=False)
        values[c] = out
    return pd.DataFrame(values), hit


def _text_gather(
    old: pd.Series | None, pos: np.ndarray, new: pd.Series | None, miss: np.ndarray
) -> pd.api.extensions.ExtensionArray:
    """One text column in the incidents' order: the cached ``old`` row ``pos`` on a hit, ``new`` in turn on a miss.

    Taken in Arrow: the same strings as through Python objects, which cost ~0.3 s per column of
    a city's 632k calls, every day.
    """
    parts, at = [], np.empty(len(pos), dtype=np.int64)
    if old is not None:
        parts.append(arrow_strings(old))
        at[pos >= 0] = pos[pos >= 0]
    if new is not None:
        at[miss] = sum(len(p) for p in parts) + np.arange(len(miss))
        parts.append(arrow_strings(new))
    return pd.array(pa.chunked_array(parts, type=pa.large_string()).take(at), dtype=_STR)


def _positions(cached: pd.DataFrame | None, key_id: pa.Array, key_hash: np.ndarray) -> np.ndarray:
    """Each incident's row in ``cached`` with the same id and input hash (-1: none, to compute).

    The hashes cover the id, so when the cache's hashes are all different, one sorted search of
    them finds every candidate, and comparing the ids confirms it (a pandas merge on both keys
    took 0.3-0.6 s for a city's 632k incidents). The ids are compared in Arrow: as Python strings
    they cost ~0.3 s a side. Repeated hashes fall back to that merge.
    """
    pos = np.full(len(key_id), -1, dtype=np.int64)
    if cached is None or not len(cached):
        return pos
    stored = cached[_KEY_HASH].to_numpy(np.uint64)
    order = np.argsort(stored, kind="stable")
    ranked = stored[order]
    if len(ranked) > 1 and (ranked[1:] == ranked[:-1]).any():
        ids = key_id.to_numpy(zero_copy_only=False)
        left = pd.DataFrame({_KEY_ID: ids, _KEY_HASH: key_hash, "_pos": np.arange(len(key_id))})
        right = pd.DataFrame(
            {_KEY_ID: cached[_KEY_ID].to_numpy(dtype=object), _KEY_HASH: stored, "_row": np.arange(len(cached))}
        )
        found = left.merge(right, on=[_KEY_ID, _KEY_HASH], how="inner")
        pos[found["_pos"].to_numpy()] = found["_row"].to_numpy()
        return pos
    at = np.minimum(np.searchsorted(ranked, key_hash), len(ranked) - 1)
    row = order[at]
    same = ranked[at] == key_hash
    candidates = np.flatnonzero(same)
    stored_ids = arrow_strings(cached[_KEY_ID]).take(row[candidates])
    equal = pc.equal(stored_ids, key_id.take(candidates)).fill_null(False)
    same[candidates] = equal.to_numpy(zero_copy_only=False)
    pos[same] = row[same]
    return pos


def _missing_to_none(values: np.ndarray) -> np.ndarray:
    out = values.astype(object)
    out[pd.isna(out)] = None
    return out


def cached_rule_verdicts(
    incidents: pd.DataFrame, scope: Path, stats: CacheStats, hashes: dict[str, np.ndarray] | None = None
) -> pd.DataFrame:
    """:func:`models.rules.rule_verdicts` of ``incidents["narrative"]`` (RangeIndex), new narratives only.

    ``hashes``: a memo of ``incidents``' column hashes shared with :func:`cached_links` (:func:`row_hashes`).
    """
    from features.lexicon import default_lexicon

    template = rule_verdicts(pd.Series([], dtype=_STR))
    if incidents.empty:
        return rule_verdicts(incidents["narrative"]).reset_index(drop=True)
    store = _Store(scope, "rules", source_version(RULE_SOURCES, f"lexicon {default_lexicon().version}"))

    def compute(rows: pd.DataFrame) -> pd.DataFrame:
        return rule_verdicts(rows["narrative"]).drop(columns="is_dispute")

    values, hit = _cached(store, incidents, RULE_INPUTS, compute, stats, hashes=hashes)
    stats.rules_hits, stats.rules_misses = int(hit.sum()), int((~hit).sum())
    out = {}
    for c, dtype in template.dtypes.items():
        if c == "is_dispute":
            out[c] = pd.notna(out["category"])
        elif c == "category":
            out[c] = _missing_to_none(values[c].to_numpy())
        else:
            out[c] = values[c].to_numpy().astype(dtype)
    frame = pd.DataFrame(out)
    frame.attrs = dict(template.attrs)
    return frame


def cached_links(
    incidents: pd.DataFrame,
    persons: pd.DataFrame,
    households: pd.DataFrame,
    addresses: pd.DataFrame,
    scope: Path,
    stats: CacheStats,
    hashes: dict[str, np.ndarray] | None = None,
) -> LinkResult:
    """:func:`features.linking.link_incidents` with the links of unchanged incidents taken from the cache.

    ``hashes``: a memo of ``incidents``' column hashes shared with :func:`cached_rule_verdicts`.
    """
    if incidents.empty:
        return link_incidents(incidents, persons, households, addresses)
    store = _Store(scope, "links", source_version(LINK_SOURCES))

    def compute(rows: pd.DataFrame) -> pd.DataFrame:
        from pipelines.registry_cache import cached_registry

        version = source_version((*LINK_SOURCES, *REGISTRY_STORAGE))
        registry = cached_registry(persons, households, addresses, scope, version, stats)
        result = link_incidents(rows, persons, households, addresses, registry=registry)
        assert result.detail is not None
        return pd.concat(
            [result.links.drop(columns="incident_id"), result.detail[list(DETAIL_COLUMNS)]], axis=1
        ).reset_index(drop=True)

    values, hit = _cached(store, incidents, LINK_INPUTS, compute, stats, text=LINK_STRINGS[1:], hashes=hashes)
    stats.links_hits, stats.links_misses = int(hit.sum()), int((~hit).sum())
    links = pd.DataFrame(index=incidents.index)
    links["incident_id"] = incidents["incident_id"].astype(_STR).array
    for c in LINK_STRINGS[1:4]:
        links[c] = values[c].array
    links["household_method"] = values["household_method"].array
    links["address_id"] = values["address_id"].array
    links["confidence"] = values["confidence"].to_numpy().astype(np.float64)
    detail = pd.DataFrame(
        {c: values[c].to_numpy().astype(object if c == "kind" else bool) for c in DETAIL_COLUMNS},
        index=incidents.index,
    )
    return LinkResult(links=links, stats=link_stats(links, detail), detail=detail)


def cache_size(cache_dir: Path) -> int:
    """Bytes under the cache folder (reported by benchmarks and the CLI)."""
    return sum(p.stat().st_size for p in Path(cache_dir).rglob("*") if p.is_file())
