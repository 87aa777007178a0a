"""NumPy shards: a directory per shard holding one ``.npy`` per column.

Memory-mappable (``np.load(..., mmap_mode="r")``) and readable with NumPy alone.
Each file is streamed row group by row group; its header, written first with room to
spare, is rewritten with the final row count when the shard closes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import numpy as np

from mlmcorpus.config import OutputConfig
from mlmcorpus.errors import OutputError
from mlmcorpus.formats.base import ShardFormat, ShardWriter
from mlmcorpus.hashing import combined_sha256, sha256_file
from mlmcorpus.schema import RowLayout

__all__ = ["NumpyFormat", "NumpyShardWriter"]

_NPY_HEADER = 128  # bytes, magic included; room for any shape we write, rewritten at close


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    d = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}).encode("latin1")
    body_len = _NPY_HEADER - 10
    if len(d) + 1 > body_len:
        raise OutputError(f"shape {shape} does not fit the .npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", body_len) + d + b" " * (body_len - len(d) - 1) + b"\n"


def _load(path: str) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


class NumpyShardWriter(ShardWriter):
    def _open_shard(self, tmp_path: str) -> None:
        os.makedirs(tmp_path)
        self._files: dict[str, BinaryIO] = {}
        for name in self.layout.column_names:
            f = open(os.path.join(tmp_path, f"{name}.npy"), "wb")
            f.write(_npy_header(self.types[name].dtype, self.types[name].shape(0)))
            self._files[name] = f

    def _write_group(self, cols: dict[str, np.ndarray]) -> None:
        for name in self.layout.column_names:
            self._files[name].write(np.ascontiguousarray(cols[name]).tobytes())

    def _close_shard(self) -> None:
        rows = self._rows_in_shard
        for name, f in self._files.items():
            f.seek(0)
            f.write(_npy_header(self.types[name].dtype, self.types[name].shape(rows)))
            f.flush()
            os.fsync(f.fileno())
            f.close()


class NumpyFormat(ShardFormat):
    name = "numpy"
    suffix = ""
    is_directory = True
    looks_like = "a NumPy shard (a directory with input_ids.npy)"

    def writer(self, out_dir: str, config: OutputConfig, layout: RowLayout, first_shard: int = 0) -> ShardWriter:
        return NumpyShardWriter(self, out_dir, config, layout, first_shard)

    def is_shard(self, path: str) -> bool:
        return os.path.isdir(path) and os.path.exists(os.path.join(path, "input_ids.npy"))

    def members(self, path: str, names: Sequence[str]) -> list[str]:
        return [os.path.join(path, f"{name}.npy") for name in names]

    def checksum(self, path: str, names: Sequence[str]) -> tuple[int, str, dict[str, dict[str, object]]]:
        files: dict[str, dict[str, object]] = {}
        for f in self.members(path, names):
            files[os.path.basename(f)] = {"bytes": os.path.getsize(f), "sha256": sha256_file(f)}
        total = sum(int(e["bytes"]) for e in files.values())  # type: ignore[call-overload]
        return total, combined_sha256([(name, str(e["sha256"])) for name, e in files.items()]), files

    def describe(self, path: str) -> tuple[int, int, tuple[str, ...]]:
        names = tuple(sorted(f[: -len(".npy")] for f in os.listdir(path) if f.endswith(".npy")))
        L = _load(os.path.join(path, "input_ids.npy")).shape[1]
        if "masked_lm_positions" not in names:  # unmasked rows: no predictions
            return L, 1, names
        return L, _load(os.path.join(path, "masked_lm_positions.npy")).shape[1], names

    def schema_problems(self, path: str, layout: RowLayout) -> list[str]:
        problems = []
        for name, t in layout.columns().items():
            f = os.path.join(path, f"{name}.npy")
            if not os.path.exists(f):
                problems.append(f"{name}.npy is missing")
                continue
            arr = _load(f)
            shape_ok = arr.ndim == (2 if t.width else 1) and (not t.width or arr.shape[1] == t.width)
            if arr.dtype != t.dtype or not shape_ok:
                problems.append(f"{name}.npy is {arr.dtype}{list(arr.shape)}, expected {t.dtype}[n{', ' + str(t.width) if t.width else ''}]")
        return problems

    def iter_batches(self, path: str, columns: Sequence[str], batch_rows: int) -> Iterator[dict[str, np.ndarray]]:
        arrays = {name: _load(os.path.join(path, f"{name}.npy")) for name in columns}
        n = len(arrays[columns[0]])
        if any(len(a) != n for a in arrays.values()):
            raise ValueError("columns have different numbers of rows")
        for start in range(0, n, batch_rows):
            yield {name: np.asarray(a[start : start + batch_rows]) for name, a in arrays.items()}
