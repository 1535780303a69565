"""The daily ranking on a Dask cluster: one task per city partition on the workers, one publication by the driver.

``yujing rank --cluster local|tcp://…`` runs this instead of ``pipelines.ranking.run_ranking``.
The unit of work is a city (the unit of linking, docs/province.md); a flat one-city dataset
is one unit. A worker task (:func:`rank_unit`) does for its city what the single-process
job does for the whole dataset (pipelines/cluster_worker.py: load and link, features as of the date, ONNX scoring with
a scorer loaded once per worker process, levels, reasons, the serving tables, warnings
rows, drift) and writes its parts into a private scratch folder; only small dicts (counts,
paths, timings, peak memory) travel back through the scheduler. The driver then stages ONE
publication from the parts exactly as today (``pipelines/gather.py``: the same files, hashes
and manifest keys; for one city byte-identical to the single-process run), and goes through
the same warnings-database protocol and kill points as ``run_ranking`` (pipelines/publication.py).

Per-city results concatenated in city-code order are globally sorted (ids start with the city
code), so no global sort is needed and the driver never holds every city in pandas at once.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipelines.cluster_worker import _peak_rss, rank_unit, rank_unit_caught
from pipelines.ranking import RankConfig, RankingError, RankResult
from pipelines.steps import step_runner

CLUSTER_RANK_STEPS = (
    "resolve champion",
    "rank partitions on the cluster",
    "write outputs",
    "stage warnings in the database",
    "publish",
    "apply warnings in the database",
)
"""The steps of the daily job on a cluster, as :func:`run_cluster_ranking` names them to the progress display."""

# --------------------------------------------------------------------- on the driver


def units(data_dir: Path) -> list[str | None]:
    """The city partitions to rank, in city-code order; ``[None]`` for a flat one-city dataset."""
    from features.partitions import cities

    found = cities(Path(data_dir))
    return list(found) if found else [None]


def city_sizes(data_dir: Path, cities: list[str | None]) -> list[int]:
    """Bytes of each city's incident files (a flat dataset: 0): how long its task will take, roughly."""
    if cities == [None]:
        return [0]
    from features.partitions import Partition, partition_files, table_path

    folder = table_path(Path(data_dir), "incidents")
    if folder is None or not folder.is_dir():
        return [0] * len(cities)
    return [sum(p.stat().st_size for p in partition_files(folder, Partition(city=c))) for c in cities]


Submit = Callable[[str | None, tuple[Any, ...]], Any]
"""Starts :func:`rank_unit` for one city with these arguments; returns something with ``.result()``."""


def _result(future: Any) -> dict[str, Any]:
    """A city's summary from its future; the error a worker caught is raised here, with its own type."""
    result = future.result()
    if isinstance(result, dict) and isinstance(result.get("error"), BaseException):
        raise result["error"]
    return result


def client_submit(client: Any) -> Submit:
    """Per-city tasks straight on a :class:`distributed.Client` (``--no-prefect``); one try each, named by city."""

    def submit(city: str | None, args: tuple[Any, ...]) -> Any:
        key = f"rank-city-{city or 'all'}-{time.time_ns()}"
        return client.submit(rank_unit_caught, *args, key=key, retries=0, pure=False)

    return submit


