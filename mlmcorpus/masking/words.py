"""Word-level masking: whole words (Google), n-grams of words (ALBERT), spans of words (SpanBERT).

A *word* is a piece that starts a word followed by its continuation pieces (WordPiece
``##``, sentencepiece pieces without ``▁``; see ``Tokenizer.word_start_mask``), or by the
per-position ``word_starts`` rows carry (a tokenizer.json's pre-tokenizer words, a
``--word-splitter``); specials are never part of one.  Each row has the budget of token masking,
``k = min(max_predictions_per_seq, max(1, round(length * masked_lm_prob)))`` tokens.
Candidate groups are tried in a random order of their first word: a group is ``n``
consecutive words (n = 1 for whole-word; p(n) ∝ 1/n on 1..max_ngram for ngram; a
geometric length truncated to 1..max_span for span).  A group that would overflow the
budget is shortened word by word (ALBERT's rule), and skipped when even its first word
does not fit, so a word is never cut; a group touching one already chosen is skipped.  A
row is done when its budget is met or every word has been tried.  What each chosen piece
becomes is drawn per piece or per group (``replace_per``).

Vectorised over rows: the loop runs over the rank in the random order, on the rows still
below their budget.  Four child generators (order, lengths, kinds, replacements) are each
drawn in row order, so the result is the same for any chunking of the rows.
"""

from __future__ import annotations

import numpy as np

from mlmcorpus.config import MaskConfig
from mlmcorpus.masking.base import MaskedBatch, MaskingPolicy, MaskVocab
from mlmcorpus.masking.tokens import KIND_MASK, KIND_RANDOM, wanted_predictions

__all__ = ["WholeWordMasking", "NgramMasking", "SpanMasking", "word_index", "word_groups", "group_length_pmf", "choose_groups", "mask_words"]

#: Rows masked at a time: a dozen (rows, L) temporaries, which at 1024 rows stay below the token
#: policy's peak (4096 rows cost each process 35 MB more, at the same speed).
_CHUNK_ROWS = 1024


