"""Scoring speed: onnxruntime (through the serving scorer) vs native LightGBM ``Booster.predict``.

Run from the repository root::

    .venv/bin/python benchmarks/bench_scoring.py            # ~4 minutes on 2 cores
    .venv/bin/python benchmarks/bench_scoring.py --quick    # smaller and fewer repetitions, ~1 minute

Everything is measured side by side in one run, alternating the contenders
so that load from other processes hits them alike: single-row latency (p50
and p99 over ``--calls`` calls, one row per call, a different row each time)
and batch throughput (best of ``--reps`` runs over ``--rows`` rows), at 1 and
2 threads for both. The models are LightGBM binary classifiers trained here
on synthetic data with 60 features shaped like the escalation features
(counts, durations in days with gaps, flags, codes, scores, 5 % missing),
in several sizes, so that the table shows what trees, leaves and early
stopping cost. ONNX models go through ``to_onnx`` -> ``write_bundle`` ->
``OnnxScorer.from_bundle``: the path serving uses.

Further tables, for the reference model (300 trees x 31 leaves): graph
variants (onnxmltools' ZipMap graph, its zipmap=False graph, ours), opset
declarations, session options and batch sizes; and a float32 drift check on
features that float32 cannot hold (raw epoch seconds, amounts in cents).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import lightgbm as lgb
import numpy as np
import onnx
import onnxruntime as ort
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a plain script from any directory
    sys.path.insert(0, str(REPO))

from models.bundle import BundleModel, write_bundle  # noqa: E402
from models.onnx_export import INPUT_NAME, OUTPUT_NAME, check_parity, to_onnx  # noqa: E402
from serving.scorer import OnnxScorer, session_options  # noqa: E402

N_FEATURES = 60


def make_features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic float32 features and a 0/1 escalation label with interactions and ~8 % positives."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, N_FEATURES), dtype=np.float64)
    for j in range(N_FEATURES):
        kind = j % 6
        if kind == 0:  # call counts in a window
            X[:, j] = rng.poisson(rng.uniform(0.2, 3.0), n)
        elif kind == 1:  # days since an event, one decimal
            X[:, j] = np.round(rng.exponential(30.0, n), 1)
        elif kind == 2:  # keyword flags
            X[:, j] = rng.random(n) < rng.uniform(0.02, 0.3)
        elif kind == 3:  # station / category codes
            X[:, j] = rng.integers(0, 30, n)
        elif kind == 4:  # standardised scores
            X[:, j] = rng.normal(0.0, 1.0, n)
        else:  # shares
            X[:, j] = rng.beta(2.0, 5.0, n)
    X[rng.random((n, N_FEATURES)) < 0.05] = np.nan
    f = np.nan_to_num
    z = (
        0.5 * f(X[:, 0])
        - 0.03 * f(X[:, 1], nan=60.0)
        + 1.2 * f(X[:, 2])
        + 0.8 * np.sin(f(X[:, 4]))
        + 1.5 * f(X[:, 5])
        + 0.3 * f(X[:, 6]) * f(X[:, 8])
        + 0.6 * (f(X[:, 9]) % 7 == 3)
        + 0.4 * f(X[:, 10]) * f(X[:, 16])
        - 4.0
    )
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.int32)
    return X.astype(np.float32), y


@dataclass
class Trained:
    """One benchmark model."""

    label: str
    booster: lgb.Booster
    leaves: int
    auc: float

    @property
    def trees(self) -> int:
        return self.booster.num_trees() if self.booster.best_iteration <= 0 else self.booster.best_iteration


def train(label: str, data: dict[str, tuple[np.ndarray, np.ndarray]], leaves: int, rounds: int, lr: float,
          early_stopping: int | None) -> Trained:  # fmt: skip
    params = {
        "objective": "binary",
        "num_leaves": leaves,
        "learning_rate": lr,
        "min_data_in_leaf": 40,
        "feature_fraction": 0.9,
        "verbose": -1,
        "num_threads": 1,  # 2 OpenMP threads on a shared 2-core box train 6x slower, not faster
        "seed": 1,
        "deterministic": True,
    }
    (xt, yt), (xv, yv) = data["train"], data["valid"]
    callbacks = [lgb.early_stopping(early_stopping, verbose=False)] if early_stopping else []
    booster = lgb.train(
        params,
        lgb.Dataset(xt, yt),
        rounds,
        valid_sets=[lgb.Dataset(xv, yv)],
        callbacks=callbacks,
    )
    auc = float(roc_auc_score(yv, booster.predict(xv)))
    return Trained(label, booster, leaves, auc)


def latency(fns: dict[str, Callable[[np.ndarray], object]], rows: Sequence[np.ndarray], calls: int,
            blocks: int = 5) -> dict[str, tuple[float, float]]:  # fmt: skip
    """p50/p99 in microseconds per contender; contenders alternate in blocks of calls/blocks."""
    samples: dict[str, list[int]] = {k: [] for k in fns}
    per_block = max(1, calls // blocks)
    for fn in fns.values():  # warm-up
        for row in rows[:50]:
            fn(row)
    for b in range(blocks):
        for name, fn in fns.items():
            out = samples[name]
            for i in range(b * per_block, (b + 1) * per_block):
                row = rows[i % len(rows)]
                t0 = time.perf_counter_ns()
                fn(row)
                out.append(time.perf_counter_ns() - t0)
    result = {}
    for name, ts in samples.items():
        a = np.sort(np.asarray(ts)) / 1e3
        result[name] = (float(np.percentile(a, 50)), float(np.percentile(a, 99)))
    return result


def throughput(fns: dict[str, Callable[[np.ndarray], object]], X: np.ndarray, reps: int) -> dict[str, float]:
    """Best rows/s over ``reps`` runs per contender, contenders alternating."""
    best = dict.fromkeys(fns, 0.0)
    for fn in fns.values():
        fn(X[:1000])
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(X)
            best[name] = max(best[name], len(X) / (time.perf_counter() - t0))
    return best


def session(model: onnx.ModelProto, threads: int = 1, spinning: bool = False, opt_all: bool = True):
    """A raw onnxruntime session (for the variant tables; the main table uses the scorer)."""
    options = session_options(threads, spinning)
    if not opt_all:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def scorer_for(model: onnx.ModelProto, tmp: Path, tag: str, threads: int) -> OnnxScorer:
    """Write a one-model bundle and load it as serving would."""
    bundle = tmp / f"{tag}-t{threads}"
    if not bundle.exists():
        write_bundle(
            bundle,
            {"risk": BundleModel(model, tuple(f"f{i}" for i in range(N_FEATURES)), (0, 1))},
            {"code_version": "bench", "data_fingerprint": "synthetic", "lexicon_version": "-", "params": {}},
        )
    return OnnxScorer.from_bundle(bundle, intra_op_num_threads=threads)


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table (pasted into docs/onnx.md as is)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        padded = (c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        return "| " + " | ".join(padded) + " |"

    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        print(line(r))
    print()


def contenders(b: lgb.Booster, s1: OnnxScorer, s2: OnnxScorer) -> tuple[dict, dict]:
    """Single-row and batch contenders for one model: native predict and the scorer at 1 and 2 threads."""
    single = {
        "native t1": lambda x: b.predict(x, num_threads=1),
        "onnx t1": lambda x: s1.predict("risk", x),
        "native t2": lambda x: b.predict(x, num_threads=2),
        "onnx t2": lambda x: s2.predict("risk", x),
    }
    batch = {
        "native t1": lambda x: b.predict(x, num_threads=1),
        "onnx t1": lambda x: s1.predict_batched("risk", x),
        "native t2": lambda x: b.predict(x, num_threads=2),
        "onnx t2 (intra-op 2)": lambda x: s2.predict("risk", x),
        "onnx t2 (2 workers)": lambda x: s1.predict_batched("risk", x, workers=2),
    }
    return single, batch


def main_table(models: list[Trained], X: np.ndarray, rows: list[np.ndarray], args: argparse.Namespace,
               tmp: Path) -> list[list[object]]:  # fmt: skip
    out: list[list[object]] = []
    for m in models:
        onnx_model = to_onnx(m.booster, N_FEATURES, "risk")
        parity = check_parity(m.booster, onnx_model, X)
        s1 = scorer_for(onnx_model, tmp, m.label.replace(" ", "_"), 1)
        s2 = scorer_for(onnx_model, tmp, m.label.replace(" ", "_"), 2)
        single, batch = contenders(m.booster, s1, s2)
        lat = latency(single, rows, args.calls)
        thr = throughput(batch, X, args.reps)
        for name in batch:
            key = name.split(" (")[0]
            native = "native t1" if "t1" in name else "native t2"
            p50, p99 = lat.get(key, (float("nan"), float("nan")))
            same_lat = name.endswith("(2 workers)")  # single-row path of this variant is "onnx t1"
            out.append(
                [
                    m.label,
                    m.trees,
                    m.leaves,
                    f"{m.auc:.4f}",
                    name,
                    "" if same_lat else f"{p50:.1f}",
                    "" if same_lat else f"{p99:.1f}",
                    f"{thr[name]:,.0f}",
                    "" if name.startswith("native") or same_lat else f"{lat[native][0] / p50:.2f}x",
                    "" if name.startswith("native") else f"{thr[name] / thr[native]:.2f}x",
                    f"{parity['max_abs_diff']:.1e}" if name.startswith("onnx t1") else "",
                ]
            )
        print(f"  done: {m.label}", file=sys.stderr, flush=True)
    return out


def variant_tables(ref: Trained, X: np.ndarray, rows: list[np.ndarray], args: argparse.Namespace) -> None:
    from onnxmltools.convert import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    b = ref.booster
    init = [(INPUT_NAME, FloatTensorType([None, N_FEATURES]))]
    zipmap = convert_lightgbm(b, name="risk", initial_types=init, target_opset=15, zipmap=True)
    plain = convert_lightgbm(b, name="risk", initial_types=init, target_opset=15, zipmap=False)
    ours = to_onnx(b, N_FEATURES, "risk")
    s_zip, s_plain, s_ours = session(zipmap), session(plain), session(ours)
    ml3 = onnx.ModelProto()
    ml3.CopyFrom(ours)
    for imp in ml3.opset_import:
        if imp.domain == "ai.onnx.ml":
            imp.version = 3
    s_ml3 = session(ml3)
    graph = {
        "onnxmltools, ZipMap (list of dicts)": lambda x: s_zip.run(None, {INPUT_NAME: x}),
        "onnxmltools, zipmap=False (label, Cast, Mul)": lambda x: s_plain.run(None, {INPUT_NAME: x}),
        "ours: one TreeEnsembleClassifier node": lambda x: s_ours.run([OUTPUT_NAME], {INPUT_NAME: x}),
        "ours, declared ai.onnx.ml=3 instead of 1": lambda x: s_ml3.run([OUTPUT_NAME], {INPUT_NAME: x}),
    }
    lat = latency(graph, rows, args.calls)
    thr = throughput(graph, X, args.reps)
    opsets = {
        "onnxmltools, ZipMap (list of dicts)": zipmap,
        "onnxmltools, zipmap=False (label, Cast, Mul)": plain,
        "ours: one TreeEnsembleClassifier node": ours,
        "ours, declared ai.onnx.ml=3 instead of 1": ml3,
    }
    print(f"Graph variants, {ref.label}, 1 thread, raw InferenceSession.run:\n")
    print_table(
        ["graph", "opsets", "nodes", "single p50 µs", "p99 µs", "batch rows/s"],
        [
            [
                name,
                " ".join(f"{i.domain or 'ai.onnx'}={i.version}" for i in opsets[name].opset_import),
                len(opsets[name].graph.node),
                f"{lat[name][0]:.1f}",
                f"{lat[name][1]:.1f}",
                f"{thr[name]:,.0f}",
            ]
            for name in graph
        ],
    )

    s2_spin, s2_nospin = session(ours, 2, spinning=True), session(ours, 2, spinning=False)
    s1_noopt = session(ours, 1, opt_all=False)
    s_default = ort.InferenceSession(ours.SerializeToString(), providers=["CPUExecutionProvider"])
    opts = {
        "SessionOptions() defaults (intra-op = cores, spinning on)": lambda x: s_default.run(
            [OUTPUT_NAME], {INPUT_NAME: x}
        ),
        "1 thread, optimisation all": lambda x: s_ours.run([OUTPUT_NAME], {INPUT_NAME: x}),
        "1 thread, optimisation disabled": lambda x: s1_noopt.run([OUTPUT_NAME], {INPUT_NAME: x}),
        "2 threads, spinning on": lambda x: s2_spin.run([OUTPUT_NAME], {INPUT_NAME: x}),
        "2 threads, spinning off": lambda x: s2_nospin.run([OUTPUT_NAME], {INPUT_NAME: x}),
    }
    lat = latency(opts, rows, args.calls)
    thr = throughput(opts, X, args.reps)
    print(f"Session options, {ref.label}, whole batch in one run:\n")
    print_table(
        ["session options", "single p50 µs", "p99 µs", "batch rows/s"],
        [[n, f"{lat[n][0]:.1f}", f"{lat[n][1]:.1f}", f"{thr[n]:,.0f}"] for n in opts],
    )

    def chunked(sess: ort.InferenceSession, size: int, workers: int) -> Callable[[np.ndarray], object]:
        from concurrent.futures import ThreadPoolExecutor

        def run(x: np.ndarray) -> np.ndarray:
            out = np.empty((len(x), 2), np.float32)

            def one(i: int) -> None:
                out[i : i + size] = sess.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + size]})[0]

            if workers == 1:
                for i in range(0, len(x), size):
                    one(i)
            else:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(one, range(0, len(x), size)))
            return out

        return run

    sizes = (1_024, 4_096, 16_384, len(X))
    batch = {f"{w} worker(s), chunks of {n:,}": chunked(s_ours, n, w) for w in (1, 2) for n in sizes}
    thr = throughput(batch, X, args.reps)
    print(f"Batch sizes, {ref.label}, 1-thread session, {len(X):,} rows:\n")
    print_table(["chunking", "rows/s"], [[n, f"{v:,.0f}"] for n, v in thr.items()])


def drift_table() -> None:
    """Float32 drift: raw epoch seconds and cents vs rescaled features, nearest vs round-down thresholds."""
    from onnxmltools.convert import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    rng = np.random.default_rng(3)
    n, as_of = 60_000, 1_735_689_600
    seconds = as_of - rng.integers(0, 365 * 86_400, n)
    cents = np.round(rng.lognormal(11.0, 1.5, n))
    other = rng.normal(size=(n, 8))
    z = -(as_of - seconds) / 86_400 / 60 + 0.4 * np.log1p(cents / 100) - 3 + other[:, 0]
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int32)
    raw = np.column_stack([seconds, cents, other]).astype(np.float64)
    scaled = np.column_stack([(as_of - seconds) / 86_400, np.log1p(cents / 100), other]).astype(np.float32)
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 1, "deterministic": True}
    rows = []
    for label, X in (("raw: epoch seconds, cents (float64)", raw), ("builder: days, log1p(yuan) (float32)", scaled)):
        b = lgb.train(params, lgb.Dataset(X[:40_000], y[:40_000]), 200)
        test = X[40_000:]
        plain = convert_lightgbm(
            b, initial_types=[(INPUT_NAME, FloatTensorType([None, 10]))], target_opset=15, zipmap=False
        )
        p_plain = session(plain).run(["probabilities"], {INPUT_NAME: test.astype(np.float32)})[0][:, 1]
        ref = b.predict(test.astype(np.float32))
        ours = check_parity(b, to_onnx(b, 10, "d"), test, min_rows=len(test))
        rows.append(
            [
                label,
                f"{np.max(np.abs(p_plain - ref)):.1e}",
                f"{ours['max_abs_diff']:.1e}",
                ours["top_k_identical"],
                f"{ours['cast_max_abs_diff']:.1e}",
                ours["ok"],
            ]
        )
    print("Float32 drift, 200 trees, 20,000 test rows:\n")
    print_table(
        ["features", "onnxmltools (nearest) diff", "ours diff", "top-100 same", "float32 cast drift", "parity ok"],
        rows,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="batch size for throughput")
    parser.add_argument("--calls", type=int, default=2_000, help="single-row calls per contender")
    parser.add_argument("--reps", type=int, default=5, help="batch repetitions per contender (best is kept)")
    parser.add_argument("--quick", action="store_true", help="fewer models and repetitions")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.quick:
        args.reps = min(args.reps, 2)

    print(
        f"python {platform.python_version()} ({platform.machine()}, {os.cpu_count()} cpus), "
        f"lightgbm {version('lightgbm')}, onnxruntime {version('onnxruntime')}, onnx {version('onnx')}, "
        f"onnxmltools {version('onnxmltools')}, numpy {version('numpy')}"
    )
    xt, yt = make_features(120_000, args.seed)
    xv, yv = make_features(30_000, args.seed + 1)
    X, _ = make_features(args.rows, args.seed + 2)
    data = {"train": (xt, yt), "valid": (xv, yv)}
    print(f"data: 60 features, train {len(xt):,} rows ({yt.mean():.1%} positive), batch {len(X):,} rows\n")
    rows = [X[i : i + 1] for i in range(min(len(X), 5_000))]

    specs = [
        ("300 x 31", 31, 300, 0.05, None),
        ("300 x 63", 63, 300, 0.05, None),
        ("300 x 15", 15, 300, 0.05, None),
        ("early stop x 31", 31, 2_000, 0.05, 50),
        ("early stop x 15", 15, 2_000, 0.1, 50),
    ]
    if args.quick:
        specs = [specs[0], specs[3]]
    models = [train(label, data, leaves, rounds, lr, es) for label, leaves, rounds, lr, es in specs]
    with tempfile.TemporaryDirectory() as tmp:
        table = main_table(models, X, rows, args, Path(tmp))
    print(f"onnxruntime (bundle + OnnxScorer) vs native Booster.predict, {len(X):,}-row batch, {args.calls} calls:\n")
    print_table(
        [
            "model",
            "trees",
            "leaves",
            "AUC",
            "runtime",
            "single p50 µs",
            "p99 µs",
            "batch rows/s",
            "single speed-up",
            "batch speed-up",
            "parity",
        ],
        table,
    )
    variant_tables(models[0], X, rows, args)
    drift_table()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
