"""Parquet shards: one zstd-compressed file per shard, fixed-size list columns.

The layout ``datasets.load_dataset("parquet", data_files=...)`` and any Arrow reader
take as is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlmcorpus import outdir
from mlmcorpus.config import OutputConfig
from mlmcorpus.formats.arrow import to_arrow, to_numpy
from mlmcorpus.formats.base import ShardFormat, ShardWriter
from mlmcorpus.hashing import sha256_file
from mlmcorpus.schema import FORMAT_VERSION, RowLayout

__all__ = ["ParquetFormat", "ParquetShardWriter"]


class ParquetShardWriter(ShardWriter):
    def _open_shard(self, tmp_path: str) -> None:
        self._schema = self.layout.shard_schema()
        self._writer = pq.ParquetWriter(
            tmp_path,
            self._schema,
            compression="zstd",
            compression_level=self.config.compression_level,
            use_dictionary=False,
            write_statistics=False,
        )

    def _write_group(self, cols: dict[str, np.ndarray]) -> None:
        arrays = [to_arrow(cols[name]) for name in self.layout.column_names]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema), row_group_size=len(arrays[0]))

    def _close_shard(self) -> None:
        self._writer.close()


class ParquetFormat(ShardFormat):
    name = "parquet"
    suffix = ".parquet"
    is_directory = False
    looks_like = "a .parquet shard"

    def writer(self, out_dir: str, config: OutputConfig, layout: RowLayout, first_shard: int = 0) -> ShardWriter:
        return ParquetShardWriter(self, out_dir, config, layout, first_shard)

    def is_shard(self, path: str) -> bool:
        return not os.path.isdir(path) and path.endswith(self.suffix)

    def sync(self, path: str) -> None:
        outdir.fsync_file(path)

    def checksum(self, path: str, names: Sequence[str]) -> tuple[int, str, dict[str, dict[str, object]]]:
        return os.path.getsize(path), sha256_file(path), {}

    def describe(self, path: str) -> tuple[int, int, tuple[str, ...]]:
        schema = pq.read_schema(path)
        names = tuple(schema.names)
        P = schema.field("masked_lm_positions").type.list_size if "masked_lm_positions" in names else 1
        return schema.field("input_ids").type.list_size, P, names

    def schema_problems(self, path: str, layout: RowLayout) -> list[str]:
        actual = pq.read_schema(path).remove_metadata()
        if actual != layout.shard_schema().remove_metadata():
            return [f"schema differs from format version {FORMAT_VERSION}: {actual}"]
        return []

    def iter_batches(self, path: str, columns: Sequence[str], batch_rows: int) -> Iterator[dict[str, np.ndarray]]:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=batch_rows, columns=list(columns)):
            yield {name: to_numpy(batch.column(name)) for name in columns}
