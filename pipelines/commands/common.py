"""What every command shares: the quiet switch, stderr lines, and argument checks that load nothing.

Each check prints ``error: --option: what is wrong; fix: ...`` and exits 2,
before any model, table or Prefect server is touched.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import typer

_state: dict[str, bool] = {"quiet": False, "warned": False}
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def set_quiet(quiet: bool) -> None:
    """``--quiet``: only the final summary (stdout) and errors and warnings (stderr)."""
    _state["quiet"] = quiet


def is_quiet() -> bool:
    return _state["quiet"]


def err(message: str) -> None:
    """An error or warning on stderr: always shown."""
    typer.echo(message, err=True)


def info(message: str) -> None:
    """A status line on stderr: hidden by ``--quiet``."""
    if not _state["quiet"]:
        typer.echo(message, err=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` and return the exit to raise (2: the input or the setup is wrong)."""
    err(f"error: {message}")
    return typer.Exit(code)


def bad(option: str, message: str) -> typer.Exit:
    """A wrong argument: ``error: --option: what is wrong; fix: ...`` and exit 2, before anything is loaded."""
    return fail(f"{option}: {message}")


def day(value: str | None, option: str) -> str | None:
    """A calendar day ``YYYY-MM-DD`` (checked, not loaded with pandas)."""
    if value is None:
        return None
    text = value.strip()
    try:
        if not _DAY.fullmatch(text):
            raise ValueError
        dt.date.fromisoformat(text)
    except ValueError:
        raise bad(option, f"{value!r} is not a date; fix: give a calendar day as YYYY-MM-DD, e.g. 2024-12-31") from None
    return text


def moment(value: str, option: str) -> str:
    """A day ``YYYY-MM-DD`` or an ISO time ``YYYY-MM-DDTHH:MM[:SS]``."""
    text = value.strip()
    try:
        if not _DAY.match(text):
            raise ValueError
        dt.datetime.fromisoformat(text)
    except ValueError:
        raise bad(
            option, f"{value!r} is not a date; fix: use YYYY-MM-DD or an ISO time like 2024-12-31T18:00"
        ) from None
    return text


def folder(path: Path | None, option: str, *, must_exist: bool = True) -> Path | None:
    """A folder that exists (input) or that can be created (output: not an existing file)."""
    if path is None:
        return None
    if must_exist and not path.is_dir():
        what = "is a file, not a folder" if path.is_file() else "does not exist"
        raise bad(option, f"{path} {what}; fix: give an existing folder")
    if not must_exist and path.exists() and not path.is_dir():
        raise bad(option, f"{path} is a file; fix: give a folder to write into")
    return path


def input_file(path: Path, option: str, *, stdin: bool = False) -> Path:
    """A file to read (``-`` for stdin where allowed)."""
    if stdin and str(path) == "-":
        return path
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise bad(option, f"{path} {what}; fix: give an existing file")
    return path


def output_file(path: Path | None, option: str, *, stdout: bool = False) -> Path | None:
    """A file to write: not a folder, and its folder not a file (``-`` for stdout where allowed)."""
    if path is None or (stdout and str(path) == "-"):
        return path
    if path.is_dir():
        raise bad(option, f"{path} is a folder; fix: give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise bad(option, f"{parent} is a file, so {path} cannot be written")
    return path


def bundle_folder(path: Path | None, option: str = "--bundle") -> Path | None:
    """An ONNX bundle folder (it has ``manifest.json``)."""
    if path is None:
        return None
    folder(path, option)
    if not (path / "manifest.json").is_file():
        raise bad(
            option,
            f"{path} is not an ONNX bundle (no manifest.json); fix: point it at a bundle folder, "
            "e.g. var/runs/latest/bundle",
        )
    return path


def database_url(value: str | None, option: str = "--db") -> str | None:
    """A SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``)."""
    if value is None:
        return None
    if not re.match(r"^[a-z][a-z0-9+]*://", value):
        raise bad(
            option, "not a database URL; fix: use sqlite:///var/warnings.db or postgresql+psycopg://user:pass@host/db"
        )
    return value


def cron(value: str | None, option: str = "--cron") -> str | None:
    """Five cron fields, each made of digits, ``*``, ``,``, ``-`` and ``/`` (names like MON also pass)."""
    if value is None:
        return None
    fields = value.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9A-Za-z*,/\-?]+", f) for f in fields):
        raise bad(option, f"{value!r} is not a cron of five fields; fix: e.g. '0 6 * * *' (06:00 every day)")
    return value


def settings():  # type: ignore[no-untyped-def]
    """The process settings, after warning once about ``YUJING_*`` variables that no setting reads.

    A broken setting raises here, before any work; ``pipelines.cli.main`` prints it as file/env var, key and fix.
    """
    from conf import get_settings
    from conf.errors import unknown_env_vars

    loaded = get_settings()
    if not _state.get("warned"):
        _state["warned"] = True
        for line in unknown_env_vars():
            err(f"warning: {line}")
    return loaded


def history_file() -> Path:
    """Where stage times are kept for the next run's ETA (``<home>/logs/stage-times.json``)."""
    return settings().home / "logs" / "stage-times.json"


def size_class(persons: int) -> str:
    """A size class for the ETA history: a 50,000-person run does not predict a 300,000-person one."""
    return "small" if persons < 30_000 else "medium" if persons < 150_000 else "large"