def word_index(cand: np.ndarray, piece_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(word index int64[n, L] (-1 off ``cand``), words int64[n], pieces of each word int64[n, L])
    of rows whose candidate positions are ``cand`` and whose pieces start a word where
    ``piece_starts``; a continuation right after a non-candidate (a special) starts a word too."""
    n, L = cand.shape
    start = cand & piece_starts
    start[:, 0] = cand[:, 0]
    start[:, 1:] |= cand[:, 1:] & ~cand[:, :-1]
    wid = np.cumsum(start, axis=1, dtype=np.int64)
    words = wid[:, -1].copy() if L else np.zeros(n, dtype=np.int64)
    wid -= 1
    np.copyto(wid, -1, where=~cand)
    # Pieces per word: a count of (row, word + 1), the non-candidates (-1) falling in column 0.
    sizes = np.bincount((wid + (np.arange(n)[:, None] * (L + 1) + 1)).ravel(), minlength=n * (L + 1))
    return wid, words, sizes.reshape(n, L + 1)[:, 1:]


def _specials(ids: np.ndarray, special_ids: np.ndarray) -> np.ndarray:
    """bool[n, L]: where ``ids`` is one of ``special_ids`` (``np.isin``, quicker for a few)."""
    if len(special_ids) <= 16:
        out = np.zeros(ids.shape, dtype=bool)
        for s in special_ids.tolist():
            out |= ids == s
        return out
    table = np.zeros(int(special_ids.max()) + 2, dtype=bool)
    table[special_ids] = True
    return np.asarray(table.take(ids, mode="clip"))  # an id past the last special: the False at the end


def word_groups(
    ids: np.ndarray, lengths: np.ndarray, vocab: MaskVocab, piece_starts: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(candidate bool[n, L], word index int64[n, L] (-1 off candidates), words int64[n],
    tokens before each word int64[n, L + 1]) of padded rows ``ids``; pieces start a word where
    ``piece_starts`` (bool[n, L]) says, else by ``vocab.word_start``."""
    if piece_starts is None:
        if vocab.word_start is None:
            raise ValueError("word-level masking needs the tokenizer's word starts (MaskVocab.word_start)")
        piece_starts = vocab.word_start[ids]
    n, L = ids.shape
    cand = _specials(ids, vocab.special_ids)
    np.logical_not(cand, out=cand)
    cand &= np.arange(L)[None, :] < lengths[:, None]
    wid, words, wlen = word_index(cand, piece_starts)
    before = np.zeros((n, L + 1), dtype=np.int64)
    np.cumsum(wlen, axis=1, out=before[:, 1:])
    return cand, wid, words, before


def group_length_pmf(config: MaskConfig) -> np.ndarray:
    """P(n) for n = 1, 2, ... of the configured policy's group lengths (in words)."""
    p: np.ndarray
    if config.masking == "ngram":
        p = 1.0 / np.arange(1, config.max_ngram + 1)
    elif config.masking == "span":
        p = config.span_p * (1 - config.span_p) ** np.arange(config.max_span, dtype=np.float64)
    else:
        p = np.ones(1)
    return np.asarray(p / p.sum(), dtype=np.float64)


def mask_words(
    input_ids: np.ndarray, lengths: np.ndarray, vocab: MaskVocab, config: MaskConfig, rng: np.random.Generator,
    word_starts: np.ndarray | None = None,
) -> MaskedBatch:
    """Mask whole words, n-grams or spans of ``input_ids`` (int[n, L], padded; a copy); words
    start where ``word_starts`` (bool[n, L]) says, else by ``vocab.word_start``."""
    n, L = input_ids.shape
    P = config.predictions_for(L)
    streams = rng.spawn(4)
    out = input_ids.copy()
    flat_out = out.reshape(-1)
    positions = np.zeros((n, P), dtype=np.int32)
    ids = np.zeros((n, P), dtype=np.int32)
    num_masked = np.zeros(n, dtype=np.int64)
    counts = np.zeros(3, dtype=np.int64)
    pmf = group_length_pmf(config)
    for lo in range(0, n, _CHUNK_ROWS):
        hi = min(n, lo + _CHUNK_ROWS)
        starts = None if word_starts is None else word_starts[lo:hi]
        chosen, kind, _ = choose_groups(input_ids[lo:hi], lengths[lo:hi], vocab, config, P, pmf, streams, starts)
        # Drawn for every position (the stream's next chunk starts after them), used where chosen.
        draws = streams[3].integers(0, len(vocab.random_ids), size=(hi - lo, L))
        # The chosen positions, row by row and ascending in each row (at most P per row).
        at = np.flatnonzero(chosen)
        row, col = np.divmod(at, L)
        what = kind.reshape(-1)[at]
        original = flat_out[lo * L + at]
        replacement = vocab.random_ids[draws.reshape(-1)[at]]
        flat_out[lo * L + at] = np.where(what == KIND_MASK, vocab.mask_id, np.where(what == KIND_RANDOM, replacement, original))
        k = np.bincount(row, minlength=hi - lo)
        num_masked[lo:hi] = k
        slot = np.arange(len(at)) - np.repeat(np.cumsum(k) - k, k)
        positions[lo + row, slot] = col
        ids[lo + row, slot] = original
        counts += np.bincount(what, minlength=3)
    capped = int(np.count_nonzero(wanted_predictions(lengths, config) > P))
    return MaskedBatch(out, positions, ids, counts, num_masked, capped)


def choose_groups(
    ids: np.ndarray,
    lengths: np.ndarray,
    vocab: MaskVocab,
    config: MaskConfig,
    P: int,
    pmf: np.ndarray,
    streams: list[np.random.Generator],
    word_starts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chosen positions (bool[n, L]), what each becomes (KIND_*, int8[n, L]) and, per
    position, the rank of the group that took it (int64[n, L]; -1: none)."""
    n, L = ids.shape
    cand, wid, words, before = word_groups(ids, lengths, vocab, word_starts)
    left = np.minimum(P, wanted_predictions(lengths, config))  # budget still to fill
    keys = streams[0].random((n, L))
    np.copyto(keys, 2.0, where=np.arange(L)[None, :] >= words[:, None])
    # A row's first `words` entries: its words, shuffled (the keys below 2 are distinct, so any sort agrees).
    order = np.argsort(keys, axis=1)
    maxn = len(pmf)
    if maxn > 1:
        # The inverse of the cdf at a uniform (what Generator.choice(p=pmf) does), taken at the ranks
        # the loop reaches: the number of cdf steps at or below u, past a first step at -inf.
        cdf = np.cumsum(pmf)
        steps = np.concatenate(([-np.inf], cdf[:-1]))
        u = streams[1].random((n, L))
    # By (row, word) in rows of L + 1 (flat): tokens before the word, and the rank of the group that
    # took it (-1: none). Column L is never taken, so word index -1 (off the candidates) of row i
    # finds -1 in row i - 1's column L, and row 0's wraps round to the last row's.
    W = L + 1
    flat_before = before.reshape(-1)
    after = flat_before[1:]  # tokens before the next word: up to the end of this one
    group = np.full(n * W, -1, dtype=np.int64)
    J = np.arange(maxn)[:, None]
    # The rows still below their budget with words left to try: their index, words and budget left.
    a = np.flatnonzero(words > 0)
    wa, la = words[a], left[a]
    for r in range(L):
        keep = (wa > r) & (la > 0)
        if not keep.all():
            a, wa, la = a[keep], wa[keep], la[keep]
        if not len(a):
            break
        s = order[a, r]
        room = wa - s  # a group ends at the row's last word
        if maxn > 1:
            np.minimum(room, np.searchsorted(steps, u[a, r] * cdf[-1], side="right"), out=room)
        base = a * W + s  # (row, first word)
        start = flat_before[base]
        # (j, row) arrays, j < the longest room: numpy reduces such short columns faster than rows.
        j = J[: int(room.max())]
        at = base + j  # word s + j, for j < room (beyond: other words, masked below)
        # The longest group that fits: its tokens (which grow with its words) within the budget.
        fits = after.take(at, mode="clip") <= start + la
        fits &= j < room
        m = fits.sum(axis=0)
        inside = j < m
        busy = group.take(at, mode="clip") >= 0
        busy &= inside
        ok = (m > 0) & ~busy.any(axis=0)
        inside &= ok
        group[at[inside]] = r
        m *= ok
        la -= flat_before[base + m] - start
    rank = group.take(wid + np.arange(n)[:, None] * W)  # -1 off candidates and off chosen words
    chosen = rank >= 0
    u = streams[2].random((n, L))
    r_mask, r_random, _ = config.mask_ratios
    # KIND_MASK, KIND_RANDOM, KIND_KEEP are 0, 1, 2: how many of the two thresholds u reaches.
    kind = (u >= r_mask).astype(np.int8)
    kind += u >= r_mask + r_random
    if config.replace_per == "word":
        # One draw per group: the draw of its rank, shared by all its pieces.
        kind = kind.take(np.maximum(rank, 0) + np.arange(n)[:, None] * L)
    return chosen, kind, rank


class _WordPolicy(MaskingPolicy):
    def mask(self, input_ids: np.ndarray, lengths: np.ndarray, vocab: MaskVocab, config: MaskConfig,
             rng: np.random.Generator, word_starts: np.ndarray | None = None) -> MaskedBatch:
        return mask_words(input_ids, lengths, vocab, config, rng, word_starts)


class WholeWordMasking(_WordPolicy):
    """``--masking whole-word``: Google's ``do_whole_word_mask``."""

    name = "whole-word"


class NgramMasking(_WordPolicy):
    """``--masking ngram``: ALBERT's n-gram masking, seeded by the unit's generator."""

    name = "ngram"


class SpanMasking(_WordPolicy):
    """``--masking span``: SpanBERT's geometric spans of whole words."""

    name = "span"