def rank_partitions(
    data_dir: Path,
    date: str | None,
    bundle_dir: Path | None,
    model_version: str | None,
    config: RankConfig,
    scratch: Path,
    submit: Submit,
    progress: Callable[[str], None] | None = None,
    cache_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Every city ranked on the workers (all submitted at once, the scheduler balances them); results by city."""
    from dataclasses import asdict

    say = progress or (lambda _msg: None)
    cities = units(data_dir)
    args = [
        (
            str(data_dir),
            city,
            date,
            str(bundle_dir) if bundle_dir else None,
            model_version,
            asdict(config),
            str(scratch),
            str(cache_dir) if cache_dir else None,
        )
        for city in cities
    ]
    sizes = city_sizes(data_dir, cities)
    order = sorted(range(len(cities)), key=lambda i: (-sizes[i], i))  # biggest first: the last task ends sooner
    futures = {i: submit(cities[i], args[i]) for i in order}
    results = []
    for i in range(len(cities)):
        results.append(_result(futures[i]))  # a worker's error is raised here with its own type and message
        if len(futures) > 1:
            say(f"cities fold {i + 1}/{len(futures)}")  # the stage display's within-stage counter
    dates = sorted({r["date"] for r in results})
    if len(dates) > 1:
        raise RankingError(
            f"the cities' default ranking dates differ ({', '.join(dates)}: their exports end on different days); "
            "fix: pass --date YYYY-MM-DD"
        )
    return results


def run_cluster_ranking(
    data_dir: Path,
    date: str | None,
    out_root: Path,
    store_url: str,
    bundle_dir: Path | None,
    model_version: str | None,
    config: RankConfig,
    submit: Submit,
    progress: Callable[[str], None] | None = None,
    step: Callable[[Callable[..., Any], str], Callable[..., Any]] | None = None,
    peaks: Callable[[], Mapping[str, int]] | None = None,
    cache_dir: Path | None = None,
) -> RankResult:
    """The daily job with its cities on a cluster; the same files, rows and protocol as ``run_ranking``.

    ``submit`` starts one city's :func:`rank_unit` (:func:`client_submit`, or a Prefect task's
    ``.submit`` on a ``DaskTaskRunner``); ``peaks`` reports each worker's peak memory at the end.
    """
    from pipelines.gather import combine_results, stage_parts
    from pipelines.outputs import new_parts_folder
    from pipelines.publication import publish_ranking

    say = progress or (lambda _msg: None)
    run, timings = step_runner(progress, step)
    out_root = Path(out_root)
    scratch = new_parts_folder(out_root)  # a killed run's is removed by the next run's sweep
    try:
        say("rank partitions on the cluster")
        started = time.perf_counter()
        results = rank_partitions(
            Path(data_dir), date, bundle_dir, model_version, config, scratch, submit, progress, cache_dir
        )
        timings["rank partitions on the cluster"] = round(time.perf_counter() - started, 2)
        combined = combine_results(results)
        manifest, top = combined.manifest, combined.top()
        if manifest["engine"] == "rules":
            say(f"warning: the rules rank today ({manifest['model'].get('why')})")
        rows = combined.warnings_rows()
        folder, counts = publish_ranking(
            out_root, store_url, manifest, rows, lambda: stage_parts(combined, out_root), run, say
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = RankResult(
        date=manifest["date"],
        folder=folder,
        engine=manifest["engine"],
        households=manifest["households"],
        in_scope=manifest["in_scope"],
        warnings=manifest["warnings"],
        database=counts,
        timings={**timings, **combined.worker_timings()},
        top=top,
        drift=manifest["drift"],
        cache=combined.cache(),
        worker_peaks={**(dict(peaks()) if peaks else {}), "driver": _peak_rss()},
    )
    return result


# --------------------------------------------------------------------- the command's entry


def prefect_submit(as_task: Callable[[Callable[..., Any], str], Any]) -> Submit:
    """Per-city Prefect tasks on the flow's ``DaskTaskRunner``: each city shows as a task run "rank city <code>"."""
    task = as_task(rank_unit, "rank city")

    def submit(city: str | None, args: tuple[Any, ...]) -> Any:
        return task.with_options(task_run_name=f"rank city {city or 'all'}").submit(*args)

    return submit


def rank_on_cluster(
    spec: str,
    params: dict[str, Any],
    settings: Any,
    prefect: bool,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``yujing rank --cluster SPEC``: open the cluster, rank the cities on it, return the run's summary.

    With Prefect the flow's API is started first (workers spawned after it inherit its address)
    and the flow runs with a ``DaskTaskRunner`` on the cluster's scheduler, so every city is a
    Prefect task; without, the cities go straight to the :class:`distributed.Client`. The champion
    is resolved once by the driver (``params``, as ``pipelines.flows.rank_parameters`` makes them).
    """
    from pipelines.cluster import open_cluster, require_workers_match, worker_peaks

    config = RankConfig(**params["config"])
    cache_dir = Path(params["cache_dir"]) if params.get("cache_dir") else None
    flow = None
    if prefect:
        from pipelines.flows import build_rank_flow

        flow = build_rank_flow()  # starts the job's Prefect API before the workers exist
    with open_cluster(
        spec, settings.cluster_workers, settings.cluster_memory_limit, Path(settings.home) / "dask"
    ) as client:
        require_workers_match(client, Path(params["data_dir"]))
        if flow is not None:
            from prefect_dask import DaskTaskRunner

            runner = DaskTaskRunner(address=client.scheduler.address)
            summary = flow.with_options(task_runner=runner)(**params, cluster_address=client.scheduler.address)
        else:
            bundle, version = (Path(params["bundle_dir"]), None) if params["bundle_dir"] else (None, None)
            if bundle is None and params.get("tracking_uri"):
                from pipelines.ranking import resolve_champion

                (progress or (lambda _m: None))("resolve champion")
                bundle, version = resolve_champion(params["tracking_uri"], Path(params["champion_cache"]))
            summary = run_cluster_ranking(
                Path(params["data_dir"]),
                params["date"],
                Path(params["out_root"]),
                params["store_url"],
                bundle,
                version,
                config,
                client_submit(client),
                progress,
                cache_dir=cache_dir,
            ).to_dict()
        summary["worker_peaks"] = {**worker_peaks(client), **(summary.get("worker_peaks") or {})}
    return summary


def peaks_line(peaks: Mapping[str, int], limit: str) -> str:
    """The run's memory in one line: the driver's peak and each worker's, against the worker limit."""
    gib = 2**30
    workers = [f"{v / gib:.2f}" for k, v in sorted(peaks.items()) if k != "driver"]
    driver = peaks.get("driver")
    head = f"peak memory: driver {driver / gib:.2f} GiB, " if driver else "peak memory: "
    return head + f"workers {', '.join(workers) or '—'} GiB (limit {limit} each)"
