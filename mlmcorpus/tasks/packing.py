"""``--pair-task none``: RoBERTa's packed rows, ``[CLS] x [SEP]`` with no pair and no label.

Sentences (segments) are packed greedily, in document order, into rows of up to
``max_seq_length - 2`` tokens; a sentence is never split across rows (long ones were cut
into segments already).  ``--packing full-sentences`` lets a row run on into the next
document with a ``[SEP]`` between the two, as RoBERTa's FULL-SENTENCES; ``doc-sentences``
ends a row at every document end, so rows may be shorter (DOC-SENTENCES).  No randomness
but the order of the rows, shuffled within the unit like every task's; ``dupe_factor``
repeats the rows, each copy masked afresh.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mlmcorpus.config import BuildConfig
from mlmcorpus.rng import Purpose, unit_generator
from mlmcorpus.segments import Segments
from mlmcorpus.tasks.base import Task
from mlmcorpus.tokenizers import SpecialIds
from mlmcorpus.units import PairedUnit, SegmentedUnit

__all__ = ["PackingTask", "pack", "assemble_packed", "packed_word_starts"]


def pack(segments: Segments, max_tokens: int, cross_documents: bool, sep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat ids, row starts, row lengths): rows are ``flat[start:start + length]``.

    The flat array is the segments in order, with a ``sep`` token between two documents when
    rows may cross them.  A row starts and ends at a sentence, never at a separator.
    """
    SEP, END = -1, -2  # item kinds besides a segment index
    items: list[int] = []
    for d in range(segments.num_docs):
        if d and cross_documents:
            items.append(SEP)
        items.extend(range(int(segments.doc_lo[d]), int(segments.doc_hi[d])))
        if not cross_documents:
            items.append(END)
    seg_len = segments.length.tolist()
    size = [1 if k == SEP else 0 if k == END else seg_len[k] for k in items]
    offsets = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(size, out=offsets[1:])
    starts: list[int] = []
    ends: list[int] = []
    first = last = -1  # items of the open row (-1: none)
    length = 0

    def close() -> None:
        nonlocal first, last, length
        if first >= 0:
            if items[last] == SEP:  # a separator never ends a row
                last -= 1
            starts.append(int(offsets[first]))
            ends.append(int(offsets[last + 1]))
        first, last, length = -1, -1, 0

    for idx, k in enumerate(items):
        if k == END:
            close()
            continue
        n = size[idx]
        if k == SEP and first < 0:
            continue  # nor starts one
        if first >= 0 and length + n > max_tokens:
            close()
            if k == SEP:
                continue
        if first < 0:
            first = idx
        last = idx
        length += n
    close()
    pieces = [np.array([sep], dtype=segments.ids.dtype) if k == SEP else
              segments.ids[segments.start[k] : segments.start[k] + seg_len[k]] for k in items if k != END]
    flat = np.concatenate(pieces) if pieces else np.zeros(0, dtype=segments.ids.dtype)
    start = np.array(starts, dtype=np.int64)
    return flat, start, np.array(ends, dtype=np.int64) - start


def assemble_packed(flat: np.ndarray, start: np.ndarray, length: np.ndarray, max_seq_length: int,
                    special: SpecialIds) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[CLS] x [SEP] [PAD]...`` (int32[n, L]) and their lengths, copied from windows of ``flat``."""
    n, L = len(start), max_seq_length
    if n == 0:
        return np.full((0, L), special.pad, dtype=np.int32), np.zeros(0, dtype=np.int64)
    out, lengths = _packed_rows(flat, start, length, L, np.int32(special.pad))
    out[:, 0] = special.cls
    out[np.arange(n), lengths - 1] = special.sep
    return out, lengths


def _packed_rows(flat: np.ndarray, start: np.ndarray, length: np.ndarray, L: int, fill: np.generic) -> tuple[np.ndarray, np.ndarray]:
    """Rows holding ``flat[start:start + length]`` from column 1, ``fill`` elsewhere, and their lengths."""
    padded = np.full(len(flat) + 2 * L, fill, dtype=fill.dtype)
    padded[L : L + len(flat)] = flat
    out = sliding_window_view(padded, L)[start + L - 1].copy()  # column c holds flat[start - 1 + c]
    lengths = length + 2
    np.copyto(out, fill, where=np.arange(L)[None, :] >= lengths[:, None])
    return out, lengths


def packed_word_starts(segments: Segments, start: np.ndarray, length: np.ndarray, max_seq_length: int,
                       cross_documents: bool) -> np.ndarray:
    """bool[n, L]: the word starts beside :func:`assemble_packed`'s rows, packed as the ids are
    (a separator between documents, [CLS], [SEP] and padding count as starts)."""
    assert segments.word_starts is not None
    if len(start) == 0:
        return np.ones((0, max_seq_length), dtype=bool)
    flat = pack(replace(segments, ids=segments.word_starts), max_seq_length - 2, cross_documents, True)[0]
    out, lengths = _packed_rows(flat, start, length, max_seq_length, np.True_)
    out[:, 0] = True
    out[np.arange(len(start)), lengths - 1] = True
    return out


class PackingTask(Task):
    """``--pair-task none`` (RoBERTa): packed rows, no pair label."""

    name = "none"
    label = None

    def instances(self, seg: SegmentedUnit, config: BuildConfig, special: SpecialIds) -> PairedUnit:
        pc = config.pairs
        cross = pc.packing == "full-sentences"
        flat, start, length = pack(seg.segments, pc.max_seq_length - 2, cross, special.sep)
        start, length = np.tile(start, pc.dupe_factor), np.tile(length, pc.dupe_factor)
        order = unit_generator(config.seed, seg.unit_id, Purpose.SHUFFLE).permutation(len(start))
        ids, lengths = assemble_packed(flat, start[order], length[order], pc.max_seq_length, special)
        starts = None
        if seg.segments.word_starts is not None:
            starts = packed_word_starts(seg.segments, start[order], length[order], pc.max_seq_length, cross)
        seg.stats.instances += len(order)
        # a_len spans the whole text: token_type_ids are all 0; the label column is not written.
        return PairedUnit(seg.unit_id, ids, lengths, lengths - 2, np.zeros(len(order), dtype=np.int8), seg.stats, starts)
