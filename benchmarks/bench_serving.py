"""Online scoring in process: one incident end to end, its parts, and the real models on onnxruntime vs LightGBM.

Run from the repository root::

    .venv/bin/python benchmarks/bench_serving.py            # 3,000 incidents, 100k-row batches; ~5 min first time
    .venv/bin/python benchmarks/bench_serving.py --small    # 1,000 incidents, 20k-row batches, fewer repetitions

Set-up (cached under ``--work``, default ``$TMPDIR/yujing-bench``; shared with
bench_ranking.py): the bundle trained once on a 100,000-person city, a
250,000-person city (~100k households; ``--small``: the training city itself)
and its published ranking, which is the service's history. The service is
``serving.state.ServiceState(rankings_dir, thresholds, bundle=...)``, exactly
what ``yujing serve --bundle`` builds.

Part 1, ``score_incident``: real narratives drawn at random from the city's
``incidents.parquet`` (every kind of call, dispute or not), each with its real
household (the simulator's place household) and ``received_at`` the evening
of the ranking date, scored with ``explain=False`` and ``explain=True``.
Contenders alternate in blocks so that load from other processes hits them
alike; the garbage collector stays on (as in the service). Then each part
alone on the same incidents: the keyword rules (parse, segment, match), the
dispute model (featurise + ONNX), the household's features and rule points,
the escalation model on one row, and the occlusion reasons; and a cProfile of
each mode (the project's functions by cumulative time, any module's by own
time). When ``rjieba`` is installed (a dev extra), a what-if table swaps the
dispute featurizer's segmenter to the rjieba engine in this process (same
tokens; checked on 300 incidents) to show what that would save.

Part 2, the real models of the bundle (escalation: binary, 82 features;
dispute: 9 classes, 340 features) on onnxruntime (``OnnxScorer`` of the
bundle) vs native LightGBM ``Booster.predict``, at 1 and 2 threads: one row
per call (p50/p99) and a batch (best of ``--reps``). The native boosters are
retrained with the training pipeline's own functions on the same city and
seed (cached) and checked against the bundle (max |Δp|). The synthetic
300-tree reference models are benchmarks/bench_scoring.py's.

Part 3, the FastAPI app in process: the same incidents sent through
``serving.app.create_app`` as raw ASGI calls (no socket, no HTTP parser, no
uvicorn), one request at a time on one event loop, against
``score_incident`` alone. The difference is what the app (middlewares, body
reading and validation, the thread-pool hop of the sync endpoint, response
serialisation, the audit log) adds per request; bench_http.py measures what
the HTTP server adds on top.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from bench_ranking import (  # noqa: E402
    CITY_SEED,
    DEFAULT_WORK,
    TRAIN_PERSONS,
    TRAIN_SEED,
    ensure_bundle,
    ensure_city,
    ensure_ranking,
)
from bench_scoring import print_table, throughput  # noqa: E402


def print_latencies(results: dict[str, dict[str, float]]) -> None:
    """One row per contender: calls, mean and percentiles in µs."""
    columns = ("mean", "p50", "p90", "p99", "p99.9", "max")
    print_table(
        ["what", "calls", *columns],
        [[k, v["n"], *(f"{v[c]:.0f}" for c in columns)] for k, v in results.items()],
    )


def percentiles(ns: Sequence[int]) -> dict[str, float]:
    """Latency summary in microseconds."""
    a = np.asarray(ns, dtype=np.float64) / 1e3
    return {
        "n": len(a),
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "p99.9": float(np.percentile(a, 99.9)),
        "max": float(a.max()),
    }


def alternate(fns: dict[str, Callable[[int], object]], n: int, blocks: int = 10, warm: int = 50) -> dict[str, dict]:
    """Run each ``fn(i)`` for i in range(n), contenders alternating in ``blocks`` blocks; per-call times."""
    samples: dict[str, list[int]] = {k: [] for k in fns}
    for fn in fns.values():
        for i in range(min(warm, n)):
            fn(i)
    per = -(-n // blocks)
    for b in range(blocks):
        for name, fn in fns.items():
            out = samples[name]
            for i in range(b * per, min(n, (b + 1) * per)):
                t0 = time.perf_counter_ns()
                fn(i)
                out.append(time.perf_counter_ns() - t0)
    return {k: percentiles(v) for k, v in samples.items()}


def machine() -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    return (
        f"python {platform.python_version()}, {os.cpu_count()} cpus ({cpu}), onnxruntime {version('onnxruntime')}, "
        f"lightgbm {version('lightgbm')}, numpy {version('numpy')}, load average {os.getloadavg()[0]:.2f}"
    )


# -- part 1: score_incident ------------------------------------------------------------------------------


def incidents_for(city: Path, history, n: int, seed: int) -> list[dict]:
    """``n`` real incidents with their real household, received the evening of the ranking date."""
    inc = pd.read_parquet(city / "incidents.parquet", columns=["incident_id", "narrative"])
    truth = pd.read_parquet(city / "truth" / "incidents.parquet", columns=["incident_id", "place_household_id"])
    frame = inc.merge(truth, on="incident_id", how="inner")
    frame = frame[frame["place_household_id"].notna()]
    frame = frame[[history.get(str(h)) is not None for h in frame["place_household_id"]]]
    frame = frame.sample(n=min(n, len(frame)), random_state=seed).reset_index(drop=True)
    when = f"{history.date}T20:00:00"
    return [
        {"id": f"b{i}", "narrative": r.narrative, "received_at": when, "household_id": str(r.place_household_id)}
        for i, r in enumerate(frame.itertuples())
    ]


def profile_table(fn: Callable[[int], object], n: int, top: int) -> tuple[str, str, str]:
    """cProfile ``n`` calls: a header, the top functions by own time, and the project's functions by cumulative time."""
    prof = cProfile.Profile()
    prof.enable()
    for i in range(n):
        fn(i)
    prof.disable()
    stats = pstats.Stats(prof)
    head = f"{stats.total_tt * 1e6 / n:.0f} µs per call under cProfile"
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(top)
    text = buf.getvalue()
    own = text[text.find("   ncalls") :].rstrip()
    ours = []
    for (file, line, func), (_cc, calls, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rel = Path(file).resolve()
        if REPO in rel.parents and rel.parts[len(REPO.parts)] in ("serving", "features", "models"):
            where = f"{rel.relative_to(REPO)}:{line}({func})"
            ours.append((ct, tt, calls, where))
    ours.sort(reverse=True)
    lines = [f"{'per incident: calls':>20} {'cumulative µs':>14} {'own µs':>8}  function"]
    lines += [f"{c / n:>20.1f} {ct * 1e6 / n:>14.1f} {tt * 1e6 / n:>8.1f}  {w}" for ct, tt, c, w in ours[:top]]
    return head, own, "\n".join(lines)


def part_incidents(city: Path, rankings: Path, bundle: Path, args: argparse.Namespace) -> None:
    from conf import get_settings
    from models.rules import score_text
    from serving.incident import (
        ESCALATION,
        household_risk,
        household_row,
        incident_time,
        new_call,
        score_incident,
    )
    from serving.state import ServiceState

    t0 = time.perf_counter()
    state = ServiceState(rankings_dir=rankings, thresholds=get_settings().level_thresholds, bundle=bundle)
    engine = state.engine
    load_s = time.perf_counter() - t0
    if engine.degraded:
        raise SystemExit(f"the engine is degraded: {engine.problems}")
    history = engine.history
    incidents = incidents_for(city, history, args.incidents, args.seed)
    n = len(incidents)
    households = [history.get(x["household_id"]) for x in incidents]
    n_calls = np.array([len(h.calls) for h in households])
    print(
        f"service: {len(history._ids):,} households in the history of {history.date} "
        f"(engine built in {load_s:.1f} s); {n:,} incidents, their households hold "
        f"{n_calls.mean():.1f} stored calls on average (max {n_calls.max()})\n"
    )
    # What score_incident does, in parts, on the same inputs (precomputed so each part is alone).
    when = incident_time(incidents[0]["received_at"])
    results = [score_text(x["narrative"]) for x in incidents]
    names = list(engine.escalation.feature_names(ESCALATION))
    end = int(when.value // 1_000_000_000) + 1
    rows = []
    for h, r in zip(households, results, strict=True):
        call = new_call(r, h, None, None, end - 1)
        rows.append(household_row(names, h, (*h.calls, call), end, engine.scenarios)[0])
    scorer = engine.escalation
    featurizer = engine.dispute.featurizer
    dispute_rows = [featurizer.transform_ood([x["narrative"]], [when.to_pydatetime()])[0] for x in incidents]

    def reasons(i: int) -> object:
        from models.reasons import occlusion_contributions, top_reasons

        def raw(x: np.ndarray) -> np.ndarray:
            return scorer.predict(ESCALATION, x)[:, 1]

        return top_reasons(occlusion_contributions(raw, rows[i], names), rows[i], names)[0]

    def features(i: int) -> object:
        h = households[i]
        call = new_call(results[i], h, None, None, end - 1)
        return household_row(names, h, (*h.calls, call), end, engine.scenarios)

    whole = {
        "score_incident explain=False": lambda i: score_incident(engine, incidents[i], explain=False),
        "score_incident explain=True": lambda i: score_incident(engine, incidents[i], explain=True),
    }
    parts = {
        "rules: parse, segment, match (score_text)": lambda i: score_text(incidents[i]["narrative"]),
        "dispute model: predict_one (featurise + ONNX)": lambda i: engine.dispute.predict_one(
            incidents[i]["narrative"], when.to_pydatetime()
        ),
        "  of which featurise (transform_ood)": lambda i: featurizer.transform_ood(
            [incidents[i]["narrative"]], [when.to_pydatetime()]
        ),
        "  of which dispute ONNX, 1 row": lambda i: engine.dispute.predict_proba(dispute_rows[i]),
        "household_risk explain=False": lambda i: household_risk(
            engine, households[i], results[i], incidents[i], when, explain=False
        ),
        "  of which features + rule points (household_row)": features,
        "  of which escalation ONNX + calibration, 1 row": lambda i: scorer.predict_calibrated(ESCALATION, rows[i]),
        "reasons (occlusion over 82 features + top 3)": reasons,
    }
    res = alternate(whole, n, blocks=args.blocks)
    res.update(alternate(parts, n, blocks=args.blocks))
    print(f"Single incident in process, {n:,} real incidents per row, µs (target: p99 <= 1,000 µs):\n")
    print_latencies(res)
    # The same with the collector held off, to show what the tail owes to gc pauses.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        nogc = alternate(whole, n, blocks=args.blocks)
    finally:
        gc.enable()
        gc.unfreeze()
    print("The same two, garbage collector disabled during the measurement (gc.freeze + gc.disable), µs:\n")
    print_latencies(nogc)
    # What-if: the dispute featurizer on the rjieba engine (same tokens as jieba, tested in tests/test_text.py).
    # Benchmark-only: swaps the featurizer's segmenter in this process; the service is not changed.
    try:
        from features.text import Segmenter

        fast = Segmenter(engine="rjieba")
    except ImportError:
        fast = None
    if fast is not None:
        slow = featurizer.segmenter
        same = True
        for x in incidents[:300]:
            a = score_incident(engine, x, explain=True)
            featurizer._segmenter = fast
            same &= a == score_incident(engine, x, explain=True)
            featurizer._segmenter = slow

        def swapped(explain: bool, seg: object) -> Callable[[int], object]:
            def fn(i: int) -> object:
                featurizer._segmenter = seg
                try:
                    return score_incident(engine, incidents[i], explain=explain)
                finally:
                    featurizer._segmenter = slow

            return fn

        whatif = alternate(
            {
                "explain=False, jieba (as served)": swapped(False, slow),
                "explain=False, rjieba": swapped(False, fast),
                "explain=True, jieba (as served)": swapped(True, slow),
                "explain=True, rjieba": swapped(True, fast),
            },
            n,
            blocks=args.blocks,
        )
        print(
            "What-if, score_incident with the dispute featurizer on the rjieba segmenter (benchmark-only swap; "
            f"answers identical on 300 incidents: {same}), µs:\n"
        )
        print_latencies(whatif)
    if args.profile:
        for name, fn in whole.items():
            head, own, ours = profile_table(fn, n, args.top)
            print(f"cProfile of {name}, {n:,} calls ({head}); the project's functions by cumulative time:\n")
            print("```\n" + ours + "\n```\n")
            print(f"and the top {args.top} functions of any module by own time:\n")
            print("```\n" + own + "\n```\n")
    state.close()


# -- part 2: real models, onnxruntime vs native LightGBM -----------------------------------------------------


def native_models(work: Path, train_city: Path) -> dict[str, tuple[object, np.ndarray]]:
    """The bundle's two models as LightGBM boosters, retrained with the pipeline's functions (cached), and rows."""
    import lightgbm as lgb

    cache = work / "runs" / train_city.name / "native"
    files = {m: (cache / f"{m}.txt", cache / f"{m}.npy") for m in ("escalation", "dispute")}
    if not all(a.is_file() and b.is_file() for a, b in files.values()):
        from conf import get_settings
        from pipelines.preparation import prepare
        from pipelines.training import TrainConfig, build_escalation_data, fit_dispute, fit_escalation

        print("  retraining the native boosters (once, ~1 min)", file=sys.stderr, flush=True)
        config = TrainConfig.from_settings(get_settings())
        prepared = prepare(train_city)
        frame, names, labels, points = build_escalation_data(prepared, config)
        esc = fit_escalation(frame, names, labels, points, config)
        dis = fit_dispute(prepared, config, train_city / "truth")
        cache.mkdir(parents=True, exist_ok=True)
        esc.model.booster.save_model(str(files["escalation"][0]))
        dis.model.booster.save_model(str(files["dispute"][0]))
        np.save(files["escalation"][1], frame[names].to_numpy(np.float32))
        np.save(files["dispute"][1], np.asarray(dis.test_features, dtype=np.float32))
    return {m: (lgb.Booster(model_file=str(a)), np.load(b)) for m, (a, b) in files.items()}


def part_models(work: Path, train_city: Path, bundle: Path, args: argparse.Namespace) -> None:
    import onnxruntime as ort

    from serving.scorer import OnnxScorer

    natives = native_models(work, train_city)
    s1 = OnnxScorer.from_bundle(bundle, intra_op_num_threads=1)
    s2 = OnnxScorer.from_bundle(bundle, intra_op_num_threads=2)
    table = []
    for name, (booster, X) in natives.items():
        entry = s1.entry(name)
        reps = -(-args.rows // len(X))
        batch = np.ascontiguousarray(np.tile(X, (reps, 1))[: args.rows])
        parity = float(
            np.max(
                np.abs(
                    booster.predict(batch[:20_000]).reshape(len(batch[:20_000]), -1)
                    - (
                        s1.predict(name, batch[:20_000])[:, 1:]
                        if len(entry.classes) == 2
                        else s1.predict(name, batch[:20_000])
                    )
                )
            )
        )
        default = ort.InferenceSession(
            Path(entry.path).read_bytes(), providers=["CPUExecutionProvider"]
        )  # SessionOptions() defaults: one spinning intra-op thread per core
        inp, out = entry.input_name, entry.output_name
        single = {
            "native t1": lambda x, b=booster: b.predict(x, num_threads=1),
            "onnx t1": lambda x, n=name: s1.predict(n, x),
            "native t2": lambda x, b=booster: b.predict(x, num_threads=2),
            "onnx t2 (intra-op 2)": lambda x, n=name: s2.predict(n, x),
            "onnx SessionOptions() defaults": lambda x, d=default, o=out, i=inp: d.run([o], {i: x}),
        }
        many = {
            "native t1": single["native t1"],
            "onnx t1": lambda x, n=name: s1.predict_batched(n, x),
            "native t2": single["native t2"],
            "onnx t2 (intra-op 2)": single["onnx t2 (intra-op 2)"],
            "onnx t2 (2 workers)": lambda x, n=name: s1.predict_batched(n, x, workers=2),
            "onnx SessionOptions() defaults": single["onnx SessionOptions() defaults"],
        }
        one_rows = [batch[i : i + 1] for i in range(min(len(batch), args.calls))]
        lat = alternate(
            {k: (lambda i, f=f, r=one_rows: f(r[i % len(r)])) for k, f in single.items()}, args.calls, blocks=5
        )
        thr = throughput(many, batch, args.reps)
        trees = booster.num_trees() // max(1, len(entry.classes) if len(entry.classes) > 2 else 1)
        for k in many:
            l1 = lat.get(k)
            ref = "native t1" if ("t1" in k) else "native t2"
            table.append(
                [
                    f"{name} ({trees} rounds, {len(entry.classes)} classes, {entry.n_features} features)",
                    k,
                    "" if l1 is None else f"{l1['p50']:.1f}",
                    "" if l1 is None else f"{l1['p99']:.1f}",
                    f"{thr[k]:,.0f}",
                    ""
                    if k.startswith("native") or l1 is None or "defaults" in k
                    else f"{lat[ref]['p50'] / l1['p50']:.2f}x",
                    "" if k.startswith("native") or "defaults" in k else f"{thr[k] / thr[ref]:.2f}x",
                    f"{parity:.1e}" if k == "onnx t1" else "",
                ]
            )
        print(f"  done: {name}", file=sys.stderr, flush=True)
    print(
        f"The bundle's real models: onnxruntime (OnnxScorer) vs native Booster.predict; single row: "
        f"{args.calls:,} calls; batch: {args.rows:,} rows, best of {args.reps}:\n"
    )
    print_table(
        [
            "model",
            "runtime",
            "single p50 µs",
            "p99 µs",
            "batch rows/s",
            "single speed-up",
            "batch speed-up",
            "max |Δp| vs native",
        ],
        table,
    )


# -- part 3: the ASGI app in process ------------------------------------------------------------------------


def part_app(city: Path, rankings: Path, bundle: Path, work: Path, args: argparse.Namespace) -> None:
    import asyncio

    from conf import Settings, get_settings
    from serving.app import create_app
    from serving.incident import score_incident
    from serving.state import ServiceState

    key = "bench-key-0123456789abcdef"
    keys = work / "keys.json"
    keys.write_text(json.dumps({key: {"scope": "city"}}), encoding="utf-8")
    settings = Settings(home=work / "var", api_keys_file=keys, rankings_dir=rankings, serve_bundle=bundle)
    state = ServiceState(rankings_dir=rankings, thresholds=get_settings().level_thresholds, bundle=bundle)
    app = create_app(settings, state)
    incidents = incidents_for(city, state.engine.history, args.incidents, args.seed)
    n = len(incidents)
    bodies = [json.dumps(x, ensure_ascii=False).encode() for x in incidents]
    k = 50
    batches = [
        json.dumps({"incidents": [incidents[(i + j) % n] for j in range(k)]}, ensure_ascii=False).encode()
        for i in range(0, n, k)
    ]

    async def call(path: str, query: bytes, body: bytes, method: str = "POST", target: object = app) -> int:
        done = asyncio.Event()
        sent = False
        status = 0

        async def receive() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif not message.get("more_body", False):
                done.set()

        headers = [(b"host", b"bench"), (b"x-api-key", key.encode())]
        if method == "POST":
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
        }  # fmt: skip
        await target(scope, receive, send)  # type: ignore[operator]
        return status

    async def run() -> dict[str, dict]:
        when = {"direct": [], "asgi": [], "asgi_explain": [], "healthz": []}
        for i in range(min(50, n)):  # warm-up
            assert await call("/v1/incidents/score", b"explain=false", bodies[i]) == 200
        for b in range(args.blocks):
            for i in range(b * -(-n // args.blocks), min(n, (b + 1) * -(-n // args.blocks))):
                j, m = (i + n // 3) % n, (i + 2 * n // 3) % n  # a different incident for each contender
                t0 = time.perf_counter_ns()
                score_incident(state.engine, incidents[i], explain=False)
                t1 = time.perf_counter_ns()
                status = await call("/v1/incidents/score", b"explain=false", bodies[j])
                t2 = time.perf_counter_ns()
                await call("/v1/incidents/score", b"", bodies[m])
                t3 = time.perf_counter_ns()
                await call("/healthz", b"", b"", method="GET")
                t4 = time.perf_counter_ns()
                assert status == 200, status
                when["direct"].append(t1 - t0)
                when["asgi"].append(t2 - t1)
                when["asgi_explain"].append(t3 - t2)
                when["healthz"].append(t4 - t3)
        per_batch = []
        for _ in range(2):
            for body in batches:
                t0 = time.perf_counter_ns()
                assert await call("/v1/incidents/score-batch", b"explain=false", body) == 200
                per_batch.append((time.perf_counter_ns() - t0) / k)
        refs = {}
        for label, bare in bare_apps().items():
            for _ in range(200):
                await call("/x", b"", b"", "GET", bare)
            ts = []
            for _ in range(n):
                t0 = time.perf_counter_ns()
                await call("/x", b"", b"", "GET", bare)
                ts.append(time.perf_counter_ns() - t0)
            refs[label] = percentiles(ts)
        ts = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            await anyio.to_thread.run_sync(lambda: None)
            ts.append(time.perf_counter_ns() - t0)
        refs["reference: anyio.to_thread.run_sync(no-op), the hop of a sync route or dependency"] = percentiles(ts)
        out = {
            "score_incident(explain=False), direct": percentiles(when["direct"]),
            "POST /v1/incidents/score?explain=false through the app": percentiles(when["asgi"]),
            "POST /v1/incidents/score (explain) through the app": percentiles(when["asgi_explain"]),
            "GET /healthz through the app": percentiles(when["healthz"]),
            f"POST score-batch x{k} explain=false, per incident": percentiles(per_batch),
            **refs,
        }
        return out

    import anyio.to_thread

    def bare_apps() -> dict[str, object]:
        """Minimal FastAPI apps with one GET route: what the framework's parts cost without our code."""
        from fastapi import FastAPI, Request

        out = {}
        for sync in (False, True):
            for middleware in (False, True):
                bare = FastAPI()
                if middleware:

                    @bare.middleware("http")
                    async def passthrough(request: Request, call_next):  # type: ignore[no-untyped-def]
                        return await call_next(request)

                if sync:

                    @bare.get("/x")
                    def route_sync() -> dict:
                        return {"ok": True}
                else:

                    @bare.get("/x")
                    async def route_async() -> dict:
                        return {"ok": True}

                kind = "def (thread pool)" if sync else "async def"
                extra = " + one @app.middleware('http')" if middleware else ""
                out[f"reference: bare FastAPI GET, {kind} route{extra}"] = bare
        return out

    res = asyncio.run(run())
    print(f"The FastAPI app in process (raw ASGI calls, no socket or HTTP server), {n:,} incidents, µs:\n")
    print_latencies(res)
    state.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache shared with bench_ranking.py")
    parser.add_argument("--persons", type=int, default=250_000, help="city whose incidents are scored")
    parser.add_argument("--incidents", type=int, default=3_000)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100_000, help="batch rows for part 2")
    parser.add_argument("--calls", type=int, default=3_000, help="single-row calls per runtime in part 2")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--top", type=int, default=25, help="cProfile rows")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--only", choices=["incidents", "models", "app"], help="run one part only")
    parser.add_argument("--small", action="store_true", help="training city, fewer incidents, rows and reps")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    if args.small:
        args.persons, args.incidents, args.rows, args.calls, args.reps = TRAIN_PERSONS, 1_000, 20_000, 1_000, 2
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["YUJING_HOME"] = str(work / "var")  # nothing of this process writes under the repository
    print(machine())
    bundle = ensure_bundle(work)
    train_city = ensure_city(work, TRAIN_PERSONS, TRAIN_SEED)
    if args.only in (None, "incidents", "app"):
        city = ensure_city(work, args.persons, TRAIN_SEED if args.persons == TRAIN_PERSONS else CITY_SEED)
        rankings = ensure_ranking(work, city, bundle)
        print(f"city {city.name}, bundle {bundle}\n")
        if args.only in (None, "incidents"):
            part_incidents(city, rankings, bundle, args)
        if args.only in (None, "app"):
            part_app(city, rankings, bundle, work, args)
    if args.only in (None, "models"):
        part_models(work, train_city, bundle, args)
    print(json.dumps({"load_average_end": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
