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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory_limit,
        dashboard_address=None,
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
    """This process's peak resident memory (Linux reports kilobytes)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def worker_peaks(client: Any) -> dict[str, int]:
    """Peak resident memory of each worker process so far, in bytes, by worker address."""
    return {str(address): int(peak) for address, peak in client.run(_peak_rss_bytes).items()}
