"""Global mixing without global memory: a seeded two-stage shuffle.

Stage 1 (:func:`scatter`, run by the worker that made the unit): each unit
scatters its rows over ``buckets`` buckets with a draw from the unit's own
generator and writes them once, sorted by bucket, to a spill file.  Stage 2:
consecutive buckets form groups that fit ``memory_mb``; the rows of a group are
its buckets' slices of every unit, bucket by bucket and unit by unit, permuted
with a generator keyed by (seed, group).  :meth:`TwoStageShuffle.read_rows`
fetches any range of a permuted group straight from the memory-mapped spill
files, so output shards can be written in parallel, each reading only its own
rows.  Every shard then mixes rows from all over the corpus, memory is bounded by
one group, and the result depends only on the rows, the seed and the
configuration -- never on the number of workers.  Spill files are uncompressed
Arrow IPC files under a temporary folder removed at the end or on failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mlmcorpus.rng import Purpose, unit_generator
from mlmcorpus.writers import to_arrow, to_numpy

__all__ = ["TwoStageShuffle", "SpillUnit", "scatter", "SHUFFLE_DIR"]

SHUFFLE_DIR = ".tmp-shuffle"
# Generator purposes beyond the unit's own: scatter keyed by unit, permutation keyed by group.
_SCATTER, _GROUP = 1, 2


class _OpenGroup:
    """One group of a :class:`TwoStageShuffle` whose spill files are open (see ``open_group``).

    Opening a unit's file costs a memory map and an IPC footer: done once per group, not per slice.
    """

    def __init__(self, shuffle: TwoStageShuffle, g: int):
        self.perm = shuffle.permutation(g)
        # The group's concatenation as parts: (unit index, first row in its file), part sizes.
        part_unit, part_first, part_size = [], [], []
        for b in shuffle.groups[g]:
            for u, spill in enumerate(shuffle._units):
                n = int(spill.offsets[b + 1] - spill.offsets[b])
                if n:
                    part_unit.append(u)
                    part_first.append(int(spill.offsets[b]))
                    part_size.append(n)
        self.part_unit = np.asarray(part_unit, dtype=np.int64)
        self.part_first = np.asarray(part_first, dtype=np.int64)
        self.part_size = np.asarray(part_size, dtype=np.int64)
        self.ends = np.cumsum(self.part_size)
        self.units = len(shuffle._units)
        self._maps: dict[int, pa.MemoryMappedFile] = {}
        self._columns: dict[int, dict[str, np.ndarray]] = {}
        self._paths = [u.path for u in shuffle._units]

    def __enter__(self) -> _OpenGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self._columns.clear()
        for source in self._maps.values():
            source.close()
        self._maps.clear()

    def _unit_columns(self, u: int) -> dict[str, np.ndarray]:
        cols = self._columns.get(u)
        if cols is None:
            source = self._maps[u] = pa.memory_map(self._paths[u])
            batch = pa.ipc.open_file(source).get_batch(0)
            cols = self._columns[u] = {name: to_numpy(batch.column(name)) for name in batch.schema.names}
        return cols

    def rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` of the permuted group."""
        wanted = self.perm[start:stop]
        part = np.searchsorted(self.ends, wanted, side="right")
        unit = self.part_unit[part]
        row = self.part_first[part] + wanted - (self.ends[part] - self.part_size[part])
        order = np.argsort(unit, kind="stable")
        bounds = np.searchsorted(unit[order], np.arange(self.units + 1))
        out: dict[str, np.ndarray] = {}
        for u in np.flatnonzero(np.diff(bounds)):
            dest = order[bounds[u] : bounds[u + 1]]
            for name, col in self._unit_columns(int(u)).items():
                if name not in out:
                    out[name] = np.empty((len(wanted), *col.shape[1:]), dtype=col.dtype)
                out[name][dest] = col[row[dest]]
        return out


def _unit_file(unit_id: int) -> str:
    return f"unit-{unit_id:07d}.arrow"


@dataclass(frozen=True)
class SpillUnit:
    """One unit's spill file: rows sorted by bucket; bucket b is rows ``offsets[b]:offsets[b + 1]``."""

    unit_id: int
    path: str
    offsets: np.ndarray  # int64[buckets + 1]
    row_bytes: int


def scatter(spill_dir: str, seed: int, buckets: int, unit_id: int, cols: dict[str, np.ndarray]) -> SpillUnit | None:
    """Stage 1 for one unit: draw each row's bucket and write the rows sorted by bucket (stable).

    A pure function of (seed, unit, rows): any process may run it.
    """
    n = len(cols["next_sentence_label"])
    if n == 0:
        return None
    target = unit_generator(seed, unit_id, Purpose.SHUFFLE, _SCATTER).integers(0, buckets, size=n)
    order = np.argsort(target, kind="stable")
    offsets = np.zeros(buckets + 1, dtype=np.int64)
    np.cumsum(np.bincount(target, minlength=buckets), out=offsets[1:])
    names = list(cols)
    batch = pa.RecordBatch.from_arrays([to_arrow(cols[k][order]) for k in names], names=names)
    os.makedirs(spill_dir, exist_ok=True)
    path = os.path.join(spill_dir, _unit_file(unit_id))
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)
    row_bytes = sum(a.itemsize * (a.shape[1] if a.ndim == 2 else 1) for a in cols.values())
    return SpillUnit(unit_id, path, offsets, row_bytes)


