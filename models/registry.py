"""Experiment tracking, model registry and champion/challenger promotion (MLflow 3).

Every training run is recorded in the MLflow experiment ``yujing``: its
parameters, metrics, provenance tags (code, data, lexicon, feature list) and
artifacts (report, ``curves.json``, the ONNX bundle). The bundle folder is
registered as a version of ``yujing-dispute`` or ``yujing-escalation``; the
alias ``challenger`` always names the newest version and ``champion`` the one
serving uses. A version only becomes champion through a measured decision
(``models/promotion.py``: the promotion rule and the escalation model's gate
against the rules and the champion), and that decision is written back to the run.

Why the bundle is a *run artifact* and not ``mlflow.onnx.log_model``: the
bundle is a folder (ONNX graphs plus a manifest with feature list, thresholds
and lexicon version) that the serving side loads with onnxruntime directly.
``mlflow.onnx.log_model`` holds a single ``ModelProto``, infers pip
requirements in a subprocess (slow, noisy) and, in MLflow 3, stores the model
under ``models/<model_id>/`` outside the run's artifacts. Registering the run
folder (``runs:/<run_id>/<path>``) keeps one copy, findable from the run, the
registry and ``models:/<name>@champion`` alike. See docs/registry.md.

Personal data never reaches the tracking store: :func:`assert_no_personal_data`
scans every artifact before anything is logged, and parameters and tags are
checked the same way. Errors name files, lines and keys, never the values.

MLflow is imported lazily, after the environment is made quiet and private
(no telemetry, no git probing), so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import math
import numbers
import os
import re
import shutil
import sys
import tempfile
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.tracking.fluent import ActiveRun

EXPERIMENT = "yujing"
DISPUTE_MODEL = "yujing-dispute"
ESCALATION_MODEL = "yujing-escalation"
MODEL_NAMES: tuple[str, ...] = (DISPUTE_MODEL, ESCALATION_MODEL)
CHAMPION = "champion"
CHALLENGER = "challenger"
#: Tags every training run must carry: without them a champion cannot be traced back to what made it.
REQUIRED_TAGS: tuple[str, ...] = ("code_version", "data_fingerprint", "lexicon_version", "feature_list_hash")
PROMOTION_FILE = "promotion.json"
CURVES_FILE = "curves.json"
ARTIFACT_DIR = "mlartifacts"

_DESCRIPTIONS = {
    DISPUTE_MODEL: "Incident dispute type (LightGBM exported to ONNX). Versions are ONNX bundle folders in runs.",
    ESCALATION_MODEL: "Household escalation risk, 民转刑 (LightGBM exported to ONNX). "
    "Versions are ONNX bundle folders in runs.",
}

_current_uri: str | None = None


# --------------------------------------------------------------------------- quiet, private MLflow


def _quiet_mlflow() -> None:
    """Keep MLflow private and quiet; idempotent, called before every first use of MLflow.

    Telemetry is off because nothing may leave a police network; ``GIT_PYTHON_REFRESH``
    stops GitPython warning where no git binary exists; the database-migration INFO lines
    (printed on every new store) and a SQLAlchemy deprecation inside MLflow say nothing
    an operator needs. Explicit settings win: only unset variables are filled in.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    for name in ("mlflow.store.db.utils", "alembic"):
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
    # MLflow's own SQLAlchemy mapping (not ours to fix); shown under pytest on every new store
    warnings.filterwarnings("ignore", message=r"The ``noload`` loader strategy is deprecated")


# Also at import: MLflow starts its telemetry client when *it* is first imported, so a process
# that imports this module before mlflow (the training flow, the notebook) never starts one.
_quiet_mlflow()


def _resolve_uri(tracking_uri: str | None) -> str:
    """Explicit URI, else the one of the last :func:`start_run`, else the settings' (``MLFLOW_TRACKING_URI``)."""
    if tracking_uri:
        return tracking_uri
    if _current_uri:
        return _current_uri
    from conf import get_settings

    uri = get_settings().mlflow_tracking_uri
    assert uri is not None  # the settings validator always fills it
    return uri


