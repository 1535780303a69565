"""The ONNX bundle: the one artifact that goes from training to serving.

A bundle is a folder::

    <bundle>/
      manifest.json        # what is in it, where it came from, how to use it
      dispute_type.onnx    # one file per model
      escalation.onnx

``manifest.json`` lists, per model, its file and SHA-256, the feature names
in input order, the classes in output order, the calibration map, the
warning thresholds and the parity report of the export; and, once for the
bundle, the provenance the caller passes in (code version, data fingerprint,
lexicon version, parameters, run id...). Serving needs nothing else: no
training code, no LightGBM, no scikit-learn.

Writing is atomic: everything goes into a hidden temporary folder next to the
target, is flushed to disk, and the folder is renamed into place in one
``rename``. A crash leaves either no bundle or a whole one, never half of one.
Bundles are immutable: writing over an existing one is refused unless asked
for explicitly.

Loading checks what a copy or a hand edit can break (a missing file, a
changed file, a feature list that does not match the model) and says which
file is wrong and what to do about it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.calibration import Calibration

if TYPE_CHECKING:  # imported where a graph is written or parsed: ~0.9 s (ml_dtypes) that scoring does not need
    import onnx

MANIFEST = "manifest.json"
FORMAT = "yujing-onnx-bundle"
FORMAT_VERSION = 1
REQUIRED_PROVENANCE = ("code_version", "data_fingerprint", "lexicon_version", "params")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class BundleError(Exception):
    """A bundle cannot be written or loaded; the message names the file and the fix."""


@dataclass(frozen=True)
class BundleModel:
    """One model to put into a bundle, with everything serving needs to use it correctly."""

    model: onnx.ModelProto
    feature_names: tuple[str, ...]
    classes: tuple[str | int, ...]
    calibration: Calibration | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    parity: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ModelEntry:
    """One model as listed in a loaded, verified manifest."""

    name: str
    path: Path
    sha256: str
    feature_names: tuple[str, ...]
    classes: tuple[str | int, ...]
    calibration: Calibration | None
    thresholds: dict[str, float]
    input_name: str
    output_name: str
    parity: dict[str, Any] | None

    @property
    def n_features(self) -> int:
        """Number of input columns the model expects."""
        return len(self.feature_names)


@dataclass(frozen=True)
class Manifest:
    """A loaded, verified bundle manifest."""

    path: Path
    provenance: dict[str, Any]
    models: dict[str, ModelEntry]
    raw: dict[str, Any]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _io_shapes(model: onnx.ModelProto) -> tuple[str, int | None, str, int | None]:
    """(input name, feature count, output name, class count) from the graph; None where the dim is symbolic."""

    def last_dim(value: onnx.ValueInfoProto) -> int | None:
        dims = value.type.tensor_type.shape.dim
        return dims[-1].dim_value if dims and dims[-1].HasField("dim_value") else None

    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise BundleError(
            f"graph {model.graph.name!r} has {len(model.graph.input)} inputs and {len(model.graph.output)} outputs;"
            " a bundle model takes one input and gives one output (export with models.onnx_export.to_onnx)"
        )
    inp, out = model.graph.input[0], model.graph.output[0]
    return inp.name, last_dim(inp), out.name, last_dim(out)


def _entry_dict(name: str, item: BundleModel, data: bytes) -> dict[str, Any]:
    """Manifest entry for one model, after checking it against its own graph."""
    if not _NAME.match(name):
        raise BundleError(f"model name {name!r}: use lower-case letters, digits and '_' (it becomes {name}.onnx)")
    input_name, n_features, output_name, n_classes = _io_shapes(item.model)
    features = list(item.feature_names)
    if len(set(features)) != len(features):
        raise BundleError(f"model {name!r}: duplicate feature names; each input column needs its own name")
    if n_features is not None and n_features != len(features):
        raise BundleError(
            f"model {name!r}: the graph takes {n_features} features but {len(features)} feature names were given;"
            " pass the feature names in the order the model was trained on"
        )
    if n_classes is not None and n_classes != len(item.classes):
        raise BundleError(
            f"model {name!r}: the graph outputs {n_classes} class probabilities but {len(item.classes)} classes"
            " were given; pass the classes in output order"
        )
    return {
        "file": f"{name}.onnx",
        "sha256": _sha256(data),
        "bytes": len(data),
        "input": input_name,
        "output": output_name,
        "features": features,
        "classes": list(item.classes),
        "calibration": item.calibration.to_dict() if item.calibration is not None else None,
        "thresholds": {str(k): float(v) for k, v in item.thresholds.items()},
        "opset": {imp.domain or "ai.onnx": int(imp.version) for imp in item.model.opset_import},
        "parity": dict(item.parity) if item.parity is not None else None,
    }


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bundle(
    out_dir: str | os.PathLike[str],
    models: Mapping[str, BundleModel],
    provenance: Mapping[str, Any],
    *,
    overwrite: bool = False,
    files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a bundle atomically and return its path.

    ``provenance`` must hold at least ``code_version``, ``data_fingerprint``,
    ``lexicon_version`` and ``params`` (anything else JSON-serialisable is
    kept too): a model whose origin cannot be traced is not deployable.
    With ``overwrite=True`` an existing bundle is replaced by two renames; the
    old one is removed only after the new one is in place. ``files``: other
    files the bundle carries (e.g. ``drift_reference.json``), listed under
    ``files`` in the manifest with their SHA-256 and checked on load like
    the models; a bundle without them (older ones) loads as before.
    """
    out = Path(out_dir).resolve()
    if not models:
        raise BundleError(f"{out}: no models given; a bundle holds at least one model")
    missing = [k for k in REQUIRED_PROVENANCE if k not in provenance]
    if missing:
        raise BundleError(f"{out}: provenance lacks {missing}; pass them so the bundle can be traced to its origin")
    if out.exists() and not overwrite:
        raise BundleError(f"{out} already exists; bundles are immutable: write to a new folder or pass overwrite=True")
    out.parent.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        entries: dict[str, Any] = {}
        for name in sorted(models):
            item = models[name]
            data = item.model.SerializeToString(deterministic=True)
            entries[name] = _entry_dict(name, item, data)
            _write_file(tmp / entries[name]["file"], data)
        extra = _write_extra_files(tmp, files or {}, entries)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "provenance": dict(provenance),
            "models": entries,
            **({"files": extra} if extra else {}),
        }
        try:
            text = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{out}: provenance or parity is not plain JSON ({exc})") from exc
        _write_file(tmp / MANIFEST, (text + "\n").encode("utf-8"))  # last: its presence marks a complete bundle
        _fsync_dir(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / "bundle")
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old / "bundle", out)  # put the previous bundle back
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)  # the replaced bundle, or an empty folder after a restore
        else:
            os.rename(tmp, out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_manifest(bundle_dir: str | os.PathLike[str], *, verify: bool = True, graphs: bool = True) -> Manifest:
    """Read ``manifest.json`` and check every model file against it.

    With ``verify`` (the default) each file's SHA-256 is recomputed and its
    graph's input width compared with the feature list; the cost is one read
    of each file, which serving does anyway. ``graphs=False`` leaves the widths
    to the caller (:func:`check_widths`): the scorer reads them from the sessions
    it builds, without parsing each graph with the onnx package (~0.9 s to import).
    """
    root = Path(bundle_dir).resolve()
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(
            f"{manifest_path} is missing: {root} is not a bundle (or an interrupted copy);"
            " copy the whole bundle folder again or re-export it with models.bundle.write_bundle"
        )
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON ({exc}); copy the bundle again or re-export it") from exc
    if raw.get("format") != FORMAT or raw.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path}: format {raw.get('format')!r} version {raw.get('format_version')!r};"
            f" this code reads {FORMAT!r} version {FORMAT_VERSION}: re-export with the matching code version"
        )
    if not isinstance(raw.get("models"), dict) or not raw["models"]:
        raise BundleError(f"{manifest_path} lists no models; re-export the bundle")

    models: dict[str, ModelEntry] = {}
    for name, spec in raw["models"].items():
        models[name] = _load_entry(root, manifest_path, name, spec, verify, graphs)
    for name in raw.get("files") or {}:
        if verify:
            read_bundle_file(root, name, raw)
    return Manifest(path=root, provenance=dict(raw.get("provenance", {})), models=models, raw=raw)


