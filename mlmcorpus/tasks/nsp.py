"""Next-sentence-prediction instances, as in Google's ``create_pretraining_data.py``.

:func:`create_instances` runs the reference algorithm (DESIGN.md §3) on segment
lengths only — drawing from ``random.Random`` in exactly the reference's call
order — and :func:`assemble` builds the ``[CLS] A [SEP] B [SEP]`` rows with NumPy.
Random next sentences come from another document of the same unit (the
bounded pool); a unit with a single document takes B from a distant part of
that document and counts it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mlmcorpus.config import BuildConfig, PairConfig
from mlmcorpus.rng import Purpose, unit_generator, unit_random
from mlmcorpus.segments import Segments
from mlmcorpus.tasks.base import Task
from mlmcorpus.tokenizers import SpecialIds
from mlmcorpus.units import PairedUnit, PairStats, SegmentedUnit

#: SOP rows labelled 1 because their chunk had one segment (B from another document), not a swap.
SOP_ONE_SEGMENT = "sop_one_segment_chunks"

__all__ = ["SOP_ONE_SEGMENT", "NspTask", "SopTask", "Instances", "create_instances", "concat_instances", "assemble",
           "assemble_word_starts"]


@dataclass(frozen=True)
class Instances:
    """Unmasked instances as ranges into ``Segments.ids``.

    A is ``ids[a_start:a_start + a_len]``, B likewise; ``is_random_next`` is the
    NSP label (1 = B is a random sentence).  All int64[n] except the label (int8).
    """

    a_start: np.ndarray
    a_len: np.ndarray
    b_start: np.ndarray
    b_len: np.ndarray
    is_random_next: np.ndarray

    def __len__(self) -> int:
        return len(self.a_start)

    def take(self, order: np.ndarray) -> Instances:
        return Instances(*(a[order] for a in (self.a_start, self.a_len, self.b_start, self.b_len, self.is_random_next)))


def create_instances(
    segments: Segments, config: PairConfig, rng: random.Random, stats: PairStats, sop: bool = False
) -> Instances:
    """One pass of the reference algorithm over every document of the unit.

    With ``sop`` (ALBERT's sentence order): no random next; A and B are swapped with
    probability 0.5 (label 1).  A chunk of one segment still takes B from another
    document, labelled 1, as ALBERT's ``create_instances_from_document`` does.
    """
    max_num = config.max_num_tokens
    seg_start = segments.start.tolist()
    seg_len = segments.length.tolist()
    cum = [0]
    for n in seg_len:
        cum.append(cum[-1] + n)
    doc_lo = segments.doc_lo.tolist()
    doc_hi = segments.doc_hi.tolist()
    n_docs = len(doc_lo)
    out_a_start: list[int] = []
    out_a_len: list[int] = []
    out_b_start: list[int] = []
    out_b_len: list[int] = []
    out_label: list[int] = []
    short_p = config.short_seq_prob
    random_p = config.random_next_prob
    same_doc = 0
    no_random = 0
    unavailable = 0
    one_segment = 0
    rand = rng.random
    # ``rng.randint(a, b)`` is ``a + rng._randbelow(b - a + 1)`` (CPython's randrange): the same draws
    # without two Python frames per call, which were a fifth of this loop's time.
    below = rng._randbelow  # type: ignore[attr-defined]

    for d in range(n_docs):
        lo, hi = doc_lo[d], doc_hi[d]
        target = max_num
        if rand() < short_p:
            target = 2 + below(max_num - 1)
        chunk_lo = lo
        current_length = 0
        i = lo
        while i < hi:
            current_length += seg_len[i]
            if i == hi - 1 or current_length >= target:
                n_chunk = i - chunk_lo + 1
                a_end = 1 if n_chunk < 2 else 1 + below(n_chunk - 1)
                a_lo, a_hi = chunk_lo, chunk_lo + a_end
                len_a = cum[a_hi] - cum[a_lo]
                label = 0
                swapped = False
                if n_chunk == 1 or (not sop and rand() < random_p):
                    target_b = target - len_a
                    r = d
                    if n_docs > 1:
                        for _ in range(10):
                            r = below(n_docs)
                            if r != d:
                                break
                    random_start = -1
                    if r != d:
                        r_lo, r_hi = doc_lo[r], doc_hi[r]
                        random_start = r_lo + below(r_hi - r_lo)
                    else:
                        # One document in the pool (a whole book): take B from a distant part of
                        # it -- not the chunk, nor the segment just before or just after it -- and
                        # never run into the chunk.
                        r_hi = hi
                        before = max(chunk_lo - 1 - lo, 0)
                        after = max(hi - (i + 2), 0)
                        if before + after:
                            k = below(before + after)
                            if k < before:
                                random_start, r_hi = lo + k, chunk_lo - 1
                            else:
                                random_start = i + 2 + (k - before)
                            same_doc += 1
                    if random_start >= 0:
                        label = 1
                        one_segment += sop  # SOP enters here only for a chunk of one segment
                        b_lo = random_start
                        len_b = 0
                        j = random_start
                        while j < r_hi:
                            len_b += seg_len[j]
                            j += 1
                            if len_b >= target_b:
                                break
                        # Put back the segments of the chunk that were not used for A.
                        i -= n_chunk - a_end
                    elif n_chunk == 1:  # no B at all: nothing to pair this segment with
                        no_random += 1
                        current_length = 0
                        chunk_lo = i + 1
                        i += 1
                        continue
                    else:  # no distant text for a random B: keep the actual next one
                        unavailable += 1
                elif sop and rand() < 0.5:
                    swapped = True
                if label == 0:
                    b_lo = a_hi
                    j = chunk_lo + n_chunk
                    len_b = cum[j] - cum[b_lo]
                a0, b0 = seg_start[a_lo], seg_start[b_lo]
                if swapped:  # ALBERT swaps before truncating
                    a0, b0, len_a, len_b = b0, a0, len_b, len_a
                    label = 1
                # truncate_seq_pair: trim the longer side (B on ties), front or back at random.
                while len_a + len_b > max_num:
                    if len_a > len_b:
                        if rand() < 0.5:
                            a0 += 1
                        len_a -= 1
                    else:
                        if rand() < 0.5:
                            b0 += 1
                        len_b -= 1
                out_a_start.append(a0)
                out_a_len.append(len_a)
                out_b_start.append(b0)
                out_b_len.append(len_b)
                out_label.append(label)
                chunk_lo = i + 1
                current_length = 0
            i += 1

    labels = np.array(out_label, dtype=np.int8)
    stats.instances += len(out_label)
    stats.random_next += int(labels.sum())
    if same_doc:
        stats.counts["random_next_same_document"] += same_doc
    if no_random:
        stats.counts["chunks_without_random_next"] += no_random
    if unavailable:
        stats.counts["random_next_unavailable"] += unavailable
    if one_segment:
        stats.counts[SOP_ONE_SEGMENT] += one_segment
    return Instances(
        np.array(out_a_start, dtype=np.int64),
        np.array(out_a_len, dtype=np.int64),
        np.array(out_b_start, dtype=np.int64),
        np.array(out_b_len, dtype=np.int64),
        labels,
    )


def concat_instances(parts: Sequence[Instances]) -> Instances:
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Instances(empty, empty, empty, empty, np.zeros(0, dtype=np.int8))
    return Instances(
        *(np.concatenate([getattr(p, name) for p in parts]) for name in ("a_start", "a_len", "b_start", "b_len", "is_random_next"))
    )


def assemble(ids: np.ndarray, inst: Instances, max_seq_length: int, special: SpecialIds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``[CLS] A [SEP] B [SEP] [PAD]...``, vectorised over instances.

    Returns ``input_ids`` int32[n, max_seq_length], ``lengths`` int64[n] (tokens
    before padding) and ``a_len`` int64[n]; ``token_type_ids`` follow from them
    (0 up to and including the first ``[SEP]``, 1 after).

    Every row is copied whole from a sliding window over the (padded) token ids: one
    window placed so that A lands at column 1, one so that B lands after A's ``[SEP]``;
    a mask picks B's columns.  Row copies instead of per-token gathers: 4x faster.
    """
    L = max_seq_length
    if len(inst) == 0:
        return np.full((0, L), special.pad, dtype=np.int32), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    out, lengths = _pair_rows(ids, inst, L, np.int32(special.pad))
    rows = np.arange(len(inst))
    out[:, 0] = special.cls
    out[rows, inst.a_len + 1] = special.sep
    out[rows, lengths - 1] = special.sep
    return out, lengths, inst.a_len.copy()


def assemble_word_starts(word_starts: np.ndarray, inst: Instances, max_seq_length: int) -> np.ndarray:
    """bool[n, L]: the word starts beside :func:`assemble`'s rows (``word_starts`` beside the
    segments' ids); [CLS], [SEP] and padding count as starts."""
    if len(inst) == 0:
        return np.ones((0, max_seq_length), dtype=bool)
    out, lengths = _pair_rows(word_starts, inst, max_seq_length, np.True_)
    rows = np.arange(len(inst))
    out[:, 0] = True
    out[rows, inst.a_len + 1] = True
    out[rows, lengths - 1] = True
    return out


def _pair_rows(flat: np.ndarray, inst: Instances, L: int, fill: np.generic) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``flat``'s values at A's and B's columns, ``fill`` elsewhere, and their lengths."""
    la, lb = inst.a_len, inst.b_len
    padded = np.full(len(flat) + 2 * L, fill, dtype=fill.dtype)
    padded[L : L + len(flat)] = flat
    windows = sliding_window_view(padded, L)  # windows[k] = padded[k:k + L], no copy
    # Column c of a row: flat[a_start - 1 + c] for A, flat[b_start - (la + 2) + c] for B
    # (the offset L of ``padded`` keeps both window starts non-negative).
    out = windows[inst.a_start + (L - 1)]
    b_first = la + 2
    cols = np.arange(L)
    np.copyto(out, windows[inst.b_start + L - b_first], where=cols >= b_first[:, None])
    lengths = b_first + lb + 1
    np.copyto(out, fill, where=cols >= lengths[:, None])
    return out, lengths


class NspTask(Task):
    """BERT's pairs: ``dupe_factor`` passes of the reference algorithm, shuffled within the unit."""

    name = "nsp"
    label = "next_sentence_label"
    sop = False

    def instances(self, seg: SegmentedUnit, config: BuildConfig, special: SpecialIds) -> PairedUnit:
        pc = config.pairs
        passes = []
        for p in range(pc.dupe_factor):
            rng = unit_random(config.seed, seg.unit_id, Purpose.PAIRS, p)
            passes.append(create_instances(seg.segments, pc, rng, seg.stats, sop=self.sop))
        inst = concat_instances(passes)
        order = unit_generator(config.seed, seg.unit_id, Purpose.SHUFFLE).permutation(len(inst))
        inst = inst.take(order)
        ids, lengths, a_len = assemble(seg.segments.ids, inst, pc.max_seq_length, special)
        ws = seg.segments.word_starts
        starts = None if ws is None else assemble_word_starts(ws, inst, pc.max_seq_length)
        return PairedUnit(seg.unit_id, ids, lengths, a_len, inst.is_random_next, seg.stats, starts)


class SopTask(NspTask):
    """ALBERT's sentence-order prediction: the NSP chunking, A and B swapped half of the time."""

    name = "sop"
    label = "sentence_order_label"
    sop = True
