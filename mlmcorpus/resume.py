"""Completion records: what lets ``build --resume`` skip the work a killed build finished.

::

    OUT/.tmp-units/
      build.json            what the build is (config, reader, sources, tokenizer): written first
      unit-<id>.json        a finished unit: where its rows are in the spill, its counts
      split-<index>.json    a split read to the end by a worker: its reading counts, its units

Every record is written atomically, and a unit's only after its spill data is durable
(fsync), so a record always names rows that are there.  ``--resume`` checks the build
record against the new command (one-line error naming the difference), then skips every
unit and split with a record; the rest is redone.  The rows of a unit are a pure
function of (unit, config, seed), so the result is the bytes of an uninterrupted build.
Records are read back as untrusted input: malformed ones are ignored (the unit is
redone), never trusted for sizes or paths outside the spill area.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlmcorpus import outdir
from mlmcorpus.errors import InputError, OutputError
from mlmcorpus.readers import ReadStats, Source
from mlmcorpus.schema import RowLayout
from mlmcorpus.shuffle import SpillUnit
from mlmcorpus.units import MaskedUnit, PairStats

__all__ = ["BUILD", "Expected", "Records", "expected_spill", "build_record", "check_build_record", "clear", "read_build_record", "read_unit_record",
           "trained_tokenizer", "write_build_record", "write_unit_record",
           "write_split_record", "load_records"]

BUILD = "build.json"
_VERSION = 1


def source_fingerprint(source: Source) -> dict[str, Any]:
    """What tells a file changed since it was read: its size and modification time."""
    try:
        st = os.stat(source.path)
    except OSError:
        return {"path": source.path}
    return {"path": source.path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def build_record(config: dict, reader: dict | None, sources: list[Source], tokenizer_sha256: str,
                 tokenizer_path: str, trained: bool) -> dict[str, Any]:
    return {
        "version": _VERSION,
        "config": config,
        "reader": reader,
        "sources": [source_fingerprint(s) for s in sources],
        "tokenizer": {"sha256": tokenizer_sha256, "path": os.path.abspath(tokenizer_path), "trained_by_build": trained},
    }


def _atomic_json(path: str, data: dict) -> None:
    try:
        outdir.atomic_write(path, (json.dumps(data, sort_keys=True) + "\n").encode())
    except OSError as e:
        raise OutputError(f"{path}: cannot write a completion record ({e.strerror or e})") from None


def write_build_record(out_dir: str, record: dict[str, Any]) -> None:
    os.makedirs(outdir.units_dir(out_dir), exist_ok=True)
    _atomic_json(os.path.join(outdir.units_dir(out_dir), BUILD), record)


def read_build_record(out_dir: str) -> dict[str, Any] | None:
    path = os.path.join(outdir.units_dir(out_dir), BUILD)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError):
        raise InputError(f"{path}: unreadable build record; start over with --overwrite") from None
    return data if isinstance(data, dict) else None


def check_build_record(out_dir: str, old: dict[str, Any] | None, current: dict[str, Any]) -> bool:
    """Whether ``old``, the build record found in ``out_dir``, is that of this very build
    (False: there is none, nothing to resume).

    Raises a one-line :class:`InputError` naming the first difference when it is another's.
    """
    if old is None:
        return False
    if old.get("version") != _VERSION:
        raise InputError(f"{out_dir}: the interrupted build was made by another mlmcorpus version; start over with --overwrite")
    if old.get("tokenizer", {}).get("sha256") != current["tokenizer"]["sha256"]:
        raise InputError(f"{out_dir}: cannot resume: the tokenizer differs from the interrupted build's (sha256)")
    old_sources, new_sources = old.get("sources") or [], current["sources"]
    if [s.get("path") for s in old_sources] != [s["path"] for s in new_sources]:
        raise InputError(f"{out_dir}: cannot resume: the input files differ from the interrupted build's "
                         f"({len(old_sources)} then, {len(new_sources)} now, or in another order)")
    for o, n in zip(old_sources, new_sources):
        if o != n:
            raise InputError(f"{out_dir}: cannot resume: {n['path']} changed since the interrupted build read it "
                             "(size or modification time)")
    for section in ("config", "reader"):
        diff = _first_difference(old.get(section), current[section], section)
        if diff is not None:
            raise InputError(f"{out_dir}: cannot resume: {diff} differs from the interrupted build's")
    return True


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            diff = _first_difference(a.get(key), b.get(key), f"{path}.{key}")
            if diff is not None:
                return diff
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        a, b = list(a), list(b)
    return None if a == b else path


# ---------------------------------------------------------------- units and splits


def expected_spill(buckets: int, layout: RowLayout, build_id: str) -> Expected:
    """What the spill of a unit of a build with ``layout`` holds (see :func:`shuffle.scatter`)."""
    columns = tuple((name, np.dtype(t.dtype).str, t.width) for name, t in layout.compact_types().items())
    return Expected(buckets, columns, build_id)


def write_unit_record(out_dir: str, unit: MaskedUnit, build_id: str) -> None:
    """Record a finished unit (its spill data must be durable already)."""
    spill = unit.spill
    record: dict[str, Any] = {
        "build": build_id,
        "unit_id": unit.unit_id,
        "pair_stats": unit.pair_stats.as_dict(),
        "mask_counts": [int(x) for x in unit.mask_counts],
        "spill": None if spill is None else {
            "file": os.path.basename(spill.path), "start": spill.start, "rows": spill.rows,
            "columns": [list(c) for c in spill.columns], "offsets": [int(x) for x in spill.offsets],
        },
    }
    _atomic_json(os.path.join(outdir.units_dir(out_dir), f"unit-{unit.unit_id}.json"), record)


def write_split_record(out_dir: str, split: int, read: ReadStats, unit_ids: list[int], build_id: str) -> None:
    """Record a split read to its end by one worker, after its units' records."""
    record = {"build": build_id, "split": split, "read": read.as_dict(), "units": unit_ids}
    _atomic_json(os.path.join(outdir.units_dir(out_dir), f"split-{split}.json"), record)


