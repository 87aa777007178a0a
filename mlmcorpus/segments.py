"""A unit tokenised and cut into segments (no randomness).

The unit's token ids arrive as one flat array (:class:`~mlmcorpus.tokenizers.EncodedBatch`)
with sentence offsets and per-document sentence ranges.  Sentences longer than
``max_seq_length - 3`` tokens are first cut into pieces of at most that length
(counted), so nothing is dropped silently.  Every remaining piece is a
*segment*; the segments of one document are contiguous in the flat array,
which lets an instance be described by (start, length) ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlmcorpus.config import BuildConfig
from mlmcorpus.tokenizers import EncodedBatch, Tokenizer
from mlmcorpus.units import PairStats, SegmentedUnit, Unit
from mlmcorpus.word_splitter import encode_with_words

__all__ = ["Segments", "split_segments", "segment_unit"]


@dataclass(frozen=True)
class Segments:
    """Segments of a unit: ``ids[start[k]:start[k] + length[k]]``; document d owns ``doc_lo[d]:doc_hi[d]``.

    ``ids``: int32[total]; ``start``/``length``: int64[n_segments]; only
    documents with at least one segment are kept.  ``word_starts`` (bool[total], beside
    ``ids``) when the rows must carry per-piece word starts (see ``segment_unit``).
    """

    ids: np.ndarray
    start: np.ndarray
    length: np.ndarray
    doc_lo: np.ndarray
    doc_hi: np.ndarray
    word_starts: np.ndarray | None = None

    @property
    def num_docs(self) -> int:
        return len(self.doc_lo)


def split_segments(
    batch: EncodedBatch, doc_sentence_offsets: Sequence[int] | np.ndarray, max_num_tokens: int, stats: PairStats
) -> Segments:
    """Turn tokenised sentences into segments of at most ``max_num_tokens`` tokens.

    ``doc_sentence_offsets`` (length n_docs + 1) gives each document's range of
    sentences in ``batch``.  Long sentences are cut into consecutive pieces;
    sentences with no tokens vanish; documents left empty are dropped (counted).
    """
    lengths = batch.lengths
    pieces = -(-lengths // max_num_tokens)  # ceil; 0 for empty sentences
    n_segments = int(pieces.sum())
    sentence_of = np.repeat(np.arange(len(lengths)), pieces)
    first_piece = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(pieces, out=first_piece[1:])
    j = np.arange(n_segments) - first_piece[sentence_of]
    start = batch.offsets[sentence_of] + j * max_num_tokens
    end = np.minimum(start + max_num_tokens, batch.offsets[sentence_of + 1])
    doc_off = np.asarray(doc_sentence_offsets, dtype=np.int64)
    seg_doc_lo = first_piece[doc_off[:-1]]
    seg_doc_hi = first_piece[doc_off[1:]]
    nonempty = seg_doc_hi > seg_doc_lo
    long_sentences = int(np.count_nonzero(pieces > 1))
    if long_sentences:
        stats.counts["long_sentences_split"] += long_sentences
    empty_sentences = int(np.count_nonzero(lengths == 0))
    if empty_sentences:
        stats.counts["empty_sentences_after_tokenizing"] += empty_sentences
    if not nonempty.all():
        stats.counts["empty_documents_after_tokenizing"] += int(np.count_nonzero(~nonempty))
    stats.documents += int(np.count_nonzero(nonempty))
    stats.sentences += int(np.count_nonzero(lengths))
    stats.tokens += int(lengths.sum())
    return Segments(batch.ids, start, end - start, seg_doc_lo[nonempty], seg_doc_hi[nonempty], batch.word_starts)



def segment_unit(unit: Unit, tokenizer: Tokenizer, config: BuildConfig, word_starts: bool = False) -> SegmentedUnit:
    """Tokenise a unit's sentences in one batch and cut them into segments.

    ``word_starts``: the segments carry which pieces start a word (by ``--word-splitter``
    when set, else by the tokenizer), for word-level masking where the vocabulary cannot tell
    (:func:`mlmcorpus.objective.carries_word_starts`).
    """
    sentences = [s for doc in unit.documents for s in doc]
    doc_offsets = np.zeros(len(unit.documents) + 1, dtype=np.int64)
    np.cumsum([len(doc) for doc in unit.documents], out=doc_offsets[1:])
    splitter = config.pairs.word_splitter
    if not word_starts:
        batch = tokenizer.encode_batch(sentences)
    elif splitter is not None:
        batch = encode_with_words(tokenizer, sentences, splitter)
    else:
        batch = tokenizer.encode_batch(sentences, word_starts=True)
    stats = PairStats()
    if unit.split_parts:
        stats.counts["long_documents_split"] += unit.split_parts
    segments = split_segments(batch, doc_offsets, config.pairs.max_num_tokens, stats)
    return SegmentedUnit(unit.id, segments, stats)
