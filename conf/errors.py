"""Settings errors as a person fixes them: where (file or env var), which key, what is wrong, the fix.

pydantic's own report is a multi-line dump with links and the offending input;
an operator needs one line per problem that names the place to edit. Values are
never repeated (a database URL may carry a password), only the key and the kind
of value expected, with the built-in default as an example.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_PREFIX = "YUJING_"
OTHER_ENV_VARS = frozenset({"YUJING_CONFIG", "YUJING_API_KEYS", "YUJING_REALTEXT"})
"""``YUJING_*`` variables that are not fields of :class:`conf.settings.Settings` but are read elsewhere."""

_EXPECTED = {
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "int_type": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "text in quotes",
    "path_type": "a path",
    "dict_type": "a table, e.g. {red = 0.08, orange = 0.04}",
    "tuple_type": "a list, e.g. [0.6, 0.2, 0.2]",
    "too_short": "a list of the right length",
    "too_long": "a list of the right length",
    "json_invalid": "JSON (for a list or table in an env var)",
}


class ConfigFileError(FileNotFoundError):
    """``YUJING_CONFIG`` names a file that does not exist."""


def _fields() -> dict[str, Any]:
    from conf.settings import Settings

    return dict(Settings.model_fields)


def _config_path() -> Path | None:
    named = os.environ.get("YUJING_CONFIG")
    if named:
        return Path(named)
    local = Path.cwd() / "yujing.toml"
    return local if local.is_file() else None


def _toml_keys(path: Path | None) -> set[str]:
    if path is None:
        return set()
    try:
        return set(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return set()


def _env_name(field: str, environ: Mapping[str, str]) -> str | None:
    """The ``YUJING_*`` variable that set ``field``, if one is set (env names are case-insensitive)."""
    wanted = (ENV_PREFIX + field).upper()
    return next((name for name in environ if name.upper() == wanted), None)


def _example(field: str) -> str:
    from conf.settings import setting_default

    try:
        default = setting_default(field)
    except KeyError:
        return ""
    if isinstance(default, bool):
        return f" (default {str(default).lower()})"
    if isinstance(default, int | float | str) and len(str(default)) <= 40:
        return f" (default {default!r})" if isinstance(default, str) else f" (default {default})"
    return ""


def _where(key: str, environ: Mapping[str, str], path: Path | None, in_file: set[str]) -> str:
    """Where a setting's value came from: its env var, the TOML file, or neither (a keyword argument)."""
    env = _env_name(key, environ)
    if env is not None:
        return f"env var {env}"
    if key in in_file and path is not None:
        return f"{path}, key {key!r}"
    return f"setting {key!r}"


def explain_validation(exc: Any, environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per problem in a settings ``ValidationError``: place, key, what is wrong, fix."""
    environ = os.environ if environ is None else environ
    fields = _fields()
    path = _config_path()
    in_file = _toml_keys(path)
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = [str(part) for part in error.get("loc", ())]
        key = loc[0] if loc else ""
        kind = error.get("type", "")
        if kind == "extra_forbidden":
            where = f"{path}" if path is not None and key in in_file else "settings"
            close = difflib.get_close_matches(key.lower(), list(fields), n=1, cutoff=0.6)
            fix = f"rename it to {close[0]!r}" if close else "remove it (the keys are in conf/settings.py)"
            lines.append(f"{where}: unknown key {key!r}; fix: {fix}")
            continue
        if not key:  # a check across settings (model validator): its message names the key and the fix
            msg = str(error.get("msg", "")).removeprefix("Value error, ")
            named = next((f for f in fields if msg.startswith(f)), None)
            lines.append(f"{_where(named, environ, path, in_file) if named else 'settings'}: {msg}")
            continue
        where = _where(key, environ, path, in_file)
        part = f" (item {'.'.join(loc[1:])})" if len(loc) > 1 else ""
        expected = _EXPECTED.get(kind)
        what = f"must be {expected}" if expected else str(error.get("msg", "is not valid")).rstrip(".")
        lines.append(f"{where}{part}: {what}; fix: set {expected or 'a valid value'}{_example(key)} or remove it")
    return lines


def explain(exc: BaseException) -> list[str] | None:
    """Lines for a settings error (validation, unreadable TOML, missing config file); None if it is not one."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.title == "Settings":
        return explain_validation(exc) + unknown_env_vars()
    if isinstance(exc, tomllib.TOMLDecodeError):
        path = _config_path() or Path("yujing.toml")
        return [f"{path}: not valid TOML ({exc}); fix: check quotes, brackets and '=' on that line"]
    if isinstance(exc, ConfigFileError):
        return [f"{exc}; fix: point YUJING_CONFIG at an existing TOML file or unset it"]
    return None


def unknown_env_vars(environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for ``YUJING_*`` variables no setting reads (a typo there is otherwise silently ignored)."""
    environ = os.environ if environ is None else environ
    fields = _fields()
    known = {(ENV_PREFIX + f).upper() for f in fields} | OTHER_ENV_VARS
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper.startswith(ENV_PREFIX + "TEST_"):
            continue
        close = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"env var {name} is not a setting and is ignored{hint}")
    return warnings
