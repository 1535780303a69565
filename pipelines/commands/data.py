"""``yujing simulate`` and ``yujing validate``: make a dataset, check one against the contract."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Annotated

import typer

from pipelines.commands.common import bad, day, fail, folder, history_file, info, is_quiet, settings, size_class


def simulate(
    persons: Annotated[int | None, typer.Option(min=100, help="Number of persons in the city (at least 100).")] = None,
    days: Annotated[int | None, typer.Option(min=30, max=3660, help="Days of incidents to simulate (30-3660).")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Random seed (same seed, same bytes).")] = None,
    start: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <data_dir>/city).")] = None,
) -> None:
    """Simulate a synthetic city and write its tables as Parquet, truth apart."""
    start = day(start, "--start")
    folder(out, "--out", must_exist=False)
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


def validate(
    data: Annotated[Path | None, typer.Option(help="Dataset folder (Parquet or CSV per table).")] = None,
    encoding: Annotated[str | None, typer.Option(help="CSV encoding; default tries UTF-8 then GB18030.")] = None,
    quarantine: Annotated[Path | None, typer.Option(help="Where to write quarantined rows.")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 when any row was quarantined.")] = False,
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

    with Stages("validate", ["load and check", "write quarantine"], quiet=is_quiet()) as stages:
        stages.start("load and check", f"loading {root} against the data contract")
        dataset = load_dataset(root, encoding=encoding)
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
    typer.echo(f"fingerprint {dataset_fingerprint(root)}; {total:,} rows quarantined")
    for path in written:
        typer.echo(f"  quarantine: {path}")
    if strict and total:
        raise typer.Exit(1)
