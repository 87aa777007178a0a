"""What every shard format is: a writer that cuts shards at fixed row counts, and a reader.

Rows arrive in batches of any size; writers cut row groups and shards at fixed
row counts, so the bytes on disk depend on the rows alone, not on how they were
batched (or on how many workers produced them).  Shards are written under
temporary names (:mod:`mlmcorpus.outdir`); :func:`finish_shards` renames them to
``train-00000-of-00012.parquet`` once the total is known, and the manifest is
written after that by the caller.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from types import TracebackType

import numpy as np

from mlmcorpus import outdir
from mlmcorpus.config import OutputConfig
from mlmcorpus.manifest import ShardEntry
from mlmcorpus.schema import RowLayout, row_count

__all__ = ["ShardFormat", "ShardWriter", "SealedShard", "shard_rows", "finish_shards"]

#: A finished shard under its temporary name, and what the manifest will say about it.
SealedShard = tuple[str, ShardEntry]


class ShardWriter(ABC):
    """Buffers compact rows and writes shard columns, cutting shards and row groups at fixed counts.

    A context manager with one way to finish: ``finish()`` seals the shards under their
    temporary names and returns them (for :func:`finish_shards`); leaving the block
    without finishing (an error) removes them.
    """

    def __init__(self, fmt: ShardFormat, out_dir: str, config: OutputConfig, layout: RowLayout, first_shard: int = 0):
        self.format = fmt
        self.out_dir = out_dir
        self.config = config
        self.layout = layout
        self.types = layout.columns()
        self.shard_rows = shard_rows(config, layout)
        self.first_shard = first_shard
        self.group_rows = max(1, min(config.row_group_rows, self.shard_rows))
        self._pending: dict[str, list[np.ndarray]] = {name: [] for name in layout.compact_types()}
        self._pending_rows = 0
        self._shards: list[ShardEntry] = []
        self._tmp_paths: list[str] = []
        self._rows_in_shard = 0
        self._tokens_in_shard = 0
        self._open = False
        self._finished = False

    # -- what each format does
    @abstractmethod
    def _open_shard(self, tmp_path: str) -> None:
        """Start a shard under its temporary name."""

    @abstractmethod
    def _write_group(self, cols: dict[str, np.ndarray]) -> None:
        """Append one row group of shard columns."""

    @abstractmethod
    def _close_shard(self) -> None:
        """Finish the open shard's file(s)."""

    # -- public
    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if not self._finished:
            self.abort()

    def write(self, columns: dict[str, np.ndarray]) -> None:
        """Buffer rows given as compact columns (``RowLayout.compact_types``); shard columns are built per row group."""
        n = row_count(columns)
        if n == 0:
            return
        for name in self._pending:
            self._pending[name].append(columns[name])
        self._pending_rows += n
        self._drain(final=False)

    def finish(self) -> list[SealedShard]:
        """Write the last rows and seal every shard (bytes, sha256) under its temporary name."""
        self._drain(final=True)
        if self._open:
            self._end_shard()
        for tmp, info in zip(self._tmp_paths, self._shards):
            self.format.sync(tmp)
            info.bytes, info.sha256, info.files = self.format.checksum(tmp, self.layout.column_names)
        self._finished = True
        return list(zip(self._tmp_paths, self._shards))

    def abort(self) -> None:
        """Remove this writer's temporary files (after a failure)."""
        if self._open:
            try:
                self._close_shard()
            except Exception:
                pass
            self._open = False
        for tmp in self._tmp_paths:
            outdir.remove(tmp)
        self._finished = True

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
            cols = self.layout.expand(self._take(n))
            if not self._open:
                tmp = outdir.tmp_shard_path(self.out_dir, self.first_shard + len(self._shards), self.format.suffix)
                self._tmp_paths.append(tmp)
                self._shards.append(ShardEntry("", 0, 0))
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


class ShardFormat(ABC):
    """One shard format: its writer, and how a shard of it is found, checked and read back.

    Shard paths given to the read side are trusted to be inside the output directory
    (:mod:`mlmcorpus.manifest` checks the names); the files may still be anything.
    """

    name: str
    #: Suffix of a shard's name: a Parquet shard is one file, a NumPy shard a directory.
    suffix: str
    #: Whether a shard is a directory of :meth:`members`.
    is_directory: bool
    #: What a lone shard of this format looks like, for an error message.
    looks_like: str

    @abstractmethod
    def writer(self, out_dir: str, config: OutputConfig, layout: RowLayout, first_shard: int = 0) -> ShardWriter:
        """A writer of shards ``first_shard``, ``first_shard + 1``, … into ``out_dir``."""

    @abstractmethod
    def is_shard(self, path: str) -> bool:
        """Whether ``path`` looks like a shard of this format (for a lone shard given to inspect)."""

    def members(self, path: str, names: Sequence[str]) -> list[str]:
        """The files a shard of columns ``names`` consists of, in checksum order."""
        return [path]

    def sync(self, path: str) -> None:
        """Flush a finished shard to disk (before it is renamed into place); a format whose
        writer syncs its files as it closes them has nothing left to do."""

    @abstractmethod
    def checksum(self, path: str, names: Sequence[str]) -> tuple[int, str, dict[str, dict[str, object]]]:
        """(bytes, sha256, per-file entries or {}) of a shard of columns ``names``, as the manifest records them."""

    @abstractmethod
    def describe(self, path: str) -> tuple[int, int, tuple[str, ...]]:
        """(max_seq_length, max_predictions, column names) of a shard, from its schema alone."""

    @abstractmethod
    def schema_problems(self, path: str, layout: RowLayout) -> list[str]:
        """How the shard's columns differ from ``layout`` (empty when they match)."""

    @abstractmethod
    def iter_batches(self, path: str, columns: Sequence[str], batch_rows: int) -> Iterator[dict[str, np.ndarray]]:
        """The shard's ``columns`` as NumPy arrays, ``batch_rows`` rows at a time."""


def shard_rows(config: OutputConfig, layout: RowLayout) -> int:
    """Rows per shard: ``shard_rows``, or ``shard_mb`` of uncompressed rows."""
    if config.shard_mb is None:
        return config.shard_rows
    return max(1, int(config.shard_mb * 1e6 // layout.row_bytes))


def finish_shards(out_dir: str, parts: Sequence[SealedShard]) -> list[ShardEntry]:
    """Rename sealed shards (in order) to ``train-00000-of-0000N``; returns their entries."""
    total = len(parts)
    infos = []
    for i, (tmp, info) in enumerate(parts):
        info.file = outdir.shard_name(i, total, outdir.tmp_shard_suffix(tmp))
        os.replace(tmp, os.path.join(out_dir, info.file))
        infos.append(info)
    return infos
