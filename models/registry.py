"""Experiment tracking, model registry and champion/challenger promotion (MLflow 3).

Every training run is recorded in the MLflow experiment ``yujing``: its
parameters, metrics, provenance tags (code, data, lexicon, feature list),
artifacts (report, ``curves.json``, the ONNX bundle) and, since every
registered version is an MLflow model, the two logged pyfunc models
(``models/pyfunc.py``: each holds the bundle, with a signature, an input
example and the training data as dataset inputs). A logged model is
registered as a version of ``yujing-dispute`` or ``yujing-escalation``
(source ``models:/<model_id>``); the alias ``challenger`` always names the
newest version and ``champion`` the one serving uses. A version only becomes
champion through a measured decision (``models/promotion.py``: the promotion
rule and the escalation model's gate against the rules and the champion), and
that decision is written back to the run.

Serving and the ranking never run the pyfunc: they download the bundle folder
inside the champion's model (``artifacts/bundle``) and score it with
onnxruntime directly; a data scientist loads the same version with
``mlflow.pyfunc.load_model("models:/yujing-escalation@champion")``. One
bundle, two doors, the same numbers. See docs/registry.md.

A local SQLite store survives a move: MLflow writes absolute artifact paths
into its database, so :func:`open_store` (called by every function here)
rewrites them when the database is opened from another folder than the one
it remembers.

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
import numbers
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

# The personal-data guard and the curves format have their own homes; callers may keep using them from here.
from models.curves import validate_curves
from models.personal_data import PersonalDataError, assert_no_personal_data, assert_no_personal_values  # noqa: F401
from models.tracking_store import relocate

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
#: Where the ONNX bundle sits inside a registered MLflow model (``models.pyfunc.BUNDLE_PATH``).
BUNDLE_IN_MODEL = "artifacts/bundle"

_DESCRIPTIONS = {
    DISPUTE_MODEL: "Incident dispute type (LightGBM exported to ONNX). Versions are MLflow pyfunc models "
    "holding the ONNX bundle (artifacts/bundle); input: narrative, received_at.",
    ESCALATION_MODEL: "Household escalation risk, 民转刑 (LightGBM exported to ONNX). Versions are MLflow pyfunc "
    "models holding the ONNX bundle (artifacts/bundle); input: snapshot feature columns.",
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
    open_store(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


# --------------------------------------------------------------------------- a store that survives a move


def open_store(tracking_uri: str | None = None) -> str:
    """Make a local SQLite store's stored paths point where it is now; returns the tracking URI.

    MLflow writes absolute artifact paths into its database; opened from another folder
    than the one it remembers (``var/`` copied or moved with ``mlflow.db`` and
    ``mlartifacts``), the store's paths are rewritten (:mod:`models.tracking_store`).
    Every function here calls it (once per store and process); a notebook that goes to
    MLflow directly calls it first (docs/registry.md). Other URIs are returned as they are.
    """
    uri = _resolve_uri(tracking_uri)
    relocate(uri, EXPERIMENT, ARTIFACT_DIR)
    return uri


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


def source_tags() -> dict[str, str]:
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
    run = client.create_run(experiment_id, run_name=run_name, tags=source_tags())
    with mlflow.start_run(run_id=run.info.run_id) as active:
        yield active


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
    assert_no_personal_values("params", flat_params)
    assert_no_personal_values("tags", str_tags)
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


def _logged_model(client: MlflowClient, run_id: str, model_id: str) -> Any:
    """The logged model ``model_id`` of ``run_id``, with a message naming it when it is missing or foreign."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_logged_model(model_id)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            raise
        raise FileNotFoundError(f"no logged model {model_id!r} in this store; log it with models.pyfunc") from None
    if model.source_run_id != run_id:
        raise ValueError(f"logged model {model_id} was logged by run {model.source_run_id}, not by run {run_id}")
    return model


def register(
    run_id: str, name: str, artifact_path_or_model: str, description: str, tracking_uri: str | None = None
) -> int:
    """Register a model of ``run_id`` as a new version of ``name``; returns the version.

    ``artifact_path_or_model`` is either ``models:/<model_id>``, an MLflow model the run
    logged (``models.pyfunc.log_models``: a pyfunc holding the ONNX bundle, what the
    training flow registers), or the bundle folder's path inside the run (``"bundle"``:
    a plain bundle, loadable by serving but not by ``mlflow.pyfunc``). The version's
    source is ``models:/<model_id>`` or ``runs:/<run_id>/<path>``: the registry points
    at the logged copy instead of holding a second one; its ``artifact_path`` tag says
    where the bundle is inside that source. The new version gets alias ``challenger``
    (moved from the previous one) and the run's provenance tags; the champion is
    untouched until :func:`promote`.
    """
    _check_name(name)
    path = artifact_path_or_model
    if not isinstance(path, str):
        raise ValueError(f"register() takes 'models:/<model_id>' or the bundle's path inside the run, got {path!r}")
    client = _client(tracking_uri)
    run = client.get_run(run_id)
    model_id = None
    if path.startswith("models:/"):
        model_id = path.removeprefix("models:/").strip("/")
        _logged_model(client, run_id, model_id)
        source, bundle_path = f"models:/{model_id}", BUNDLE_IN_MODEL
    elif "://" in path or ":/" in path:
        raise ValueError(
            f"register() takes 'models:/<model_id>' or the bundle's artifact path inside the run (like 'bundle'), "
            f"got {path!r} (see docs/registry.md)"
        )
    else:
        path = path.strip("/")
        if not path or not _artifact_exists(client, run_id, path):
            top = ", ".join(sorted(a.path for a in client.list_artifacts(run_id))) or "nothing"
            raise FileNotFoundError(f"run {run_id} has no artifact {path!r} to register (it has: {top})")
        source, bundle_path = f"runs:/{run_id}/{path}", path
    _ensure_registered_model(client, name)
    version_tags = {t: run.data.tags[t] for t in REQUIRED_TAGS if t in run.data.tags}
    version_tags["artifact_path"] = bundle_path
    created = client.create_model_version(
        name=name,
        source=source,
        run_id=run_id,
        tags=version_tags,
        description=description,
        model_id=model_id,
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
    ``source`` (``models:/<model_id>`` or ``runs:/<run_id>/<path>``), ``model_id`` (the
    logged MLflow model, ``None`` for a plain run folder), ``artifact_path`` (the bundle
    inside the source), ``description``, ``metrics`` (the run's, flattened), ``tags``
    (the run's :data:`REQUIRED_TAGS`).
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
        "model_id": mv.source.removeprefix("models:/") if mv.source.startswith("models:/") else None,
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
        if info["model_id"]:  # the bundle inside the registered MLflow model (models/pyfunc.py)
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            location = client.get_logged_model(info["model_id"]).artifact_location
            local = Path(get_artifact_repository(location).download_artifacts(info["artifact_path"], tmp))
        else:
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