def _client(tracking_uri: str | None = None) -> MlflowClient:
    """A client whose tracking and registry stores are the same database (never MLflow's cwd default)."""
    _quiet_mlflow()
    from mlflow import MlflowClient

    uri = _resolve_uri(tracking_uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def default_artifact_root(tracking_uri: str) -> Path | None:
    """Where a new experiment's artifacts go: ``mlartifacts/`` next to a SQLite store.

    The default store is ``<home>/mlflow.db``, so this is ``<home>/mlartifacts``; a store
    elsewhere (a test's temp folder) keeps its artifacts beside it. Other database URIs
    use the settings' home; a tracking server (http) decides itself, so ``None``.
    """
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / ARTIFACT_DIR).resolve()
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        return None
    from conf import get_settings

    return get_settings().home / ARTIFACT_DIR


def _experiment_id(client: MlflowClient, experiment: str, artifact_root: Path | None) -> str:
    """The experiment's id, created with an explicit artifact location so nothing lands in ``./mlruns``."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(experiment)
    if found is None:
        location = None if artifact_root is None else str(artifact_root)
        try:
            return client.create_experiment(experiment, artifact_location=location)
        except MlflowException as exc:  # another process created it in between
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise exc from None
    if found.lifecycle_stage != "active":
        raise RuntimeError(
            f"MLflow experiment {experiment!r} is deleted; restore it (`mlflow experiments restore "
            f"--experiment-id {found.experiment_id}`) or log to another experiment"
        )
    return found.experiment_id


def _source_tags() -> dict[str, str]:
    """The source tags MLflow's own context providers would set, without their git subprocesses."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # containers without a passwd entry
        user = "unknown"
    return {
        "mlflow.user": user,
        "mlflow.source.name": Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python",
        "mlflow.source.type": "LOCAL",
    }


@contextlib.contextmanager
def start_run(
    tracking_uri: str,
    experiment: str = EXPERIMENT,
    run_name: str | None = None,
    artifact_root: Path | None = None,
) -> Iterator[ActiveRun]:
    """Open an MLflow run in ``experiment`` and make it the active run.

    The run is created with :class:`MlflowClient` and only then activated, because the
    fluent ``mlflow.start_run`` resolves git context through GitPython subprocesses on
    every new run; provenance comes from our own ``code_version`` tag instead. The run
    ends FINISHED, or FAILED if the block raises. ``artifact_root`` only matters when the
    experiment does not exist yet (default: :func:`default_artifact_root`).
    """
    global _current_uri
    _quiet_mlflow()
    import mlflow

    if mlflow.active_run() is not None:
        raise RuntimeError("another MLflow run is active in this process; finish it before start_run()")
    client = _client(tracking_uri)
    root = artifact_root if artifact_root is not None else default_artifact_root(tracking_uri)
    experiment_id = _experiment_id(client, experiment, root)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    _current_uri = tracking_uri
    run = client.create_run(experiment_id, run_name=run_name, tags=_source_tags())
    with mlflow.start_run(run_id=run.info.run_id) as active:
        yield active


# --------------------------------------------------------------------------- personal-data guard


class PersonalDataError(ValueError):
    """An artifact, parameter or tag holds an unmasked ID number or mobile number."""


#: Files read as text; everything else (ONNX, Parquet, PNG) is scanned as bytes for ASCII digits.
TEXT_SUFFIXES = frozenset(
    {".json", ".jsonl", ".md", ".html", ".htm", ".csv", ".tsv", ".txt", ".log", ".yaml", ".yml", ".toml", ".xml"}
)

# A match must be a whole number: not glued to digits or ASCII letters (hex digests, run ids)
# and not the fraction part of a decimal (0.13512349668 is a probability, not a phone).
# ASCII digits only: text is NFKC-normalised first, which turns full-width １３５ into 135.
_BEFORE = r"(?<![0-9A-Za-z.])"
_AFTER = r"(?![0-9A-Za-z])"
_RULES = (
    ("unmasked ID number", _BEFORE + r"[0-9]{17}[0-9Xx]" + _AFTER),
    ("unmasked mobile number", _BEFORE + r"(?:\+?86[ \-]?)?1[3-9][0-9](?:[ \-]?[0-9]{4}){2}" + _AFTER),
)
_TEXT_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((kind, re.compile(p)) for kind, p in _RULES)
_BYTES_RULES: tuple[tuple[str, re.Pattern[bytes]], ...] = tuple((kind, re.compile(p.encode())) for kind, p in _RULES)
_MAX_LINES_REPORTED = 5


