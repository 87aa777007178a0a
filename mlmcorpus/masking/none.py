"""``--masking none``: rows without masks, for dynamic masking at train time.

The shards carry a ``special_tokens_mask`` (1 on [CLS], [SEP] and padding) instead of labels
and predictions, as ``DataCollatorForLanguageModeling`` expects; a collator then draws new
masks every epoch (RoBERTa's dynamic masking).
"""

from __future__ import annotations

import numpy as np

from mlmcorpus.config import MaskConfig
from mlmcorpus.masking.base import MaskedBatch, MaskingPolicy, MaskVocab

__all__ = ["NoMasking"]


class NoMasking(MaskingPolicy):
    name = "none"
    masks = False

    def mask(self, input_ids: np.ndarray, lengths: np.ndarray, vocab: MaskVocab, config: MaskConfig,
             rng: np.random.Generator, word_starts: np.ndarray | None = None) -> MaskedBatch:
        n, L = input_ids.shape
        special = (np.arange(L)[None, :] >= lengths[:, None]) | np.isin(input_ids, vocab.special_ids)
        empty = np.zeros((n, 0), dtype=np.int32)
        return MaskedBatch(
            input_ids, empty, empty, np.zeros(3, dtype=np.int64), np.zeros(n, dtype=np.int64),
            special_tokens_mask=special.astype(np.int8),
        )
