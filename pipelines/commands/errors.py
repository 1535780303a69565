"""Any exception that reaches ``main``, as a person reads it: a few lines, never a traceback.

Known errors (the data contract, the ranking, a keys file, settings) carry
messages written for the user: file, row, key and fix. Anything else is a bug or
an environment fault: its traceback goes to ``<home>/logs/error-<time>.log``
and the terminal gets one line saying where, so a traceback with data in it
never lands in a shared terminal, a cron mail or a CI log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import traceback
from pathlib import Path

KNOWN = (
    ("features.loaders", "DataContractError"),
    ("pipelines.ranking", "RankingError"),
    ("models.text_evaluation", "TextEvaluationError"),
    ("models.warning_store", "WarningStoreError"),
    ("models.bundle", "BundleError"),
    ("models.onnx_export", "ExportError"),
    ("models.registry", "PersonalDataError"),
    ("features.lexicon", "LexiconError"),
    ("features.labels", "LabelMappingError"),
    ("models.drift_config", "DriftConfigError"),
    ("serving.auth", "KeyFileError"),
    ("serving.history", "HistoryError"),
    ("serving.scorer", "ScorerError"),
)
"""Error classes whose message is written for the user (looked up in ``sys.modules``: nothing is imported here)."""


def is_known(exc: BaseException) -> bool:
    """Whether ``exc`` is one of :data:`KNOWN` (a module not imported yet cannot have raised it)."""
    for module, name in KNOWN:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


def logs_dir() -> Path:
    """``<home>/logs``, or ``./var/logs`` when the settings themselves are broken."""
    try:
        from conf import get_settings

        return get_settings().home / "logs"
    except Exception:
        return Path(os.environ.get("YUJING_HOME") or Path.cwd() / "var").resolve() / "logs"


def write_traceback(exc: BaseException, command: str) -> Path | None:
    """The full traceback in a log file of its own; None when even that cannot be written."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        folder = logs_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"error-{stamp}-{os.getpid()}.log"
        text = "".join(traceback.format_exception(exc))
        path.write_text(f"yujing {command}\n{text}", encoding="utf-8")
        return path
    except OSError:
        return None


def report(exc: BaseException, command: str) -> int:
    """Print what went wrong in a few lines on stderr and return the exit code (2 known, 1 unexpected)."""
    from conf.errors import explain

    if isinstance(exc, BrokenPipeError):  # the reader went away (`| head`): nothing left to tell
        return 141

    def say(line: str) -> None:
        with contextlib.suppress(OSError):
            print(line, file=sys.stderr, flush=True)

    lines = explain(exc)
    if lines is not None:
        say("error: the settings cannot be used:")
        for line in lines:
            say(f"  {line}")
        return 2
    if is_known(exc):
        say(f"error: {exc}")
        return 2
    if isinstance(exc, MemoryError):
        say("error: out of memory; fix: a smaller run (e.g. --persons 50000) or a machine with more memory")
        return 1
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        say(f"error: {exc.filename}: {exc.strerror}; fix: check the path and its permissions")
        return 2
    where = write_traceback(exc, command)
    kept = f"the traceback is in {where}" if where else "the traceback could not be written"
    say(
        f"error: unexpected {type(exc).__name__} in `yujing {command}`; {kept} "
        "(keep it inside the center: it may hold data)"
    )
    return 1