def _text_findings(text: str) -> dict[str, list[int]]:
    """Kind of personal data -> line numbers (1-based) where it occurs."""
    found: dict[str, list[int]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = unicodedata.normalize("NFKC", raw)
        for kind, pattern in _TEXT_RULES:
            if pattern.search(line):
                found.setdefault(kind, []).append(number)
    return found


def _bytes_findings(data: bytes) -> dict[str, list[int]]:
    """Kind -> byte offsets, for files that are not text (an ONNX graph can embed strings)."""
    found: dict[str, list[int]] = {}
    for kind, pattern in _BYTES_RULES:
        offsets = [m.start() for m in pattern.finditer(data)]
        if offsets:
            found[kind] = offsets
    return found


def _describe(label: str, findings: dict[str, list[int]], unit: str) -> str:
    parts = []
    for kind, where in findings.items():
        shown = ", ".join(str(w) for w in where[:_MAX_LINES_REPORTED])
        more = f" and {len(where) - _MAX_LINES_REPORTED} more" if len(where) > _MAX_LINES_REPORTED else ""
        parts.append(f"{kind} at {unit} {shown}{more}")
    return f"{label}: " + "; ".join(parts)


def _decode(data: bytes) -> str:
    """UTF-8, else GB18030 (what Chinese exports use); digits are ASCII in both."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace")


def assert_no_personal_data(path: Path) -> None:
    """Raise :class:`PersonalDataError` if a file, or any file under a folder, holds unmasked personal data.

    Looks for 18-character ID numbers (``\\d{17}[\\dXx]``) and mobile numbers
    (``1[3-9]\\d{9}``, also with +86 or ``135 1234 5678`` separators). Masked forms
    (``135****9668``, ``1505**********2829``, ``<PHONE>``) pass, as do decimals and hex
    digests that merely contain such digit runs. Text files (:data:`TEXT_SUFFIXES`) are
    read as text and reported by line; other files are scanned as bytes, since ONNX
    graphs and Parquet files can embed strings. The message names files and lines,
    never the numbers themselves.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"artifact {path} does not exist")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    problems: list[str] = []
    for file in files:
        label = str(file.relative_to(path)) if path.is_dir() else file.name
        data = file.read_bytes()
        if file.suffix.lower() in TEXT_SUFFIXES:
            findings, unit = _text_findings(_decode(data)), "line"
        else:
            findings, unit = _bytes_findings(data), "byte offset"
        if findings:
            problems.append(_describe(label, findings, unit))
    if problems:
        raise PersonalDataError(
            f"refusing to log {path}: it holds unmasked personal data ({'; '.join(problems)}); "
            "mask it (features.text.mask) before it becomes an artifact"
        )


def _assert_no_personal_values(kind: str, values: Mapping[str, Any]) -> None:
    """Parameters and tags are stored as text too: the same rules, naming the key."""
    bad = sorted(key for key, value in values.items() if _text_findings(f"{key}\n{value}"))
    if bad:
        raise PersonalDataError(
            f"refusing to log {kind} {', '.join(bad)}: unmasked ID or mobile number in key or value"
        )