def _load_entry(
    root: Path, manifest_path: Path, name: str, spec: dict[str, Any], verify: bool, graphs: bool = True
) -> ModelEntry:
    try:
        file_name = str(spec["file"])
        features = tuple(str(f) for f in spec["features"])
        classes = tuple(spec["classes"])
        sha = str(spec["sha256"])
    except (KeyError, TypeError) as exc:
        raise BundleError(f"{manifest_path}: entry for model {name!r} lacks {exc}; re-export the bundle") from exc
    path = root / file_name
    if path.parent != root:
        raise BundleError(f"{manifest_path}: model {name!r} points outside the bundle ({file_name}); re-export")
    if not path.is_file():
        raise BundleError(
            f"{path} is missing (listed in {MANIFEST} for model {name!r});"
            " copy the whole bundle folder, never single files, or re-export the bundle"
        )
    try:
        calibration = Calibration.from_dict(spec["calibration"]) if spec.get("calibration") else None
    except ValueError as exc:
        raise BundleError(f"{manifest_path}: calibration of model {name!r} is invalid ({exc}); re-export") from exc

    if verify:
        data = path.read_bytes()
        actual = _sha256(data)
        if actual != sha:
            raise BundleError(
                f"{path}: sha256 {actual[:12]}… does not match {sha[:12]}… in {MANIFEST};"
                " the file was changed or truncated after export: copy the bundle again or re-export it"
            )
        if graphs:
            import onnx

            try:
                model = onnx.load_from_string(data)
            except Exception as exc:  # protobuf raises its own DecodeError
                raise BundleError(f"{path} is not an ONNX model ({exc}); re-export the bundle") from exc
            _, n_features, _, n_classes = _io_shapes(model)
            check_widths(path, name, features, classes, n_features, n_classes)
    return ModelEntry(
        name=name,
        path=path,
        sha256=sha,
        feature_names=features,
        classes=classes,
        calibration=calibration,
        thresholds={str(k): float(v) for k, v in (spec.get("thresholds") or {}).items()},
        input_name=str(spec.get("input", "input")),
        output_name=str(spec.get("output", "probabilities")),
        parity=spec.get("parity"),
    )


