"""How a ``yujing`` process allocates memory: freed memory is kept for reuse, except by Dask workers.

A city's daily ranking allocates and frees gigabytes of short-lived arrays. By default glibc
returns large freed blocks to the kernel at once (every block above its mmap threshold, 128 KiB
rising to at most 32 MiB, is a mapping of its own), and Arrow's allocator (mimalloc) returns its
freed pages after 10 ms. Every later array then faults in fresh pages, which the kernel zeroes.
On a virtual machine that hands free memory back to its host (a balloon with free-page
reporting, as on this project's machines), a fresh page costs a host fault on top: on the full
city the incremental day spent more time in the kernel than in Python (docs/decisions.md,
issue 14's fifth round).

So the commands' process keeps what it frees and reuses it: memory goes back to the system when
the process ends, minutes later. The cost is a higher resident peak (+0.6 to +1.1 GiB on the full
city's ranking, docs/performance.md). Dask workers are different: each one has a memory limit
its nanny enforces, and Dask itself asks their glibc to return memory early, so the
workers are spawned without these settings (:func:`for_workers`).

A user's own setting wins: a variable of :data:`PROCESS_ENV` already in the environment is left
as it is, and glibc is left alone when the user tuned what is set here (:data:`USER_MALLOC`, or
glibc's malloc tunables in ``GLIBC_TUNABLES``).
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager

PROCESS_ENV = {"MIMALLOC_LARGE_OS_PAGES": "1", "MIMALLOC_PURGE_DELAY": "-1"}
"""Set before Arrow loads (mimalloc reads its options once, when Arrow's library starts):
2 MiB pages where the kernel allows them, as numpy already asks for its arrays, and freed
pages kept rather than purged."""
WORKER_UNSET = ("MIMALLOC_PURGE_DELAY",)
"""Of :data:`PROCESS_ENV`, what Dask workers must not inherit: they return memory under their limit."""

# glibc's mallopt parameters (malloc.h); values as large as an int allows where "never" is meant.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_GLIBC_SETTINGS = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 64 << 20))
"""No block of its own mapping (every block comes from the heap, and returns to it when freed),
no trimming of the heap's top, and the heap grown 64 MiB at a time rather than page by page."""

USER_MALLOC = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_")
"""glibc's own variables for what :data:`_GLIBC_SETTINGS` sets: a user who set one chose for this process."""

_ours: set[str] = set()
"""Which of :data:`PROCESS_ENV` this process set (not the user), so only those are withheld from workers."""


def configure_environment() -> None:
    """Set :data:`PROCESS_ENV` where the user has not; call before pyarrow is imported."""
    for name, value in PROCESS_ENV.items():
        if name not in os.environ:
            os.environ[name] = value
            _ours.add(name)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for this process's reuse; False where that is not possible.

    Not possible, or not wanted: another C library than glibc (mallopt is glibc's), or a user
    who tuned the same settings through glibc's environment variables.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "") or any(k in os.environ for k in USER_MALLOC):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in _GLIBC_SETTINGS)


@contextmanager
def for_workers() -> Iterator[None]:
    """While local Dask workers are spawned: without the settings that keep freed memory.

    A worker's memory limit is enforced on its resident size, and Dask spawns its workers with
    glibc told to return memory early (``distributed.nanny.pre-spawn-environ``); a purge delay
    inherited from here would keep Arrow's freed pages resident against that limit.
    """
    withheld = {name: os.environ.pop(name) for name in WORKER_UNSET if name in _ours and name in os.environ}
    try:
        yield
    finally:
        os.environ.update(withheld)
