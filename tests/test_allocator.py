"""The commands' allocator settings: freed memory reused in the process, not inherited by Dask workers."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from pipelines import allocator

_FAULTS_ON_SECOND_USE = """
import resource, sys
import numpy as np
from pipelines import allocator
kept = allocator.keep_freed_memory() if sys.argv[1] == "keep" else None
def use():
    block = np.empty(256 << 20, dtype=np.uint8)
    block[::4096] = 1  # every page touched once
    del block
use()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
use()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _clean_env() -> dict[str, str]:
    """The environment without a user's own malloc settings (with them, keep_freed_memory steps aside)."""
    return {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES" and k not in allocator.USER_MALLOC}


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's (Linux)"
)
def test_freed_memory_is_reused_without_faulting_in_fresh_pages() -> None:
    """256 MiB freed and allocated again: no page faults with the setting, one per page (or 2 MiB page) without."""
    runs = {}
    for mode in ("keep", "default"):
        out = subprocess.run(
            [sys.executable, "-c", _FAULTS_ON_SECOND_USE, mode],
            capture_output=True,
            text=True,
            timeout=120,
            env=_clean_env(),
            check=True,
        )
        runs[mode] = out.stdout.split()
    assert runs["keep"][0] == "True"
    assert int(runs["keep"][1]) < 20, runs
    assert int(runs["default"][1]) >= 128, runs  # 256 MiB is at least 128 pages of 2 MiB


@pytest.mark.parametrize("name", allocator.USER_MALLOC)
def test_a_users_own_malloc_setting_wins(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Only the refusals run here: a True would change this test process's own allocator."""
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setenv(name, "65536")
    assert allocator.keep_freed_memory() is False
    monkeypatch.delenv(name)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.rtld.optional_static_tls=2048:glibc.malloc.trim_threshold=65536")
    assert allocator.keep_freed_memory() is False


def test_workers_are_spawned_without_the_purge_delay_this_process_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set by configure_environment: withheld from processes spawned for workers, then restored; a user's stays."""
    monkeypatch.delenv("MIMALLOC_PURGE_DELAY", raising=False)
    monkeypatch.setenv("MIMALLOC_LARGE_OS_PAGES", "0")  # the user's own
    monkeypatch.setattr(allocator, "_ours", set())
    allocator.configure_environment()
    assert os.environ["MIMALLOC_PURGE_DELAY"] == "-1" and os.environ["MIMALLOC_LARGE_OS_PAGES"] == "0"
    probe = "import os; print(os.environ.get('MIMALLOC_PURGE_DELAY'), os.environ.get('MIMALLOC_LARGE_OS_PAGES'))"
    with allocator.for_workers():
        spawned = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert spawned.stdout.split() == ["None", "0"]
    assert os.environ["MIMALLOC_PURGE_DELAY"] == "-1"

    monkeypatch.setattr(allocator, "_ours", set())
    monkeypatch.setenv("MIMALLOC_PURGE_DELAY", "-1")  # now the user's own: the workers get it too
    allocator.configure_environment()
    with allocator.for_workers():
        spawned = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert spawned.stdout.split() == ["-1", "0"]