def check_widths(
    path: Path,
    name: str,
    features: Sequence[str],
    classes: Sequence[Any],
    n_features: int | None,
    n_classes: int | None,
) -> None:
    """A graph's input and output widths (None: symbolic) against the manifest's features and classes."""
    if n_features is not None and n_features != len(features):
        raise BundleError(
            f"{path} takes {n_features} features but {MANIFEST} lists {len(features)} for model {name!r};"
            " manifest and model come from different exports: re-export the bundle"
        )
    if n_classes is not None and n_classes != len(classes):
        raise BundleError(
            f"{path} outputs {n_classes} classes but {MANIFEST} lists {len(classes)} for model {name!r};"
            " re-export the bundle"
        )


def read_model_bytes(entry: ModelEntry) -> bytes:
    """The model file's bytes, checked against the manifest's SHA-256.

    Serving builds its sessions from exactly these bytes, so what was verified
    is what runs (no window between the check and the load).
    """
    try:
        data = entry.path.read_bytes()
    except FileNotFoundError as exc:
        raise BundleError(f"{entry.path} is missing; copy the whole bundle folder again or re-export it") from exc
    actual = _sha256(data)
    if actual != entry.sha256:
        raise BundleError(
            f"{entry.path}: sha256 {actual[:12]}… does not match {entry.sha256[:12]}… in {MANIFEST};"
            " the file was changed after export: copy the bundle again or re-export it"
        )
    return data


def _write_extra_files(tmp: Path, files: Mapping[str, bytes], entries: Mapping[str, Any]) -> dict[str, Any]:
    """Write the bundle's non-model files; their manifest entries (SHA-256 and size)."""
    taken = {entry["file"] for entry in entries.values()} | {MANIFEST}
    out: dict[str, Any] = {}
    for name in sorted(files):
        if "/" in name or name.startswith(".") or name in taken:
            raise BundleError(f"bundle file name {name!r}: use a plain file name other than {sorted(taken)}")
        _write_file(tmp / name, files[name])
        out[name] = {"sha256": _sha256(files[name]), "bytes": len(files[name])}
    return out


def read_bundle_file(
    bundle_dir: str | os.PathLike[str], name: str, raw: Mapping[str, Any] | None = None
) -> bytes | None:
    """A non-model file of a bundle, checked against the manifest; None when the manifest does not list it.

    Older bundles list no files: their readers get None and carry on without (drift says "no reference").
    """
    root = Path(bundle_dir).resolve()
    if raw is None:
        try:
            raw = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(
                f"{root / MANIFEST} cannot be read ({exc}); copy the bundle again or re-export it"
            ) from exc
    spec = (raw.get("files") or {}).get(name)
    if spec is None:
        return None
    path = root / name
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise BundleError(f"{path} is missing (listed in {MANIFEST}); copy the whole bundle folder again") from exc
    if _sha256(data) != spec.get("sha256"):
        raise BundleError(f"{path}: sha256 does not match {MANIFEST}; the file was changed after export: re-export")
    return data
