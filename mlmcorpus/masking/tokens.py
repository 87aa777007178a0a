"""BERT masked-LM predictions, vectorised over a batch of instances.

For each row: candidates are the positions of non-special tokens;
``num_to_predict = min(max_predictions_per_seq, max(1, round(length * masked_lm_prob)))``
(``length`` counts ``[CLS]`` and both ``[SEP]``; rounding is half-to-even like
Python 3's ``round``), capped by the number of candidates.  A uniformly random
subset of that size is chosen — by taking the smallest of i.i.d. uniform keys
with ``argpartition``, no full sort — and each chosen position becomes
``[MASK]``, a random non-special token, or stays unchanged with
``mask_ratios`` (0.8, 0.1, 0.1).  No per-token Python.
"""

from __future__ import annotations

import numpy as np

from mlmcorpus.config import MaskConfig
from mlmcorpus.masking.base import MaskedBatch, MaskingPolicy, MaskVocab

__all__ = ["TokenMasking", "mask_batch", "num_to_predict", "KIND_MASK", "KIND_RANDOM", "KIND_KEEP"]

KIND_MASK, KIND_RANDOM, KIND_KEEP = 0, 1, 2


def wanted_predictions(lengths: np.ndarray, config: MaskConfig) -> np.ndarray:
    """``max(1, round(length * masked_lm_prob))``: a row's share, before any cap."""
    return np.maximum(1, np.rint(lengths * config.masked_lm_prob).astype(np.int64))


def num_to_predict(lengths: np.ndarray, config: MaskConfig, max_seq_length: int) -> np.ndarray:
    """The reference formula, before capping by the number of candidates.

    The cap is ``config``'s for rows of ``max_seq_length`` tokens (it may follow the length).
    """
    return np.minimum(config.predictions_for(max_seq_length), wanted_predictions(lengths, config))


#: Rows whose positions are chosen at a time (memory: a few (rows, L) arrays of 8 bytes).
_CHUNK_ROWS = 4096


def _choose(
    input_ids: np.ndarray, lengths: np.ndarray, special_ids: np.ndarray, config: MaskConfig, rng: np.random.Generator, kk: int
) -> tuple[np.ndarray, np.ndarray]:
    """How many positions each row predicts, and which (int64[rows, kk], unsorted; L pads)."""
    n, L = input_ids.shape
    cols = np.arange(L)
    candidate = (cols[None, :] < lengths[:, None]) & ~np.isin(input_ids, special_ids)
    k = np.minimum(num_to_predict(lengths, config, L), candidate.sum(axis=1))
    keys = rng.random((n, L))
    np.copyto(keys, 2.0, where=~candidate)  # never among the k smallest while candidates remain
    if kk < L:
        part = np.argpartition(keys, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(cols, (n, L)).copy()
    chosen = np.take_along_axis(part, np.argsort(np.take_along_axis(keys, part, axis=1), axis=1), axis=1)
    valid = np.arange(kk)[None, :] < k[:, None]
    return k, np.where(valid, chosen, L)


def mask_batch(
    input_ids: np.ndarray,
    lengths: np.ndarray,
    special_ids: np.ndarray,
    mask_id: int,
    random_ids: np.ndarray,
    config: MaskConfig,
    rng: np.random.Generator,
) -> MaskedBatch:
    """Mask ``input_ids`` (int[n, L], padded) in place of a copy; ``lengths`` int[n].

    ``special_ids`` are never chosen; ``random_ids`` is the pool replacement tokens
    are drawn from (the non-special vocabulary).
    """
    n, L = input_ids.shape
    P = config.predictions_for(L)
    kk = min(P, L)
    k = np.empty(n, dtype=np.int64)
    pos = np.empty((n, kk), dtype=np.int64)
    # The positions are chosen in chunks of rows: the keys are drawn chunk after chunk, which is
    # the same stream as one (n, L) draw, but the (rows, L) temporaries stay chunk-sized.
    for lo in range(0, n, _CHUNK_ROWS):
        hi = min(n, lo + _CHUNK_ROWS)
        k[lo:hi], pos[lo:hi] = _choose(input_ids[lo:hi], lengths[lo:hi], special_ids, config, rng, kk)
    pos.sort(axis=1)  # ascending positions, padding (L) last
    valid = pos < L
    rows = np.broadcast_to(np.arange(n)[:, None], pos.shape)
    safe_pos = np.where(valid, pos, 0)
    originals = input_ids[rows, safe_pos]

    u = rng.random((n, kk))
    r_mask, r_random, _ = config.mask_ratios
    kind = np.where(u < r_mask, KIND_MASK, np.where(u < r_mask + r_random, KIND_RANDOM, KIND_KEEP))
    replacement = random_ids[rng.integers(0, len(random_ids), size=(n, kk))]
    new = np.where(kind == KIND_MASK, mask_id, np.where(kind == KIND_RANDOM, replacement, originals))

    out = input_ids.copy()
    vr, vp = rows[valid], pos[valid]
    out[vr, vp] = new[valid]
    positions = np.zeros((n, P), dtype=np.int32)
    ids = np.zeros((n, P), dtype=np.int32)
    positions[:, :kk] = np.where(valid, pos, 0)
    ids[:, :kk] = np.where(valid, originals, 0)
    counts = np.bincount(kind[valid], minlength=3).astype(np.int64)
    capped = int(np.count_nonzero(wanted_predictions(lengths, config) > P))
    return MaskedBatch(out, positions, ids, counts, k, capped)


class TokenMasking(MaskingPolicy):
    """BERT's per-token masking (``--masking token``)."""

    name = "token"

    def mask(self, input_ids: np.ndarray, lengths: np.ndarray, vocab: MaskVocab, config: MaskConfig,
             rng: np.random.Generator, word_starts: np.ndarray | None = None) -> MaskedBatch:
        return mask_batch(input_ids, lengths, vocab.special_ids, vocab.mask_id, vocab.random_ids, config, rng)
