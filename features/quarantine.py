"""The quarantine folder: rejected rows wait there, with their reasons and raw text, for the data owner to fix.

``yujing validate`` writes it beside the data (``DIR/quarantine/``), ``yujing
train`` into its run folder and ``yujing rank`` into the ranking's folder, so
every run that used an export keeps what it left out. One file per table,
``<table>.parquet``, for the tables that quarantined a row; a file left by an
earlier load of a table that is now clean is removed, so the folder never
shows rows that were not rejected this time.

The rows are personal data (that is why they are here and not in a log):
the folder is made readable by its owner only (0700, files 0600). What
goes to logs, reports and manifests are the counts of
:meth:`features.loaders.LoadResult.counts`: numbers, reasons, no values.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

FOLDER = "quarantine"
"""The folder's name inside a data folder, a run folder or a ranking folder."""


def write_quarantine(frames: Mapping[str, pd.DataFrame], folder: Path) -> list[Path]:
    """Write ``folder/<table>.parquet`` for each non-empty frame, fsynced; remove stale ones; returns what it wrote.

    The folder is created even when nothing was quarantined: its presence
    says the load was checked. Files are written to a temporary name and
    renamed, so a reader never sees half a file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    written: list[Path] = []
    for name in sorted(frames):
        path = folder / f"{name}.parquet"
        frame = frames[name]
        if frame is None or frame.empty:
            path.unlink(missing_ok=True)
            continue
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        temporary = folder / f".{name}.parquet.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        written.append(path)
    fsync_dir(folder)
    return written


def fsync_dir(path: Path) -> None:
    """Make a folder's new and renamed entries durable (a rename is not on disk until its folder is)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
