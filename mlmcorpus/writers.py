"""Sharded Parquet and NumPy writers.

Rows arrive in batches of any size; the writers cut row groups and shards at
fixed row counts, so the bytes on disk depend on the rows alone, not on how
they were batched (or on how many workers produced them).  Shards are written
under temporary names and renamed to ``train-00000-of-00012.parquet`` (the
pattern ``datasets.load_dataset("parquet", data_files=...)`` expects) once the
total is known; ``manifest.json`` is written after that by the caller.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import os
import struct
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlmcorpus import outdir
from mlmcorpus.config import OutputConfig
from mlmcorpus.hashing import combined_sha256, sha256_file
from mlmcorpus.errors import OutputError
from mlmcorpus.masking import labels_at
from mlmcorpus.pairs import attention_mask, token_type_ids

__all__ = [
    "FORMAT_VERSION",
    "COLUMNS",
    "COMPACT",
    "compact_columns",
    "compact_dtypes",
    "expand",
    "to_arrow",
    "to_numpy",
    "id_dtype",
    "output_schema",
    "ShardInfo",
    "ShardWriter",
    "ParquetShardWriter",
    "NumpyShardWriter",
    "make_writer",
    "shard_rows",
    "finish_shards",
    "sha256_file",
]

FORMAT_VERSION = 1
#: Column order of every shard.  Row-wise shapes: L = max_seq_length, P = max_predictions_per_seq.
COLUMNS = (
    "input_ids",  # ids[L]
    "token_type_ids",  # int8[L]
    "attention_mask",  # int8[L]
    "labels",  # int64[L]: original id at masked positions, -100 elsewhere
    "next_sentence_label",  # int64: 0 = B follows A, 1 = random
    "masked_lm_positions",  # int32[P], ascending, 0-padded
    "masked_lm_ids",  # ids[P], 0-padded
)


#: What travels between workers, stages and the shuffle: the full columns follow from these
#: (``expand``), at a fifth of the bytes.  ``a_len`` is the length of segment A.
COMPACT = ("input_ids", "lengths", "a_len", "next_sentence_label", "masked_lm_positions", "masked_lm_ids")


def compact_columns(
    input_ids: np.ndarray,
    lengths: np.ndarray,
    a_len: np.ndarray,
    next_sentence_label: np.ndarray,
    masked_lm_positions: np.ndarray,
    masked_lm_ids: np.ndarray,
    vocab_size: int,
) -> dict[str, np.ndarray]:
    arrays = (input_ids, lengths, a_len, next_sentence_label, masked_lm_positions, masked_lm_ids)
    dtypes = compact_dtypes(vocab_size)
    return {name: arr.astype(dtypes[name], copy=False) for name, arr in zip(COMPACT, arrays)}


def compact_dtypes(vocab_size: int) -> dict[str, np.dtype]:
    """The dtype of each :data:`COMPACT` column (as workers, stage files and the shuffle carry them)."""
    ids = id_dtype(vocab_size)
    i32, i8 = np.dtype(np.int32), np.dtype(np.int8)
    return {"input_ids": ids, "lengths": i32, "a_len": i32, "next_sentence_label": i8, "masked_lm_positions": i32, "masked_lm_ids": ids}


def expand(compact: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The shard columns (:data:`COLUMNS`, plus ``lengths``) from the compact ones.

    ``labels`` hold ``masked_lm_ids`` at ``masked_lm_positions`` (position 0, the
    [CLS], marks padding) and -100 elsewhere; ``token_type_ids`` are 1 from the
    token after the first [SEP] (at ``a_len + 1``) to the end; ``attention_mask``
    is 1 on the first ``lengths`` tokens.
    """
    ids = compact["input_ids"]
    L = ids.shape[1]
    lengths = compact["lengths"].astype(np.int64)
    a_len = compact["a_len"].astype(np.int64)
    pos = compact["masked_lm_positions"].astype(np.int64)
    labels = labels_at(pos, compact["masked_lm_ids"], pos > 0, L)  # position 0, the [CLS], marks padding
    return {
        "input_ids": ids,
        "token_type_ids": token_type_ids(lengths, a_len, L),
        "attention_mask": attention_mask(lengths, L),
        "labels": labels,
        "next_sentence_label": compact["next_sentence_label"].astype(np.int64),
        "masked_lm_positions": compact["masked_lm_positions"],
        "masked_lm_ids": compact["masked_lm_ids"],
        "lengths": lengths,
    }


def from_numpy(values: np.ndarray) -> pa.Array:
    """A 1-D NumPy array of numbers as an Arrow array sharing its memory.

    ``pa.array(ndarray)`` would do the same but first imports pandas when it is installed
    (to check for pandas types): 0.2-0.5 s and 40+ MB in every process that writes.
    """
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
    """A read-only NumPy view of a numeric array without nulls (``Array.to_numpy`` imports pandas)."""
    if arr.null_count == 0 and (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
        dtype = np.dtype(arr.type.to_pandas_dtype())
        if len(arr) == 0:  # Arrow allows a missing data buffer then
            return np.empty(0, dtype=dtype)
        return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * dtype.itemsize)
    return arr.to_numpy(zero_copy_only=False)


