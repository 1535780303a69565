"""The registered models as MLflow pyfunc models: what ``mlflow.pyfunc.load_model`` gives a data scientist.

Every version of ``yujing-escalation`` and ``yujing-dispute`` is an MLflow
model (``mlflow.pyfunc.log_model``) whose one artifact is the run's ONNX
bundle (``artifacts/bundle/``: graphs, manifest, calibration, featuriser).
The Python classes here only read that bundle with onnxruntime, the way the
ranking and the service do, so ``mlflow.pyfunc.load_model(
"models:/yujing-escalation@champion").predict(snapshots)`` gives the
ranking's numbers, and serving keeps downloading the very same bundle folder
(``models.registry.download_champion_bundle``).

- **escalation**: input one row per household snapshot, the model's feature
  columns by name (any extra columns, like ``household_id``, are ignored);
  output ``score`` (raw P(escalation) from the ONNX graph: it orders the
  lists), ``probability`` (calibrated: it sets levels) and ``level`` (the
  level that probability reaches under the thresholds in force at training,
  ``model_config["level_thresholds"]``; the ranking's *published* level also
  weighs the scoring rules, evidence and station capacity, docs/ranking.md).
- **dispute**: input ``narrative`` (text) and optional ``received_at``;
  output what :meth:`models.dispute.DisputeModel.predict` gives (is_dispute,
  dispute_score, category, p_<class>, ood ...), the featuriser rebuilt from the
  bundle's provenance.

This module never imports ``serving`` (data flows models -> serving): the
few lines that run a bundle's graphs with onnxruntime are repeated here.
The classes are pickled by reference, so loading needs the yujing package
importable (the project's virtual environment); see docs/registry.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from models import registry  # first: it keeps MLflow private (telemetry off) before mlflow is imported

# isort: split

import mlflow.pyfunc
import numpy as np
import pandas as pd

from features.matrix import float32_matrix
from models.bundle import ModelEntry, load_manifest, read_model_bytes
from models.levels import threshold_levels

ESCALATION = "escalation"
DISPUTE = "dispute"
DISPUTE_CATEGORY = "dispute_category"
BUNDLE_ARTIFACT = "bundle"
#: Where the bundle sits inside a logged model (``registry.register`` tags it as ``artifact_path``).
BUNDLE_PATH = registry.BUNDLE_IN_MODEL
#: The model names under the run (``name=`` of ``log_model``): the logged models' page lists these.
LOGGED_NAMES = {registry.ESCALATION_MODEL: "escalation", registry.DISPUTE_MODEL: "dispute"}
ESCALATION_OUTPUTS = ("score", "probability", "level")
#: Quantiles of the training snapshots shown as the input example: a profile, no real household's row.
EXAMPLE_QUANTILES = (0.5, 0.9, 0.99)
#: A made-up call (no name, number or address): the dispute model's input example.
EXAMPLE_NARRATIVE = "报警称：楼上邻居装修噪音扰民，双方在楼道发生口角，现场无人受伤。"
EXAMPLE_RECEIVED_AT = "2024-06-01 20:30:00"

# What the classes import at load time, pinned to the versions they were logged with. Passed
# explicitly: without them MLflow infers requirements by loading the model in a subprocess (slow).
_ESCALATION_PACKAGES = ("mlflow", "numpy", "pandas", "onnx", "onnxruntime")
_DISPUTE_PACKAGES = (*_ESCALATION_PACKAGES, "lightgbm", "scikit-learn", "pyahocorasick", "jieba", "pandera")


class PyfuncInputError(ValueError):
    """A DataFrame the model cannot score: the message names the missing column and the fix."""


def pip_requirements(packages: Sequence[str]) -> list[str]:
    """``name==installed version`` for each package (the name alone when it is not installed)."""
    out = []
    for name in packages:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


def _session(entry: ModelEntry) -> Any:
    """One onnxruntime session on the verified bytes (one thread: tree ensembles, see docs/onnx.md)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(read_model_bytes(entry), options, providers=["CPUExecutionProvider"])


