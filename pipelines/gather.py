"""The driver's half of a ranking on a cluster: the cities' parts gathered into one publication.

Workers (pipelines/cluster_ranking.py ``rank_unit``) leave each city's parts in a scratch
folder; :func:`combine_results` makes the one manifest of the whole dataset from their small
summaries and :func:`stage_parts` writes the same hidden folder ``stage_outputs``
(pipelines/outputs.py) writes, with the same writers, file names, hashes and manifest keys,
but streaming: a big table is written one city at a time (``pyarrow.parquet.ParquetWriter``
over memory-mapped Arrow parts), and only the warned rows plus one row per station and
county (what the CSV, the workbook and the pages read) are held in pandas. Cities are taken in
city-code order; since every id starts with its city code, that order is the global one.

For a one-city dataset the published files are byte-identical to the single-process run
(tests/test_cluster_ranking.py), and the manifest is the city's own: the ``partitions`` key
appears only for a partitioned dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.quarantine import FOLDER as QUARANTINE_FOLDER
from features.quarantine import fsync_dir, write_quarantine
from models.drift import STATUSES
from pipelines.outputs import (
    _STATION_FILE,
    Staged,
    _check_date,
    _csv_bytes,
    _new_hidden,
    _write_bytes,
    _xlsx_bytes,
    seal,
)
from pipelines.pages import center_context, station_html
from pipelines.ranking import top_warnings
from web.render import render

SUMMED = ("households", "in_scope", "stations_with_warnings")
"""Manifest counts that add up over cities (stations belong to one city)."""


def _read_pickle(path: str | Path) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)  # our own workers' scratch files, in a folder only this user can read


def _add(totals: Any, value: Any) -> Any:
    """Counts added key by key (nested dicts of ints: a load summary, per-level counts); lists joined."""
    if isinstance(value, Mapping):
        out = dict(totals or {})
        for key, item in value.items():
            out[key] = _add(out.get(key), item)
        return out
    if isinstance(value, list):  # names (rebuilt kinds, removed scopes): every city's
        return [*(totals or []), *value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value if totals is None else totals
    return (totals or 0) + value


def combined_fingerprint(results: list[dict[str, Any]]) -> str:
    """The whole dataset's fingerprint from its cities': one city keeps its own, several hash theirs by code."""
    if len(results) == 1:
        return str(results[0]["manifest"]["data_fingerprint"])
    listing = json.dumps({r["city"]: r["manifest"]["data_fingerprint"] for r in results}, sort_keys=True)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def combined_drift(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One drift report for the dataset: the worst city's report, with every city's breaches (each names its city).

    Drift is measured per city against the champion's reference (a city is the population the
    model serves); a breach in any city alerts the whole run, as one city's drift would.
    """
    reports = [r["manifest"]["drift"] for r in results]
    if len(reports) == 1:
        return reports[0]
    worst = max(range(len(reports)), key=lambda i: (STATUSES.index(reports[i].get("status", "ok")), -i))
    combined = dict(reports[worst])
    breaches = [
        {**b, "city": r["city"]} for r, report in zip(results, reports, strict=True) for b in report.get("breaches", [])
    ]
    breaches.sort(key=lambda b: -STATUSES.index(b.get("status", "ok")))
    combined["breaches"] = breaches
    combined["status"] = max((b["status"] for b in breaches), key=STATUSES.index, default="ok")
    combined["cities"] = {r["city"]: report.get("status", "ok") for r, report in zip(results, reports, strict=True)}
    return combined


