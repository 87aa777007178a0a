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
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

from mlmcorpus.config import DEFAULT_SEED, BuildConfig
from mlmcorpus.errors import InputError, MlmCorpusError
from mlmcorpus.segments import Segments
from mlmcorpus.tokenizers import TokenizerSpec
from mlmcorpus.units import MaskedUnit, PairedUnit, PairStats, SegmentedUnit
from mlmcorpus.readers import ReadStats
from mlmcorpus.formats.arrow import empty_batch, from_numpy, numeric_values, to_arrow, to_numpy
from mlmcorpus.schema import WORD_STARTS, RowLayout, segments_schema

__all__ = ["StageWriter", "read_stage", "StageHeader", "TRAILER_UNIT"]

TRAILER_UNIT = -1
_STAGE_KEY = b"mlmcorpus.stage"
_HEADER_KEY = b"mlmcorpus.header"


@dataclass
class StageHeader:
    """What travels with a stage stream (in its schema metadata) for the next stage and the manifest.

    ``seed_given`` is False when `pairs` left the draws to `mask` (``config.seed`` is then
    only the default); ``pairs_seed`` is set when `mask` used another seed than `pairs`.
    """

    config: BuildConfig
    reader: dict[str, Any] | None
    tokenizer: dict[str, Any]  # the manifest's tokenizer record
    tokenizer_spec: TokenizerSpec
    sources: list[str]
    seed_given: bool = True
    pairs_seed: int | None = None
    stage: str = ""  # set when read: which stage wrote the stream

    @property
    def layout(self) -> RowLayout:
        return RowLayout.of(self.config, int(self.tokenizer["vocab_size"]))

    def to_json(self) -> dict[str, Any]:
        spec = self.tokenizer_spec
        d: dict[str, Any] = {
            "config": {**self.config.as_dict(), "seed": self.config.seed if self.seed_given else None, "reader": self.reader},
            "tokenizer": self.tokenizer,
            "tokenizer_spec": {"path": spec.path, "lowercase": spec.lowercase, "add_special_tokens": spec.add_special_tokens},
            "sources": self.sources,
        }
        if self.pairs_seed is not None:
            d["pairs_seed"] = self.pairs_seed
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], stage: str) -> StageHeader:
        try:
            cfg = d["config"]
            seed = cfg.get("seed")
            config = BuildConfig.from_dict({**cfg, "seed": DEFAULT_SEED if seed is None else seed})
            return cls(
                config=config,
                reader=cfg.get("reader"),
                tokenizer=dict(d["tokenizer"]),
                tokenizer_spec=TokenizerSpec(**d["tokenizer_spec"]),
                sources=list(d["sources"]),
                seed_given=seed is not None,
                pairs_seed=d.get("pairs_seed"),
                stage=stage,
            )
        except MlmCorpusError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InputError(f"malformed {stage} stream header on stdin ({type(e).__name__}: {e})") from None


def _to_numpy(col: pa.Array) -> np.ndarray:
    if isinstance(col.type, pa.ListType):  # ragged: (offsets int64[n + 1] from 0, values)
        offsets = numeric_values(col.offsets).astype(np.int64)
        values = numeric_values(col.values)
        return offsets - offsets[0], values[offsets[0] : offsets[-1]]  # type: ignore[return-value]
    return to_numpy(col)


