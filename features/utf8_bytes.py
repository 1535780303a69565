"""The UTF-8 bytes of an Arrow text column as numpy arrays: checks over a million strings without a Python string each.

Two checks read them: the loader's proof that a key column holds no repeated value
(features/coercion.py ``surely_unique``) and the linker's shortlist of registry persons whose
identifier or name starts and ends with given bytes (features/linking_persons.py ``_affix_rows``).
Both hash the bytes polynomially with :data:`HASH_BASE`, wrapping as numpy's uint64 wraps.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa

HASH_BASE = 1_000_003
"""The multiplier of the byte hashes (a prime above any byte value)."""


class Utf8Bytes(NamedTuple):
    """One text array as one ``large_string`` chunk: row ``i`` is ``data[offsets[i]:offsets[i + 1]]``."""

    array: pa.LargeStringArray
    offsets: np.ndarray
    data: np.ndarray


def utf8_bytes(values: pa.Array | pa.ChunkedArray) -> Utf8Bytes:
    """The array's offsets and bytes as numpy views (no copy of the bytes; ``data`` is empty when no row has any)."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    buffer = arr.buffers()[2]
    data = np.frombuffer(buffer, dtype=np.uint8) if buffer is not None else np.zeros(0, dtype=np.uint8)
    return Utf8Bytes(arr, offsets, data)
