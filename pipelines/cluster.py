"""Where distributed work runs: a Dask cluster, started here or reached at its scheduler's address.

``--cluster local`` starts a :class:`distributed.LocalCluster` of
``cluster_workers`` processes with one thread each and a memory limit per
worker (``cluster_memory_limit``, 8 GiB by default): the nanny stops a worker
that outgrows it, so a partition too big for one process fails loudly instead
of taking the machine down. ``--cluster tcp://host:8786`` connects to a running
scheduler (docs/province.md says how to start one); its workers must have this
package installed and see the data folder at the same path.

Only this module knows how a cluster is opened and closed; jobs receive a
:class:`distributed.Client` and submit plain functions to it.
"""

from __future__ import annotations

import logging
import re
import resource
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from pipelines import allocator

LOCAL = "local"
"""The ``--cluster`` value that starts a cluster on this machine for the job's duration."""

_ADDRESS = re.compile(r"^(tcp|tls)://[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


class ClusterError(ValueError):
    """The cluster cannot be started or reached; the message says which and the fix."""


def check_spec(spec: str) -> str:
    """``local`` or a scheduler address ``tcp://host:port`` (``tls://`` too), else a :class:`ClusterError`."""
    value = spec.strip()
    if value == LOCAL or _ADDRESS.match(value):
        return value
    raise ClusterError(
        f"--cluster {spec!r} is neither 'local' nor a scheduler address; "
        "fix: --cluster local, or --cluster tcp://scheduler-host:8786"
    )


@contextmanager
def open_cluster(
    spec: str,
    workers: int = 2,
    memory_limit: str = "8GiB",
    scratch: Path | None = None,
) -> Iterator[Any]:
    """A connected :class:`distributed.Client` for the job; a local cluster is started and stopped here.

    Local workers are processes (the GIL would serialise pandas work in
    threads) with one thread each, so a worker's memory is one partition's.
    ``scratch`` holds their spill files (default: Dask's temporary folder).
    """
    from distributed import Client, LocalCluster

    spec = check_spec(spec)
    if spec != LOCAL:
        try:
            client = Client(spec, timeout="30s")
        except OSError as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {spec} ({type(exc).__name__}); "
                "fix: start it (`dask scheduler`, then `dask worker <address>` on each machine) or use --cluster local"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    import dask

    # One task at a time per worker: pausing a worker whose resident memory a finished city left high would idle
    # it for the rest of the job. The nanny still restarts a worker at 95 % of the limit (the bound per process).
    dask.config.set({"distributed.worker.memory.pause": False})
    with allocator.for_workers():  # also while the nanny restarts a worker
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=":0",  # any free port: None means the default :8787, which another cluster may hold
            silence_logs=logging.ERROR,
            local_directory=str(scratch) if scratch else None,
        )
        try:
            client = Client(cluster)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()


def _peak_rss_bytes() -> int:
    """This process's peak resident memory: ``VmHWM`` (Linux), else ``ru_maxrss`` (kilobytes).

    ``ru_maxrss`` survives ``exec``: a worker spawned (fork + exec) from a driver holding 2 GiB
    reports 2 GiB before it did anything. ``VmHWM`` is the peak of this process's own memory.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def worker_peaks(client: Any) -> dict[str, int]:
    """Peak resident memory of each worker process so far, in bytes, by worker address."""
    return {str(address): int(peak) for address, peak in client.run(_peak_rss_bytes).items()}


def _identity(data_dir: str) -> dict[str, Any]:
    """What must match between the driver and a worker: code, lexicon, libraries, and a view of the data."""
    from importlib.metadata import version

    from features.lexicon import default_lexicon
    from pipelines.preparation import code_version

    libraries = {name: version(name) for name in ("lightgbm", "onnxruntime", "pandas", "pyarrow", "jieba")}
    return {
        "code_version": code_version(),
        "lexicon_version": default_lexicon().version,
        **libraries,
        "sees_data": Path(data_dir).is_dir(),
    }


def require_workers_match(client: Any, data_dir: Path) -> None:
    """Every worker runs this code, lexicon and libraries and sees ``data_dir`` at the same path, else a ClusterError.

    A remote worker with last month's code would rank with other rules and
    features than the driver's manifest says; one that cannot see the export
    would fail on the first task. Both are cheaper to catch before any work.
    """
    here = {**_identity(str(data_dir)), "sees_data": True}
    for address, theirs in sorted(client.run(_identity, str(data_dir)).items()):
        if not theirs["sees_data"]:
            raise ClusterError(
                f"worker {address} cannot see the dataset folder {data_dir}; "
                "fix: mount the data at the same path on every worker"
            )
        differs = [key for key in here if theirs.get(key) != here[key]]
        if differs:
            key = differs[0]
            raise ClusterError(
                f"worker {address} runs {key} {theirs.get(key)!r} where this machine runs {here[key]!r}; "
                "fix: install the same yujing version (and its locked dependencies) on every worker"
            )


def release_memory() -> None:
    """Give a finished partition's memory back to the system before the worker's next one.

    A city's frames are freed by Python, but glibc keeps the pages; the next
    city would then start from the last one's high-water mark. ``malloc_trim``
    returns them (Linux; a no-op elsewhere).
    """
    import ctypes
    import gc

    gc.collect()
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