@dataclass(frozen=True)
class Expected:
    """What a unit record of this build must say of its spill: the buckets and the columns."""

    buckets: int
    columns: tuple[tuple[str, str, int], ...]
    #: The build's id (``build.json``): a record another build left (a stray task of an
    #: earlier build on a shared cluster) is not this build's work.
    build_id: str = ""


@dataclass
class Records:
    """The completion records found in an output directory."""

    units: dict[int, MaskedUnit]
    splits: dict[int, tuple[ReadStats, list[int]]]


def load_records(out_dir: str, expected: Expected) -> Records:
    """Every valid unit and split record (a split counts only with all its units' records)."""
    folder = outdir.units_dir(out_dir)
    spill_dir = outdir.spill_dir(out_dir)
    units: dict[int, MaskedUnit] = {}
    splits: dict[int, tuple[ReadStats, list[int]]] = {}
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return Records(units, splits)
    for name in names:
        if name.startswith("unit-") and name.endswith(".json"):
            unit = _load_unit(os.path.join(folder, name), spill_dir, expected)
            if unit is not None:
                units[unit.unit_id] = unit
    for name in names:
        if name.startswith("split-") and name.endswith(".json"):
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    d = json.load(f)
                ids = [int(u) for u in d["units"]]
                if d.get("build") == expected.build_id and all(u in units for u in ids):
                    splits[int(d["split"])] = (ReadStats.from_dict(d["read"]), ids)
            except (OSError, ValueError, KeyError, TypeError, RecursionError):
                continue  # redone
    return Records(units, splits)


def _load_unit(path: str, spill_dir: str, expected: Expected) -> MaskedUnit | None:
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        if d.get("build") != expected.build_id:
            return None
        stats = PairStats.from_dict(d["pair_stats"])
        counts = np.asarray([int(x) for x in d["mask_counts"]], dtype=np.int64)
        spill = None
        s = d["spill"]
        if s is not None:
            file = str(s["file"])
            if os.path.basename(file) != file or not file.startswith("spill-"):
                return None
            full = os.path.join(spill_dir, file)
            columns = tuple((str(c), str(np.dtype(str(dt)).str), int(w)) for c, dt, w in s["columns"])
            offsets = np.asarray([int(x) for x in s["offsets"]], dtype=np.int64)
            start, rows = int(s["start"]), int(s["rows"])
            # Sizes are checked before they are used: the rows must be where the record says.
            if (columns != expected.columns or len(offsets) != expected.buckets + 1 or offsets[0] != 0
                    or offsets[-1] != rows or (np.diff(offsets) < 0).any() or start < 0 or rows < 1):
                return None
            spill = SpillUnit(int(d["unit_id"]), full, start, rows, columns, offsets)
            if not os.path.isfile(full) or os.path.getsize(full) < spill.end:
                return None
        return MaskedUnit(int(d["unit_id"]), None, stats, counts, spill)
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None



def read_unit_record(out_dir: str, unit_id: int, expected: Expected) -> MaskedUnit | None:
    """The record of unit ``unit_id`` if it finished (and its spill data is there), else None."""
    path = os.path.join(outdir.units_dir(out_dir), f"unit-{unit_id}.json")
    if not os.path.exists(path):
        return None
    unit = _load_unit(path, outdir.spill_dir(out_dir), expected)
    return unit if unit is not None and unit.unit_id == unit_id else None


def trained_tokenizer(out_dir: str, prior: dict[str, Any] | None) -> str | None:
    """The tokenizer an interrupted build trained into ``out_dir``, if it is still there unchanged
    (the record's path is not followed: a copied directory uses its own)."""
    from mlmcorpus.hashing import sha256_file

    tok = (prior or {}).get("tokenizer") or {}
    path = outdir.tokenizer_prefix(out_dir) + ".model"
    if not tok.get("trained_by_build") or not os.path.isfile(path):
        return None
    return path if sha256_file(path) == tok.get("sha256") else None


def clear(out_dir: str) -> None:
    """Remove the records and the spill: a build that starts afresh, or one that is done."""
    for folder in (outdir.units_dir(out_dir), outdir.spill_dir(out_dir)):
        outdir.remove(folder)
