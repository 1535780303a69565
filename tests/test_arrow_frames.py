"""features.arrow_frames: what the caches write reads back as one chunk per column, equal to what was written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from features.arrow_frames import ipc_frame, one_batch_ipc, one_chunk_frame


@pytest.mark.parametrize("compression", ["uncompressed", "zstd"])
def test_a_cache_file_reads_back_whole_in_one_chunk(compression: str) -> None:
    rows = 150_000  # more than Feather's default batch of 64k rows: three chunks without one_batch_ipc
    frame = pd.DataFrame(
        {
            "person_id": pd.array([f"P{i:07d}" for i in range(rows)], dtype=pd.StringDtype("pyarrow", na_value=np.nan)),
            "age": np.arange(rows, dtype=np.int64) % 97,
        }
    )
    data = one_batch_ipc(frame, compression, preserve_index=False)
    table = feather.read_table(pa.BufferReader(data))
    assert {c: table[c].num_chunks for c in table.column_names} == {"person_id": 1, "age": 1}
    pd.testing.assert_frame_equal(one_chunk_frame(table), frame, check_exact=True)
    pd.testing.assert_frame_equal(ipc_frame(memoryview(data)), frame, check_exact=True)  # how the caches read it


def test_an_empty_frame_is_written_too() -> None:
    frame = pd.DataFrame({"a": pd.Series([], dtype=np.int64)})
    table = feather.read_table(pa.BufferReader(one_batch_ipc(frame, "uncompressed", preserve_index=False)))
    assert table.num_rows == 0 and table.column_names == ["a"]
