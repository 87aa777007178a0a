"""NumPy <-> Arrow conversions without pandas.

``pa.array(ndarray)``, ``Array.to_numpy()`` and ``pa.array([])`` import pandas when it is
installed (to check for pandas types): 0.2-0.5 s and 40+ MB in every process that writes or
reads a shard.  These do the same zero-copy, for the numeric columns we have.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["from_numpy", "to_arrow", "to_numpy", "numeric_values", "empty_batch"]


def from_numpy(values: np.ndarray) -> pa.Array:
    """A 1-D NumPy array of numbers as an Arrow array sharing its memory."""
    values = np.ascontiguousarray(values)
    if values.ndim != 1 or values.dtype.kind not in "iuf":
        raise TypeError(f"expected a 1-D array of numbers, got {values.dtype} with shape {values.shape}")
    if not values.dtype.isnative:  # Arrow buffers are native-endian
        values = values.astype(values.dtype.newbyteorder("="))
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def to_arrow(arr: np.ndarray, type: pa.DataType | None = None) -> pa.Array:
    """A NumPy column as Arrow: 2-D arrays become fixed-size lists (one per row), without copying
    when the values already have the target type."""
    a = np.ascontiguousarray(arr)
    if a.ndim == 2:
        values = a.reshape(-1)
        if type is not None:
            values = values.astype(type.value_type.to_pandas_dtype(), copy=False)
        return pa.FixedSizeListArray.from_arrays(from_numpy(values), a.shape[1])
    if type is not None:
        a = a.astype(type.to_pandas_dtype(), copy=False)
    return from_numpy(a)


def to_numpy(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The inverse of :func:`to_arrow`: fixed-size lists become a 2-D array."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if isinstance(col.type, pa.FixedSizeListType):
        return numeric_values(col.flatten()).reshape(len(col), col.type.list_size)
    return numeric_values(col)


def numeric_values(arr: pa.Array) -> np.ndarray:
    """A read-only NumPy view of a numeric array without nulls."""
    if arr.null_count == 0 and (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
        dtype = np.dtype(arr.type.to_pandas_dtype())
        if len(arr) == 0:  # Arrow allows a missing data buffer then
            return np.empty(0, dtype=dtype)
        return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * dtype.itemsize)
    return arr.to_numpy(zero_copy_only=False)


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A batch of no rows (``pa.array([])`` imports pandas)."""
    return pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)
