"""Global mixing without global memory: a seeded two-stage shuffle.

Stage 1 (:func:`scatter`, run by the worker that made the unit): each unit
scatters its rows over ``buckets`` buckets with a draw from the unit's own
generator and appends them once, sorted by bucket, to its process's spill file.
Stage 2: consecutive buckets form groups that fit ``memory_mb``; the rows of a
group are its buckets' slices of every unit, bucket by bucket and unit by unit,
permuted with a generator keyed by (seed, group).  :meth:`TwoStageShuffle.open_group`
fetches any range of a permuted group straight from the memory-mapped spill
files, so output shards can be written in parallel, each reading only its own
rows.  Every shard then mixes rows from all over the corpus, memory is bounded by
one group, and the result depends only on the rows, the seed and the
configuration -- never on the number of workers or on which process spilled
which unit (a unit is found by its recorded file and offset).

Spill files are raw column blocks, one per process and thread (a corpus of
thousands of units still has a handful of files to map: every map holds a file
descriptor; two threads of one Dask worker must not append to one file), named by
a random token rather than the process id, which repeats across machines sharing
the output directory; they live under a temporary folder removed at the end or on
failure.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mlmcorpus import outdir
from mlmcorpus.schema import row_count
from mlmcorpus.rng import Purpose, ShuffleStream, unit_generator

__all__ = ["TwoStageShuffle", "SpillUnit", "scatter"]

_ALIGN = 64  # each column block starts on a multiple of this


@dataclass(frozen=True)
class SpillUnit:
    """Where one unit's rows went: ``rows`` rows sorted by bucket at byte ``start`` of ``path``.

    Bucket b is rows ``offsets[b]:offsets[b + 1]``; ``columns`` lists (name, dtype, width)
    in block order (width 0 = one value per row); each column is one aligned block.
    """

    unit_id: int
    path: str
    start: int
    rows: int
    columns: tuple[tuple[str, str, int], ...]
    offsets: np.ndarray  # int64[buckets + 1]

    @property
    def row_bytes(self) -> int:
        return sum(np.dtype(dt).itemsize * max(width, 1) for _, dt, width in self.columns)

    def blocks(self) -> Iterator[tuple[str, np.dtype, tuple[int, ...], int]]:
        """(name, dtype, shape, byte offset in the file) of each column block."""
        pos = self.start
        for name, dt, width in self.columns:
            dtype = np.dtype(dt)
            shape = (self.rows, width) if width else (self.rows,)
            yield name, dtype, shape, pos
            pos += _aligned(self.rows * dtype.itemsize * max(width, 1))

    @property
    def end(self) -> int:
        """Byte offset just after the unit's last block."""
        return self.start + sum(_aligned(self.rows * np.dtype(dt).itemsize * max(w, 1)) for _, dt, w in self.columns)


# This process's and thread's spill file name: keyed by pid so that a forked worker draws its
# own, and by thread because a Dask worker may run several units at once (their appends would
# interleave in one file).  A thread id reused after its thread ended appends after it: fine.
_SPILL_NAME: dict[tuple[int, int], str] = {}


def _spill_name() -> str:
    key = (os.getpid(), threading.get_ident())
    name = _SPILL_NAME.get(key)
    if name is None:
        name = _SPILL_NAME[key] = f"spill-{os.urandom(8).hex()}.bin"
    return name


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def scatter(spill_dir: str, seed: int, buckets: int, unit_id: int, cols: dict[str, np.ndarray],
            durable: bool = False) -> SpillUnit | None:
    """Stage 1 for one unit: draw each row's bucket and append the rows, sorted by bucket
    (stable), to this process's spill file.

    The rows are a pure function of (seed, unit, rows): any process, on any machine sharing
    the output directory, may run it (a retried unit's earlier rows are left unreferenced).
    """
    n = row_count(cols)
    if n == 0:
        return None
    target = unit_generator(seed, unit_id, Purpose.SHUFFLE, ShuffleStream.SCATTER).integers(0, buckets, size=n)
    order = np.argsort(target, kind="stable")
    offsets = np.zeros(buckets + 1, dtype=np.int64)
    np.cumsum(np.bincount(target, minlength=buckets), out=offsets[1:])
    os.makedirs(spill_dir, exist_ok=True)
    path = os.path.join(spill_dir, _spill_name())
    columns = []
    with open(path, "ab") as f:
        start = f.seek(0, os.SEEK_END)
        for name, arr in cols.items():
            block = np.ascontiguousarray(arr[order]).tobytes()
            f.write(block)
            f.write(b"\0" * (_aligned(len(block)) - len(block)))
            columns.append((name, arr.dtype.str, arr.shape[1] if arr.ndim == 2 else 0))
        if durable:  # a completion record will point at these rows
            f.flush()
            os.fsync(f.fileno())
    return SpillUnit(unit_id, path, start, n, tuple(columns), offsets)