class TwoStageShuffle:
    """Collect spilled units (stage 1), then serve permuted bucket groups (stage 2).

    Units must be added in unit order (:meth:`add` scatters here,
    :meth:`register` takes a unit a worker scattered).  After the last one,
    :attr:`group_rows` gives each group's size and :meth:`read_rows` any range
    of a permuted group; :meth:`drain` yields the groups whole, in order.
    """

    def __init__(self, out_dir: str, seed: int, buckets: int, memory_mb: float):
        self.dir = os.path.join(out_dir, SHUFFLE_DIR)
        self.seed = seed
        self.buckets = buckets
        self.memory_bytes = memory_mb * 1e6
        self.rows = np.zeros(buckets, dtype=np.int64)
        self.bytes = np.zeros(buckets, dtype=np.int64)
        self._units: list[SpillUnit] = []
        self._groups: list[list[int]] | None = None
        self._perm: tuple[int, np.ndarray] | None = None
        os.makedirs(self.dir, exist_ok=True)

    def add(self, unit_id: int, cols: dict[str, np.ndarray]) -> None:
        """Stage 1 in this process: scatter one unit's rows (call in unit order)."""
        self.register(scatter(self.dir, self.seed, self.buckets, unit_id, cols))

    def register(self, spill: SpillUnit | None) -> None:
        """Stage 1 done elsewhere: take a unit's spill file (call in unit order)."""
        if spill is None:
            return
        counts = np.diff(spill.offsets)
        self._units.append(spill)
        self.rows += counts
        self.bytes += counts * spill.row_bytes

    @property
    def groups(self) -> list[list[int]]:
        """Consecutive non-empty buckets, grouped within the memory budget (at least one bucket each)."""
        if self._groups is None:
            groups: list[list[int]] = []
            size = 0
            for b in range(self.buckets):
                if self.rows[b] == 0:
                    continue
                if groups and groups[-1] and size + self.bytes[b] > self.memory_bytes:
                    groups.append([])
                    size = 0
                if not groups:
                    groups.append([])
                groups[-1].append(b)
                size += int(self.bytes[b])
            self._groups = groups
        return self._groups

    @property
    def group_rows(self) -> list[int]:
        return [int(self.rows[g].sum()) for g in self.groups]

    def permutation(self, g: int) -> np.ndarray:
        """Group ``g``'s permutation (the last one is kept: a shard reads its group in slices)."""
        if self._perm is None or self._perm[0] != g:
            self._perm = (g, unit_generator(self.seed, g, Purpose.SHUFFLE, _GROUP).permutation(self.group_rows[g]))
        return self._perm[1]

    def read_rows(self, g: int, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` of permuted group ``g``, gathered from the spill files.

        Group ``g`` is the concatenation of its buckets' slices (bucket by bucket,
        unit by unit) taken in the order of :meth:`permutation`.
        """
        with self.open_group(g) as group:
            return group.rows(start, stop)

    def open_group(self, g: int) -> _OpenGroup:
        """Group ``g`` with its units' spill files memory-mapped, to read many slices of it
        (a context manager: the maps are closed on leaving)."""
        return _OpenGroup(self, g)

    def drain(self) -> Iterator[dict[str, np.ndarray]]:
        """Stage 2 in this process: every group, permuted, in order."""
        for g, n in enumerate(self.group_rows):
            yield self.read_rows(g, 0, n)

    def save_index(self) -> str:
        """Write what stage 2 needs to know about the spilled units (for :meth:`load`, in another process)."""
        path = os.path.join(self.dir, "index.npz")
        np.savez(
            path,
            unit_ids=np.array([u.unit_id for u in self._units], dtype=np.int64),
            offsets=np.array([u.offsets for u in self._units], dtype=np.int64).reshape(len(self._units), self.buckets + 1),
            row_bytes=np.array([u.row_bytes for u in self._units], dtype=np.int64),
        )
        return path

    @classmethod
    def load(cls, index: str, seed: int, buckets: int, memory_mb: float) -> TwoStageShuffle:
        """The shuffle whose stage 1 :meth:`save_index` recorded."""
        out_dir = os.path.dirname(os.path.dirname(index))
        sh = cls(out_dir, seed, buckets, memory_mb)
        with np.load(index) as z:
            for unit_id, offsets, row_bytes in zip(z["unit_ids"].tolist(), z["offsets"], z["row_bytes"].tolist()):
                sh.register(SpillUnit(unit_id, os.path.join(sh.dir, _unit_file(unit_id)), offsets, row_bytes))
        return sh

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