@dataclass
class Combined:
    """The cities' results in city-code order and the one manifest made of them."""

    results: list[dict[str, Any]]
    manifest: dict[str, Any]
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def date(self) -> str:
        return str(self.manifest["date"])

    def warnings_rows(self) -> pd.DataFrame:
        """The rows the warnings database takes, city after city (each in the single-process job's order)."""
        frames = [_read_pickle(r["parts"]["warnings"]) for r in self.results]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def top(self, n: int = 10) -> pd.DataFrame:
        """The dataset's ``n`` most urgent warnings (each city's top ``n`` holds its share of them)."""
        frames = [_read_pickle(r["parts"]["top"]) for r in self.results]
        return top_warnings(frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True), n)

    def worker_timings(self) -> dict[str, float]:
        """Each worker step's seconds summed over the cities (CPU spent, not wall time), prefixed ``workers:``."""
        total: dict[str, float] = {}
        for r in self.results:
            for name, seconds in r["timings"].items():
                total[f"workers: {name}"] = round(total.get(f"workers: {name}", 0.0) + seconds, 2)
        return total

    def cache(self) -> dict[str, Any] | None:
        """The incident cache's counts summed over the cities (None without a cache)."""
        stats = [r.get("cache") for r in self.results if r.get("cache")]
        total: dict[str, Any] | None = None
        for s in stats:
            total = _add(total, s)
        return total


def combine_results(results: list[dict[str, Any]]) -> Combined:
    """The dataset's manifest: a one-city dataset's is its city's; a province's sums the cities' and lists them.

    The keys are the single-process manifest's. Counts add up; the engine, model, code, lexicon,
    parameters and features must be the same in every city (the same code and bundle ranked
    them); ``data_fingerprint`` is :func:`combined_fingerprint`; ``drift`` is
    :func:`combined_drift`; ``partitions`` holds each city's counts, fingerprint and drift status.
    """
    if not results:
        raise ValueError("no city was ranked: the dataset has no partitions")
    counts: dict[str, Any] | None = None
    for r in results:
        counts = _add(counts, r["counts"])
    assert counts is not None
    if len(results) == 1:
        return Combined(results, dict(results[0]["manifest"]), counts)
    first = results[0]["manifest"]
    manifest = dict(first)
    for key in ("engine", "model_version", "code_version", "lexicon_version", "feature_names", "params"):
        values = {json.dumps(r["manifest"].get(key), sort_keys=True, default=str) for r in results}
        if len(values) > 1:
            raise ValueError(
                f"the cities were ranked with different {key} (a worker runs other code or another bundle); "
                "fix: install the same yujing version and bundle on every worker and re-run"
            )
    for key in SUMMED:
        manifest[key] = sum(int(r["manifest"][key]) for r in results)
    for key in ("warnings", "raised_by", "load"):
        total: Any = None
        for r in results:
            total = _add(total, r["manifest"][key])
        manifest[key] = total
    manifest["data_fingerprint"] = combined_fingerprint(results)
    manifest["drift"] = combined_drift(results)
    manifest["partitions"] = {
        r["city"]: {
            "households": r["manifest"]["households"],
            "in_scope": r["manifest"]["in_scope"],
            "warnings": r["manifest"]["warnings"],
            "data_fingerprint": r["manifest"]["data_fingerprint"],
            "drift": r["manifest"]["drift"].get("status", "ok"),
        }
        for r in results
    }
    return Combined(results, manifest, counts)


# --------------------------------------------------------------------- streaming writers


def _arrow_part(path: str | Path) -> pa.Table:
    """One city's part, memory-mapped: its pages are read from disk as the writer needs them."""
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def _unified_schema(paths: list[str], rows: int) -> pa.Schema:
    """One schema for every city's part of a table: types widened (a column of gaps in one city), pandas'
    index metadata set to the whole table's length (a RangeIndex over all rows, as one frame would have)."""
    schemas = [pa.ipc.open_file(pa.memory_map(p, "r")).schema for p in paths]
    if len(schemas) == 1:
        return schemas[0]
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    metadata = dict(schemas[0].metadata or {})
    if b"pandas" in metadata:
        pandas_meta = json.loads(metadata[b"pandas"])
        for index in pandas_meta.get("index_columns", []):
            if isinstance(index, dict) and index.get("kind") == "range":
                index.update(start=0, stop=rows, step=1)
        metadata[b"pandas"] = json.dumps(pandas_meta).encode("utf-8")
    return schema.with_metadata(metadata)


