"""Arrow tables handed to pandas with one chunk per column: how every reader of a table ends.

A Parquet file's row groups, a CSV file's blocks and a partitioned table's files arrive as
several chunks per column, and pandas keeps them as they are. Arrow's ``take`` on a chunked
column first concatenates every chunk, so each later ``iloc`` of a few rows copies the whole
column: on the full city, picking a day's 926 new calls out of 632k copied every narrative,
3-7 s a day in copies and fresh memory (docs/decisions.md, issue 14's fifth round). Joining
the chunks once, as the table is read, costs one such copy instead of one per selection.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa


def one_chunk_frame(table: pa.Table) -> pd.DataFrame:
    """``table.to_pandas()`` with each column's chunks joined first (a column of one chunk is not copied)."""
    return table.combine_chunks().to_pandas()
