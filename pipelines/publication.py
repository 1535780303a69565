"""The publication protocol of a daily ranking: one folder and the warnings database change together, or neither.

Both ways of ranking (one process, pipelines/ranking.py; a Dask cluster,
pipelines/cluster_ranking.py) end the same way, so the protocol is written
once, here:

1. **recover** what a killed run left (its published folder's warnings roll
   forward, the rest back) and sweep leftover hidden folders;
2. **stage** the files into a hidden folder beside the publication (the
   caller's ``stage``: one process writes its frames, the cluster streams its
   workers' parts);
3. **prepare**: the warnings are written to the database as *pending*, tagged
   with the staged folder (no reader sees them);
4. **publish**: the folder is swapped in by one rename;
5. **commit**: the pending warnings become the active ones.

A failure before 4 drops the staged folder and the pending rows; a failure
after 4 rolls forward. ``YUJING_KILL_AT`` kills the process at each boundary
(tests/test_crash_consistency.py runs both ways of ranking through them).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

KILL_AT_ENV = "YUJING_KILL_AT"
"""Test hook: ``YUJING_KILL_AT=staged|prepared|published|committed`` SIGKILLs the job right after that step
(tests/test_crash_consistency.py kills the real job at each boundary of the publication protocol)."""

Run = Callable[..., Any]
"""``run(step_name, fn, *args)``: runs one named step (timed, shown, a Prefect task in a flow); pipelines/steps.py."""


def kill_point(name: str) -> None:
    """SIGKILL this process here when the test hook names this point (nothing otherwise)."""
    if os.environ.get(KILL_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def settle_failed(store: Any, attempt: str, staged: Any, discard: Callable[[Any], None]) -> None:
    """After a failure between staging and applying: roll forward if the folder got published, else back.

    ``commit`` applies the pending warnings when the swap happened and discards them otherwise;
    the staged folder is removed only in the second case. The caller re-raises the original error.
    """
    from models.warning_store import WarningStoreError

    try:
        store.commit(attempt)
    except WarningStoreError:
        discard(staged)  # never published: both stay old (discard leaves a published folder alone)
    except Exception:  # the database is unreachable: readers and the next run finish the attempt
        pass


def publish_ranking(
    out_root: Path,
    store_url: str,
    manifest: Mapping[str, Any],
    rows: pd.DataFrame,
    stage: Callable[[], Any],
    run: Run,
    say: Callable[[str], None],
) -> tuple[Path, dict[str, Any]]:
    """Steps 1–5 above for one date: the published folder and the database's counts.

    ``stage()`` writes the hidden folder and returns its ``pipelines.outputs.Staged``; it runs
    as the step "write outputs". ``rows`` are the warned households (``warnings_rows``).
    """
    from models.warning_store import WarningStore
    from pipelines.outputs import discard, publish, sweep

    store = WarningStore(store_url)
    try:
        recovered = store.recover()
        swept = sweep(Path(out_root))
        if recovered["published"] or recovered["discarded"] or swept:
            say(
                f"recovered after a killed run: {len(recovered['published'])} ranking(s) rolled forward, "
                f"{len(recovered['discarded'])} dropped, {len(swept)} leftover folder(s) removed"
            )
        staged = run("write outputs", stage)
        kill_point("staged")
        info = {**manifest, "ranking_id": staged.ranking_id}
        try:
            attempt = run(
                "stage warnings in the database", store.prepare, manifest["date"], rows, info, staged.path, staged.final
            )
        except BaseException:
            discard(staged)
            raise
        kill_point("prepared")
        try:
            folder = run("publish", publish, staged)
            kill_point("published")
            counts = run("apply warnings in the database", store.commit, attempt)
        except BaseException:
            settle_failed(store, attempt, staged, discard)
            raise
        kill_point("committed")
    finally:
        store.dispose()
    return folder, counts