def id_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else int32."""
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.int32)


def _column_types(max_seq_length: int, max_predictions: int, vocab_size: int) -> dict[str, tuple[np.dtype, int]]:
    ids = id_dtype(vocab_size)
    L, P = max_seq_length, max_predictions
    return {
        "input_ids": (ids, L),
        "token_type_ids": (np.dtype(np.int8), L),
        "attention_mask": (np.dtype(np.int8), L),
        "labels": (np.dtype(np.int64), L),
        "next_sentence_label": (np.dtype(np.int64), 0),
        "masked_lm_positions": (np.dtype(np.int32), P),
        "masked_lm_ids": (ids, P),
    }


def output_schema(max_seq_length: int, max_predictions: int, vocab_size: int) -> pa.Schema:
    """The explicit Arrow schema of a shard (never inferred from data)."""
    fields = []
    for name, (dtype, width) in _column_types(max_seq_length, max_predictions, vocab_size).items():
        t = pa.from_numpy_dtype(dtype)
        fields.append(pa.field(name, pa.list_(t, width) if width else t, nullable=False))
    return pa.schema(fields, metadata={b"mlmcorpus.format_version": str(FORMAT_VERSION).encode()})


@dataclass
class ShardInfo:
    """What the manifest says about one shard."""

    file: str
    rows: int
    tokens: int
    bytes: int = 0
    sha256: str = ""
    files: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {"file": self.file, "rows": self.rows, "tokens": self.tokens, "bytes": self.bytes, "sha256": self.sha256}
        if self.files:
            d["files"] = self.files
        return d


class ShardWriter(ABC):
    """Buffers rows and cuts shards and row groups at fixed row counts.

    ``write(columns)`` takes a dict of the :data:`COMPACT` arrays;
    ``close()`` finishes the last
    shard, renames all shards to their final names and returns their infos.
    """

    suffix = ""

    def __init__(
        self, out_dir: str, config: OutputConfig, max_seq_length: int, max_predictions: int, vocab_size: int,
        first_shard: int = 0,
    ):
        self.out_dir = out_dir
        self.config = config
        self.types = _column_types(max_seq_length, max_predictions, vocab_size)
        self.schema = output_schema(max_seq_length, max_predictions, vocab_size)
        self.shard_rows = shard_rows(config, max_seq_length, max_predictions, vocab_size)
        self.first_shard = first_shard
        self.group_rows = max(1, min(config.row_group_rows, self.shard_rows))
        self._pending: dict[str, list[np.ndarray]] = {name: [] for name in COMPACT}
        self._pending_rows = 0
        self._shards: list[ShardInfo] = []
        self._tmp_paths: list[str] = []
        self._rows_in_shard = 0
        self._tokens_in_shard = 0
        self._open = False

    # -- what each format does
    @abstractmethod
    def _open_shard(self, tmp_path: str) -> None:
        """Start a shard under its temporary name."""

    @abstractmethod
    def _write_group(self, cols: dict[str, np.ndarray]) -> None:
        """Append one row group."""

    @abstractmethod
    def _close_shard(self) -> None:
        """Finish the open shard's file(s)."""

    @abstractmethod
    def _seal(self, tmp_path: str, info: ShardInfo) -> None:
        """Flush a finished shard to disk and fill in its bytes and sha256."""

    # -- public
    def write(self, columns: dict[str, np.ndarray]) -> None:
        """Buffer rows given as :data:`COMPACT` columns; full columns are built per row group."""
        n = len(columns["next_sentence_label"])
        if n == 0:
            return
        for name in self._pending:
            self._pending[name].append(columns[name])
        self._pending_rows += n
        self._drain(final=False)

    def close(self) -> list[ShardInfo]:
        """Finish every shard and give them their final names (this writer wrote them all)."""
        return finish_shards(self.out_dir, self.close_parts())

    def close_parts(self) -> list[tuple[str, ShardInfo]]:
        """Finish the shards (bytes, sha256) under their temporary names: ``(tmp path, info)`` each."""
        self._drain(final=True)
        if self._open:
            self._end_shard()
        for tmp, info in zip(self._tmp_paths, self._shards):
            self._seal(tmp, info)
        return list(zip(self._tmp_paths, self._shards))

    def abort(self) -> None:
        """Remove temporary files after a failure."""
        if self._open:
            try:
                self._close_shard()
            except Exception:
                pass
            self._open = False
        for tmp in self._tmp_paths:
            outdir.remove(tmp)

    # -- internals
    def _take(self, n: int) -> dict[str, np.ndarray]:
        out = {}
        for name, parts in self._pending.items():
            joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
            out[name] = joined[:n]
            rest = joined[n:]
            self._pending[name] = [rest] if len(rest) else []
        self._pending_rows -= n
        return out

    def _drain(self, final: bool) -> None:
        while self._pending_rows > 0:
            room = self.shard_rows - self._rows_in_shard
            n = min(self.group_rows, room)
            if self._pending_rows < n and not final:
                return
            n = min(n, self._pending_rows)
            cols = expand(self._take(n))
            for name, (dtype, _) in self.types.items():
                cols[name] = cols[name].astype(dtype, copy=False)
            if not self._open:
                tmp = outdir.tmp_shard_path(self.out_dir, self.first_shard + len(self._shards), self.suffix)
                self._tmp_paths.append(tmp)
                self._shards.append(ShardInfo("", 0, 0))
                self._open_shard(tmp)
                self._open = True
            self._write_group(cols)
            self._rows_in_shard += n
            self._tokens_in_shard += int(cols["lengths"].sum())
            if self._rows_in_shard >= self.shard_rows:
                self._end_shard()

    def _end_shard(self) -> None:
        self._close_shard()
        info = self._shards[-1]
        info.rows, info.tokens = self._rows_in_shard, self._tokens_in_shard
        self._rows_in_shard = self._tokens_in_shard = 0
        self._open = False