# --------------------------------------------------------------------------- tracking


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"escalation": {"test": {"pr_auc": 0.4}}}`` -> ``{"escalation.test.pr_auc": 0.4}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def _numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Flattened metrics, refusing anything that is not a real number (bools and None included).

    A string or list among metrics is a caller's mistake (it belongs in a tag, parameter or
    artifact); silently dropping it would make a metric vanish from comparisons.
    """
    flat = flatten(metrics)
    bad = sorted(k for k, v in flat.items() if isinstance(v, bool) or not isinstance(v, numbers.Real))
    if bad:
        raise TypeError(f"metrics must be numbers; not numbers: {', '.join(bad)} (log them as tags or artifacts)")
    return {k: float(v) for k, v in flat.items()}


def feature_list_hash(features: Sequence[str]) -> str:
    """12 hex of SHA-256 over the ordered feature names: the ONNX input order is part of the model."""
    return hashlib.sha256("\n".join(features).encode("utf-8")).hexdigest()[:12]


def _check_artifact_key(key: str) -> str:
    posix = PurePosixPath(key)
    if not key or posix.is_absolute() or ".." in posix.parts or key.strip("/") != key:
        raise ValueError(
            f"artifact name {key!r} must be a relative path inside the run (like 'bundle' or 'report.html')"
        )
    if key == PROMOTION_FILE:
        raise ValueError(f"{PROMOTION_FILE} is written by log_decision(), not by log_training()")
    return key


def log_training(
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    tags: Mapping[str, Any],
    artifacts: Mapping[str, Path],
) -> None:
    """Log one training run's parameters, metrics, tags and artifacts to the active run.

    ``metrics`` may nest (flattened to dotted keys, e.g. ``escalation.test.pr_auc``) and
    must hold numbers only. ``tags`` must include :data:`REQUIRED_TAGS`. ``artifacts``
    maps the path inside the run to a local file or folder: ``{"bundle": Path("out/onnx"),
    "report.html": ..., "curves.json": ...}``; a folder's content goes under its key.

    Everything is validated first (numbers, tags, personal data in every artifact, the
    ``curves.json`` format) and only then logged, so a refused run holds nothing half-logged.
    """
    _quiet_mlflow()
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("log_training() needs an active run: call it inside `with start_run(...)`")
    missing = [t for t in REQUIRED_TAGS if not str(tags.get(t, "")).strip()]
    if missing:
        raise ValueError(f"run tags are missing {', '.join(missing)}: a model must be traceable to code and data")
    flat_metrics = _numeric_metrics(metrics)
    flat_params = {k: str(v) for k, v in flatten(params).items()}
    str_tags = {str(k): str(v) for k, v in tags.items()}
    _assert_no_personal_values("params", flat_params)
    _assert_no_personal_values("tags", str_tags)
    checked: dict[str, Path] = {}
    for key, local in artifacts.items():
        local = Path(local)
        _check_artifact_key(key)
        assert_no_personal_data(local)
        if key == CURVES_FILE:
            if not local.is_file():
                raise ValueError(f"{CURVES_FILE} must be a file, got {local}")
            validate_curves(json.loads(local.read_text(encoding="utf-8")))
        checked[key] = local

    if flat_params:
        mlflow.log_params(flat_params)
    if flat_metrics:
        mlflow.log_metrics(flat_metrics)
    mlflow.set_tags(str_tags)
    for key, local in checked.items():
        _log_artifact(key, local)


def _log_artifact(key: str, local: Path) -> None:
    """Put a file or folder at run path ``key`` (MLflow keeps a file's own name, so rename via a temp copy)."""
    import mlflow

    if local.is_dir():
        mlflow.log_artifacts(str(local), artifact_path=key)
        return
    target = PurePosixPath(key)
    parent = str(target.parent) if str(target.parent) != "." else None
    if local.name == target.name:
        mlflow.log_artifact(str(local), artifact_path=parent)
        return
    with tempfile.TemporaryDirectory() as tmp:
        renamed = Path(tmp) / target.name
        shutil.copyfile(local, renamed)
        mlflow.log_artifact(str(renamed), artifact_path=parent)


def latest_runs(n: int = 20, experiment: str = EXPERIMENT, tracking_uri: str | None = None) -> pd.DataFrame:
    """The newest ``n`` runs of ``experiment``, one row each: id, name, start, status, provenance tags, metrics."""
    import pandas as pd

    client = _client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return pd.DataFrame(columns=["run_id", "run_name", "start_time", "status"])
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"], max_results=n)
    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "start_time": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC"),
            "status": run.info.status,
        }
        row.update({t: run.data.tags.get(t) for t in REQUIRED_TAGS})
        row.update(run.data.metrics)
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- registry


def _check_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown registered model {name!r}; expected one of {', '.join(MODEL_NAMES)}")


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(name, description=_DESCRIPTIONS[name])
        except MlflowException as again:  # created concurrently
            if again.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


def _artifact_exists(client: MlflowClient, run_id: str, path: str) -> bool:
    parent = str(PurePosixPath(path).parent)
    listing = client.list_artifacts(run_id, None if parent == "." else parent)
    return any(item.path == path for item in listing)