def write_streamed(paths: list[str], rows: int, target: Path, name: str) -> Path:
    """The cities' parts of one table as one Parquet file, one city in memory at a time; fsynced.

    Written exactly as ``outputs._parquet_bytes`` writes a whole table (snappy, the writer's
    defaults), so one city's file is byte-identical to the single-process one.
    """
    schema = _unified_schema(paths, rows)
    try:
        with open(target, "wb") as fh:
            with pq.ParquetWriter(fh, schema, compression="snappy") as writer:
                for path in paths:
                    table = _arrow_part(path)
                    if table.schema != schema:
                        table = table.cast(schema)
                    writer.write_table(table)
                    del table
            fh.flush()
            os.fsync(fh.fileno())
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ValueError(f"table {name} cannot be written as Parquet ({type(exc).__name__})") from None
    return target


def light_frame(combined: Combined) -> pd.DataFrame:
    """The warned rows of every city plus each station's and county's first row, in canonical order."""
    frames = [_read_pickle(r["parts"]["light"]) for r in combined.results]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def center_page(light: pd.DataFrame, counts: Mapping[str, Any], manifest: Mapping[str, Any]) -> str:
    """``pages.center_html`` of the whole ranking, from the light rows and the true totals."""
    context = center_context(light, manifest)
    context["households"] = int(counts["rows"])
    context["in_scope"] = int(counts["in_scope"])
    return render("ranking/center.html", **context)


def _quarantine(combined: Combined) -> dict[str, pd.DataFrame]:
    """Per table, the rows every city's load rejected, city after city."""
    per_city = [_read_pickle(r["parts"]["quarantine"]) for r in combined.results]
    if len(per_city) == 1:
        return per_city[0]
    names = sorted({name for q in per_city for name in q})
    return {
        name: pd.concat([q[name] for q in per_city if q.get(name) is not None and len(q[name])], ignore_index=True)
        if any(q.get(name) is not None and len(q[name]) for q in per_city)
        else pd.DataFrame()
        for name in names
    }


def stage_parts(combined: Combined, out_root: Path) -> Staged:
    """``outputs.stage_outputs`` from the cities' parts: the same hidden folder, files, hashes and manifest."""
    date = _check_date(combined.date)
    manifest = combined.manifest
    light = light_frame(combined)
    stations = sorted(set(light.loc[light["level"].notna(), "station_id"]))
    if any(not _STATION_FILE.match(s) for s in stations):
        raise ValueError("column station_id must be usable as a file name (letters, digits, _ . -)")
    tables = sorted(name for name in combined.results[0]["parts"] if name not in _NOT_TABLES)

    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    staging = _new_hidden(out_root, date, secrets.token_hex(4))
    staging.mkdir(mode=0o755)
    try:
        parts = [r["parts"]["ranking"] for r in combined.results]
        write_streamed(parts, int(combined.counts["rows"]), staging / "ranking.parquet", "ranking")
        _write_bytes(staging / "warnings.csv", _csv_bytes(light))
        _write_bytes(staging / "warnings.xlsx", _xlsx_bytes(light, date))
        (staging / "stations").mkdir(mode=0o755)
        page_manifest = {**manifest, "date": date}
        _write_bytes(staging / "index.html", center_page(light, combined.counts, page_manifest).encode("utf-8"))
        by_station = dict(list(light.groupby("station_id", sort=True)))
        for station in stations:
            page = station_html(by_station[station], station, page_manifest)
            _write_bytes(staging / "stations" / f"{station}.html", page.encode("utf-8"))
        for name in tables:
            paths = [r["parts"][name] for r in combined.results]
            rows = sum(int(r["rows"][name]) for r in combined.results)
            write_streamed(paths, rows, staging / f"{name}.parquet", name)
        fsync_dir(staging / "stations")
        write_quarantine(_quarantine(combined), staging / QUARANTINE_FOLDER)

        ranking_id = seal(staging, date, manifest, combined.counts)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Staged(date=date, path=staging, final=out_root / date, ranking_id=ranking_id)


_NOT_TABLES = {"ranking", "light", "warnings", "top", "quarantine"}
"""Parts that are not serving tables (every other part is written as ``<name>.parquet``)."""
