"""``yujing whatif``: replay a simulated year with K visits per station per week and count what they prevent.

Arguments are checked before anything is loaded; the replay itself is
``pipelines/whatif.py`` (docs/whatif.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.commands.common import bad, bundle_folder, fail, folder, history_file, info, is_quiet, settings
from pipelines.commands.common import size_class as _size_class

POLICIES = ("model", "rules", "random", "oracle")
"""pipelines.whatif.POLICIES, here too so a wrong name fails before pandas loads (a test keeps them equal)."""
ACTIONS = ("visit", "mediation")
"""simulation.intervention.ACTIONS, likewise."""


def whatif(
    visits: Annotated[int, typer.Option("--visits", help="K: households each station visits per week (>= 1).")] = 5,
    policy: Annotated[
        str,
        typer.Option(help="Who is visited: model (the champion), rules (scoring points), random, oracle (truth)."),
    ] = "model",
    action: Annotated[str, typer.Option(help="What a visit is: visit (police home visit) or mediation.")] = "visit",
    data: Annotated[Path | None, typer.Option(help="A simulated city (default: <data_dir>/city).")] = None,
    seeds: Annotated[int, typer.Option(help="Replays per assumed effect, each with its own seed.")] = 3,
    year: Annotated[
        int | None, typer.Option(help="Calendar year to replay (default: the city's last full year).")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="First replay seed.")] = 20240411,
    bundle: Annotated[Path | None, typer.Option(help="ONNX bundle for --policy model (default: the champion).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default: <runs_dir>/whatif/<policy>-k<K>-<year>).")
    ] = None,
) -> None:
    """Escalations prevented per 100 visits against no visits, under low/central/high assumed effects."""
    if visits < 1:
        raise bad("--visits", f"{visits}: a station must visit at least one household a week; fix: --visits 1 or more")
    if policy not in POLICIES:
        raise bad("--policy", f"{policy!r} is unknown; fix: choose one of {', '.join(POLICIES)}")
    if action not in ACTIONS:
        raise bad("--action", f"{action!r} is unknown; fix: choose one of {', '.join(ACTIONS)}")
    if seeds < 1:
        raise bad("--seeds", f"{seeds}: at least one replay is needed; fix: --seeds 1 or more")
    folder(data, "--data")
    bundle_folder(bundle)
    folder(out, "--out", must_exist=False)
    from pipelines.whatif import WHATIF_STEPS, WhatifConfig, WhatifError

    try:
        config = WhatifConfig(visits, policy, action, seeds, year, seed)
    except WhatifError as exc:
        raise fail(str(exc)) from None
    conf = settings()
    data_dir = (data or Path(conf.data_dir) / "city").resolve()
    if not data_dir.is_dir():
        raise fail(f"{data_dir}: no dataset there; fix: pass --data DIR or run `yujing simulate` first")
    version = None
    if policy == "model" and bundle is None:
        from pipelines.ranking import resolve_champion

        bundle, version = resolve_champion(conf.mlflow_tracking_uri, conf.home / "champion")
        if bundle is None:
            raise fail(
                "--policy model: no escalation champion in the registry "
                f"({conf.mlflow_tracking_uri}); fix: run `yujing train`, pass --bundle DIR, or use --policy rules"
            )
    from pipelines.progress import Stages
    from pipelines.whatif import run_whatif, write_whatif

    info(f"whatif: {visits} {action}s per station per week by the {policy} policy on {data_dir}")
    try:
        with Stages(f"whatif-{_size(data_dir)}", WHATIF_STEPS, quiet=is_quiet(), history=history_file()) as stages:
            result = run_whatif(data_dir, config, bundle, version, progress=stages.feed)
            stages.start(WHATIF_STEPS[-1])
            target = out or conf.runs_dir / "whatif" / f"{policy}-k{visits}-{result['window']['first'][:4]}"
            written = write_whatif(result, target.resolve())
    except WhatifError as exc:
        raise fail(str(exc)) from None
    c = result["central"]
    typer.echo(
        f"{result['window']['first']}..{result['window']['last']}: {c['visits']:,} visits ({policy}) against "
        f"{c['plain_escalations']} escalations without visits"
    )
    for name, row in result["scenarios"].items():
        typer.echo(
            f"  {name:<8} HR {row['hazard_ratio']:.2f} over {row['decay_days']:.0f} d: "
            f"{row['per_100_visits']:.3f} prevented per 100 visits [{row['low']:.3f}, {row['high']:.3f}], "
            f"{row['prevented']:.1f} escalations ({100 * row['share_prevented']:.1f} %)"
        )
    typer.echo(f"wrote {', '.join(str(p) for p in written)}")


def _size(root: Path) -> str:
    """The size class of a city from its manifest (the ETA of a 300,000-person replay is not a 50,000's)."""
    try:
        return _size_class(int(json.loads((root / "manifest.json").read_text())["row_counts"]["persons"]))
    except (OSError, ValueError, KeyError, TypeError):
        return "any"
