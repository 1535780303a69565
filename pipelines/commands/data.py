"""``yujing simulate`` and ``yujing validate``: make a dataset, check one against the contract."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipelines.commands.common import bad, day, fail, folder, history_file, info, is_quiet, settings, size_class

if TYPE_CHECKING:
    from features.partitions import Partition


def simulate(
    persons: Annotated[int | None, typer.Option(min=100, help="Number of persons in the city (at least 100).")] = None,
    days: Annotated[int | None, typer.Option(min=30, max=3660, help="Days of incidents to simulate (30-3660).")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Random seed (same seed, same bytes).")] = None,
    start: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <data_dir>/city).")] = None,
    province: Annotated[
        bool, typer.Option(help="Inner Mongolia's 12 leagues/cities, partitioned (default out <data_dir>/province).")
    ] = False,
    scale: Annotated[float, typer.Option(help="--province: fraction of each city's census persons (0-1].")] = 1.0,
    cities: Annotated[str | None, typer.Option(help="--province: city codes to simulate, e.g. 1505,1504.")] = None,
    cluster: Annotated[str, typer.Option(help="--province: 'local' or a scheduler tcp://host:8786.")] = "local",
) -> None:
    """Simulate a synthetic city (or with --province a partitioned Inner Mongolia) as Parquet, truth apart."""
    start = day(start, "--start")
    folder(out, "--out", must_exist=False)
    if province:
        if persons is not None:
            raise bad("--persons", "a province's persons are its cities' census counts; fix: --scale instead")
        _simulate_province(out, seed, days, start, scale, cities, cluster)
        return
    if cities is not None or scale != 1.0 or cluster != "local":
        raise bad("--province", "--scale, --cities and --cluster simulate a province; fix: add --province")
    conf = settings()
    from pipelines.progress import Stages
    from simulation.city import STAGES, simulate_city, write_city
    from simulation.config import SimConfig

    try:
        config = SimConfig(
            persons=persons or conf.sim_persons,
            days=days or conf.sim_days,
            seed=conf.seed if seed is None else seed,
            start=start or conf.sim_start,
        )
    except ValueError as exc:
        raise fail(f"{exc}; fix: pass --persons/--days or set sim_persons/sim_days in yujing.toml") from None
    target = (out or conf.data_dir / "city").resolve()
    info(f"simulating {config.persons:,} persons over {config.days} days from {config.start}, seed {config.seed}")
    job = f"simulate-{size_class(config.persons)}"
    with Stages(job, [*STAGES, "write tables"], quiet=is_quiet(), history=history_file()) as stages:
        city = simulate_city(config, progress=lambda line: stages.finish(line.split()[0], line))
        stages.start("write tables", f"writing the tables to {target}")
        manifest = write_city(city, target)
    typer.echo(f"wrote {len(manifest['row_counts'])} tables to {target} (fingerprint {manifest['fingerprint']})")
    for name, count in manifest["row_counts"].items():
        typer.echo(f"  {name + '.parquet':<20} {count:>10,} rows")
    typer.echo(f"  truth/ holds {', '.join(manifest['truth_row_counts'])} (for evaluation only)")


def _simulate_province(
    out: Path | None,
    seed: int | None,
    days: int | None,
    start: str | None,
    scale: float,
    cities: str | None,
    cluster: str,
) -> None:
    """``simulate --province``: every city one task on the cluster; a summary of what was written where."""
    conf = settings()
    from pipelines.cluster import ClusterError, check_spec, open_cluster, worker_peaks
    from simulation.province import ProvinceError, check_out, plan, simulate_province

    codes = [c for c in (cities or "").split(",") if c.strip()] or None
    seed = conf.seed if seed is None else seed
    try:
        check_spec(cluster)
        plans = plan(seed, scale, codes)
        target = (out or conf.data_dir / "province").resolve()
        check_out(target, plans)  # before the cluster starts
    except (ClusterError, ProvinceError) as exc:
        raise fail(str(exc)) from None
    what = f"{len(plans)} {'city' if len(plans) == 1 else 'cities'}"
    info(
        f"simulating {what}, {sum(p.persons for p in plans):,} persons (scale {scale:g}, seed {seed}) "
        f"on the {cluster} cluster into {target}"
    )
    try:
        with open_cluster(cluster, conf.cluster_workers, conf.cluster_memory_limit) as client:
            manifest = simulate_province(
                client, target, seed, scale, codes, days or conf.sim_days, start or conf.sim_start, progress=info
            )
            peaks = worker_peaks(client)
    except (ClusterError, ProvinceError) as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"wrote {what}, {manifest['persons']:,} persons to {target} "
        f"(export date {manifest['export_date']}, fingerprint {manifest['fingerprint']})"
    )
    for code, city in manifest["cities"].items():
        typer.echo(f"  {code} {city['name']:<6} {city['persons']:>10,} persons  seed {city['seed']}")
    for name, count in manifest["row_counts"].items():
        typer.echo(f"  {name + '/':<12} {count:>12,} rows")
    typer.echo("  each table: <name>/city=<4-digit code>/county=<6-digit code>/part-0.parquet (relations by city only)")
    typer.echo(f"  truth/ holds {', '.join(manifest['truth_row_counts'])} (for evaluation only); manifest.json")
    typer.echo("peak memory per worker: " + ", ".join(f"{v / 2**30:.2f} GiB" for _, v in sorted(peaks.items())))


def validate(
    data: Annotated[Path | None, typer.Option(help="Dataset folder (Parquet or CSV per table).")] = None,
    encoding: Annotated[str | None, typer.Option(help="CSV encoding; default tries UTF-8 then GB18030.")] = None,
    quarantine: Annotated[Path | None, typer.Option(help="Where to write quarantined rows.")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 when any row was quarantined.")] = False,
    city: Annotated[
        str | None, typer.Option(help="Check one city (4-digit code) of a partitioned dataset; default: all.")
    ] = None,
) -> None:
    """Check a dataset against the data contract; quarantine rows that do not fit."""
    folder(data, "--data")
    folder(quarantine, "--quarantine", must_exist=False)
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise bad("--encoding", f"{encoding!r} is not an encoding; fix: utf-8 or gb18030") from None
    root = (data or settings().data_dir / "city").resolve()
    if not root.is_dir():
        raise fail(f"{root}: no dataset there; fix: pass --data DIR or run `yujing simulate` first")
    from features.fingerprint import dataset_fingerprint
    from features.loaders import load_dataset, write_quarantine
    from pipelines.progress import Stages

    partition = _city_partition(root, city)
    if partition is not None and quarantine is None:  # one city's check must not remove another city's quarantine
        quarantine = root / "quarantine" / f"city={city}"

    with Stages("validate", ["load and check", "write quarantine"], quiet=is_quiet()) as stages:
        stages.start("load and check", f"loading {root} against the data contract")
        dataset = load_dataset(root, encoding=encoding, partition=partition)
        stages.start("write quarantine")
        written = write_quarantine(dataset, (quarantine or root / "quarantine").resolve())
    typer.echo(dataset.summary())
    if dataset.window is not None:
        window = dataset.window
        typer.echo(
            f"dates: calls, cases and visits from {window.earliest:%Y-%m-%d}, nothing after the export date "
            f"{window.export_date:%Y-%m-%d}"
        )
    total = sum(r.quarantined for r in dataset.tables.values())
    typer.echo(f"fingerprint {dataset_fingerprint(root, partition)}; {total:,} rows quarantined")
    for path in written:
        typer.echo(f"  quarantine: {path}")
    if strict and total:
        raise typer.Exit(1)


def _city_partition(root: Path, city: str | None) -> Partition | None:
    """``--city`` as a :class:`features.partitions.Partition` (None: the whole dataset), checked by folder names."""
    if city is None:
        return None
    from features.partitions import Partition, cities

    if not (len(city) == 4 and city.isdigit()):
        raise bad("--city", f"{city!r} is not a 4-digit city code; fix: e.g. --city 1505")
    known = cities(root)
    if not known:
        raise bad("--city", f"{root} is not partitioned by city; fix: drop --city (the whole folder is one city)")
    if city not in known:
        raise bad("--city", f"no city={city} in {root} (cities: {', '.join(known)}); fix: pick one of them")
    return Partition(city=city)