class _OpenGroup:
    """One group of a :class:`TwoStageShuffle`, ready to read slices of (see ``open_group``)."""

    def __init__(self, shuffle: TwoStageShuffle, g: int):
        self.shuffle = shuffle
        self.perm = shuffle.permutation(g)
        # The group's concatenation as parts: (unit index, first row of the unit), part sizes.
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

    def __enter__(self) -> _OpenGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shuffle.release()

    def rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` of the permuted group."""
        units = len(self.shuffle._units)
        wanted = self.perm[start:stop]
        part = np.searchsorted(self.ends, wanted, side="right")
        unit = self.part_unit[part]
        row = self.part_first[part] + wanted - (self.ends[part] - self.part_size[part])
        order = np.argsort(unit, kind="stable")
        bounds = np.searchsorted(unit[order], np.arange(units + 1))
        out: dict[str, np.ndarray] = {}
        for u in np.flatnonzero(np.diff(bounds)):
            dest = order[bounds[u] : bounds[u + 1]]
            for name, col in self.shuffle.unit_columns(int(u)).items():
                if name not in out:
                    out[name] = np.empty((len(wanted), *col.shape[1:]), dtype=col.dtype)
                out[name][dest] = col[row[dest]]
            self.shuffle.release(int(u))  # resident memory: one unit's pages at a time
        return out


class TwoStageShuffle:
    """Collect spilled units (stage 1), then serve permuted bucket groups (stage 2).

    Units must be added in unit order (:meth:`add` scatters here,
    :meth:`register` takes a unit a worker scattered).  After the last one,
    :attr:`group_rows` gives each group's size and :meth:`open_group` reads any
    range of a permuted group.
    """

    def __init__(self, out_dir: str, seed: int, buckets: int, memory_mb: float, permute: bool = True):
        # permute=False (with one bucket): the rows in unit order, for --no-shuffle builds whose
        # workers spill their own rows.
        self.dir = outdir.spill_dir(out_dir)
        self.seed = seed
        self.permute = permute
        self.buckets = buckets
        self.memory_bytes = memory_mb * 1e6
        self.rows = np.zeros(buckets, dtype=np.int64)
        self.bytes = np.zeros(buckets, dtype=np.int64)
        self._units: list[SpillUnit] = []
        self._groups: list[list[int]] | None = None
        self._perm: tuple[int, np.ndarray] | None = None
        self._maps: dict[str, mmap.mmap] = {}
        os.makedirs(self.dir, exist_ok=True)

    def add(self, unit_id: int, cols: dict[str, np.ndarray]) -> None:
        """Stage 1 in this process: scatter one unit's rows (call in unit order)."""
        self.register(scatter(self.dir, self.seed, self.buckets, unit_id, cols))

    def register(self, spill: SpillUnit | None) -> None:
        """Stage 1 done elsewhere: take a unit's spill record (call in unit order)."""
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
        cached = self._perm  # read once: another thread may replace it meanwhile
        if cached is None or cached[0] != g:
            if not self.permute:
                cached = self._perm = (g, np.arange(self.group_rows[g]))
            else:
                cached = self._perm = (g, unit_generator(self.seed, g, Purpose.SHUFFLE, ShuffleStream.GROUP).permutation(self.group_rows[g]))
        return cached[1]

    def unit_columns(self, u: int) -> dict[str, np.ndarray]:
        """The ``u``-th registered unit's columns: read-only views of its memory-mapped spill file."""
        spill = self._units[u]
        mm = self._maps.get(spill.path)
        if mm is None:
            with open(spill.path, "rb") as f:
                mm = self._maps[spill.path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return {
            name: np.frombuffer(mm, dtype=dtype, count=int(np.prod(shape)), offset=pos).reshape(shape)
            for name, dtype, shape, pos in spill.blocks()
        }

    def release(self, u: int | None = None) -> None:
        """Drop the spill pages of unit ``u`` (or of every unit) from this process's resident
        memory; they stay in the page cache.  Reading slice after slice then does not grow
        the process by the size of the spill files it gathers from."""
        if not hasattr(mmap, "MADV_DONTNEED"):  # not Linux: the kernel decides
            return
        if u is None:
            for mm in self._maps.values():
                mm.madvise(mmap.MADV_DONTNEED)
            return
        spill = self._units[u]
        mapped = self._maps.get(spill.path)
        if mapped is not None:
            first = spill.start - spill.start % mmap.PAGESIZE
            end = min(spill.end, len(mapped))
            mapped.madvise(mmap.MADV_DONTNEED, first, end - first)

    def open_group(self, g: int) -> _OpenGroup:
        """Group ``g``, to read many slices of it (a context manager: on leaving, the pages
        read are released)."""
        return _OpenGroup(self, g)

    def save_index(self) -> str:
        """Write what stage 2 needs to know about the spilled units (for :meth:`load`, in another process)."""
        path = os.path.join(self.dir, "index.npz")
        units = self._units
        np.savez(
            path,
            unit_ids=np.array([u.unit_id for u in units], dtype=np.int64),
            paths=np.array([os.path.basename(u.path) for u in units], dtype=str),
            starts=np.array([u.start for u in units], dtype=np.int64),
            rows=np.array([u.rows for u in units], dtype=np.int64),
            offsets=np.array([u.offsets for u in units], dtype=np.int64).reshape(len(units), self.buckets + 1),
            columns=np.array([json.dumps(u.columns) for u in units], dtype=str),
            permute=np.array(self.permute),
        )
        return path

    @classmethod
    def load(cls, index: str, seed: int, buckets: int, memory_mb: float) -> TwoStageShuffle:
        """The shuffle whose stage 1 :meth:`save_index` recorded."""
        out_dir = os.path.dirname(os.path.dirname(index))
        with np.load(index) as z:
            sh = cls(out_dir, seed, buckets, memory_mb, permute=bool(z["permute"]))
            for unit_id, name, start, rows, offsets, columns in zip(
                z["unit_ids"].tolist(), z["paths"].tolist(), z["starts"].tolist(), z["rows"].tolist(), z["offsets"],
                z["columns"].tolist(),
            ):
                layout = tuple((str(c), str(dt), int(w)) for c, dt, w in json.loads(columns))
                spill = SpillUnit(unit_id, os.path.join(sh.dir, name), start, rows, layout, offsets)
                sh.register(spill)
        return sh

    def close(self) -> None:
        """Unmap the spill files (views handed out must be gone)."""
        maps, self._maps = self._maps, {}
        for mm in maps.values():
            try:
                mm.close()
            except BufferError:  # a view is still alive: the map goes with it
                pass

    def cleanup(self) -> None:
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)