def register(
    run_id: str, name: str, artifact_path_or_model: str, description: str, tracking_uri: str | None = None
) -> int:
    """Register the ONNX bundle logged in ``run_id`` as a new version of ``name``; returns the version.

    ``artifact_path_or_model`` is the bundle's path inside the run (the key given to
    :func:`log_training`, e.g. ``"bundle"``). The version's source is
    ``runs:/<run_id>/<path>``: the registry points at the run's copy instead of holding a
    second one. The new version gets alias ``challenger`` (moved from the previous one)
    and the run's provenance tags; the champion is untouched until :func:`promote`.
    """
    _check_name(name)
    path = artifact_path_or_model
    if not isinstance(path, str) or "://" in path or ":/" in path:
        raise ValueError(
            f"register() takes the bundle's artifact path inside the run (like 'bundle'), got {path!r}: "
            "the registered thing is the run's ONNX bundle folder (see docs/registry.md)"
        )
    path = path.strip("/")
    client = _client(tracking_uri)
    run = client.get_run(run_id)
    if not path or not _artifact_exists(client, run_id, path):
        top = ", ".join(sorted(a.path for a in client.list_artifacts(run_id))) or "nothing"
        raise FileNotFoundError(f"run {run_id} has no artifact {path!r} to register (it has: {top})")
    _ensure_registered_model(client, name)
    version_tags = {t: run.data.tags[t] for t in REQUIRED_TAGS if t in run.data.tags}
    version_tags["artifact_path"] = path
    created = client.create_model_version(
        name=name,
        source=f"runs:/{run_id}/{path}",
        run_id=run_id,
        tags=version_tags,
        description=description,
    )
    version = int(created.version)
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    client.set_tag(run_id, f"registry.{name}.version", str(version))
    return version


def aliases(name: str, tracking_uri: str | None = None) -> dict[str, int]:
    """Alias -> version for ``name`` (empty when the model is not registered yet)."""
    from mlflow.exceptions import MlflowException

    _check_name(name)
    try:
        model = _client(tracking_uri).get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise
    return {alias: int(version) for alias, version in model.aliases.items()}


def promote(name: str, version: int, tracking_uri: str | None = None) -> int | None:
    """Move alias ``champion`` to ``version``; returns the previous champion's version (``None`` if none).

    ``challenger`` is left where it is (on the newest version). Promoting an older version
    is how a rollback is done. The version is tagged ``promoted_at`` (UTC) because MLflow
    keeps no history of alias moves.
    """
    _check_name(name)
    client = _client(tracking_uri)
    client.get_model_version(name, str(version))  # raises if there is no such version
    previous = aliases(name, tracking_uri).get(CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    client.set_model_version_tag(name, str(version), "promoted_at", datetime.now(UTC).isoformat(timespec="seconds"))
    return previous


def alias_info(name: str, alias: str, tracking_uri: str | None = None) -> dict[str, Any] | None:
    """What ``alias`` of ``name`` points at, or ``None``.

    Keys: ``name``, ``alias``, ``version``, ``aliases`` (all on that version), ``run_id``,
    ``source``, ``artifact_path``, ``description``, ``metrics`` (the run's, flattened),
    ``tags`` (the run's :data:`REQUIRED_TAGS`).
    """
    version = aliases(name, tracking_uri).get(alias)
    if version is None:
        return None
    client = _client(tracking_uri)
    mv = client.get_model_version(name, str(version))
    run = client.get_run(mv.run_id)
    return {
        "name": name,
        "alias": alias,
        "version": version,
        "aliases": sorted(mv.aliases),
        "run_id": mv.run_id,
        "source": mv.source,
        "artifact_path": mv.tags.get("artifact_path"),
        "description": mv.description,
        "metrics": dict(run.data.metrics),
        "tags": {t: run.data.tags.get(t) for t in REQUIRED_TAGS},
    }


def champion_info(name: str, tracking_uri: str | None = None) -> dict[str, Any] | None:
    """:func:`alias_info` for ``champion``: ``None`` before the first promotion."""
    return alias_info(name, CHAMPION, tracking_uri)


def download_champion_bundle(name: str, dst: Path, tracking_uri: str | None = None) -> Path:
    """Download the champion's bundle folder content into ``dst`` and return ``dst``.

    ``dst`` must be missing or empty: files of an older bundle mixed with the new one
    would make a model nobody trained. The version is pinned (not the alias) so a
    promotion during the download cannot mix two versions either.
    """

    info = champion_info(name, tracking_uri)
    if info is None:
        raise LookupError(f"{name} has no champion yet: promote a version first")
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise FileExistsError(f"{dst} is not empty; download the champion bundle into a new folder")
    dst.mkdir(parents=True, exist_ok=True)
    # A client bound to this store: ``models:/`` URIs resolve their run through the process-wide
    # tracking URI, which another start_run in the same process may have pointed elsewhere.
    client = _client(tracking_uri)
    with tempfile.TemporaryDirectory(dir=dst) as tmp:
        local = Path(client.download_artifacts(info["run_id"], info["artifact_path"], tmp))
        for item in local.iterdir():
            shutil.move(str(item), dst / item.name)
    return dst


# --------------------------------------------------------------------------- champion bundle


def champion_bundle(tracking_uri: str, cache: Path, name: str = DISPUTE_MODEL) -> Path | None:
    """The champion's bundle, downloaded once per version into ``cache/<name>-v<version>``; None without one.

    A tracking store that does not exist yet is not created: no champion. The
    download goes to a hidden sibling first and is renamed into place, so a
    reader never finds half a bundle.
    """
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        return None
    info = champion_info(name, tracking_uri)
    if info is None:
        return None
    target = Path(cache) / f"{name}-v{info['version']}"
    if not (target / "manifest.json").is_file():
        staging = Path(cache) / f".{name}-v{info['version']}.part-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        download_champion_bundle(name, staging, tracking_uri)
        try:
            staging.replace(target)
        except OSError:  # another process put the same version in place first
            if not (target / "manifest.json").is_file():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- curves


def _check_series(where: str, block: Any, keys: Iterable[str], *, unit: bool) -> int:
    if not isinstance(block, Mapping):
        raise ValueError(f"curves: {where} must be an object")
    lengths = set()
    for key in keys:
        values = block.get(key)
        if not isinstance(values, list) or not values:
            raise ValueError(f"curves: {where}.{key} must be a non-empty list of numbers")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"curves: {where}.{key} holds a value that is not a finite number")
            if unit and not 0.0 <= v <= 1.0:
                raise ValueError(f"curves: {where}.{key} holds a value outside [0, 1]")
        lengths.add(len(values))
    if len(lengths) != 1:
        raise ValueError(f"curves: {where} lists differ in length ({', '.join(keys)})")
    return lengths.pop()


