"""Arrow tables handed to pandas with one chunk per column: how every reader of a table ends.

A Parquet file's row groups, a CSV file's blocks and a partitioned table's files arrive as
several chunks per column, and pandas keeps them as they are. Arrow's ``take`` on a chunked
column first concatenates every chunk, so each later ``iloc`` of a few rows copies the whole
column: on the full city, picking a day's 926 new calls out of 632k copied every narrative,
3-7 s a day in copies and fresh memory (docs/decisions.md, issue 14's fifth round). Joining
the chunks once, as the table is read, costs one such copy instead of one per selection.
The caches' Arrow files are written as one record batch for the same reason
(:func:`one_batch_ipc`): Feather's default of 64k-row batches read back as 44 chunks per
column for a city's 2.87M persons.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather


def one_chunk_frame(table: pa.Table) -> pd.DataFrame:
    """``table.to_pandas()`` with each column's chunks joined first (a column of one chunk is not copied)."""
    return table.combine_chunks().to_pandas()


def one_batch_ipc(frame: pd.DataFrame, compression: str, preserve_index: bool | None = None) -> bytes:
    """``frame`` as Arrow IPC (Feather v2) bytes in one record batch: read back, one chunk per column.

    Uncompressed, such a file is memory-mapped and read without a copy (pipelines/table_cache.py).
    """
    table = pa.Table.from_pandas(frame, preserve_index=preserve_index).combine_chunks()
    sink = pa.BufferOutputStream()
    feather.write_feather(table, sink, compression=compression, chunksize=max(table.num_rows, 1))
    return sink.getvalue().to_pybytes()


def ipc_frame(data: bytes | memoryview) -> pd.DataFrame:
    """The frame of :func:`one_batch_ipc`'s bytes, or of a memory map of them (read in place, not copied)."""
    return feather.read_table(pa.BufferReader(pa.py_buffer(data))).to_pandas()
