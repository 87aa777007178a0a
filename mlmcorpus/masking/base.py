"""How positions are masked: the interface every masking policy implements, and what it returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from mlmcorpus.config import MaskConfig
from mlmcorpus.schema import labels_at
from mlmcorpus.tokenizers import Tokenizer

__all__ = ["MaskingPolicy", "MaskedBatch", "MaskVocab"]


@dataclass(frozen=True)
class MaskVocab:
    """What masking needs from the tokenizer: ids never to mask, [MASK], and the replacement pool."""

    special_ids: np.ndarray
    mask_id: int
    random_ids: np.ndarray
    vocab_size: int
    #: bool[vocab_size]: the piece starts a word (``▁``/no ``##``); what word-level policies group by.
    word_start: np.ndarray | None = None

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> MaskVocab:
        # Never masked: [CLS], [SEP], [PAD], [MASK] and appended specials.  [UNK] is a real
        # position in the text and is masked like any token, as in the reference.
        sp = tokenizer.special_ids
        never = {sp.cls, sp.sep, sp.pad, sp.mask} | set(range(tokenizer.base_size, tokenizer.vocab_size))
        specials = np.array(sorted(never), dtype=np.int32)
        return cls(specials, tokenizer.special_ids.mask, tokenizer.random_token_ids(), tokenizer.vocab_size,
                   tokenizer.word_start_mask())


@dataclass(frozen=True)
class MaskedBatch:
    """Masked rows and what was predicted.

    ``input_ids`` int32[n, L] (masked); ``masked_lm_positions`` int32[n, P] ascending,
    padded with 0 (in the pipeline position 0 is ``[CLS]``, never masked);
    ``masked_lm_ids`` int32[n, P]: original ids, padded with 0; ``counts``: how many
    positions became [MASK] / random / stayed (int64[3]); ``labels`` (int64[n, L]:
    the original id at masked positions, -100 elsewhere) is built on request.
    """

    input_ids: np.ndarray
    masked_lm_positions: np.ndarray
    masked_lm_ids: np.ndarray
    counts: np.ndarray
    num_masked: np.ndarray  # int64[n]: the first num_masked[i] entries of row i's positions/ids are real
    capped_rows: int = 0  # rows that wanted more predictions than max_predictions_per_seq allows
    special_tokens_mask: np.ndarray | None = None  # int8[n, L], for rows left unmasked

    @property
    def labels(self) -> np.ndarray:
        """Built on demand (the pipeline keeps only positions and ids; shards get labels from them)."""
        valid = np.arange(self.masked_lm_positions.shape[1])[None, :] < self.num_masked[:, None]
        return labels_at(self.masked_lm_positions, self.masked_lm_ids, valid, self.input_ids.shape[1])


class MaskingPolicy(ABC):
    """Chooses the positions to predict and what they become, with the generator it is given."""

    name: str
    #: Whether rows get predictions (labels, masked_lm_*); False leaves masking to train time.
    masks: bool = True

    @abstractmethod
    def mask(self, input_ids: np.ndarray, lengths: np.ndarray, vocab: MaskVocab, config: MaskConfig,
             rng: np.random.Generator, word_starts: np.ndarray | None = None) -> MaskedBatch:
        """Mask ``input_ids`` (int[n, L], padded; a copy) of rows ``lengths`` tokens long.

        ``word_starts`` (bool[n, L]): which positions start a word, when the rows carry them
        (a tokenizer.json's pre-tokenizer, a ``--word-splitter``); else word-level policies
        look pieces up in ``vocab.word_start``.
        """
