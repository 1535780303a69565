"""The ``yujing`` command: a thin shell over the library.

Each command (in ``pipelines/commands/``, one module per job) checks its
arguments first, then imports what it needs, calls one function and prints a
short summary of what it wrote where. This module assembles them and owns the
one rule for errors: whatever goes wrong, a person gets a few lines naming the
file, key or option and the fix, with exit code 2 for their input or setup and
1 for anything unexpected (whose traceback goes to a log file, never to the
terminal). Nothing heavy is imported here, so ``yujing --help`` is instant.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from pipelines import allocator
from pipelines.commands import data, jobs, keys, models, serve, text
from pipelines.commands import report as report_command
from pipelines.commands import whatif as whatif_command
from pipelines.commands.common import set_quiet
from pipelines.commands.errors import report

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # rich tracebacks print local variables, which may hold personal data
    rich_markup_mode=None,  # plain click help: rich's formatter alone takes half a second to import
    help="预警 yujing: dispute and escalation risk.",
)


@app.callback()
def _options(
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the final summary, warnings and errors (no progress).")
    ] = False,
) -> None:
    """预警 yujing: dispute and escalation risk."""
    set_quiet(quiet)


def handled(command: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``command`` with every unexpected exception turned into :func:`report`'s lines and exit code."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            raise typer.Exit(report(exc, name)) from None

    return run


for _name, _command in (
    ("simulate", data.simulate),
    ("validate", data.validate),
    ("classify", text.classify),
    ("evaluate-text", text.evaluate_text),
    ("warn", text.warn),
    ("train", jobs.train),
    ("rank", jobs.rank),
    ("schedule", jobs.schedule),
    ("report", report_command.report),
    ("serve", serve.serve),
    ("ready", serve.ready),
    ("whatif", whatif_command.whatif),
):
    app.command(name=_name)(handled(_command, _name))
for _name, _command in (("add", keys.add), ("list", keys.list_), ("revoke", keys.revoke)):
    keys.app.command(name=_name)(handled(_command, f"keys {_name}"))
app.add_typer(keys.app, name="keys")
for _name, _command in (
    ("list", models.list_),
    ("history", models.history),
    ("promote", models.promote),
    ("rollback", models.rollback),
):
    models.app.command(name=_name)(handled(_command, f"models {_name}"))
app.add_typer(models.app, name="models")

_fold_lines = jobs.fold_lines  # the report test reads the fold lines from here


def main() -> None:
    """Console entry point (``yujing``): the last net under the commands' own error handling."""
    allocator.configure_environment()  # pyarrow is imported by the commands, after this
    allocator.keep_freed_memory()
    try:
        app(prog_name="yujing")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # raised outside a command (e.g. while parsing): same rule, no traceback
        sys.exit(report(exc, " ".join(sys.argv[1:2]) or "yujing"))


if __name__ == "__main__":
    main()
