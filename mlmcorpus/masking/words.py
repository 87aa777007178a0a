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
from mlmcorpus.masking.tokens import KIND_KEEP, KIND_MASK, KIND_RANDOM, wanted_predictions

__all__ = ["WholeWordMasking", "NgramMasking", "SpanMasking", "word_index", "word_groups", "group_length_pmf", "choose_groups", "mask_words"]

#: Rows masked at a time: a dozen (rows, L) temporaries, which at 1024 rows stay below the token
#: policy's peak (4096 rows cost each process 35 MB more, at the same speed).
_CHUNK_ROWS = 1024


def word_index(cand: np.ndarray, piece_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(word index int64[n, L] (-1 off ``cand``), words int64[n], pieces of each word int64[n, L])
    of rows whose candidate positions are ``cand`` and whose pieces start a word where
    ``piece_starts``; a continuation right after a non-candidate (a special) starts a word too."""
    n, L = cand.shape
    prev = np.zeros_like(cand)
    prev[:, 1:] = cand[:, :-1]
    start = cand & (piece_starts | ~prev)
    wid = np.where(cand, np.cumsum(start, axis=1) - 1, -1)
    words = start.sum(axis=1).astype(np.int64)
    flat = (np.arange(n)[:, None] * L + wid)[cand]
    return wid, words, np.bincount(flat, minlength=n * L).reshape(n, L)


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
    cand = (np.arange(L)[None, :] < lengths[:, None]) & ~np.isin(ids, vocab.special_ids)
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
    positions = np.zeros((n, P), dtype=np.int32)
    ids = np.zeros((n, P), dtype=np.int32)
    num_masked = np.zeros(n, dtype=np.int64)
    counts = np.zeros(3, dtype=np.int64)
    pmf = group_length_pmf(config)
    for lo in range(0, n, _CHUNK_ROWS):
        hi = min(n, lo + _CHUNK_ROWS)
        starts = None if word_starts is None else word_starts[lo:hi]
        chosen, kind, _ = choose_groups(input_ids[lo:hi], lengths[lo:hi], vocab, config, P, pmf, streams, starts)
        replacement = vocab.random_ids[streams[3].integers(0, len(vocab.random_ids), size=(hi - lo, L))]
        block = out[lo:hi]
        new = np.where(kind == KIND_MASK, vocab.mask_id, np.where(kind == KIND_RANDOM, replacement, block))
        block[chosen] = new[chosen]
        k = chosen.sum(axis=1)
        num_masked[lo:hi] = k
        # The chosen positions in ascending order (then L, cut): at most k <= P per row.
        cols = np.sort(np.where(chosen, np.arange(L)[None, :], L), axis=1)[:, :P]
        valid = cols < L
        safe = np.where(valid, cols, 0)
        positions[lo:hi, : cols.shape[1]] = np.where(valid, cols, 0)
        ids[lo:hi, : cols.shape[1]] = np.where(valid, np.take_along_axis(input_ids[lo:hi], safe, axis=1), 0)
        counts += np.bincount(kind[chosen], minlength=3).astype(np.int64)
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
    """The chosen positions (bool[n, L]), what each becomes (KIND_*, int[n, L]) and, per
    position, the rank of the group that took it (-1: none)."""
    n, L = ids.shape
    cand, wid, words, before = word_groups(ids, lengths, vocab, word_starts)
    budget = np.minimum(P, wanted_predictions(lengths, config))
    keys = streams[0].random((n, L))
    np.copyto(keys, 2.0, where=np.arange(L)[None, :] >= words[:, None])
    # A row's first `words` entries: its words, shuffled (the keys below 2 are distinct, so any sort agrees).
    order = np.argsort(keys, axis=1)
    maxn = len(pmf)
    if maxn > 1:
        # The inverse of the cdf at a uniform (what Generator.choice(p=pmf) does; a sum of maxn - 1
        # comparisons is faster than its binary search for so short a table).
        cdf = np.cumsum(pmf)
        u = streams[1].random((n, L)) * cdf[-1]
        glen = np.ones((n, L), dtype=np.int64)
        for c in cdf[:-1]:
            glen += u >= c
    else:
        glen = np.ones((n, L), dtype=np.int64)
    covered = np.zeros((n, L + 1), dtype=bool)  # by word index
    group = np.full((n, L + 1), -1, dtype=np.int64)  # which rank's group took the word
    total = np.zeros(n, dtype=np.int64)
    J = np.arange(1, maxn + 1)
    active = np.flatnonzero((words > 0) & (total < budget))
    for r in range(L):
        active = active[(words[active] > r) & (total[active] < budget[active])]
        if not len(active):
            break
        a = active
        s = order[a, r]
        room = np.minimum(glen[a, r], words[a] - s)  # a group ends at the row's last word
        ends = np.minimum(s[:, None] + J[None, :], words[a][:, None])
        tokens = before[a[:, None], ends] - before[a, s][:, None]  # of the first m words, m = 1..maxn
        fits = (J[None, :] <= room[:, None]) & (total[a][:, None] + tokens <= budget[a][:, None])
        m = fits.sum(axis=1)  # the longest group that fits (tokens grow with m)
        span = np.minimum(s[:, None] + J[None, :] - 1, L)
        inside = J[None, :] <= m[:, None]
        ok = (m > 0) & ~(covered[a[:, None], span] & inside).any(axis=1)
        if not ok.any():
            continue
        rows = np.broadcast_to(a[ok][:, None], span[ok].shape)[inside[ok]]
        taken = span[ok][inside[ok]]
        covered[rows, taken] = True
        group[rows, taken] = r
        total[a[ok]] += tokens[ok, m[ok] - 1]
    safe_wid = np.where(wid >= 0, wid, L)
    rows_all = np.arange(n)[:, None]
    chosen = cand & covered[rows_all, safe_wid]
    u = streams[2].random((n, L))
    if config.replace_per == "word":
        # One draw per group: the draw of its rank, shared by all its pieces.
        u = np.take_along_axis(u, np.clip(group[rows_all, safe_wid], 0, L - 1), axis=1)
    r_mask, r_random, _ = config.mask_ratios
    kind = np.where(u < r_mask, KIND_MASK, np.where(u < r_mask + r_random, KIND_RANDOM, KIND_KEEP))
    return chosen, kind, np.where(chosen, group[rows_all, safe_wid], -1)


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