def _run(session: Any, entry: ModelEntry, x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        return np.empty((0, len(entry.classes)), np.float32)
    return session.run([entry.output_name], {entry.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def feature_matrix(frame: pd.DataFrame, feature_names: Sequence[str]) -> np.ndarray:
    """The snapshot columns in the model's order as float32 (what the ranking feeds the graph)."""
    missing = [name for name in feature_names if name not in frame.columns]
    if missing:
        raise PyfuncInputError(
            f"the DataFrame lacks {len(missing)} of the model's {len(feature_names)} feature columns "
            f"(first: {missing[:3]}); build snapshots with features.snapshots (the model's signature lists them all)"
        )
    return float32_matrix(frame, feature_names)


class EscalationPyfunc(mlflow.pyfunc.PythonModel):
    """Household escalation risk from the bundle's ``escalation`` graph and its calibration."""

    def load_context(self, context: Any) -> None:
        """Open the bundle once per load: verify its hashes, build the session."""
        manifest = load_manifest(context.artifacts[BUNDLE_ARTIFACT])
        self.entry = manifest.models[ESCALATION]
        self.session = _session(self.entry)
        config = dict(context.model_config or {})
        self.thresholds = config.get("level_thresholds")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """``score``, ``probability`` and ``level`` for every row of ``model_input`` (same order)."""
        x = feature_matrix(pd.DataFrame(model_input), self.entry.feature_names)
        proba = _run(self.session, self.entry, x)
        score = (proba[:, 1] if proba.shape[1] == 2 else 1.0 - proba[:, 0]).astype(np.float64)
        calibration = self.entry.calibration
        probability = calibration.apply(score) if calibration is not None else score.copy()
        level = threshold_levels(probability, self.thresholds) if self.thresholds else np.full(len(x), None)
        return pd.DataFrame({"score": score, "probability": probability, "level": pd.Series(level, dtype=object)})


class DisputePyfunc(mlflow.pyfunc.PythonModel):
    """Dispute type of incident narratives: the bundle's featuriser, gate and category graphs."""

    def load_context(self, context: Any) -> None:
        """Rebuild the featuriser from the bundle's provenance and open both graphs."""
        from models.dispute import CLASSES, DisputeModel, combine
        from models.text_features import IncidentFeaturizer

        manifest = load_manifest(context.artifacts[BUNDLE_ARTIFACT])
        gate, category = manifest.models[DISPUTE], manifest.models[DISPUTE_CATEGORY]
        state = manifest.provenance.get("featurizers", {}).get(DISPUTE)
        if state is None:
            raise PyfuncInputError(f"bundle {manifest.path} has no dispute featuriser; retrain with yujing train")
        sessions = (_session(gate), _session(category))

        class OnnxDisputeModel(DisputeModel):
            def predict_proba(self, x: np.ndarray) -> np.ndarray:
                return combine(_run(sessions[0], gate, x)[:, 1], _run(sessions[1], category, x))

        self.model = OnnxDisputeModel(
            booster=None,  # type: ignore[arg-type]  # the ONNX graphs answer instead
            featurizer=IncidentFeaturizer.from_dict(state),
            threshold=float(gate.thresholds["dispute"]),
            ood_threshold=float(gate.thresholds["ood"]),
            classes=CLASSES,
        )

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One row per narrative, the columns of :meth:`models.dispute.DisputeModel.predict`."""
        frame = pd.DataFrame(model_input)
        if "narrative" not in frame.columns:
            raise PyfuncInputError("the DataFrame needs a 'narrative' column (the call's text)")
        received = frame["received_at"].tolist() if "received_at" in frame.columns else None
        return self.model.predict(frame["narrative"].astype(str).tolist(), received)


# --------------------------------------------------------------------------- signatures and examples


def escalation_signature(feature_names: Sequence[str]) -> Any:
    """Inputs: every feature as a named double column; outputs: score, probability (double), level (string).

    Double, not float: MLflow upcasts float32 snapshot columns safely but refuses
    float64 -> float32, and the model casts to float32 itself, as the ranking does.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("double", name) for name in feature_names])
    outputs = Schema(
        [ColSpec("double", "score"), ColSpec("double", "probability"), ColSpec("string", "level", required=False)]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def dispute_signature() -> Any:
    """Inputs: ``narrative`` (string) and optional ``received_at`` (datetime); outputs: the predict columns."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from models.dispute import CLASSES

    inputs = Schema([ColSpec("string", "narrative"), ColSpec("datetime", "received_at", required=False)])
    outputs = Schema(
        [
            ColSpec("boolean", "is_dispute"),
            ColSpec("double", "dispute_score"),
            ColSpec("string", "category", required=False),
            ColSpec("string", "top_category"),
            *(ColSpec("double", f"p_{c}") for c in CLASSES),
            ColSpec("double", "category_confidence"),
            ColSpec("double", "ood_score"),
            ColSpec("boolean", "ood"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def escalation_example(frame: pd.DataFrame, feature_names: Sequence[str]) -> pd.DataFrame:
    """Per-feature quantiles of the training snapshots (:data:`EXAMPLE_QUANTILES`), one row each.

    A profile of the population, never a real household's row: each value is some
    snapshot's value (``lower`` interpolation), but a row mixes many households.
    """
    example = frame[list(feature_names)].astype(np.float64).quantile(list(EXAMPLE_QUANTILES), interpolation="lower")
    return example.reset_index(drop=True)


def dispute_example() -> pd.DataFrame:
    """One made-up narrative (:data:`EXAMPLE_NARRATIVE`): no name, number or address."""
    return pd.DataFrame({"narrative": [EXAMPLE_NARRATIVE], "received_at": [pd.Timestamp(EXAMPLE_RECEIVED_AT)]})


# --------------------------------------------------------------------------- logging


def _guard_frame(label: str, frame: pd.DataFrame) -> None:
    """The personal-data guard on what becomes an artifact (the example) or metadata (a dataset's schema)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{label}.json"
        text = json.dumps({"columns": [str(c) for c in frame.columns], "rows": frame.astype(str).values.tolist()})
        path.write_text(text, encoding="utf-8")
        registry.assert_no_personal_data(path)


_SCHEMA_TYPES = {"f": "double", "i": "long", "u": "long", "b": "boolean", "M": "datetime"}


def frame_schema(frame: pd.DataFrame) -> Any:
    """The MLflow schema of ``frame`` from its dtypes, one vectorised null check per column.

    MLflow's own inference tests every value in Python (seconds per million cells);
    a training frame has millions. Float32 columns are declared double, as in the signature.
    """
    from mlflow.types import ColSpec, Schema

    return Schema(
        [
            ColSpec(_SCHEMA_TYPES.get(frame[c].dtype.kind, "string"), str(c), required=not frame[c].isna().any())
            for c in frame.columns
        ]
    )


def _dataset(frame: pd.DataFrame, name: str, targets: str | None) -> Any:
    """An MLflow dataset of ``frame``: MLflow stores its schema, row count and digest, never its rows.

    The source is the code that logged it (user, entry point: our own source tags, without
    MLflow's git probing); the data itself is named by the input's ``data_fingerprint`` tag.
    """
    from functools import cached_property

    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.pandas_dataset import PandasDataset

    class _Dataset(PandasDataset):
        @cached_property
        def schema(self) -> Any:
            return frame_schema(self.df)

    _guard_frame(name, frame.head(0))
    source = CodeDatasetSource(tags=registry.source_tags())
    return _Dataset(frame, source=source, targets=targets, name=name, digest=frame_digest(frame))


def frame_digest(frame: pd.DataFrame) -> str:
    """8 hex of SHA-256 over every row's hash and the column names (MLflow's own digest reads 10,000 rows)."""
    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(rows.tobytes() + "\n".join(map(str, frame.columns)).encode("utf-8")).hexdigest()[:8]


def log_models(
    bundle_dir: Path,
    snapshots: pd.DataFrame,
    feature_names: Sequence[str],
    labels: np.ndarray,
    incidents: pd.DataFrame,
    level_thresholds: Mapping[str, float],
    tags: Mapping[str, str],
) -> dict[str, str]:
    """Log both models of a bundle to the active run; returns registered-model name -> logged model id.

    ``snapshots`` (the escalation training frame) gives the input example's
    quantiles and, with ``labels``, the dataset input; ``incidents`` gives the
    dispute model's dataset input from its non-text columns (``incident_id``,
    ``received_at``, ``station_id``, the category codes): the narrative and the
    caller's fields never reach MLflow, not even as a schema.
    """
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("log_models() needs an active run: call it inside `with registry.start_run(...)`")
    bundle_dir = Path(bundle_dir)
    registry.assert_no_personal_data(bundle_dir)
    example = escalation_example(snapshots, feature_names)
    _guard_frame("escalation_example", example)
    _guard_frame("dispute_example", dispute_example())
    fingerprint = str(tags.get("data_fingerprint", ""))
    columns = [c for c in ("snapshot_date",) if c in snapshots] + list(feature_names)
    training = snapshots[columns].assign(label=np.asarray(labels, dtype=np.int8))
    codes = [c for c in ("incident_id", "received_at", "station_id", "category_l1", "category_l2") if c in incidents]
    mlflow.log_inputs(
        [
            _dataset(training, "escalation-snapshots", "label"),
            _dataset(incidents[codes], "dispute-incidents", None),
        ],
        contexts=["training", "training"],
        tags_list=[
            {"data_fingerprint": fingerprint, "model": registry.ESCALATION_MODEL},
            {"data_fingerprint": fingerprint, "model": registry.DISPUTE_MODEL},
        ],
    )
    model_tags = {str(k): str(v) for k, v in tags.items()}
    with _quiet_log_model():
        return _log_both(bundle_dir, feature_names, example, level_thresholds, model_tags)


@contextlib.contextmanager
def _quiet_log_model() -> Iterator[None]:
    """Keep ``yujing train``'s output to what an operator needs while the models are logged.

    ``log_model`` warns on every call that a pickled ``python_model`` can run code (ours
    holds a class reference and no state), announces its input-example check, and its
    input-example code trips a pandas 4 deprecation (MLflow's, not ours to fix).
    """
    logger = logging.getLogger("mlflow.pyfunc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mlflow\.")
            yield
    finally:
        logger.setLevel(level)


def _log_both(
    bundle_dir: Path,
    feature_names: Sequence[str],
    example: pd.DataFrame,
    level_thresholds: Mapping[str, float],
    model_tags: dict[str, str],
) -> dict[str, str]:
    escalation = mlflow.pyfunc.log_model(
        name=LOGGED_NAMES[registry.ESCALATION_MODEL],
        python_model=EscalationPyfunc(),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        signature=escalation_signature(feature_names),
        input_example=example,
        model_config={"level_thresholds": {str(k): float(v) for k, v in level_thresholds.items()}},
        pip_requirements=pip_requirements(_ESCALATION_PACKAGES),
        code_paths=None,  # the classes are the installed yujing package's (module docstring)
        tags=model_tags,
    )
    dispute = mlflow.pyfunc.log_model(
        name=LOGGED_NAMES[registry.DISPUTE_MODEL],
        python_model=DisputePyfunc(),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        signature=dispute_signature(),
        input_example=dispute_example(),
        pip_requirements=pip_requirements(_DISPUTE_PACKAGES),
        code_paths=None,
        tags=model_tags,
    )
    return {registry.ESCALATION_MODEL: escalation.model_id, registry.DISPUTE_MODEL: dispute.model_id}
