"""``yujing models list | history | promote | rollback``: the registry's versions, and acting on the champion by hand.

A data scientist sees every version with its aliases, the gate's verdict and
who made it champion, and can promote a version or roll the champion back to
the one before it. Every action is recorded with who (``--by``, default the
OS user) and why (``--why``, required, masked) in the MLflow store itself
(``models/champions.py``), so it moves with ``var/``. A wrong name, version or
an empty reason stops with the key and the fix, exit code 2.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pipelines.commands.common import fail, settings

app = typer.Typer(
    help="Registered models: list versions and decisions, promote a version, roll the champion back "
    "(each recorded with who and why).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

NameOption = Annotated[
    str, typer.Option("--name", help="yujing-escalation, yujing-dispute or all (escalation/dispute also work).")
]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="yujing-escalation or yujing-dispute.")]
WhyOption = Annotated[str, typer.Option("--why", help="Why (required; stored masked: no names, phones or IDs).")]
ByOption = Annotated[str | None, typer.Option("--by", help="Who acts (default: the operating-system user).")]


def _names(name: str) -> list[str]:
    from models import champions, registry

    if name.strip() == "all":  # the model that ranks first
        return [registry.ESCALATION_MODEL, registry.DISPUTE_MODEL]
    return [champions.model_name(name, "--name")]


def _store() -> str:
    """The tracking store of the settings, which must exist (listing never creates an empty one)."""
    from models import champions

    uri = settings().mlflow_tracking_uri
    champions.require_store(uri)
    return uri


def _run(action: Any) -> Any:
    """``action()`` with the registry's own refusals printed as ``error: ...`` and exit 2."""
    from models.champions import ChampionError

    try:
        return action()
    except ChampionError as exc:
        raise fail(str(exc)) from None


_HOW = {"promote": "promoted by hand", "rollback": "restored by rollback", "gate": "promoted by the gate"}


def _value(row: Any) -> str:
    if row.metric is None:
        return "no gate decision logged"
    return f"{row.metric}" + ("" if row.value is None else f" {row.value:.4f}")


def list_(name: NameOption = "all") -> None:
    """Every version, newest first: aliases, created, run, the gate's metric, decision and reason, who promoted it."""

    def show() -> None:
        from models import champions

        names = _names(name)
        frame = champions.versions_frame(names, _store())
        frame = frame.astype(object).where(frame.notna(), None)  # missing is None, not NaN, below
        for model in names:
            rows = frame[frame["name"] == model]
            typer.echo(f"{model}: {len(rows)} version(s)")
            if rows.empty:
                typer.echo("  none registered yet; `yujing train` registers both models")
            for row in rows.itertuples():
                aliases = row.aliases.replace(",", ", ") or "-"
                run = (row.run_id or "-")[:12]
                typer.echo(f"  v{row.version:<3} {aliases:<22} created {row.created}  run {run}  {_value(row)}")
                if row.decision:
                    typer.echo(f"       gate: {row.decision}: {row.reason}")
                if row.action:
                    how = _HOW.get(row.action, row.action)
                    typer.echo(f"       {how} ({row.by}, {row.at[:19]}Z): {row.why}")

    _run(show)


def history(name: NameOption = "all") -> None:
    """Every change of the champion, oldest first: when, which model, from and to, by whom and why."""

    def show() -> None:
        from models import champions

        frame = champions.history_frame(_names(name), _store())
        frame = frame.astype(object).where(frame.notna(), None)
        if frame.empty:
            typer.echo("no champion changes recorded yet (`yujing train`, `yujing models promote` record them)")
            return
        for row in frame.itertuples():
            was = "none" if row.from_version is None else f"v{int(row.from_version)}"
            typer.echo(
                f"{row.at[:19]}Z  {row.name:<18} {row.action:<8} {was} → v{row.to_version}  by {row.by}: {row.why}"
            )

    _run(show)


def promote(
    name: NameArgument,
    version: Annotated[str, typer.Argument(metavar="VERSION", help="The version to make champion, e.g. 3.")],
    why: WhyOption = "",
    by: ByOption = None,
) -> None:
    """Make VERSION the champion of NAME by hand; recorded with who and why."""

    def act() -> None:
        from models import champions

        # the inputs are checked before the store is opened, so a typo costs no MLflow start-up
        model, number = champions.model_name(name), champions.version_number(version)
        champions.clean_why(why), champions.clean_by(by)
        action = champions.promote(model, number, why, by, tracking_uri=_store())
        was = f"v{action.from_version}" if action.from_version is not None else "none"
        typer.echo(f"{model}: champion {was} → v{action.to_version} (promote by {action.by}): {action.why}")
        typer.echo("the next ranking uses it; a running `yujing serve` picks it up at its next registry check")

    _run(act)


def rollback(name: NameArgument, why: WhyOption = "", by: ByOption = None) -> None:
    """Move NAME's champion back to the one before it (from the recorded history); recorded with who and why."""

    def act() -> None:
        from models import champions

        model = champions.model_name(name)
        champions.clean_why(why), champions.clean_by(by)
        action = champions.rollback(model, why, by, tracking_uri=_store())
        typer.echo(
            f"{model}: champion v{action.from_version} → v{action.to_version} (rollback by {action.by}): {action.why}"
        )
        typer.echo("the next ranking uses it; a running `yujing serve` picks it up at its next registry check")

    _run(act)
