"""Masking policies by name (``MaskConfig.masking``): how positions are chosen and replaced.

A new policy is a module with a :class:`~mlmcorpus.masking.base.MaskingPolicy` and an entry
in :data:`_REGISTRY`.  Naming the policies (config checks) imports nothing heavy; the
policies and the shared types load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlmcorpus.errors import ConfigError
from mlmcorpus.registry import Registry

if TYPE_CHECKING:
    from mlmcorpus.masking.base import MaskedBatch, MaskingPolicy, MaskVocab
    from mlmcorpus.masking.tokens import KIND_KEEP, KIND_MASK, KIND_RANDOM, mask_batch, num_to_predict

__all__ = [
    "NAMES",
    "WORD_LEVEL",
    "get",
    "MaskingPolicy",
    "MaskedBatch",
    "MaskVocab",
    "mask_batch",
    "num_to_predict",
    "KIND_MASK",
    "KIND_RANDOM",
    "KIND_KEEP",
]

_REGISTRY: Registry[MaskingPolicy] = Registry(
    "masking policy",
    {
        "token": ("mlmcorpus.masking.tokens", "TokenMasking"),
        "whole-word": ("mlmcorpus.masking.words", "WholeWordMasking"),
        "ngram": ("mlmcorpus.masking.words", "NgramMasking"),
        "span": ("mlmcorpus.masking.words", "SpanMasking"),
        "none": ("mlmcorpus.masking.none", "NoMasking"),
    },
    ConfigError,
)
NAMES = _REGISTRY.names
#: The policies that mask whole words (and so need to know where words start).
WORD_LEVEL = ("whole-word", "ngram", "span")
_EXPORTS = {
    "mlmcorpus.masking.base": ("MaskedBatch", "MaskingPolicy", "MaskVocab"),
    "mlmcorpus.masking.tokens": ("KIND_KEEP", "KIND_MASK", "KIND_RANDOM", "mask_batch", "num_to_predict"),
}


def get(name: str) -> MaskingPolicy:
    return _REGISTRY.get(name)


def __getattr__(name: str) -> Any:
    for module, names in _EXPORTS.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'mlmcorpus.masking' has no attribute {name!r}")
