"""One city's daily ranking on a Dask worker: what ``yujing rank --cluster`` runs per partition.

:func:`rank_unit` does for its city what ``pipelines.ranking.run_ranking`` does for a whole
dataset up to the outputs, and leaves the city's parts in the job's scratch folder for the driver
(pipelines/cluster_ranking.py, pipelines/gather.py). The ONNX scorer is kept per worker process.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.cluster import release_memory
from pipelines.ranking import RankConfig, top_warnings

_SCORERS: dict[tuple[str, str], Any] = {}
"""This worker process's ONNX scorers by (bundle path, manifest sha256): a bundle is loaded once per worker."""


def _bundle_key(bundle_dir: Path) -> tuple[str, str]:
    manifest = Path(bundle_dir) / "manifest.json"
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else ""
    return str(Path(bundle_dir).resolve()), digest


def cached_scorer(bundle_dir: Path) -> Any:
    """The bundle's :class:`serving.scorer.OnnxScorer`, built once per worker process and bundle version."""
    from serving.scorer import OnnxScorer

    key = _bundle_key(bundle_dir)
    if key not in _SCORERS:
        _SCORERS.clear()  # one champion at a time: an older version's sessions are dropped
        _SCORERS[key] = OnnxScorer.from_bundle(bundle_dir)
    return _SCORERS[key]


def _peak_rss() -> int:
    """This process's own peak resident bytes (pipelines/cluster.py says why not ``ru_maxrss``)."""
    from pipelines.cluster import _peak_rss_bytes

    return _peak_rss_bytes()


def _prepare(data_dir: Path, city: str | None, cache_dir: Path | None) -> Any:
    """``pipelines.preparation.prepare`` for one city (a flat dataset: the whole of it)."""
    from features.partitions import Partition
    from pipelines.preparation import prepare

    return prepare(Path(data_dir), Partition(city=city) if city is not None else None, cache_dir)


def _write_arrow(table: pa.Table, path: Path) -> Path:
    """An Arrow IPC file: read back by the driver memory-mapped, types and metadata exactly as written."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def _write_pickle(value: Any, path: Path) -> Path:
    with open(path, "wb") as fh:
        pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def rank_unit(
    data_dir: str,
    city: str | None,
    date: str | None,
    bundle_dir: str | None,
    model_version: str | None,
    config: dict[str, Any],
    scratch: str,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """Rank one city on a worker and write its parts under ``scratch/<city>/``; returns a small summary.

    The parts: ``ranking.arrow`` (the canonical rows, typed as ranking.parquet), ``light.pkl`` (the
    warned rows plus the first row of every station and county: what the pages, CSV and workbook
    need), ``warnings.pkl`` (the rows the warnings database takes), ``top.pkl``, ``quarantine.pkl``,
    and one ``<table>.arrow`` per serving table. Errors are raised as they are (the contract's
    name the file, row and fix) and reach the driver with their type and message.
    """
    from pipelines.drift import ranking_drift
    from pipelines.ranking import (
        manifest_for,
        ranking_day,
        ranking_table,
        score_households,
        serving_tables,
        warnings_rows,
    )
    from pipelines.ranking_columns import CanonicalRanking

    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal started
        now = time.perf_counter()
        timings[name] = round(now - started, 2)
        started = now

    rank_config = RankConfig(**config)
    bundle = Path(bundle_dir) if bundle_dir else None
    prepared = _prepare(Path(data_dir), city, Path(cache_dir) if cache_dir else None)
    lap("load, validate, score and link")
    day = ranking_day(prepared.incidents, date, prepared.export_date)
    scored = score_households(prepared, day, bundle, model_version, opener=cached_scorer)
    lap("features as of the date and scoring")
    ranking = ranking_table(prepared, scored, rank_config)
    lap("levels and reasons")
    tables = serving_tables(prepared, scored, rank_config.history_days)
    lap("tables for the online service")
    manifest = manifest_for(prepared, scored, ranking, rank_config)
    manifest["drift"] = ranking_drift(prepared, scored, bundle)
    cache = dict(getattr(prepared, "cache", None) or {})

    folder = Path(scratch) / (city or "all")
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # raw quarantined rows and reasons: this user only
    canonical = CanonicalRanking(ranking)  # checked, typed and ordered as the single-process outputs are
    light = canonical.frame(canonical.light_rows())
    parts = {
        "ranking": str(_write_arrow(canonical.table(), folder / "ranking.arrow")),
        "light": str(_write_pickle(light, folder / "light.pkl")),
        "warnings": str(_write_pickle(warnings_rows(ranking), folder / "warnings.pkl")),
        "top": str(_write_pickle(top_warnings(ranking), folder / "top.pkl")),
        "quarantine": str(_write_pickle(prepared.quarantine, folder / "quarantine.pkl")),
    }
    rows = {"ranking": len(canonical)}
    counts = canonical.counts()
    for name, frame in tables.items():
        parts[name] = str(_write_arrow(pa.Table.from_pandas(frame), folder / f"{name}.arrow"))
        rows[name] = len(frame)
    lap("write parts")
    del prepared, scored, tables, canonical, light
    return {
        "city": city,
        "date": manifest["date"],
        "engine": manifest["engine"],
        "manifest": manifest,
        "counts": counts,
        "parts": parts,
        "rows": rows,
        "timings": timings,
        "cache": cache,
        "peak_rss": _peak_rss(),
        "pid": os.getpid(),
    }


def rank_unit_caught(*args: Any) -> dict[str, Any]:
    """:func:`rank_unit`, its error returned instead of raised: the worker then logs no remote traceback.

    Dask's worker logs a failed task's traceback on the user's terminal ("Compute Failed"); the
    driver re-raises the error itself (:func:`_result`), so the user reads the one line the
    contract's error carries. The remote traceback travels as a note, for the error log file.
    """
    import traceback

    try:
        return rank_unit(*args)
    except Exception as exc:
        exc.add_note("on the worker:\n" + "".join(traceback.format_exception(exc)))
        return {"error": exc, "city": args[1]}
    finally:
        release_memory()
