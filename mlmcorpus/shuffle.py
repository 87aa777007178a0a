"""Global mixing without global memory: a seeded two-stage shuffle.

Stage 1 (:meth:`TwoStageShuffle.add`): each unit scatters its rows over
``buckets`` spill files with a draw from the unit's own generator, in unit
order.  Stage 2 (:meth:`TwoStageShuffle.drain`): consecutive buckets are read
back in groups that fit ``memory_mb``, each group is permuted with a generator
keyed by (seed, group) and handed on.  Every output shard then mixes rows from
all over the corpus, memory is bounded by one group, and the result depends
only on the rows, the seed and the configuration — never on the number of
workers.  Spill files are Arrow IPC files (one per unit, memory-mapped when
read back) under a temporary folder that is removed at the end or on failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from mlmcorpus.rng import Purpose, unit_generator
from mlmcorpus.writers import to_arrow, to_numpy

__all__ = ["TwoStageShuffle", "SHUFFLE_DIR"]

SHUFFLE_DIR = ".tmp-shuffle"
# Generator purposes beyond the unit's own: scatter keyed by unit, permutation keyed by group.
_SCATTER, _GROUP = 1, 2


class TwoStageShuffle:
    """Scatter rows to buckets, then yield them back bucket group by group, shuffled.

    Stage 1 writes each unit once, its rows sorted by target bucket (a stable sort,
    so a bucket keeps unit order), to an uncompressed Arrow file with the bucket
    offsets kept here; stage 2 memory-maps those files and takes the slices of
    the group's buckets, bucket by bucket and unit by unit.
    """

    def __init__(self, out_dir: str, seed: int, buckets: int, memory_mb: float):
        self.dir = os.path.join(out_dir, SHUFFLE_DIR)
        self.seed = seed
        self.buckets = buckets
        self.memory_bytes = memory_mb * 1e6
        self.rows = np.zeros(buckets, dtype=np.int64)
        self.bytes = np.zeros(buckets, dtype=np.int64)
        self._units: list[tuple[str, np.ndarray]] = []  # (file, bucket offsets int64[buckets + 1])
        self._names: list[str] | None = None
        os.makedirs(self.dir, exist_ok=True)

    def add(self, unit_id: int, cols: dict[str, np.ndarray]) -> None:
        """Stage 1: scatter one unit's rows (call in unit order)."""
        n = len(cols["next_sentence_label"])
        if n == 0:
            return
        if self._names is None:
            self._names = list(cols)
        target = unit_generator(self.seed, unit_id, Purpose.SHUFFLE, _SCATTER).integers(0, self.buckets, size=n)
        order = np.argsort(target, kind="stable")
        counts = np.bincount(target, minlength=self.buckets)
        offsets = np.zeros(self.buckets + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        batch = pa.RecordBatch.from_arrays([to_arrow(cols[k][order]) for k in self._names], names=self._names)
        path = os.path.join(self.dir, f"unit-{unit_id:07d}.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
            writer.write_batch(batch)
        self._units.append((path, offsets))
        row_bytes = sum(a.itemsize * (a.shape[1] if a.ndim == 2 else 1) for a in cols.values())
        self.rows += counts
        self.bytes += counts * row_bytes

    def drain(self) -> Iterator[dict[str, np.ndarray]]:
        """Stage 2: groups of consecutive buckets within the memory budget, each permuted."""
        group: list[int] = []
        size = 0
        g = 0
        for b in range(self.buckets):
            if self.rows[b] == 0:
                continue
            if group and size + self.bytes[b] > self.memory_bytes:
                yield self._read_group(group, g)
                g += 1
                group, size = [], 0
            group.append(b)
            size += int(self.bytes[b])
        if group:
            yield self._read_group(group, g)

    def _read_group(self, group: list[int], g: int) -> dict[str, np.ndarray]:
        maps = []
        tables = []
        try:
            units = []
            for path, offsets in self._units:
                source = pa.memory_map(path)
                maps.append(source)
                units.append((pa.ipc.open_file(source).get_batch(0), offsets))
            for b in group:  # bucket by bucket, unit by unit: the order stage 1 promised
                for batch, offsets in units:
                    n = int(offsets[b + 1] - offsets[b])
                    if n:
                        tables.append(batch.slice(int(offsets[b]), n))
            table = pa.Table.from_batches(tables)
            cols = {name: to_numpy(table.column(name)) for name in table.column_names}
        finally:
            for source in maps:
                source.close()
        perm = unit_generator(self.seed, g, Purpose.SHUFFLE, _GROUP).permutation(len(cols["next_sentence_label"]))
        return {k: v[perm] for k, v in cols.items()}

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