def validate_curves(curves: Any) -> None:
    """Check the ``curves.json`` format (docs/registry.md) and raise ``ValueError`` naming the bad place.

    ``{task: {scorer: {"pr": {"precision": [...], "recall": [...]},
    "calibration": {"predicted": [...], "observed": [...]}}}}``; each scorer has at least one
    of ``pr`` and ``calibration``; optional ``pr.thresholds`` (any finite numbers) and
    ``calibration.n`` (rows per bin, as :func:`models.evaluation.calibration_curve` gives).
    Checked when logged so a bad file fails the training run, not the notebook weeks later.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves: top level must be a non-empty object of tasks (like 'escalation')")
    for task, scorers in curves.items():
        if not isinstance(scorers, Mapping) or not scorers:
            raise ValueError(f"curves: {task} must be a non-empty object of scorers (like 'model', 'rules')")
        for scorer, blocks in scorers.items():
            where = f"{task}.{scorer}"
            if not isinstance(blocks, Mapping) or not ({"pr", "calibration"} & set(blocks)):
                raise ValueError(f"curves: {where} needs 'pr' and/or 'calibration'")
            if "pr" in blocks:
                _check_series(f"{where}.pr", blocks["pr"], ("precision", "recall"), unit=True)
                if "thresholds" in blocks["pr"]:
                    _check_series(f"{where}.pr", blocks["pr"], ("thresholds",), unit=False)
            if "calibration" in blocks:
                n = _check_series(f"{where}.calibration", blocks["calibration"], ("predicted", "observed"), unit=True)
                if "n" in blocks["calibration"]:
                    counts = blocks["calibration"]["n"]
                    if not isinstance(counts, list) or len(counts) != n:
                        raise ValueError(f"curves: {where}.calibration.n must hold one row count per bin")
                    _check_series(f"{where}.calibration", blocks["calibration"], ("n",), unit=False)
                    if any(c < 0 for c in counts):
                        raise ValueError(f"curves: {where}.calibration.n holds a negative count")


def load_curves(run_id: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """The ``curves.json`` a training run logged, validated (:func:`validate_curves`)."""
    client = _client(tracking_uri)
    if not _artifact_exists(client, run_id, CURVES_FILE):
        raise FileNotFoundError(f"run {run_id} has no {CURVES_FILE}")
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, CURVES_FILE, tmp)
        curves = json.loads(Path(local).read_text(encoding="utf-8"))
    validate_curves(curves)
    return curves