class ParquetShardWriter(ShardWriter):
    """zstd-compressed Parquet with fixed-size list columns."""

    suffix = ".parquet"

    def _open_shard(self, tmp_path: str) -> None:
        self._writer = pq.ParquetWriter(
            tmp_path,
            self.schema,
            compression="zstd",
            compression_level=self.config.compression_level,
            use_dictionary=False,
            write_statistics=False,
        )

    def _write_group(self, cols: dict[str, np.ndarray]) -> None:
        arrays = [to_arrow(cols[name]) for name in COLUMNS]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema), row_group_size=len(arrays[0]))

    def _close_shard(self) -> None:
        self._writer.close()

    def _seal(self, tmp_path: str, info: ShardInfo) -> None:
        outdir.fsync_file(tmp_path)
        info.bytes = os.path.getsize(tmp_path)
        info.sha256 = sha256_file(tmp_path)


_NPY_HEADER = 128  # bytes, magic included; room for any shape we write, rewritten at close


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    d = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}).encode("latin1")
    body_len = _NPY_HEADER - 10
    if len(d) + 1 > body_len:
        raise OutputError(f"shape {shape} does not fit the .npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", body_len) + d + b" " * (body_len - len(d) - 1) + b"\n"


class NumpyShardWriter(ShardWriter):
    """One directory per shard holding one ``.npy`` per column, streamed row group by row group."""

    def _open_shard(self, tmp_path: str) -> None:
        os.makedirs(tmp_path)
        self._files = {}
        for name in COLUMNS:
            dtype, width = self.types[name]
            f = open(os.path.join(tmp_path, f"{name}.npy"), "wb")
            f.write(_npy_header(dtype, (0, width) if width else (0,)))
            self._files[name] = f

    def _write_group(self, cols: dict[str, np.ndarray]) -> None:
        for name in COLUMNS:
            self._files[name].write(np.ascontiguousarray(cols[name]).tobytes())

    def _close_shard(self) -> None:
        rows = self._rows_in_shard
        for name, f in self._files.items():
            dtype, width = self.types[name]
            f.seek(0)
            f.write(_npy_header(dtype, (rows, width) if width else (rows,)))
            f.flush()
            os.fsync(f.fileno())
            f.close()

    def _seal(self, tmp_path: str, info: ShardInfo) -> None:
        for name in COLUMNS:
            path = os.path.join(tmp_path, f"{name}.npy")
            info.files[f"{name}.npy"] = {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
        info.bytes = sum(f["bytes"] for f in info.files.values())
        info.sha256 = combined_sha256([(name, f["sha256"]) for name, f in info.files.items()])


def shard_rows(config: OutputConfig, max_seq_length: int, max_predictions: int, vocab_size: int) -> int:
    """Rows per shard: ``shard_rows``, or ``shard_mb`` of uncompressed rows."""
    if config.shard_mb is None:
        return config.shard_rows
    types = _column_types(max_seq_length, max_predictions, vocab_size)
    row_bytes = sum(dt.itemsize * max(w, 1) for dt, w in types.values())
    return max(1, int(config.shard_mb * 1e6 // row_bytes))


def finish_shards(out_dir: str, parts: list[tuple[str, ShardInfo]]) -> list[ShardInfo]:
    """Rename sealed shards (in order) to ``train-00000-of-0000N``; returns their infos."""
    total = len(parts)
    infos = []
    for i, (tmp, info) in enumerate(parts):
        suffix = ".parquet" if tmp.endswith(".parquet") else ""
        info.file = outdir.shard_name(i, total, suffix)
        os.replace(tmp, os.path.join(out_dir, info.file))
        infos.append(info)
    return infos


def make_writer(
    out_dir: str, config: OutputConfig, max_seq_length: int, max_predictions: int, vocab_size: int, first_shard: int = 0
) -> ShardWriter:
    cls = ParquetShardWriter if config.format == "parquet" else NumpyShardWriter
    return cls(out_dir, config, max_seq_length, max_predictions, vocab_size, first_shard)
