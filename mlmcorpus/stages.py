"""The intermediate format between stage commands: an Arrow IPC stream.

``mlmcorpus pairs`` writes one record batch per work unit (unmasked rows),
``mlmcorpus mask`` one per unit with the final columns, and ``mlmcorpus
write`` turns the latter into shards.  The stream's schema metadata carries the
configuration, tokenizer and sources; each batch's custom metadata carries its
unit id and counts.  A last empty batch (unit id -1) carries the reader's
final counts.  Arrow IPC is binary, zero-copy on both ends and typed, so a
pipeline costs little more than ``build`` in one process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from mlmcorpus.errors import InputError
from mlmcorpus.pairs import PairStats
from mlmcorpus.pipeline import MaskedUnit, PairedUnit
from mlmcorpus.readers import ReadStats
from mlmcorpus.writers import COLUMNS, output_schema

__all__ = ["StageWriter", "read_stage", "StageHeader", "TRAILER_UNIT"]

TRAILER_UNIT = -1
_STAGE_KEY = b"mlmcorpus.stage"
_HEADER_KEY = b"mlmcorpus.header"


@dataclass
class StageHeader:
    """What travels with the stream: stage name and a JSON-able header (config, tokenizer, sources)."""

    stage: str
    header: dict


def _pairs_schema(max_seq_length: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("input_ids", pa.list_(pa.int32(), max_seq_length), nullable=False),
            pa.field("lengths", pa.int32(), nullable=False),
            pa.field("a_len", pa.int32(), nullable=False),
            pa.field("next_sentence_label", pa.int8(), nullable=False),
        ]
    )


def _masked_schema(max_seq_length: int, max_predictions: int, vocab_size: int) -> pa.Schema:
    base = output_schema(max_seq_length, max_predictions, vocab_size)
    return base.append(pa.field("lengths", pa.int32(), nullable=False))


def _to_arrow(arr: np.ndarray, t: pa.DataType) -> pa.Array:
    if isinstance(t, pa.FixedSizeListType):
        flat = np.ascontiguousarray(arr).reshape(-1).astype(t.value_type.to_pandas_dtype(), copy=False)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat), t.list_size)
    return pa.array(np.ascontiguousarray(arr).astype(t.to_pandas_dtype(), copy=False))


def _to_numpy(col: pa.Array) -> np.ndarray:
    if isinstance(col.type, pa.FixedSizeListType):
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
    return col.to_numpy(zero_copy_only=False)


def _pair_stats_json(s: PairStats) -> dict:
    return {
        "documents": s.documents,
        "sentences": s.sentences,
        "tokens": s.tokens,
        "instances": s.instances,
        "random_next": s.random_next,
        "counts": dict(s.counts),
    }


def _pair_stats_from(d: dict) -> PairStats:
    from collections import Counter

    return PairStats(d["documents"], d["sentences"], d["tokens"], d["instances"], d["random_next"], Counter(d["counts"]))


class StageWriter:
    """Writes a stage's stream: ``write_paired``/``write_masked`` per unit, ``close(read_stats)``."""

    def __init__(self, sink: BinaryIO, stage: str, header: dict):
        self.stage = stage
        cfg = header["config"]
        L = cfg["pairs"]["max_seq_length"]
        if stage == "pairs":
            schema = _pairs_schema(L)
        else:
            schema = _masked_schema(L, cfg["mask"]["max_predictions_per_seq"], header["tokenizer"]["vocab_size"])
        self.schema = schema.with_metadata({_STAGE_KEY: stage.encode(), _HEADER_KEY: json.dumps(header).encode()})
        self._writer = pa.ipc.new_stream(sink, self.schema)

    def _write(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        cols = [_to_arrow(arrays[f.name], f.type) for f in self.schema]
        batch = pa.RecordBatch.from_arrays(cols, schema=self.schema)
        self._writer.write_batch(batch, custom_metadata={b"unit": json.dumps(meta).encode()})

    def write_paired(self, p: PairedUnit) -> None:
        arrays = {"input_ids": p.input_ids, "lengths": p.lengths, "a_len": p.a_len, "next_sentence_label": p.next_sentence_label}
        self._write(arrays, {"unit_id": p.unit_id, "pairs": _pair_stats_json(p.stats)})

    def write_masked(self, m: MaskedUnit) -> None:
        meta = {"unit_id": m.unit_id, "pairs": _pair_stats_json(m.pair_stats), "masked": m.mask_counts.tolist()}
        self._write(m.columns, meta)

    def close(self, read_stats: ReadStats | dict) -> None:
        empty = {f.name: np.zeros((0, f.type.list_size) if isinstance(f.type, pa.FixedSizeListType) else 0) for f in self.schema}
        stats = read_stats.as_dict() if isinstance(read_stats, ReadStats) else read_stats
        self._write(empty, {"unit_id": TRAILER_UNIT, "read": stats})
        self._writer.close()


def read_stage(source: BinaryIO, expect: str) -> tuple[StageHeader, Iterator[tuple[dict, dict[str, np.ndarray]]]]:
    """Open a stage stream; returns its header and an iterator of (unit metadata, arrays)."""
    try:
        reader = pa.ipc.open_stream(source)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(
            f"stdin is not an mlmcorpus {expect} stream ({str(e).splitlines()[0] if str(e) else 'empty input'}); "
            f"pipe in the output of `mlmcorpus {'pairs' if expect == 'pairs' else 'mask'}`"
        ) from None
    meta = reader.schema.metadata or {}
    stage = meta.get(_STAGE_KEY, b"").decode()
    if stage != expect:
        raise InputError(f"expected the output of `mlmcorpus {expect}` on stdin, got {stage or 'another Arrow stream'!r}")
    header = StageHeader(stage, json.loads(meta[_HEADER_KEY]))

    def batches() -> Iterator[tuple[dict, dict[str, np.ndarray]]]:
        while True:
            try:
                batch, custom = reader.read_next_batch_with_custom_metadata()
            except StopIteration:
                return
            except (pa.ArrowInvalid, OSError) as e:
                raise InputError(f"truncated or corrupt {expect} stream on stdin ({e})") from None
            unit = json.loads(custom[b"unit"]) if custom and b"unit" in custom else {}
            yield unit, {name: _to_numpy(batch.column(name)) for name in batch.schema.names}

    return header, batches()


def paired_from(unit: dict, arrays: dict[str, np.ndarray]) -> PairedUnit:
    return PairedUnit(
        unit["unit_id"],
        arrays["input_ids"].astype(np.int32, copy=False),
        arrays["lengths"].astype(np.int64),
        arrays["a_len"].astype(np.int64),
        arrays["next_sentence_label"].astype(np.int8, copy=False),
        _pair_stats_from(unit["pairs"]),
    )


def masked_from(unit: dict, arrays: dict[str, np.ndarray]) -> MaskedUnit:
    columns = {name: arrays[name] for name in (*COLUMNS, "lengths")}
    return MaskedUnit(unit["unit_id"], columns, _pair_stats_from(unit["pairs"]), np.array(unit["masked"], dtype=np.int64))
