"""The UTF-8 bytes of an Arrow text column as numpy arrays: checks over a million strings without a Python string each.

Two checks read them: the loader's proof that a key column holds no repeated value
(features/coercion.py ``surely_unique``) and the linker's shortlist of registry persons whose
identifier or name starts and ends with given bytes (features/linking_persons.py ``_affix_rows``).
Both hash the bytes polynomially with :data:`HASH_BASE`, wrapping as numpy's uint64 wraps; the
loader's check and the registry's key index (features/household_keys.py ``KeyIndex``) hash whole
strings with :func:`utf8_hashes`.
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


def utf8_hashes(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each string's UTF-8 bytes and length (a missing value hashes as the empty string).

    Equal strings have equal hashes; different strings share one about once in 2**64 pairs, so a
    caller that must be exact compares the strings a hash matched. Computed one byte position at a
    time over all rows (as many passes as the longest string has bytes), with no Python string.
    """
    arr, offsets, data = utf8_bytes(values)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.uint64)
    start, length = offsets[:-1], np.diff(offsets)
    hashed = length.astype(np.uint64)
    width = int(length[0])
    if (length == width).all():  # one width (the usual key): the bytes are one (rows x width) matrix
        matrix = data[offsets[0] : offsets[0] + len(arr) * width].reshape(len(arr), width)
        for j in range(width):
            hashed = hashed * np.uint64(HASH_BASE) + matrix[:, j] + np.uint64(1)
    else:
        for j in range(int(length.max())):
            byte = data[np.minimum(start + j, len(data) - 1)].astype(np.uint64)
            hashed = hashed * np.uint64(HASH_BASE) + np.where(j < length, byte + np.uint64(1), np.uint64(0))
    return hashed
