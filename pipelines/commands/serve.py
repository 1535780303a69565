"""``yujing serve`` and ``yujing ready``: start the API so that "ready" means it answers.

The port is bound once before uvicorn starts, so a port in use is reported in
well under a second instead of after the models load. While uvicorn loads, a
thread polls ``/readyz`` and prints ``ready on http://...`` only when it
answers 200 (from as many answers in a row as there are workers); workers that
die first end the command with an error instead.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

from pipelines.commands.common import bundle_folder, err, fail, info, settings


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, not ours, not allowed), or None when it can."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return f"host {host!r} is not a name or address of this machine"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is not "in use"
        try:
            probe.bind(address)
            probe.listen(1)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} in use"
            if exc.errno == errno.EACCES:
                return f"port {port} needs privileges (ports below 1024 do)"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"host {host!r} is not an address of this machine"
            return f"cannot listen on {host}:{port} ({exc.strerror})"
    return None


def _local(host: str) -> str:
    """Where to poll a server listening on ``host`` (all interfaces are polled on loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, f"[{host}]" if ":" in host else host)


def answers(base: str, timeout: float = 2.0) -> bool:
    """Whether the service at ``base`` says it is ready: ``/readyz`` answers 200 (503 while it loads)."""
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):  # HTTPError (503 loading, failed) is an OSError too
        return False


def wait_until_ready(base: str, in_a_row: int, timeout: float, stop: threading.Event | None = None) -> bool:
    """Poll until ``in_a_row`` consecutive ready answers (one per worker), ``timeout`` passes or ``stop`` is set."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        if answers(base):
            streak += 1
            if streak >= in_a_row:
                return True
            time.sleep(0.1)
        else:
            streak = 0
            time.sleep(0.5)
    return False


MAX_DEFAULT_WORKERS = 4
"""Default workers at most: each worker holds its own models and history in memory."""
WORKER_HEALTHCHECK_SECONDS = 60
"""Seconds uvicorn's supervisor waits for a worker's ping before killing it (uvicorn's default: 5)."""


def default_workers() -> int:
    """One worker per core this process may run on, at most :data:`MAX_DEFAULT_WORKERS`.

    A worker scores on one core (the GIL): one per core is what reaches the
    documented throughput (docs/performance.md).
    """
    return max(1, min(len(os.sched_getaffinity(0)), MAX_DEFAULT_WORKERS))


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default: settings.serve_host).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default: settings.serve_port).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="uvicorn worker processes (default: one per available core, at most 4)."),
    ] = None,
    bundle: Annotated[Path | None, typer.Option(help="Serve this bundle instead of the champions.")] = None,
) -> None:
    """Serve the scoring API (FastAPI on uvicorn); keys from var/keys.json (`yujing keys add`) or YUJING_API_KEYS."""
    bundle_folder(bundle)
    workers = workers or default_workers()
    if bundle is not None:
        os.environ["YUJING_SERVE_BUNDLE"] = str(bundle.resolve())  # the app (and each worker) reads settings from env
        from conf import get_settings

        get_settings.cache_clear()
    config = settings()
    host, port = host or config.serve_host, port or config.serve_port
    problem = port_problem(host, port)
    if problem:
        raise fail(f"{problem}: choose --port or stop the other process")
    from serving.auth import KeyRing

    keys = KeyRing.from_file(config.api_keys_file)
    if not len(keys):
        err("warning: no API keys: every request will be 401; fix: `yujing keys add --scope city` and restart")
    base = f"http://{_local(host)}:{port}"
    info(f"starting on http://{host}:{port} ({workers} worker(s)); loading models, this takes a while...")
    stop, ready = threading.Event(), threading.Event()

    def announce() -> None:
        if wait_until_ready(base, workers, timeout=600, stop=stop):
            ready.set()
            typer.echo(f"ready on http://{host}:{port} (API docs at /docs; audit log {config.home / 'logs'})", err=True)
        elif not stop.is_set():
            err(f"warning: {base}/readyz has not answered within 600 s; still waiting")

    threading.Thread(target=announce, name="yujing-ready", daemon=True).start()
    import uvicorn

    code = 0
    try:
        uvicorn.run(
            "serving.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,  # the audit log records every request, without personal data
            # A worker loading its models on a busy machine can hold the GIL longer than uvicorn's default 5 s
            # and is then killed and restarted in a loop (seen at load average 8).
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        )
    except SystemExit as exc:  # uvicorn exits 3 when the app or a worker fails to start
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        stop.set()
    if not ready.is_set():
        raise fail("the service stopped before it was ready (see uvicorn's line above); nothing is serving", 1)
    if code:
        raise fail(f"the service stopped with exit code {code}", 1)
    info("stopped")


def ready(
    host: Annotated[
        str | None, typer.Option(help="Host the service listens on (default: settings.serve_host).")
    ] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default: settings.serve_port).")] = None,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds to wait at most.")] = 180.0,
) -> None:
    """Wait until `yujing serve` answers on /readyz (exit 0), or fail after --timeout seconds (exit 1)."""
    config = settings()
    host, port = host or config.serve_host, port or config.serve_port
    base = f"http://{_local(host)}:{port}"
    if not wait_until_ready(base, 1, timeout):
        raise fail(
            f"nothing ready on {base} within {timeout:g} s; fix: check the output of `yujing serve` "
            "(a port in use, a bad keys file) or wait longer with --timeout",
            1,
        )
    typer.echo(f"ready on {base}")