class StageWriter:
    """Writes a stage's stream: ``write_paired``/``write_masked`` per unit, ``close(read_stats)``."""

    def __init__(self, sink: BinaryIO, stage: str, header: StageHeader, word_starts: bool = False):
        """``word_starts``: the `pairs` stage's rows or segments carry per-piece word starts."""
        self.stage = stage
        layout = header.layout
        if stage == "pairs":
            schema = layout.paired_stream_schema(word_starts)
        elif stage == "segments":
            schema = segments_schema(word_starts)
        else:
            schema = layout.masked_stream_schema()
        self.schema = schema.with_metadata({_STAGE_KEY: stage.encode(), _HEADER_KEY: json.dumps(header.to_json()).encode()})
        self._writer = pa.ipc.new_stream(sink, self.schema)

    def _write(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        cols = [to_arrow(arrays[f.name], f.type) for f in self.schema]
        self._write_batch(pa.RecordBatch.from_arrays(cols, schema=self.schema), meta)

    def _write_batch(self, batch: pa.RecordBatch, meta: dict) -> None:
        self._writer.write_batch(batch, custom_metadata={b"unit": json.dumps(meta).encode()})

    def write_segmented(self, u: SegmentedUnit) -> None:
        seg = u.segments
        offsets = np.concatenate([seg.start, [seg.start[-1] + seg.length[-1]]]) if len(seg.start) else np.zeros(1, np.int64)
        base = int(offsets[0])
        ids = pa.ListArray.from_arrays(from_numpy((offsets - base).astype(np.int32)), from_numpy(seg.ids[base : int(offsets[-1])]))
        doc = np.repeat(np.arange(seg.num_docs, dtype=np.int32), seg.doc_hi - seg.doc_lo)
        columns = [ids, from_numpy(doc)]
        if WORD_STARTS in self.schema.names:
            assert seg.word_starts is not None
            starts = seg.word_starts[base : int(offsets[-1])].view(np.int8)
            columns.append(pa.ListArray.from_arrays(from_numpy((offsets - base).astype(np.int32)), from_numpy(starts)))
        batch = pa.RecordBatch.from_arrays(columns, schema=self.schema)
        self._write_batch(batch, {"unit_id": u.unit_id, "pairs": u.stats.as_dict()})

    def write_paired(self, p: PairedUnit) -> None:
        arrays = {"input_ids": p.input_ids, "lengths": p.lengths, "a_len": p.a_len, "next_sentence_label": p.next_sentence_label}
        if WORD_STARTS in self.schema.names:
            assert p.word_starts is not None
            arrays[WORD_STARTS] = p.word_starts.view(np.int8)
        self._write(arrays, {"unit_id": p.unit_id, "pairs": p.stats.as_dict()})

    def write_masked(self, m: MaskedUnit) -> None:
        meta = {"unit_id": m.unit_id, "pairs": m.pair_stats.as_dict(), "masked": m.mask_counts.tolist()}
        assert m.columns is not None  # the mask stage never scatters
        self._write(m.columns, meta)

    def close(self, read_stats: ReadStats | dict) -> None:
        """Write the trailer (the end-of-stream marker the next stage insists on) and finish."""
        stats = read_stats.as_dict() if isinstance(read_stats, ReadStats) else read_stats
        self._write_batch(empty_batch(self.schema), {"unit_id": TRAILER_UNIT, "read": stats})
        self._writer.close()


_PRODUCER = {"pairs": "mlmcorpus pairs", "segments": "mlmcorpus pairs", "masked": "mlmcorpus mask"}


def read_stage(
    source: BinaryIO, expect: tuple[str, ...]
) -> tuple[StageHeader, Iterator[tuple[dict, dict[str, np.ndarray]]]]:
    """Open a stage stream; returns its header and an iterator of (unit metadata, arrays).

    The iterator ends after the trailer batch (yielded too, with unit id -1) and
    raises :class:`InputError` when the stream stops before it: an upstream stage
    that failed or was killed must not yield output that looks complete.
    """
    wanted = " or ".join(sorted({f"`{_PRODUCER[e]}`" for e in expect}))
    try:
        reader = pa.ipc.open_stream(source)
    except (pa.ArrowInvalid, OSError) as e:
        if "null or length 0" in str(e):
            raise InputError(f"stdin is empty: expected the output of {wanted} (did it fail?)") from None
        why = str(e).splitlines()[0] if str(e) else "empty input"
        raise InputError(f"stdin is not an mlmcorpus stage stream ({why}); pipe in the output of {wanted}") from None
    meta = reader.schema.metadata or {}
    stage = meta.get(_STAGE_KEY, b"").decode()
    if stage not in expect:
        got = f"the output of `{_PRODUCER[stage]}`" if stage in _PRODUCER else "another Arrow stream"
        raise InputError(f"expected the output of {wanted} on stdin, got {got}")
    try:
        raw = json.loads(meta[_HEADER_KEY])
    except (KeyError, ValueError, RecursionError):
        raise InputError(f"the {stage} stream on stdin has no readable header") from None
    header = StageHeader.from_json(raw, stage)

    def batches() -> Iterator[tuple[dict, dict[str, np.ndarray]]]:
        while True:
            try:
                batch, custom = reader.read_next_batch_with_custom_metadata()
            except StopIteration:
                raise InputError(
                    f"the {stage} stream on stdin ended early: {_PRODUCER[stage]} failed or was stopped"
                ) from None
            except (pa.ArrowInvalid, OSError) as e:
                raise InputError(f"truncated or corrupt {stage} stream on stdin ({e})") from None
            unit = json.loads(custom[b"unit"]) if custom and b"unit" in custom else {}
            yield unit, {name: _to_numpy(batch.column(name)) for name in batch.schema.names}
            if unit.get("unit_id") == TRAILER_UNIT:
                return

    return header, batches()


def segmented_from(unit: dict, batch_arrays: dict[str, np.ndarray]) -> SegmentedUnit:
    offsets, values = batch_arrays["ids"]
    flat = values.astype(np.int32, copy=False)
    start = offsets[:-1].copy()
    lengths = np.diff(offsets)
    doc = batch_arrays["doc"].astype(np.int64)
    bounds = np.flatnonzero(np.diff(doc)) + 1
    doc_lo = np.concatenate([[0], bounds]).astype(np.int64) if len(doc) else np.zeros(0, np.int64)
    doc_hi = np.concatenate([bounds, [len(doc)]]).astype(np.int64) if len(doc) else np.zeros(0, np.int64)
    starts = None
    if WORD_STARTS in batch_arrays:
        starts = batch_arrays[WORD_STARTS][1].astype(bool)
        if len(starts) != len(flat):
            raise InputError("segments stream on stdin: word starts and token ids differ in length")
    segments = Segments(flat, start, lengths, doc_lo, doc_hi, starts)
    return SegmentedUnit(unit["unit_id"], segments, PairStats.from_dict(unit["pairs"]))


def paired_from(unit: dict, arrays: dict[str, np.ndarray]) -> PairedUnit:
    return PairedUnit(
        unit["unit_id"],
        arrays["input_ids"].astype(np.int32, copy=False),
        arrays["lengths"].astype(np.int64),
        arrays["a_len"].astype(np.int64),
        arrays["next_sentence_label"].astype(np.int8, copy=False),
        PairStats.from_dict(unit["pairs"]),
        arrays[WORD_STARTS].astype(bool) if WORD_STARTS in arrays else None,
    )


def masked_from(unit: dict, arrays: dict[str, np.ndarray]) -> MaskedUnit:
    columns = dict(arrays)  # the compact columns of the stream's layout
    return MaskedUnit(unit["unit_id"], columns, PairStats.from_dict(unit["pairs"]), np.array(unit["masked"], dtype=np.int64))
